//! Sealing: every refusal names its place and leaves the store unchanged;
//! failures mid-seal leave nothing visible; re-sealing is a no-op.

use std::sync::Arc;

use nusomi_export::datagen::BundleDraft;
use nusomi_export::store::{SealOptions, SealOutcome, SealedStore};
use nusomi_export::Error;
use object_store::memory::InMemory;
use object_store::ObjectStore;
use serde_json::json;
use tempfile::TempDir;

use crate::support::{
    all_objects, small_generator, store_over, write_session, Counted, InstrumentedStore,
};

fn opts() -> SealOptions {
    SealOptions::default()
}

/// Seals a damaged copy of a valid bundle into a store that already holds
/// one session, and returns the error text; asserts the store is unchanged.
async fn refused(damage: impl FnOnce(&mut BundleDraft, &std::path::Path)) -> String {
    let tmp = TempDir::new().unwrap();
    let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let store = store_over(Arc::clone(&inner));
    let (_, good) = write_session(tmp.path(), 3, 4);
    store.seal(&good, &opts()).await.unwrap();
    let before = all_objects(&inner).await;

    let mut draft = small_generator(3).session(3);
    let dir = tmp.path().join("bad");
    draft.write(&dir).unwrap();
    damage(&mut draft, &dir);
    let err = store
        .seal(&dir, &opts())
        .await
        .expect_err("bundle must be refused");
    assert_eq!(
        all_objects(&inner).await,
        before,
        "store changed by a refused bundle: {err}"
    );
    assert_eq!(store.snapshot().await.unwrap().sessions.len(), 1);
    err.to_string()
}

fn rewrite_session(dir: &std::path::Path, f: impl FnOnce(&mut serde_json::Value)) {
    let p = dir.join("session.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(p, v.to_string()).unwrap();
}

fn edit_line(dir: &std::path::Path, file: &str, line: usize, f: impl FnOnce(&str) -> String) {
    let p = dir.join(file);
    let text = std::fs::read_to_string(&p).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines[line - 1] = f(&lines[line - 1]);
    std::fs::write(p, lines.join("\n") + "\n").unwrap();
}

#[tokio::test]
async fn missing_field_is_named() {
    let e = refused(|_, d| {
        rewrite_session(d, |v| {
            v.as_object_mut().unwrap().remove("workflow");
        })
    })
    .await;
    assert!(
        e.contains("session.json: field `workflow`: missing required field"),
        "{e}"
    );
}

#[tokio::test]
async fn mistyped_field_is_named() {
    let e = refused(|_, d| rewrite_session(d, |v| v["started_at"] = json!(5))).await;
    assert!(
        e.contains("session.json: field `started_at`: expected a string, found a number"),
        "{e}"
    );
    let e = refused(|_, d| rewrite_session(d, |v| v["tags"] = json!(["a", 3]))).await;
    assert!(e.contains("field `tags[1]`: expected a string"), "{e}");
}

#[tokio::test]
async fn unknown_outcome_and_actor_kind() {
    let e = refused(|_, d| rewrite_session(d, |v| v["outcome"] = json!("won"))).await;
    assert!(
        e.contains("field `outcome`: unknown outcome \"won\" (allowed: success, error, abandoned)"),
        "{e}"
    );
    let e = refused(|_, d| rewrite_session(d, |v| v["actor"]["kind"] = json!("robot"))).await;
    assert!(
        e.contains("field `actor.kind`: unknown actor kind \"robot\""),
        "{e}"
    );
}

#[tokio::test]
async fn illegal_characters_in_ids() {
    let e = refused(|_, d| rewrite_session(d, |v| v["session_id"] = json!("ses 1/.."))).await;
    assert!(
        e.contains("field `session_id`") && e.contains("illegal character ' '"),
        "{e}"
    );
    let e = refused(|_, d| rewrite_session(d, |v| v["workflow"] = json!("Process_Invoice"))).await;
    assert!(
        e.contains("field `workflow`") && e.contains("illegal character 'P'"),
        "{e}"
    );
}

#[tokio::test]
async fn unknown_field_and_zone_less_time() {
    let e = refused(|_, d| rewrite_session(d, |v| v["tag"] = json!(["x"]))).await;
    assert!(e.contains("field `tag`: unknown field"), "{e}");
    let e = refused(|_, d| rewrite_session(d, |v| v["started_at"] = json!("2026-05-07T14:08:11")))
        .await;
    assert!(
        e.contains("field `started_at`") && e.contains("with a zone"),
        "{e}"
    );
}

#[tokio::test]
async fn ended_before_started() {
    let e = refused(|_, d| {
        rewrite_session(d, |v| {
            v["ended_at"] = json!("2020-01-01T00:00:00Z");
        })
    })
    .await;
    assert!(e.contains("field `ended_at`: is before started_at"), "{e}");
}

#[tokio::test]
async fn malformed_json_lines_give_line_numbers() {
    let e = refused(|_, d| edit_line(d, "frames.jsonl", 2, |l| l.replace('}', ""))).await;
    assert!(e.contains("frames.jsonl:2: malformed JSON"), "{e}");
    let e = refused(|draft, d| {
        assert!(draft.events.len() >= 2);
        edit_line(d, "events.jsonl", 2, |_| "{\"t_ms\": ".into())
    })
    .await;
    assert!(e.contains("events.jsonl:2: malformed JSON"), "{e}");
}

#[tokio::test]
async fn frame_times_must_increase_strictly() {
    let e = refused(|draft, d| {
        let t = draft.frames[1].t_ms;
        edit_line(d, "frames.jsonl", 3, |l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["t_ms"] = json!(t);
            v.to_string()
        })
    })
    .await;
    assert!(
        e.contains("frames.jsonl:3: field `t_ms`") && e.contains("strictly increasing"),
        "{e}"
    );
}

