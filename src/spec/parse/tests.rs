//! Unit tests of the spec parser: field paths and messages of refused specs.

use super::*;
use crate::spec::format_instant;
use crate::store::ActorKind;
use serde_json::json;

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-06-10T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn errors(v: Value) -> Vec<String> {
    ExportSpec::parse(&v, now())
        .unwrap_err()
        .0
        .iter()
        .map(|e| e.to_string())
        .collect()
}

fn has(errs: &[String], needle: &str) {
    assert!(
        errs.iter().any(|e| e.contains(needle)),
        "{needle:?} not in {errs:#?}"
    );
}

#[test]
fn partitions_are_checked_and_resolved_only_when_asked_for() {
    let base = json!({"workflow": "a", "format": "parquet"});
    let one = ExportSpec::parse(&base, now()).unwrap();
    assert_eq!(one.partitions, 1);
    assert!(one.resolved_json().get("partitions").is_none());
    let mut four = base.clone();
    four["partitions"] = json!(4);
    let four = ExportSpec::parse(&four, now()).unwrap();
    assert_eq!(four.resolved_json()["partitions"], json!(4));
    for bad in [json!(0), json!(5000), json!("4"), json!(1.5)] {
        let mut v = base.clone();
        v["partitions"] = bad.clone();
        has(&errors(v), "partitions:");
    }
    let mut steps = base.clone();
    steps["partitions"] = json!(2);
    steps["unit"] = json!("step");
    has(&errors(steps), "partitions: an export of");
    let mut redacted = base.clone();
    redacted["partitions"] = json!(2);
    redacted["redact"] = json!({"typed_text": true});
    has(&errors(redacted), "partitions: a redacted export");
}

#[test]
fn partition_of_is_sha256_of_the_id_modulo_the_count() {
    // Values from Python: int.from_bytes(sha256(id)[:8], "big") % n.
    assert_eq!(crate::spec::partition_of("ses_a", 4), 0);
    assert_eq!(
        crate::spec::partition_of("ses_01KDY0XKXRGG0VBX4A9F2GRJ2H", 7),
        2
    );
    assert_eq!(crate::spec::partition_of("anything", 1), 0);
    let spread: std::collections::HashSet<u32> = (0..200)
        .map(|i| crate::spec::partition_of(&format!("ses_{i}"), 4))
        .collect();
    assert_eq!(spread.len(), 4);
}

#[test]
fn the_spec_example_parses() {
    let v = json!({
        "workflow": "process_invoice",
        "filter": {"outcome": "success", "since": "2026-01-01", "until": "2026-06-01T00:00:00Z",
                   "actor.kind": "model", "min_duration_ms": 1000, "max_duration_ms": 600000,
                   "tag": "eu", "path": "p_approve_invoice", "exclude_session_ids": ["ses_x"]},
        "format": "webdataset",
        "frame_sampling": {"mode": "event_only", "interval_ms": 100, "keep_action_frames": true},
        "destination": {"kind": "s3", "bucket": "my-bucket", "prefix": "p", "region": "eu-west-1", "role_arn": "arn:x"},
        "tag": "process_invoice@v1"
    });
    let s = ExportSpec::parse(&v, now()).unwrap();
    assert_eq!(s.workflows, vec!["process_invoice"]);
    assert_eq!(s.format, OutputFormat::Webdataset);
    assert_eq!(
        s.sampling.interval_ms, None,
        "interval_ms is ignored by event_only"
    );
    assert_eq!(s.as_of, now());
    assert_eq!(s.shard_size_bytes, DEFAULT_SHARD_SIZE_BYTES);
    assert_eq!(s.filter.actor_kinds, vec![ActorKind::Model]);
    assert_eq!(s.resolved_json()["filter"]["since"], "2026-01-01T00:00:00Z");
}

#[test]
fn every_error_is_named_and_reported_together() {
    let errs = errors(json!({
        "workflow": [],
        "format": "csv",
        "filter": {"outcom": "success", "outcome": "won", "actor": {"kind": "robot"},
                   "since": "yesterday", "min_duration_ms": "10", "exclude_session_ids": ["bad id"]},
        "frame_sampling": {"mode": "every_n_ms", "keep_action_frames": "yes"},
        "shard_size_bytes": 100,
        "extra": 1
    }));
    has(&errs, "workflow: must not be an empty list");
    has(
        &errs,
        "format: \"csv\" is not one of: parquet, webdataset, jsonl, arrow",
    );
    has(&errs, "filter.outcom: unknown field");
    has(
        &errs,
        "filter.outcome: \"won\" is not one of: success, error, abandoned",
    );
    has(
        &errs,
        "filter.actor.kind: \"robot\" is not one of: human, model, script",
    );
    has(&errs, "filter.since: \"yesterday\" is not a time");
    has(
        &errs,
        "filter.min_duration_ms: expected a whole number, found a string",
    );
    has(
        &errs,
        "filter.exclude_session_ids[0]: \"bad id\" is not a legal session id",
    );
    has(
        &errs,
        "frame_sampling.interval_ms: required (> 0) for mode every_n_ms",
    );
    has(
        &errs,
        "frame_sampling.keep_action_frames: expected true or false",
    );
    has(&errs, "shard_size_bytes: 100 is below the minimum 4096");
    has(&errs, "extra: unknown field");
    assert_eq!(errs.len(), 12, "{errs:#?}");
}

