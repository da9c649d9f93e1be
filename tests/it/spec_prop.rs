//! Property tests for export specs: random small stores and random specs —
//! the compiled SQL selects exactly the rows a plain-Rust reference filter
//! over the bundles selects, in the same order; and the spec parser never
//! panics on arbitrary JSON.

use std::sync::Arc;

use arrow::array::AsArray;
use chrono::{DateTime, Duration, TimeZone, Utc};
use datafusion::prelude::SessionContext;
use nusomi_export::datagen::{pattern_image, BundleDraft, DraftFrame};
use nusomi_export::spec::{compile_sql, ExportSpec};
use nusomi_export::store::{hash_distance, FrameImage, SealOptions, KEYFRAME_HASH_DISTANCE};
use object_store::memory::InMemory;
use proptest::prelude::*;
use serde_json::{json, Value};

use crate::support::store_over;

const WORKFLOWS: [&str; 2] = ["wf_a", "wf_b"];
const OUTCOMES: [&str; 3] = ["success", "error", "abandoned"];
const KINDS: [&str; 3] = ["human", "model", "script"];
const TAGS: [&str; 3] = ["t1", "t2", "O'Brien"];
const PATHS: [&str; 2] = ["p1", "p2"];

fn instant(i: u32) -> DateTime<Utc> {
    // Start times on a small grid so since/until land on them exactly.
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + Duration::hours(i64::from(i))
}

#[derive(Debug, Clone)]
struct Sess {
    workflow: usize,
    outcome: usize,
    kind: usize,
    start: u32,
    duration_ms: i64,
    tags: Vec<usize>,
    paths: Vec<usize>,
    sealed_day: u32,
    /// (t increment, pattern, keyframe hint)
    frames: Vec<(i64, (bool, u8), Option<bool>)>,
    /// (t_ms, action)
    events: Vec<(i64, bool)>,
}

fn sess() -> impl Strategy<Value = Sess> {
    (
        (
            0..2usize,
            0..3usize,
            0..3usize,
            0..6u32,
            prop_oneof![Just(0i64), Just(999), Just(1000), 0..5000i64],
        ),
        (
            proptest::sample::subsequence(vec![0usize, 1, 2], 0..=3),
            proptest::sample::subsequence(vec![0usize, 1], 0..=2),
        ),
        0..3u32,
        proptest::collection::vec(
            (
                1..300i64,
                (any::<bool>(), 0..3u8),
                prop_oneof![4 => Just(None), 1 => any::<bool>().prop_map(Some)],
            ),
            1..6,
        ),
        proptest::collection::vec((0..1500i64, any::<bool>()), 0..6),
    )
        .prop_map(
            |(
                (workflow, outcome, kind, start, duration_ms),
                (tags, paths),
                sealed_day,
                frames,
                mut events,
            )| {
                events.sort_by_key(|e| e.0);
                Sess {
                    workflow,
                    outcome,
                    kind,
                    start,
                    duration_ms,
                    tags,
                    paths,
                    sealed_day,
                    frames,
                    events,
                }
            },
        )
}

fn draft(i: usize, s: &Sess) -> BundleDraft {
    let started = instant(s.start);
    let mut t = 0;
    let frames = s
        .frames
        .iter()
        .map(|(inc, (rising, tint), hint)| {
            t += inc;
            let (image, ext) = pattern_image(*rising, *tint * 60, false);
            DraftFrame {
                t_ms: t,
                keyframe: *hint,
                image,
                ext,
            }
        })
        .collect();
    BundleDraft {
        session: json!({
            "session_id": format!("s{i:02}"),
            "workflow": WORKFLOWS[s.workflow],
            "outcome": OUTCOMES[s.outcome],
            "actor": {"kind": KINDS[s.kind]},
            "started_at": started.to_rfc3339(),
            "ended_at": (started + Duration::milliseconds(s.duration_ms)).to_rfc3339(),
            "tags": s.tags.iter().map(|&t| TAGS[t]).collect::<Vec<_>>(),
            "paths": s.paths.iter().map(|&p| PATHS[p]).collect::<Vec<_>>(),
        }),
        frames,
        events: s
            .events
            .iter()
            .map(|(t, a)| json!({"t_ms": t, "type": "click", "action": a}))
            .collect(),
    }
}

fn sealed_at(s: &Sess) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap() + Duration::days(i64::from(s.sealed_day))
}

#[derive(Debug, Clone)]
struct SpecChoice {
    workflows: Vec<usize>,
    outcome: Option<usize>,
    kind: Option<usize>,
    since: Option<u32>,
    until: Option<u32>,
    min_d: Option<i64>,
    max_d: Option<i64>,
    tag: Option<usize>,
    path: Option<usize>,
    exclude: Vec<usize>,
    mode: usize,
    interval: i64,
    keep: bool,
    as_of_day: u32,
}