/// Event line 1's `data` replaced by `data`.
async fn refused_event_data(data: serde_json::Value) -> String {
    refused(|_, d| {
        edit_line(d, "events.jsonl", 1, |l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["data"] = data;
            v.to_string()
        })
    })
    .await
}

#[tokio::test]
async fn thought_and_element_are_checked_where_present() {
    let at = "events.jsonl:1: field `data.";
    for (data, field, message) in [
        (
            json!({"thought": 3}),
            "thought",
            "expected a string, found a number",
        ),
        (
            json!({"thought": "x".repeat(16 * 1024 + 1)}),
            "thought",
            "longer than the 16384 accepted",
        ),
        (
            json!({"element": "button"}),
            "element",
            "expected a JSON object, found a string",
        ),
        (
            json!({"element": {"role": "button"}}),
            "element.bbox",
            "missing required field",
        ),
        (
            json!({"element": {"bbox": [1, 2, 3]}}),
            "element.bbox",
            "expected a list of four numbers [x1, y1, x2, y2] in frame pixels, found a list",
        ),
        (
            json!({"element": {"bbox": [1, 2, "3", 4]}}),
            "element.bbox[2]",
            "expected a number",
        ),
        (
            json!({"element": {"bbox": [1, -2, 3, 4]}}),
            "element.bbox[1]",
            "-2 is negative",
        ),
        (
            json!({"element": {"bbox": [5, 2, 3, 4]}}),
            "element.bbox",
            "x1 > x2 or y1 > y2",
        ),
        (
            json!({"element": {"bbox": [1, 2, 3, 4], "label": "OK"}}),
            "element.label",
            "unknown field (expected one of: bbox, role, name)",
        ),
        (
            json!({"element": {"bbox": [1, 2, 3, 4], "name": 7}}),
            "element.name",
            "expected a string",
        ),
    ] {
        let e = refused_event_data(data.clone()).await;
        assert!(
            e.contains(&format!("{at}{field}`")) && e.contains(message),
            "{data}: {e}"
        );
    }
}

#[tokio::test]
async fn thought_and_element_seal_and_other_data_passes() {
    let tmp = TempDir::new().unwrap();
    let store = store_over(Arc::new(InMemory::new()));
    let mut draft = small_generator(3).session(3);
    draft.events[0]["data"] = json!({
        "x": 1, "y": 2, "thought": "The search box is at the top.",
        "element": {"bbox": [0.5, 1, 30, 12.25], "role": "button", "name": "Search"},
        "thoughts": {"any": "shape"}
    });
    let dir = tmp.path().join("ok");
    draft.write(&dir).unwrap();
    store.seal(&dir, &opts()).await.unwrap();
    assert_eq!(store.snapshot().await.unwrap().sessions.len(), 1);
}

