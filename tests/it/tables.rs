//! The `sessions` and `frames` tables: contents equal the bundles; filters on
//! session columns skip other sessions' frame files; scans without `image`
//! do not read image bytes.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use datafusion::prelude::SessionContext;
use nusomi_export::datagen::BundleDraft;
use nusomi_export::store::{frames_schema, sessions_schema, SealOptions, SealedStore};
use object_store::ObjectStore;
use sha2::{Digest, Sha256};
use tempfile::TempDir;

use crate::support::{one_i64, sql, store_over, write_session, InstrumentedStore};

/// Seals sessions 0..n of seed 11 into a counting in-memory store.
async fn counting_store(
    n: usize,
) -> (
    TempDir,
    Arc<InstrumentedStore>,
    Arc<SealedStore>,
    Vec<BundleDraft>,
) {
    let tmp = TempDir::new().unwrap();
    let counting = Arc::new(InstrumentedStore::default());
    let store = store_over(Arc::clone(&counting) as Arc<dyn ObjectStore>);
    let mut drafts = Vec::new();
    for i in 0..n {
        let (d, dir) = write_session(tmp.path(), 11, i);
        store.seal(&dir, &SealOptions::default()).await.unwrap();
        drafts.push(d);
    }
    (tmp, counting, store, drafts)
}

#[tokio::test]
async fn tables_hold_exactly_the_bundles() {
    let (_tmp, _c, store, drafts) = counting_store(6).await;
    let ctx = SessionContext::new();
    nusomi_export::register(&ctx, &store).unwrap();
    assert_eq!(
        ctx.table("sessions").await.unwrap().schema().as_arrow(),
        sessions_schema().as_ref()
    );
    assert_eq!(
        ctx.table("frames").await.unwrap().schema().as_arrow(),
        frames_schema().as_ref()
    );

    let frames: usize = drafts.iter().map(|d| d.frames.len()).sum();
    let events: usize = drafts.iter().map(|d| d.events.len()).sum();
    let actions: usize = drafts
        .iter()
        .flat_map(|d| &d.events)
        .filter(|e| e["action"] == true)
        .count();
    let b = sql(&ctx, "SELECT count(*) FROM frames").await;
    assert_eq!(one_i64(&b) as usize, frames);
    let b = sql(&ctx, "SELECT sum(cardinality(events)) FROM frames").await;
    assert_eq!(
        b[0].column(0)
            .as_primitive::<arrow::datatypes::UInt64Type>()
            .value(0) as usize,
        events
    );
    let b = sql(
        &ctx,
        "SELECT sum(event_count), sum(action_count), sum(frame_count) FROM sessions",
    )
    .await;
    let col = |i: usize| b[0].column(i).as_primitive::<Int64Type>().value(0) as usize;
    assert_eq!((col(0), col(1), col(2)), (events, actions, frames));

    // Image bytes are the bundle's bytes, unchanged, in frame order.
    let b = sql(
        &ctx,
        "SELECT session_id, frame_idx, image FROM frames ORDER BY session_id, frame_idx",
    )
    .await;
    let mut got: BTreeMap<(String, i64), [u8; 32]> = BTreeMap::new();
    for batch in &b {
        let ids = batch.column(0).as_string::<i32>();
        let idx = batch.column(1).as_primitive::<Int64Type>();
        let img = batch.column(2).as_binary::<i32>();
        for r in 0..batch.num_rows() {
            got.insert(
                (ids.value(r).to_string(), idx.value(r)),
                Sha256::digest(img.value(r)).into(),
            );
        }
    }
    for d in &drafts {
        for (i, f) in d.frames.iter().enumerate() {
            let want: [u8; 32] = Sha256::digest(&f.image).into();
            assert_eq!(got[&(d.session_id().to_string(), i as i64)], want);
        }
    }
}