fn spec_choice() -> impl Strategy<Value = SpecChoice> {
    (
        (
            proptest::sample::subsequence(vec![0usize, 1], 1..=2),
            proptest::option::of(0..3usize),
            proptest::option::of(0..3usize),
        ),
        (proptest::option::of(0..6u32), proptest::option::of(0..6u32)),
        (
            proptest::option::of(prop_oneof![Just(999i64), Just(1000i64), 0..5000i64]),
            proptest::option::of(prop_oneof![Just(999i64), Just(1000i64), 0..5000i64]),
        ),
        (
            proptest::option::of(0..3usize),
            proptest::option::of(0..2usize),
            proptest::collection::vec(0..6usize, 0..2),
        ),
        (0..4usize, 1..400i64, any::<bool>(), 0..3u32),
    )
        .prop_map(
            |(
                (workflows, outcome, kind),
                (since, until),
                (min_d, max_d),
                (tag, path, exclude),
                (mode, interval, keep, as_of_day),
            )| {
                SpecChoice {
                    workflows,
                    outcome,
                    kind,
                    since,
                    until,
                    min_d,
                    max_d,
                    tag,
                    path,
                    exclude,
                    mode,
                    interval,
                    keep,
                    as_of_day,
                }
            },
        )
}

const MODES: [&str; 4] = ["event_only", "every_n_ms", "keyframes_only", "all"];

fn spec_json(c: &SpecChoice) -> Value {
    let mut filter = serde_json::Map::new();
    if let Some(o) = c.outcome {
        filter.insert("outcome".into(), json!(OUTCOMES[o]));
    }
    if let Some(k) = c.kind {
        filter.insert("actor.kind".into(), json!(KINDS[k]));
    }
    if let Some(s) = c.since {
        filter.insert("since".into(), json!(instant(s).to_rfc3339()));
    }
    if let Some(u) = c.until {
        filter.insert("until".into(), json!(instant(u).to_rfc3339()));
    }
    if let Some(d) = c.min_d {
        filter.insert("min_duration_ms".into(), json!(d));
    }
    if let Some(d) = c.max_d {
        filter.insert("max_duration_ms".into(), json!(d));
    }
    if let Some(t) = c.tag {
        filter.insert("tag".into(), json!(TAGS[t]));
    }
    if let Some(p) = c.path {
        filter.insert("path".into(), json!(PATHS[p]));
    }
    if !c.exclude.is_empty() {
        filter.insert(
            "exclude_session_ids".into(),
            json!(c
                .exclude
                .iter()
                .map(|i| format!("s{i:02}"))
                .collect::<Vec<_>>()),
        );
    }
    json!({
        "workflow": c.workflows.iter().map(|&w| WORKFLOWS[w]).collect::<Vec<_>>(),
        "format": "parquet",
        "filter": filter,
        "frame_sampling": {"mode": MODES[c.mode], "interval_ms": c.interval, "keep_action_frames": c.keep},
        "as_of": (Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap() + Duration::days(i64::from(c.as_of_day))).to_rfc3339(),
    })
}