#[tokio::test]
async fn event_times_must_not_decrease() {
    let e = refused(|draft, d| {
        let n = draft.events.len();
        assert!(n >= 2);
        edit_line(d, "events.jsonl", n, |l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["t_ms"] = json!(0);
            v.to_string()
        })
    })
    .await;
    assert!(
        e.contains("events.jsonl:")
            && e.contains("field `t_ms`")
            && e.contains("must not decrease"),
        "{e}"
    );
}

#[tokio::test]
async fn missing_and_undecodable_frames() {
    let e = refused(|_, d| std::fs::remove_file(d.join("frames/000002.png")).unwrap()).await;
    assert!(
        e.contains("frames.jsonl:3: field `file`: frame file \"frames/000002.png\" is missing"),
        "{e}"
    );
    let e = refused(|draft, d| {
        let bytes = &draft.frames[1].image;
        std::fs::write(d.join("frames/000001.png"), &bytes[..bytes.len() / 3]).unwrap()
    })
    .await;
    assert!(
        e.contains("frames.jsonl:2: field `file`") && e.contains("not a decodable PNG"),
        "{e}"
    );
    let e =
        refused(|_, d| std::fs::write(d.join("frames/000000.png"), b"GIF89a....").unwrap()).await;
    assert!(
        e.contains("frames.jsonl:1") && e.contains("neither a PNG nor a JPEG"),
        "{e}"
    );
}

#[tokio::test]
async fn frame_files_stay_inside_the_bundle() {
    let e = refused(|_, d| {
        edit_line(d, "frames.jsonl", 1, |_| {
            r#"{"t_ms": 0, "file": "../x.png"}"#.into()
        })
    })
    .await;
    assert!(
        e.contains("frames.jsonl:1: field `file`") && e.contains("leaves the bundle"),
        "{e}"
    );
}

#[tokio::test]
async fn same_id_with_different_content_is_refused() {
    let tmp = TempDir::new().unwrap();
    let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let store = store_over(Arc::clone(&inner));
    let (draft, dir) = write_session(tmp.path(), 3, 0);
    store.seal(&dir, &opts()).await.unwrap();
    let before = all_objects(&inner).await;
    // Same id, other workflow (so other paths) and other tags.
    let mut other = draft.clone();
    other.session["tags"] = json!(["changed"]);
    other.session["workflow"] = json!("another_workflow");
    let other_dir = tmp.path().join("other");
    other.write(&other_dir).unwrap();
    let err = store.seal(&other_dir, &opts()).await.unwrap_err();
    assert!(matches!(err, Error::SealConflict { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("already sealed with different content"),
        "{err}"
    );
    assert_eq!(all_objects(&inner).await, before);
}

#[tokio::test]
async fn identical_bundle_again_writes_nothing() {
    let tmp = TempDir::new().unwrap();
    let counting = Arc::new(InstrumentedStore::default());
    let store = store_over(Arc::clone(&counting) as Arc<dyn ObjectStore>);
    let (draft, dir) = write_session(tmp.path(), 4, 2);
    let first = store.seal(&dir, &opts()).await.unwrap();
    assert!(matches!(first, SealOutcome::Sealed(_)));
    // The same content written elsewhere, pretty-printed differently, is identical.
    let copy = tmp.path().join("copy");
    draft.write(&copy).unwrap();
    counting.reset();
    // A fresh handle must find it through the store, not a cache.
    let fresh = store_over(Arc::clone(&counting) as Arc<dyn ObjectStore>);
    let again = fresh.seal(&copy, &opts()).await.unwrap();
    assert!(matches!(again, SealOutcome::AlreadySealed(_)), "{again:?}");
    assert_eq!(again.summary().seal, first.summary().seal);
    assert_eq!(counting.written(), Vec::<String>::new());
}

#[tokio::test]
async fn a_failure_at_any_write_leaves_nothing_visible() {
    let tmp = TempDir::new().unwrap();
    let (draft, dir) = write_session(tmp.path(), 5, 1);
    let id = draft.session_id().to_string();
    let mut n = 1;
    loop {
        let failing = Arc::new(InstrumentedStore::default().failing_at(n, Counted::Writes));
        let inner = Arc::clone(&failing.inner) as Arc<dyn ObjectStore>;
        let store = store_over(failing as Arc<dyn ObjectStore>);
        match store.seal(&dir, &opts()).await {
            Ok(_) => {
                assert!(
                    n > 2,
                    "sealing needs at least two writes (frames, then the commit)"
                );
                // The session's claim, sessions file and frames file, and
                // the tables' logs.
                let objs = all_objects(&inner).await;
                let data: Vec<_> = objs
                    .iter()
                    .filter(|p| !p.contains("/_delta_log/"))
                    .collect();
                assert_eq!(data.len(), 3, "{objs:?}");
                assert_eq!(store.snapshot().await.unwrap().sessions.len(), 1);
                break;
            }
            Err(e) => {
                assert!(e.to_string().contains("injected failure"), "{e}");
                let left = all_objects(&inner).await;
                assert!(
                    left.iter()
                        .all(|p| !p.contains(&id) && p.contains("/_delta_log/")),
                    "write #{n} left objects: {left:?}"
                );
                assert!(store.snapshot().await.unwrap().sessions.is_empty());
            }
        }
        n += 1;
    }
}

#[tokio::test]
async fn many_bundles_seal_in_parallel_each_standing_alone() {
    let tmp = TempDir::new().unwrap();
    let store = SealedStore::open(tmp.path().join("store").to_str().unwrap())
        .await
        .unwrap();
    let mut dirs: Vec<_> = (0..8)
        .map(|i| write_session(&tmp.path().join("b"), 6, i).1)
        .collect();
    let bad = tmp.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    dirs.insert(3, bad.clone());
    let options = SealOptions {
        parallelism: 3,
        sealed_at: None,
        ..Default::default()
    };
    use futures::StreamExt;
    let results: Vec<_> = store.seal_all(dirs, &options).collect().await;
    assert_eq!(results.len(), 9);
    let refused: Vec<_> = results.iter().filter(|(_, r)| r.is_err()).collect();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].0, bad);
    assert!(refused[0]
        .1
        .as_ref()
        .unwrap_err()
        .to_string()
        .contains("session.json: cannot read"));
    assert_eq!(store.snapshot().await.unwrap().sessions.len(), 8);
}