#[tokio::test]
async fn bundle_keyframe_flags_and_event_attachment_hold() {
    let (_tmp, _c, store, drafts) = counting_store(9).await;
    let ctx = SessionContext::new();
    nusomi_export::register(&ctx, &store).unwrap();
    // Explicit flags from bundles win both ways.
    for d in drafts
        .iter()
        .filter(|d| d.frames.iter().any(|f| f.keyframe.is_some()))
    {
        let q = format!(
            "SELECT is_keyframe FROM frames WHERE session_id = '{}' ORDER BY frame_idx",
            d.session_id()
        );
        let b = sql(&ctx, &q).await;
        let got: Vec<bool> = b
            .iter()
            .flat_map(|b| b.column(0).as_boolean().iter().map(|v| v.unwrap()))
            .collect();
        let want: Vec<bool> = d.frames.iter().map(|f| f.keyframe.unwrap()).collect();
        assert_eq!(got, want);
    }
    // Without flags the first frame is a keyframe.
    let b = sql(
        &ctx,
        "SELECT count(*) FROM frames WHERE frame_idx = 0 AND NOT is_keyframe",
    )
    .await;
    let flagged_false = drafts
        .iter()
        .filter(|d| d.frames[0].keyframe == Some(false))
        .count();
    assert_eq!(one_i64(&b) as usize, flagged_false);
    // Events before the first frame belong to the first frame.
    let b = sql(&ctx, "SELECT count(*) FROM frames WHERE frame_idx = 0 AND cardinality(events) > 0 AND get_field(array_element(events, 1), 't_ms') < t_ms").await;
    let early = drafts
        .iter()
        .filter(|d| d.events.first().and_then(|e| e["t_ms"].as_i64()) < Some(d.frames[0].t_ms))
        .count();
    assert_eq!(one_i64(&b) as usize, early);
    assert!(
        early > 0,
        "the generator records some events before the first frame"
    );
    // is_event_frame / is_action_frame agree with events.
    let b = sql(
        &ctx,
        "SELECT count(*) FROM frames WHERE is_event_frame <> (cardinality(events) > 0)",
    )
    .await;
    assert_eq!(one_i64(&b), 0);
    let b = sql(&ctx, "SELECT count(*) FROM frames WHERE is_action_frame").await;
    let c = sql(&ctx, "SELECT count(DISTINCT session_id || '/' || frame_idx) FROM \
        (SELECT session_id, frame_idx, unnest(events) AS e FROM frames) WHERE get_field(e, 'action')").await;
    assert_eq!(one_i64(&b), one_i64(&c));
    assert!(one_i64(&b) > 0);
}

#[tokio::test]
async fn workflow_filter_skips_other_workflows_frame_files() {
    let (_tmp, counting, store, drafts) = counting_store(10).await;
    let ctx = SessionContext::new();
    nusomi_export::register(&ctx, &store).unwrap();
    let wf = drafts[0].session["workflow"].as_str().unwrap().to_string();
    let mine: Vec<&BundleDraft> = drafts
        .iter()
        .filter(|d| d.session["workflow"] == wf.as_str())
        .collect();
    let others = drafts.len() - mine.len();
    assert!(others > 0);
    let want: usize = mine.iter().map(|d| d.frames.len()).sum();

    // Directly on frames.
    counting.reset();
    let q = format!("SELECT count(*), count(image) FROM frames WHERE workflow = '{wf}'");
    let b = sql(&ctx, &q).await;
    assert_eq!(one_i64(&b) as usize, want);
    for d in &drafts {
        let n = counting.reads_matching(&format!(
            "frames/{}",
            d.session["workflow"].as_str().unwrap()
        ));
        if d.session["workflow"] != wf.as_str() {
            assert_eq!(
                n, 0,
                "frames of workflow {} were read",
                d.session["workflow"]
            );
        }
    }
    assert!(counting.reads_matching(&format!("frames/{wf}/")) > 0);

    // Through a join with sessions, as users write it.
    counting.reset();
    let q = format!(
        "SELECT count(*), count(f.image) FROM frames f JOIN sessions s ON f.session_id = s.session_id \
         WHERE s.workflow = '{wf}'"
    );
    let b = sql(&ctx, &q).await;
    assert_eq!(one_i64(&b) as usize, want);
    let read_other = drafts
        .iter()
        .filter(|d| d.session["workflow"] != wf.as_str())
        .map(|d| counting.frame_reads_of(d.session_id()))
        .sum::<usize>();
    assert_eq!(
        read_other, 0,
        "a join on one workflow opened other workflows' frame files"
    );
}