/// The rows a spec selects, computed directly from the bundles.
fn reference(sessions: &[Sess], c: &SpecChoice) -> Vec<String> {
    let as_of = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap()
        + Duration::days(i64::from(c.as_of_day));
    let mut keys = Vec::new();
    for (i, s) in sessions.iter().enumerate() {
        let ok = sealed_at(s) <= as_of
            && c.workflows.contains(&s.workflow)
            && c.outcome.is_none_or(|o| o == s.outcome)
            && c.kind.is_none_or(|k| k == s.kind)
            && c.since.is_none_or(|t| instant(s.start) >= instant(t))
            && c.until.is_none_or(|t| instant(s.start) < instant(t))
            && c.min_d.is_none_or(|d| s.duration_ms >= d)
            && c.max_d.is_none_or(|d| s.duration_ms <= d)
            && c.tag.is_none_or(|t| s.tags.contains(&t))
            && c.path.is_none_or(|p| s.paths.contains(&p))
            && !c.exclude.contains(&i);
        if !ok {
            continue;
        }
        let mut t = 0;
        let times: Vec<i64> = s
            .frames
            .iter()
            .map(|f| {
                t += f.0;
                t
            })
            .collect();
        let hashes: Vec<u64> = s
            .frames
            .iter()
            .map(|(_, (rising, tint), _)| {
                FrameImage::probe(&pattern_image(*rising, *tint * 60, false).0)
                    .unwrap()
                    .dhash
            })
            .collect();
        for (idx, &ft) in times.iter().enumerate() {
            // Events belong to the latest frame at or before them (or the first).
            let mine: Vec<bool> = s
                .events
                .iter()
                .filter(|(et, _)| {
                    let owner = times.iter().rposition(|&x| x <= *et).unwrap_or(0);
                    owner == idx
                })
                .map(|e| e.1)
                .collect();
            let is_event = !mine.is_empty();
            let is_action = mine.iter().any(|a| *a);
            let is_key = match s.frames[idx].2 {
                Some(h) => h,
                None => {
                    idx == 0 || hash_distance(hashes[idx - 1], hashes[idx]) > KEYFRAME_HASH_DISTANCE
                }
            };
            let by_mode = match MODES[c.mode] {
                "event_only" => is_event,
                "keyframes_only" => is_key,
                "all" => true,
                _ => idx == 0 || times[idx - 1].div_euclid(c.interval) != ft.div_euclid(c.interval),
            };
            if by_mode || (c.keep && is_action) {
                keys.push(format!("s{i:02}_{idx:06}"));
            }
        }
    }
    keys
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn compiled_sql_selects_what_the_reference_selects(
        sessions in proptest::collection::vec(sess(), 1..6),
        choices in proptest::collection::vec(spec_choice(), 6),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let tmp = tempfile::TempDir::new().unwrap();
            let store = store_over(Arc::new(InMemory::new()));
            for (i, s) in sessions.iter().enumerate() {
                let dir = tmp.path().join(format!("b{i}"));
                draft(i, s).write(&dir).unwrap();
                let opts = SealOptions { parallelism: 1, sealed_at: Some(sealed_at(s)), ..Default::default() };
                store.seal(&dir, &opts).await.unwrap();
            }
            let ctx = SessionContext::new();
            nusomi_export::register(&ctx, &store).unwrap();
            for c in &choices {
                let v = spec_json(c);
                let spec = match ExportSpec::parse(&v, Utc::now()) {
                    Ok(s) => s,
                    // Random bounds can cross (since >= until, min > max): refused specs have no rows.
                    Err(e) => {
                        let text = e.to_string();
                        assert!(text.contains("filter.since") || text.contains("filter.min_duration_ms"), "{text}");
                        continue;
                    }
                };
                let sql = compile_sql(&spec).unwrap();
                let batches = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
                let got: Vec<String> = batches
                    .iter()
                    .flat_map(|b| {
                        let k = b.column_by_name("key").unwrap().as_string::<i32>();
                        (0..b.num_rows()).map(|r| k.value(r).to_string()).collect::<Vec<_>>()
                    })
                    .collect();
                assert_eq!(got, reference(&sessions, c), "spec {v}\nsql {sql}");
            }
        });
    }

}

// The parser fuzz: 256 cases per run by default; `PROPTEST_CASES=N` for longer runs.
proptest! {
    #[test]
    fn spec_parser_never_panics(v in arbitrary_json(4)) {
        let _ = ExportSpec::parse(&v, Utc::now());
        let _ = ExportSpec::from_json(&v.to_string(), Utc::now());
    }

    #[test]
    fn spec_parser_never_panics_near_valid_specs(
        field in prop_oneof![Just("workflow"), Just("format"), Just("filter"), Just("frame_sampling"), Just("destination"), Just("as_of"), Just("shard_size_bytes"), Just("tag")],
        sub in prop_oneof![Just("outcome"), Just("since"), Just("until"), Just("actor"), Just("actor.kind"), Just("min_duration_ms"), Just("mode"), Just("interval_ms"), Just("kind"), Just("path")],
        v in arbitrary_json(3),
    ) {
        let mut spec = json!({"workflow": "a", "format": "parquet", "filter": {}, "frame_sampling": {}, "destination": {"kind": "local", "path": "/x"}});
        spec[field] = v.clone();
        let _ = ExportSpec::parse(&spec, Utc::now());
        if spec[field].is_object() || field == "filter" {
            let mut nested = json!({"workflow": "a", "format": "parquet"});
            nested[field] = json!({ sub: v });
            let _ = ExportSpec::parse(&nested, Utc::now());
        }
    }
}

fn arbitrary_json(depth: u32) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        "[a-z_.]{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("now-7d"),
            Just("2026-01-01"),
            Just("99999999999999999999w"),
            Just("now-"),
            Just("1x"),
            Just("2026-13-45T99:00:00Z")
        ]
        .prop_map(|s| Value::String(s.to_string())),
    ];
    leaf.prop_recursive(depth, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            proptest::collection::btree_map(
                "[a-z_.]{1,14}|workflow|format|filter|mode|kind|since",
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}