#[tokio::test]
async fn one_call_with_a_repeated_id_seals_it_once() {
    let tmp = TempDir::new().unwrap();
    let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let store = store_over(Arc::clone(&inner));
    let (draft, first) = write_session(tmp.path(), 8, 0);
    let mut other = draft.clone();
    other.session["workflow"] = json!("another_workflow");
    let second = tmp.path().join("second");
    other.write(&second).unwrap();
    let copy = tmp.path().join("copy");
    draft.write(&copy).unwrap();
    let options = SealOptions {
        parallelism: 3,
        sealed_at: None,
        ..Default::default()
    };
    use futures::StreamExt;
    let results: Vec<_> = store
        .seal_all(vec![first, second, copy], &options)
        .collect()
        .await;
    let sealed = results
        .iter()
        .filter(|(_, r)| matches!(r, Ok(SealOutcome::Sealed(_))))
        .count();
    let conflicts = results
        .iter()
        .filter(|(_, r)| matches!(r, Err(Error::SealConflict { .. })))
        .count();
    let unchanged = results
        .iter()
        .filter(|(_, r)| matches!(r, Ok(SealOutcome::AlreadySealed(_))))
        .count();
    assert_eq!(sealed, 1, "{results:?}");
    assert_eq!(sealed + conflicts + unchanged, 3);
    assert!(conflicts >= 1);
    assert_eq!(store.snapshot().await.unwrap().sessions.len(), 1);
    assert_eq!(
        all_objects(&inner)
            .await
            .iter()
            .filter(|p| !p.contains("/_delta_log/"))
            .count(),
        3,
        "the claim, one sessions file, one frames file (besides the tables' logs)"
    );
}

#[tokio::test]
async fn links_fifos_huge_images_and_long_lines_are_refused_with_the_path() {
    let e = refused(|_, d| {
        std::fs::remove_file(d.join("frames/000001.png")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.join("frames/000001.png")).unwrap();
    })
    .await;
    assert!(
        e.contains("frames.jsonl:2: field `file`") && e.contains("symbolic link"),
        "{e}"
    );
    let e = refused(|_, d| {
        std::fs::remove_file(d.join("frames/000000.png")).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(d.join("frames/000000.png"))
            .status()
            .unwrap();
        assert!(made.success());
    })
    .await;
    assert!(e.contains("not a regular file"), "{e}");
    // 20,000 × 1 pixels: refused from the header, before decoding.
    let e = refused(|_, d| {
        let img = image::RgbImage::new(20_000, 1);
        img.save(d.join("frames/000000.png")).unwrap();
    })
    .await;
    assert!(e.contains("20000×1 pixels; at most 16384×16384"), "{e}");
    let e = refused(|_, d| {
        edit_line(d, "events.jsonl", 1, |l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["pad"] = json!("x".repeat(2 << 20));
            v.to_string()
        })
    })
    .await;
    assert!(
        e.contains("events.jsonl:1") && e.contains("at most 1048576"),
        "{e}"
    );
}

