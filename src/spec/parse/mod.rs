//! Parsing and validating an export spec: JSON in, [`ExportSpec`] out, or
//! every problem with its field path ([`SpecErrors`]) — never only the first.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::model::{
    check_partitions, check_shard_size, ExportSpec, FrameSampling, OutputFormat, SamplingMode,
    SessionFilter, DEFAULT_SHARD_SIZE_BYTES,
};
use super::time::TimeExpr;
use crate::error::{SpecError, SpecErrors};
use crate::store::json_type_name;

mod destination;
mod extras;
mod filter;
mod names;
mod steps;

pub(crate) use extras::{
    check_fraction, check_fraction_sum, compile_pattern, is_split_name, regex_problem,
};

impl ExportSpec {
    /// Parses a spec from JSON text; `now` is the creation time used as
    /// `as_of` when the spec gives none.
    pub fn from_json(text: &str, now: DateTime<Utc>) -> Result<ExportSpec, SpecErrors> {
        let value: Value = serde_json::from_str(text).map_err(|e| {
            SpecErrors(vec![SpecError {
                field: String::new(),
                message: format!(
                    "malformed JSON at line {} column {}: {e}",
                    e.line(),
                    e.column()
                ),
            }])
        })?;
        Self::parse(&value, now)
    }

    /// Validates a spec value; all problems are reported together.
    ///
    /// ```
    /// use nusomi_export::spec::ExportSpec;
    /// let now = chrono::Utc::now();
    /// let spec = serde_json::json!({"workflow": "a", "format": "parquet", "filter": {"outcom": "x"}});
    /// let err = ExportSpec::parse(&spec, now).unwrap_err();
    /// assert!(err.to_string().contains("filter.outcom: unknown field"));
    /// ```
    pub fn parse(value: &Value, now: DateTime<Utc>) -> Result<ExportSpec, SpecErrors> {
        let mut p = Parser::default();
        let spec = p.spec(value, now);
        match spec {
            Some(spec) if p.errors.is_empty() => Ok(spec),
            _ => Err(SpecErrors(p.errors)),
        }
    }
}

impl crate::spec::Destination {
    /// Parses a `destination` object alone (what [`Destination::to_json`]
    /// gives), with the spec's rules and field paths.
    ///
    /// [`Destination::to_json`]: crate::spec::Destination::to_json
    pub fn from_json(value: &Value) -> Result<Self, SpecErrors> {
        let mut p = Parser::default();
        match p.destination(value) {
            Some(d) if p.errors.is_empty() => Ok(d),
            _ => Err(SpecErrors(p.errors)),
        }
    }
}

/// Most items in a list of workflows, tags or paths.
pub(super) const MAX_LIST: usize = 1_000;
/// Most session ids in `exclude_session_ids`.
pub(super) const MAX_EXCLUDED: usize = 10_000;

/// Collects errors while walking the spec.
#[derive(Default)]
struct Parser {
    errors: Vec<SpecError>,
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

impl Parser {
    fn err(&mut self, field: &str, message: impl Into<String>) {
        self.errors.push(SpecError {
            field: field.to_string(),
            message: message.into(),
        });
    }

