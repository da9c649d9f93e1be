//! The store's physical layout never shows in an export: `nusomi store
//! optimize` packs per-session frames files into packs of many sessions,
//! and every format's export (splits, steps, partitions) has the bytes and
//! manifest digest it had before; SQL reads the same rows; a forget takes a
//! session out of its pack; a second optimize has nothing to do.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};

use crate::support::{export_create, files_below, nusomi, spec_json, store_dir};

/// Every session row with its frames' count and `t_ms` sum, as `nusomi sql` prints them.
fn tables(store: &str) -> String {
    let (ok, text) = nusomi(&[
        "sql",
        "--store",
        store,
        "--format",
        "json",
        "SELECT s.*, f.n, f.t, sha256(f.i0) AS i FROM sessions s JOIN (SELECT session_id, count(*) AS n, \
         sum(t_ms) AS t, min(image) AS i0 FROM frames GROUP BY session_id) f \
         USING (session_id) ORDER BY session_id",
    ]);
    assert!(ok, "{text}");
    text
}

/// The specs compared: every format, with splits, steps and partitions.
fn specs() -> Vec<(&'static str, Value)> {
    let steps = json!({
        "unit": "step",
        "frame_sampling": {"mode": "event_only"},
        "history": {"actions": 3, "frames": 2},
        "messages": {"preset": "sharegpt", "system": "You operate a computer."},
    });
    vec![
        ("parquet", spec_json("parquet", json!({}))),
        ("arrow", spec_json("arrow", json!({}))),
        ("jsonl", spec_json("jsonl", json!({}))),
        ("webdataset", spec_json("webdataset", json!({}))),
        (
            "parquet-splits",
            spec_json("parquet", json!({"splits": {"train": 0.5, "val": 0.5}})),
        ),
        (
            "webdataset-partitions",
            spec_json("webdataset", json!({"partitions": 3})),
        ),
        ("jsonl-steps", spec_json("jsonl", steps.clone())),
        ("webdataset-steps-splits", {
            let mut s = spec_json("webdataset", steps);
            s["splits"] = json!({"train": 0.5, "val": 0.5});
            s
        }),
        (
            "arrow-splits-partitions",
            spec_json(
                "arrow",
                json!({"splits": {"train": 0.6, "val": 0.4}, "partitions": 2}),
            ),
        ),
    ]
}

/// Exports every spec of [`specs`] under `out`; per spec its manifest's
/// digest and shard list and the bytes of every other file.
fn export_all(store: &str, out: &Path) -> BTreeMap<String, (Value, BTreeMap<String, Vec<u8>>)> {
    let mut all = BTreeMap::new();
    std::fs::create_dir_all(out).unwrap();
    for (name, mut spec) in specs() {
        let dir = out.join(name);
        spec["destination"] = json!({"kind": "local", "path": dir.to_str().unwrap()});
        export_create(store, &spec, out);
        let m: Value =
            serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
        assert!(m["rows"].as_u64().unwrap() > 0, "{name}: {m}");
        let files = files_below(&dir)
            .into_iter()
            .filter(|p| !p.ends_with("manifest.json"))
            .map(|p| {
                let rel = p.strip_prefix(&dir).unwrap().display().to_string();
                (rel, std::fs::read(&p).unwrap())
            })
            .collect();
        let shards = json!({"digest": m["digest"], "shards": m["shards"], "splits": m["splits"],
                            "selection": m["selection"], "rows": m["rows"]});
        all.insert(name.to_string(), (shards, files));
    }
    all
}

/// Frames files the store folder holds (live or not), relative to `frames/`.
fn frames_files(store: &str) -> Vec<String> {
    let dir = Path::new(store).join("frames");
    files_below(&dir)
        .into_iter()
        .filter(|p| !p.components().any(|c| c.as_os_str() == "_delta_log"))
        .map(|p| p.strip_prefix(&dir).unwrap().display().to_string())
        .collect()
}