/// What a seal interrupted between its claim and its commit leaves (a
/// claim and a frames file no log holds): a seal of the same bundle while
/// the claim is young leaves it to the sealer that may be committing it,
/// without touching that sealer's frames file; once the claim is stale it
/// commits it (and `migrate` commits another), and every frame reads back.
#[tokio::test]
async fn an_uncommitted_claim_is_left_while_young_and_committed_once_stale() {
    use datafusion::prelude::SessionContext;
    let tmp = TempDir::new().unwrap();
    let (_, first) = write_session(tmp.path(), 31, 0);
    let (draft, second) = write_session(tmp.path(), 31, 1);
    let (third_draft, third) = write_session(tmp.path(), 31, 2);
    let id = draft.session_id().to_string();
    let third_id = third_draft.session_id().to_string();
    let root = tmp.path().join("store");
    let store = SealedStore::open(root.to_str().unwrap()).await.unwrap();
    store.seal(&first, &opts()).await.unwrap();
    // The interrupted seal: `second` sealed into a scratch store, and its
    // claim and frames file copied into this one, outside its logs.
    let scratch = tmp.path().join("scratch");
    let other = SealedStore::open(scratch.to_str().unwrap()).await.unwrap();
    other.seal(&second, &opts()).await.unwrap();
    other.seal(&third, &opts()).await.unwrap();
    let mut copied = Vec::new();
    for dir in ["claims", "frames"] {
        for f in crate::support::files_below(&scratch.join(dir)) {
            let name = f.to_string_lossy();
            if !name.contains(&id) && !name.contains(&third_id) {
                continue;
            }
            let to = root.join(f.strip_prefix(&scratch).unwrap());
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(&f, &to).unwrap();
            copied.push(to);
        }
    }
    assert_eq!(copied.len(), 4, "{copied:?}");
    let fresh = SealedStore::open(root.to_str().unwrap()).await.unwrap();
    let outcome = fresh.seal(&second, &opts()).await.unwrap();
    assert!(
        matches!(outcome, SealOutcome::AlreadySealed(_)),
        "{outcome:?}"
    );
    assert!(fresh.snapshot().await.unwrap().get(&id).is_none());
    assert!(
        copied.iter().all(|f| f.exists()),
        "the claim's files must stay for the sealer committing them"
    );
    // Stale: the next seal of the bundle commits the claim.
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(11 * 60);
    for claim in copied
        .iter()
        .filter(|f| f.to_string_lossy().contains("claims"))
    {
        std::fs::File::options()
            .write(true)
            .open(claim)
            .unwrap()
            .set_modified(old)
            .unwrap();
    }
    let outcome = fresh.seal(&second, &opts()).await.unwrap();
    assert!(
        matches!(outcome, SealOutcome::AlreadySealed(_)),
        "{outcome:?}"
    );
    let ctx = SessionContext::new();
    nusomi_export::register(&ctx, &fresh).unwrap();
    let q = format!("SELECT count(image) FROM frames WHERE session_id = '{id}'");
    let n = crate::support::one_i64(&crate::support::sql(&ctx, &q).await);
    assert_eq!(n as usize, draft.frames.len());
    assert_eq!(fresh.snapshot().await.unwrap().sessions.len(), 2);
    // The other stale claim: `migrate` commits it.
    let summary = fresh.migrate().await.unwrap();
    assert_eq!(
        (summary.claims_committed, summary.claims_in_flight),
        (1, 0),
        "{summary:?}"
    );
    let snapshot = fresh.snapshot().await.unwrap();
    assert_eq!(snapshot.sessions.len(), 3);
    assert_eq!(
        snapshot.get(&third_id).map(|s| s.frame_count as usize),
        Some(third_draft.frames.len())
    );
    assert_eq!(fresh.migrate().await.unwrap().claims_committed, 0);
}