    fn object<'v>(
        &mut self,
        v: &'v Value,
        path: &str,
        known: &[&str],
    ) -> Option<&'v Map<String, Value>> {
        let Some(obj) = v.as_object() else {
            self.err(
                path,
                format!("expected an object, found {}", json_type_name(v)),
            );
            return None;
        };
        for key in obj.keys() {
            if !known.contains(&key.as_str()) {
                self.err(
                    &join(path, key),
                    format!("unknown field (expected one of: {})", known.join(", ")),
                );
            }
        }
        Some(obj)
    }

    fn string(&mut self, v: &Value, path: &str) -> Option<String> {
        match v.as_str() {
            Some(s) => Some(s.to_string()),
            None => {
                self.err(
                    path,
                    format!("expected a string, found {}", json_type_name(v)),
                );
                None
            }
        }
    }

    /// A string or a list of strings; an empty list is an error.
    fn strings(&mut self, v: &Value, path: &str) -> Option<Vec<String>> {
        match v {
            Value::String(s) => Some(vec![s.clone()]),
            Value::Array(items) if items.is_empty() => {
                self.err(path, "must not be an empty list");
                None
            }
            Value::Array(items) if items.len() > MAX_LIST => {
                self.err(
                    path,
                    format!("{} items; at most {MAX_LIST} are accepted", items.len()),
                );
                None
            }
            Value::Array(items) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    out.push(self.string(item, &format!("{path}[{i}]"))?);
                }
                Some(out)
            }
            other => {
                self.err(
                    path,
                    format!(
                        "expected a string or a list of strings, found {}",
                        json_type_name(other)
                    ),
                );
                None
            }
        }
    }

    fn enum_values<T: Copy>(
        &mut self,
        v: &Value,
        path: &str,
        all: &[T],
        name: impl Fn(T) -> &'static str,
    ) -> Option<Vec<T>> {
        let names = self.strings(v, path)?;
        let allowed: Vec<&str> = all.iter().map(|t| name(*t)).collect();
        let mut out = Vec::new();
        for (i, n) in names.iter().enumerate() {
            match all.iter().find(|t| name(**t) == n) {
                Some(t) => out.push(*t),
                None => {
                    let p = if v.is_array() {
                        format!("{path}[{i}]")
                    } else {
                        path.to_string()
                    };
                    self.err(&p, format!("{n:?} is not one of: {}", allowed.join(", ")));
                    return None;
                }
            }
        }
        Some(out)
    }

    fn int(&mut self, v: &Value, path: &str, min: i64) -> Option<i64> {
        match v.as_i64() {
            Some(n) if n >= min => Some(n),
            Some(n) => {
                self.err(path, format!("{n} is below the minimum {min}"));
                None
            }
            None => {
                self.err(
                    path,
                    format!("expected a whole number, found {}", json_type_name(v)),
                );
                None
            }
        }
    }

    fn time(&mut self, v: &Value, path: &str, as_of: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let s = self.string(v, path)?;
        match TimeExpr::parse(&s) {
            Ok(t) => Some(t.resolve(as_of)),
            Err(m) => {
                self.err(path, m);
                None
            }
        }
    }

    fn spec(&mut self, v: &Value, now: DateTime<Utc>) -> Option<ExportSpec> {
        const TOP: [&str; 16] = [
            "workflow",
            "filter",
            "format",
            "frame_sampling",
            "destination",
            "tag",
            "as_of",
            "shard_size_bytes",
            "splits",
            "redact",
            "unit",
            "coordinates",
            "history",
            "resize",
            "messages",
            "partitions",
        ];
        let obj = self.object(v, "", &TOP)?;
        let as_of = match obj.get("as_of") {
            None | Some(Value::Null) => Some(now),
            Some(v) => {
                self.string(v, "as_of")
                    .and_then(|s| match DateTime::parse_from_rfc3339(&s) {
                        Ok(t) => Some(t.with_timezone(&Utc)),
                        Err(e) => {
                            self.err(
                                "as_of",
                                format!("{s:?} is not an RFC 3339 date-time with a zone: {e}"),
                            );
                            None
                        }
                    })
            }
        };
        let workflows = match obj.get("workflow") {
            None | Some(Value::Null) => {
                self.err("workflow", "missing required field");
                None
            }
            Some(v) => self
                .strings(v, "workflow")
                .and_then(|ws| self.workflow_names(ws, v.is_array())),
        };
        let format = match obj.get("format") {
            None | Some(Value::Null) => {
                self.err("format", "missing required field");
                None
            }
            Some(v) => self
                .string(v, "format")
                .and_then(|s| self.one_of(&s, "format", &OutputFormat::ALL, OutputFormat::as_str)),
        };
        let filter = match obj.get("filter") {
            None | Some(Value::Null) => Some(SessionFilter::default()),
            Some(v) => self.filter(v, as_of.unwrap_or(now)),
        };
        let sampling = match obj.get("frame_sampling") {
            None | Some(Value::Null) => Some(FrameSampling {
                mode: SamplingMode::EventOnly,
                interval_ms: None,
                keep_action_frames: true,
            }),
            Some(v) => self.sampling(v),
        };
        let destination = match obj.get("destination") {
            None | Some(Value::Null) => Some(None),
            Some(v) => self.destination(v).map(Some),
        };
        let tag = match obj.get("tag") {
            None | Some(Value::Null) => Some(None),
            Some(v) => self.string(v, "tag").map(Some),
        };
        let shard_size_bytes = match obj.get("shard_size_bytes") {
            None | Some(Value::Null) => Some(DEFAULT_SHARD_SIZE_BYTES),
            Some(v) => self.int(v, "shard_size_bytes", i64::MIN).and_then(|n| {
                check_shard_size(n, format.unwrap_or(OutputFormat::Parquet))
                    .map_err(|m| self.err("shard_size_bytes", m))
                    .ok()
            }),
        };
        let splits = match obj.get("splits") {
            None | Some(Value::Null) => Some(None),
            Some(v) => self.splits(v).map(Some),
        };
        let redact = match obj.get("redact") {
            None | Some(Value::Null) => Some(None),
            Some(v) => self.redaction(v).map(Some),
        };
        let steps = self.step_unit(obj);
        let partitions = match obj.get("partitions") {
            None | Some(Value::Null) => Some(1),
            Some(v) => self.int(v, "partitions", i64::MIN).and_then(|n| {
                check_partitions(n)
                    .map_err(|m| self.err("partitions", m))
                    .ok()
            }),
        };
        if partitions.is_some_and(|n| n > 1) {
            if obj.get("unit").and_then(Value::as_str) == Some("step") {
                self.err(
                    "partitions",
                    "an export of `\"unit\": \"step\"` rows is written as one partition (leave `partitions` out)",
                );
            }
            if obj.get("redact").is_some_and(|r| !r.is_null()) {
                self.err(
                    "partitions",
                    "a redacted export is written as one partition (leave `partitions` out)",
                );
            }
        }
        Some(ExportSpec {
            partitions: partitions?,
            raw: v.clone(),
            steps: steps?,
            splits: splits?,
            redact: redact?,
            workflows: workflows?,
            filter: filter?,
            format: format?,
            sampling: sampling?,
            destination: destination?,
            tag: tag?,
            as_of: as_of?,
            shard_size_bytes: shard_size_bytes?,
        })
    }

    fn one_of<T: Copy>(
        &mut self,
        s: &str,
        path: &str,
        all: &[T],
        name: impl Fn(T) -> &'static str,
    ) -> Option<T> {
        let found = all.iter().copied().find(|t| name(*t) == s);
        if found.is_none() {
            let allowed: Vec<&str> = all.iter().map(|t| name(*t)).collect();
            self.err(path, format!("{s:?} is not one of: {}", allowed.join(", ")));
        }
        found
    }

    fn workflow_names(&mut self, ws: Vec<String>, listed: bool) -> Option<Vec<String>> {
        let mut ok = true;
        for (i, w) in ws.iter().enumerate() {
            let legal = !w.is_empty()
                && w.len() <= 64
                && w.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
            if !legal {
                let p = if listed {
                    format!("workflow[{i}]")
                } else {
                    "workflow".into()
                };
                self.err(
                    &p,
                    format!("{w:?} is not a workflow name (1 to 64 of a-z 0-9 _ -)"),
                );
                ok = false;
            }
        }
        ok.then_some(ws)
    }
}

#[cfg(test)]
mod tests {
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
        let errs = errors(
            json!({"workflow": "Bad Name", "format": "arrow", "destination": {"kind": "ftp"}}),
        );
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
        let key =
            r#"{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----SECRET"}"#;
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
}