#[tokio::test]
async fn time_and_id_filters_prune_and_projection_skips_images() {
    let (_tmp, counting, store, drafts) = counting_store(8).await;
    let ctx = SessionContext::new();
    nusomi_export::register(&ctx, &store).unwrap();
    let id = drafts[2].session_id().to_string();
    counting.reset();
    let b = sql(
        &ctx,
        &format!("SELECT count(*) FROM frames WHERE session_id = '{id}' AND t_ms >= 0"),
    )
    .await;
    assert_eq!(one_i64(&b) as usize, drafts[2].frames.len());
    // Frames files read (the frames table's log is the catalog, not data).
    let frame_reads: Vec<_> = counting
        .reads_of("frames/")
        .into_iter()
        .filter(|p| !p.contains("/_delta_log/"))
        .collect();
    assert!(
        !frame_reads.is_empty() && frame_reads.iter().all(|p| p.contains(&id)),
        "{frame_reads:?}"
    );

    counting.reset();
    let b = sql(
        &ctx,
        "SELECT count(*) FROM frames WHERE started_at >= TIMESTAMP '2030-01-01T00:00:00Z'",
    )
    .await;
    assert_eq!(one_i64(&b), 0);
    assert_eq!(counting.reads_matching("frames/"), 0);

    // A scan without `image` reads a small fraction of the frames files.
    let total: u64 = store
        .snapshot()
        .await
        .unwrap()
        .sessions
        .iter()
        .map(|s| s.frames_bytes)
        .sum();
    counting.reset();
    let b = sql(
        &ctx,
        "SELECT sum(t_ms), count(DISTINCT session_id) FROM frames WHERE is_keyframe",
    )
    .await;
    assert!(b[0].num_rows() == 1);
    let read = counting.bytes_read() as u64;
    assert!(
        read * 10 < total,
        "read {read} of {total} bytes without projecting image"
    );
}

#[tokio::test]
async fn generic_parquet_readers_see_the_same_tables() {
    // DataFusion's own ListingTable over ROOT/frames/ and ROOT/sessions/ (what any
    // Parquet reader does) gives the same rows as our providers.
    // DataFusion's listing skips hidden folders, so no `.tmp…` name here.
    let tmp = tempfile::Builder::new()
        .prefix("nusomi-it")
        .tempdir()
        .unwrap();
    let root = tmp.path().join("store");
    let store = SealedStore::open(root.to_str().unwrap()).await.unwrap();
    for i in 0..4 {
        let (_, dir) = write_session(&tmp.path().join("b"), 12, i);
        store.seal(&dir, &SealOptions::default()).await.unwrap();
    }
    // DataFusion, like Hive, ignores files in subfolders unless told otherwise.
    let config = datafusion::prelude::SessionConfig::new().set_bool(
        "datafusion.execution.listing_table_ignore_subdirectory",
        false,
    );
    let ctx = SessionContext::new_with_config(config);
    nusomi_export::register(&ctx, &store).unwrap();
    let opts = datafusion::prelude::ParquetReadOptions::default();
    ctx.register_parquet(
        "raw_frames",
        format!("{}/frames/", root.display()),
        opts.clone(),
    )
    .await
    .unwrap();
    ctx.register_parquet(
        "raw_sessions",
        format!("{}/sessions/", root.display()),
        opts,
    )
    .await
    .unwrap();
    let q = |t: &str| {
        format!("SELECT count(*) AS n, sum(t_ms) AS t, count(image) AS i, sum(width * height) AS px, count(DISTINCT session_id) AS s FROM {t}")
    };
    let a = arrow::util::pretty::pretty_format_batches(&sql(&ctx, &q("frames")).await)
        .unwrap()
        .to_string();
    let b = arrow::util::pretty::pretty_format_batches(&sql(&ctx, &q("raw_frames")).await)
        .unwrap()
        .to_string();
    assert_eq!(a, b);
    let s = |t: &str| {
        format!("SELECT session_id, workflow, duration_ms, tags FROM {t} ORDER BY session_id")
    };
    let a = arrow::util::pretty::pretty_format_batches(&sql(&ctx, &s("sessions")).await)
        .unwrap()
        .to_string();
    let b = arrow::util::pretty::pretty_format_batches(&sql(&ctx, &s("raw_sessions")).await)
        .unwrap()
        .to_string();
    assert_eq!(a, b);
}