#[test]
fn cross_field_errors() {
    let errs = errors(json!({"workflow": "a", "format": "jsonl",
        "filter": {"min_duration_ms": 10, "max_duration_ms": 5, "since": "2026-02-01", "until": "2026-01-01"}}));
    has(
        &errs,
        "filter.min_duration_ms: 10 is greater than filter.max_duration_ms 5",
    );
    has(
        &errs,
        "filter.since: resolves to 2026-02-01T00:00:00Z which is not before filter.until",
    );
    let errs = errors(
        json!({"workflow": "a", "format": "jsonl", "frame_sampling": {"mode": "every_n_ms", "interval_ms": 0}}),
    );
    has(
        &errs,
        "frame_sampling.interval_ms: must be a whole number > 0, found 0",
    );
    let errs = errors(
        json!({"workflow": "a", "format": "jsonl", "filter": {"actor.kind": "human", "actor": {"kind": "model"}}}),
    );
    has(&errs, "conflicts with the other spelling");
    let errs = errors(json!({"format": "jsonl", "filter": {"until": "2026-01-01T00:00:00"}}));
    has(&errs, "workflow: missing required field");
    has(
        &errs,
        "filter.until: \"2026-01-01T00:00:00\" has no time zone",
    );
    let errs =
        errors(json!({"workflow": "Bad Name", "format": "arrow", "destination": {"kind": "ftp"}}));
    has(&errs, "workflow: \"Bad Name\" is not a workflow name");
    has(&errs, "destination.kind: \"ftp\" is not one of");
    let errs = errors(
        json!({"workflow": "a", "format": "arrow", "destination": {"kind": "s3", "buckt": "x"}}),
    );
    has(&errs, "destination.buckt: unknown field");
    has(&errs, "destination.bucket: missing required field");
    let errs = errors(json!({"workflow": "a", "format": "arrow", "as_of": "2026-01-01"}));
    has(&errs, "as_of: \"2026-01-01\" is not an RFC 3339 date-time");
    let errs = errors(json!([1]));
    has(&errs, "expected an object, found a list");
}

#[test]
fn relative_times_resolve_against_as_of() {
    let v = json!({"workflow": "a", "format": "parquet", "as_of": "2026-03-01T00:00:00Z",
                   "filter": {"since": "7d", "until": "now"}});
    let s = ExportSpec::parse(&v, now()).unwrap();
    assert_eq!(
        s.filter.since.map(format_instant).as_deref(),
        Some("2026-02-22T00:00:00Z")
    );
    assert_eq!(
        s.filter.until.map(format_instant).as_deref(),
        Some("2026-03-01T00:00:00Z")
    );
    // Without as_of, the creation time decides.
    let v = json!({"workflow": "a", "format": "parquet", "filter": {"since": "now-1d"}});
    let s = ExportSpec::parse(&v, now()).unwrap();
    assert_eq!(
        s.filter.since.map(format_instant).as_deref(),
        Some("2026-06-09T12:00:00Z")
    );
}

#[test]
fn long_lists_are_capped() {
    let tags: Vec<String> = (0..=MAX_LIST).map(|i| format!("t{i}")).collect();
    let ids: Vec<String> = (0..=MAX_EXCLUDED).map(|i| format!("s{i}")).collect();
    let errs = errors(json!({"workflow": "a", "format": "jsonl",
        "filter": {"tag": tags, "exclude_session_ids": ids}}));
    has(&errs, "filter.tag: 1001 items; at most 1000");
    has(
        &errs,
        "filter.exclude_session_ids: 10001 session ids; at most 10000",
    );
    let ok: Vec<String> = (0..MAX_LIST).map(|i| format!("t{i}")).collect();
    assert!(ExportSpec::parse(
        &json!({"workflow": "a", "format": "jsonl", "filter": {"tag": ok}}),
        now()
    )
    .is_ok());
}

#[test]
fn key_material_never_reaches_the_written_spec() {
    let key = r#"{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----SECRET"}"#;
    let v = json!({"workflow": "a", "format": "jsonl",
        "destination": {"kind": "gcs", "bucket": "my-bucket", "service_account": key}});
    let s = ExportSpec::parse(&v, now()).unwrap();
    for written in [s.raw_redacted(), s.resolved_json()] {
        assert!(!written.to_string().contains("SECRET"), "{written}");
        assert_eq!(
            written["destination"]["service_account"],
            crate::spec::model::REDACTED
        );
    }
    // A file path or an e-mail is not a secret and stays.
    let v = json!({"workflow": "a", "format": "jsonl",
        "destination": {"kind": "gcs", "bucket": "my-bucket", "service_account": "x@p.iam.gserviceaccount.com"}});
    let s = ExportSpec::parse(&v, now()).unwrap();
    assert_eq!(
        s.resolved_json()["destination"]["service_account"],
        "x@p.iam.gserviceaccount.com"
    );
}