/// The `session_id`s a Parquet file holds, in row order.
fn session_ids_of(path: &Path) -> Vec<String> {
    use arrow::array::AsArray;
    let file = std::fs::File::open(path).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let mut ids = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let col = batch
            .column_by_name("session_id")
            .unwrap()
            .as_string::<i32>();
        ids.extend(col.iter().map(|v| v.unwrap().to_string()));
    }
    ids
}

#[tokio::test]
async fn optimize_packs_frames_files_and_no_export_changes_a_byte() {
    let (tmp, store) = store_dir(91, 48).await;
    let rows = tables(&store);
    let before = export_all(&store, &tmp.path().join("before"));
    let files_before = frames_files(&store);
    assert_eq!(files_before.len(), 48, "{files_before:?}");

    let (ok, text) = nusomi(&["store", "optimize", &store]);
    assert!(ok, "{text}");
    let packs: Vec<String> = frames_files(&store)
        .into_iter()
        .filter(|f| f.rsplit('/').next().unwrap().starts_with("pack."))
        .collect();
    assert!(!packs.is_empty(), "{text}");
    // Each pack holds several sessions, each session's rows together.
    let mut packed = 0;
    for p in &packs {
        let ids = session_ids_of(&Path::new(&store).join("frames").join(p));
        let mut runs = ids.clone();
        runs.dedup();
        let mut sorted = runs.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(runs, sorted, "{p}: sessions out of order or split");
        assert!(runs.len() >= 2, "{p} holds {runs:?}");
        packed += runs.len();
    }
    assert!(
        text.contains(&format!(
            "{packed} sessions packed into {} files",
            packs.len()
        )),
        "{text}"
    );

    // The same rows, and every export byte for byte.
    assert_eq!(tables(&store), rows);
    let after = export_all(&store, &tmp.path().join("after"));
    for (name, (m, files)) in &before {
        let (m2, files2) = &after[name];
        assert_eq!(m, m2, "{name}: manifest digest or shards changed");
        assert_eq!(
            files.keys().collect::<Vec<_>>(),
            files2.keys().collect::<Vec<_>>(),
            "{name}"
        );
        for (k, v) in files {
            assert!(files2[k] == *v, "{name}: {k} differs after optimize");
        }
    }

    // Nothing left to pack.
    let (ok, text) = nusomi(&["store", "optimize", &store]);
    assert!(
        ok && text.starts_with("0 sessions packed into 0 files"),
        "{text}"
    );

    // Forgetting a packed session rewrites its pack without it.
    let victim_pack = &packs[0];
    let ids = session_ids_of(&Path::new(&store).join("frames").join(victim_pack));
    let victim = ids[0].clone();
    let (ok, text) = nusomi(&["store", "forget", &store, &victim]);
    assert!(ok && text.contains("1 of 1 sessions removed"), "{text}");
    let new_packs: Vec<String> = frames_files(&store)
        .into_iter()
        .filter(|f| f.contains("pack.") && !packs.contains(f))
        .collect();
    assert_eq!(new_packs.len(), 1, "{new_packs:?}");
    let kept = session_ids_of(&Path::new(&store).join("frames").join(&new_packs[0]));
    let mut want: Vec<String> = ids.into_iter().filter(|i| *i != victim).collect();
    want.dedup();
    let mut got = kept.clone();
    got.dedup();
    assert_eq!(
        got, want,
        "the rewritten pack holds the others, not {victim}"
    );
    let after_forget = tables(&store);
    assert!(!after_forget.contains(&victim), "{after_forget}");
    assert_eq!(
        after_forget.matches("\"session_id\"").count(),
        rows.matches("\"session_id\"").count() - 1
    );

    // A vacuum past the retention deletes the files no version reads now,
    // and the store reads as it did.
    let (ok, text) = nusomi(&["store", "vacuum", "--retain-hours", "0", &store]);
    assert!(ok, "{text}");
    assert_eq!(tables(&store), after_forget);
    let left = frames_files(&store);
    assert!(!left.contains(victim_pack), "{left:?}");
    assert!(left.contains(&new_packs[0]), "{left:?}");
    // The one-session files of packed sessions are gone; lone sessions of
    // a workflow-month keep theirs.
    assert_eq!(
        left.len(),
        files_before.len() - packed + packs.len(),
        "{left:?}"
    );
}