#[tokio::test]
async fn the_log_records_each_frames_file_size_and_tail_size_exactly() {
    use futures::TryStreamExt;
    use object_store::ObjectStoreExt;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let (_tmp, counting, store, drafts) = counting_store(3).await;
    let root = store.location().prefix.clone();
    // The frames log's add actions, as any Delta reader finds them.
    let log_dir = root.clone().join("frames").join("_delta_log");
    let entries: Vec<_> = counting
        .inner
        .list(Some(&log_dir))
        .try_collect()
        .await
        .unwrap();
    let mut adds = std::collections::BTreeMap::new();
    for e in entries
        .iter()
        .filter(|e| e.location.as_ref().ends_with(".json"))
    {
        let text = counting
            .inner
            .get(&e.location)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        for line in std::str::from_utf8(&text).unwrap().lines() {
            let action: serde_json::Value = serde_json::from_str(line).unwrap();
            if let Some(add) = action.get("add") {
                adds.insert(add["path"].as_str().unwrap().to_string(), add.clone());
            }
        }
    }
    assert_eq!(adds.len(), drafts.len());
    let snapshot = store.snapshot().await.unwrap();
    for s in &snapshot.sessions {
        let rel = s
            .frames_path
            .as_ref()
            .strip_prefix(&format!(
                "{}frames/",
                root.as_ref().to_owned() + if root.as_ref().is_empty() { "" } else { "/" }
            ))
            .unwrap();
        let add = &adds[rel];
        let bytes = counting
            .inner
            .get(&s.frames_path)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(bytes.len() as u64, s.frames_bytes, "{}", s.frames_path);
        assert_eq!(add["size"].as_u64(), Some(s.frames_bytes));
        // The recorded tail (page indexes and footer) starts right after the
        // last column chunk: a read of it never touches image pages.
        let reader = SerializedFileReader::new(bytes.clone()).unwrap();
        let data_end = reader
            .metadata()
            .row_groups()
            .iter()
            .flat_map(|rg| rg.columns())
            .map(|c| {
                let (start, len) = c.byte_range();
                start + len
            })
            .max()
            .unwrap();
        let tail: u64 = add["tags"]["nusomi.footer_bytes"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(data_end, s.frames_bytes - tail, "{}", s.frames_path);
        let n = bytes.len();
        let footer = u32::from_le_bytes(bytes[n - 8..n - 4].try_into().unwrap()) as u64 + 8;
        assert!(tail >= footer, "{}", s.frames_path);
        // numRecords and min = max session_id, as planning reads them.
        let stats: serde_json::Value =
            serde_json::from_str(add["stats"].as_str().unwrap()).unwrap();
        assert_eq!(stats["numRecords"].as_i64(), Some(s.frame_count));
        assert_eq!(
            stats["minValues"]["session_id"],
            stats["maxValues"]["session_id"]
        );
        assert_eq!(
            stats["minValues"]["session_id"].as_str(),
            Some(s.session_id.as_str())
        );
        let session = counting.inner.head(&s.session_path).await.unwrap();
        assert_eq!(session.size, s.session_bytes, "{}", s.session_path);
    }
}

/// A scan of some sessions of a sessions file of many reads only their
/// rows: here, with the row selection DataFusion gets; and in the plan a
/// cluster's executors get (serialized by datafusion-proto, which drops
/// file extensions such as that selection), through the filters applied
/// again above the scan.
#[cfg(feature = "cluster")]
#[tokio::test]
async fn a_partly_kept_sessions_file_gives_only_the_kept_rows_even_in_a_shipped_plan() {
    use datafusion::physical_plan::{collect, displayable};
    use futures::StreamExt;
    let tmp = TempDir::new().unwrap();
    let root = tmp.path().join("store");
    let store = SealedStore::open(root.to_str().unwrap()).await.unwrap();
    let dirs: Vec<_> = (0..12)
        .map(|i| {
            let (mut draft, _) = write_session(&tmp.path().join("gen"), 12, i);
            draft.session["workflow"] = serde_json::json!("one_workflow");
            draft.session["started_at"] = serde_json::json!("2026-03-02T10:00:00Z");
            draft.session["ended_at"] = serde_json::json!("2026-03-02T11:00:00Z");
            let dir = tmp.path().join("b").join(i.to_string());
            draft.write(&dir).unwrap();
            dir
        })
        .collect();
    let opts = SealOptions::default();
    let results: Vec<_> = store.seal_all(dirs, &opts).collect().await;
    assert!(results.iter().all(|(_, r)| r.is_ok()), "{results:?}");
    // One call, one workflow-month: one sessions file of 12 rows.
    let snapshot = store.snapshot().await.unwrap();
    let files: std::collections::HashSet<_> =
        snapshot.sessions.iter().map(|s| &s.session_path).collect();
    assert_eq!((snapshot.sessions.len(), files.len()), (12, 1), "{files:?}");
    let pick = [2usize, 3, 9];
    let ids: Vec<&str> = pick
        .iter()
        .map(|&i| snapshot.sessions[i].session_id.as_str())
        .collect();
    let expected: Vec<String> = pick
        .iter()
        .map(|&i| {
            let s = &snapshot.sessions[i];
            format!("{} {} {}", s.session_id, s.seal, s.frame_count)
        })
        .collect();
    let rows = |batches: &[RecordBatch]| -> Vec<String> {
        let mut out = Vec::new();
        for b in batches {
            for r in 0..b.num_rows() {
                out.push(format!(
                    "{} {} {}",
                    b.column(0).as_string::<i32>().value(r),
                    b.column(1).as_string::<i32>().value(r),
                    b.column(2).as_primitive::<Int64Type>().value(r)
                ));
            }
        }
        out.sort();
        out
    };
    let ctx = SessionContext::new();
    nusomi_export::register(&ctx, &store).unwrap();
    // `workflow` is filtered on but not projected: the filters applied again
    // need it read all the same.
    let q = format!(
        "SELECT session_id, seal, frame_count FROM sessions \
         WHERE session_id IN ('{}', '{}', '{}') AND workflow = 'one_workflow'",
        ids[0], ids[1], ids[2]
    );
    let here = sql(&ctx, &q).await;
    assert_eq!(rows(&here), expected);
    let physical = |q: String| {
        let ctx = ctx.clone();
        async move {
            let plan = ctx
                .sql(&q)
                .await
                .unwrap()
                .create_physical_plan()
                .await
                .unwrap();
            let text = displayable(plan.as_ref()).indent(true).to_string();
            (plan, text)
        }
    };
    let (plan, text) = physical(q).await;
    let bytes = datafusion_proto::bytes::physical_plan_to_bytes(plan).unwrap();
    let shipped =
        datafusion_proto::bytes::physical_plan_from_bytes(&bytes, &ctx.task_ctx()).unwrap();
    let there = collect(shipped, ctx.task_ctx()).await.unwrap();
    assert_eq!(rows(&there), expected, "{text}");
    assert!(text.contains("FilterExec"), "{text}");
    // All of a file's rows kept: no selection, no filter above the scan.
    let all = sql(&ctx, "SELECT count(seal) FROM sessions").await;
    assert_eq!(one_i64(&all), 12);
    let (_, text) = physical("SELECT seal FROM sessions".into()).await;
    assert!(!text.contains("FilterExec"), "{text}");
}
