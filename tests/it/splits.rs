//! Splits (`"splits": {"train": …}`): every group's rows go to one split's
//! shard series by a stable hash, the manifest has a section per split,
//! `export verify` checks them, and sealing more sessions never moves a
//! session to another split.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use nusomi_export::dest::ExportTarget;
use nusomi_export::sample::SplitPlan;
use nusomi_export::sink::Manifest;
use nusomi_export::spec::OutputFormat;
use nusomi_export::store::{SealOptions, SealedStore};
use object_store::memory::InMemory;
use serde_json::{json, Value};

use crate::support::{export_to_dir, store_over, write_session};

const SEED: u64 = 91;

async fn seal(store: &Arc<SealedStore>, bundles: &Path, range: std::ops::Range<usize>) {
    for i in range {
        let (_, dir) = write_session(bundles, SEED, i);
        store.seal(&dir, &SealOptions::default()).await.unwrap();
    }
}

async fn export(store: &Arc<SealedStore>, format: &str, fields: Value, dir: &Path) -> Manifest {
    let mut fields = fields;
    fields["shard_size_bytes"] = json!(64 * 1024);
    export_to_dir(store, format, fields, dir).await
}

/// Session id → split name, read from a JSONL export's shards.
fn sessions_by_split(dir: &Path, m: &Manifest) -> HashMap<String, String> {
    let mut out: HashMap<String, String> = HashMap::new();
    for section in m.splits.as_ref().unwrap() {
        for shard in &section.shards {
            let text = std::fs::read_to_string(dir.join(shard)).unwrap();
            for line in text.lines() {
                let row: Value = serde_json::from_str(line).unwrap();
                let sid = row["session_id"].as_str().unwrap().to_string();
                if let Some(other) = out.insert(sid.clone(), section.name.clone()) {
                    assert_eq!(other, section.name, "{sid} is in two splits");
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn splits_keep_sessions_whole_and_in_place_as_the_store_grows() {
    let tmp = tempfile::TempDir::new().unwrap();
    let bundles = tmp.path().join("bundles");
    let store = store_over(Arc::new(InMemory::new()));
    seal(&store, &bundles, 0..6).await;
    let splits = json!({"train": 0.5, "val": 0.25, "test": 0.25});
    let plan = SplitPlan::new(&[
        ("train".into(), 0.5),
        ("val".into(), 0.25),
        ("test".into(), 0.25),
    ])
    .unwrap();

    let mut per_format: BTreeMap<&str, Manifest> = BTreeMap::new();
    for format in OutputFormat::ALL {
        let dir = tmp.path().join(format!("first-{}", format.as_str()));
        let m = export(&store, format.as_str(), json!({"splits": splits}), &dir).await;
        let sections = m.splits.clone().expect("a section per split");
        let names: Vec<&str> = sections.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["test", "train", "val"], "series in name order");
        assert_eq!(sections.iter().map(|s| s.rows).sum::<u64>(), m.rows);
        assert_eq!(sections.iter().map(|s| s.sessions).sum::<u64>(), 6);
        // `shards` is the splits' series one after the other.
        let listed: Vec<String> = sections.iter().flat_map(|s| s.shards.clone()).collect();
        let all: Vec<String> = m.shards.iter().map(|s| s.path.clone()).collect();
        assert_eq!(listed, all);
        for s in &sections {
            for p in &s.shards {
                assert!(p.starts_with(&format!("{}/shard-", s.name)), "{p}");
                assert!(dir.join(p).is_file(), "{p}");
            }
        }
        let t = ExportTarget::local(dir.to_str().unwrap()).unwrap();
        let report = nusomi_export::sink::verify(&t.store, &t.prefix)
            .await
            .unwrap();
        assert!(report.is_intact(), "{:?}", report.mismatches);
        let card = std::fs::read_to_string(dir.join("README.md")).unwrap();
        // MDS: one MosaicML Streaming dataset per split folder, its
        // index listing that split's shards.
        if format == OutputFormat::Mds {
            for s in &sections {
                let index: Value = serde_json::from_slice(
                    &std::fs::read(dir.join(&s.name).join("index.json")).unwrap(),
                )
                .unwrap();
                let names: Vec<String> = index["shards"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| format!("{}/{}", s.name, e["raw_data"]["basename"].as_str().unwrap()))
                    .collect();
                assert_eq!(names, s.shards, "{}", s.name);
            }
        }
        if !matches!(format, OutputFormat::Arrow | OutputFormat::Mds) {
            for s in sections.iter().filter(|s| !s.shards.is_empty()) {
                assert!(
                    card.contains(&format!(
                        "  - split: {}\n    path: \"{}/shard-*.",
                        s.name, s.name
                    )),
                    "{card}"
                );
            }
        }
        per_format.insert(format.as_str(), m);
    }
    // Every format puts the same sessions in the same splits.
    for m in per_format.values() {
        let counts: Vec<(String, u64, u64)> = m
            .splits
            .iter()
            .flatten()
            .map(|s| (s.name.clone(), s.rows, s.sessions))
            .collect();
        let jsonl: Vec<(String, u64, u64)> = per_format["jsonl"]
            .splits
            .iter()
            .flatten()
            .map(|s| (s.name.clone(), s.rows, s.sessions))
            .collect();
        assert_eq!(counts, jsonl);
    }

    let first_dir = tmp.path().join("first-jsonl");
    let first = sessions_by_split(&first_dir, &per_format["jsonl"]);
    assert_eq!(first.len(), 6);
    for (sid, split) in &first {
        assert_eq!(&plan.names()[plan.assign("", sid)], split, "{sid}");
    }

    // Six more sessions later: none of the first six moves.
    seal(&store, &bundles, 6..12).await;
    let dir = tmp.path().join("second-jsonl");
    let m = export(&store, "jsonl", json!({"splits": splits}), &dir).await;
    let second = sessions_by_split(&dir, &m);
    assert_eq!(second.len(), 12);
    for (sid, split) in &first {
        assert_eq!(&second[sid], split, "{sid} moved");
    }
    // Another salt is another assignment of the same sessions.
    let dir = tmp.path().join("salted");
    let m = export(
        &store,
        "jsonl",
        json!({"splits": {"train": 0.5, "val": 0.25, "test": 0.25, "salt": "v2"}}),
        &dir,
    )
    .await;
    let salted = sessions_by_split(&dir, &m);
    for (sid, split) in &salted {
        assert_eq!(&plan.names()[plan.assign("v2", sid)], split, "{sid}");
    }
    assert_ne!(salted, second, "the salt changes the assignment");

    // Grouped by workflow: a workflow's sessions share a split.
    let dir = tmp.path().join("by-workflow");
    let m = export(
        &store,
        "jsonl",
        json!({"splits": {"train": 0.5, "val": 0.25, "test": 0.25, "by": "workflow"}}),
        &dir,
    )
    .await;
    let by_session = sessions_by_split(&dir, &m);
    let mut by_workflow: HashMap<String, String> = HashMap::new();
    for section in m.splits.as_ref().unwrap() {
        for shard in &section.shards {
            for line in std::fs::read_to_string(dir.join(shard)).unwrap().lines() {
                let row: Value = serde_json::from_str(line).unwrap();
                let wf = row["workflow"].as_str().unwrap().to_string();
                let prev = by_workflow.insert(wf.clone(), section.name.clone());
                assert!(prev.is_none_or(|p| p == section.name), "{wf} in two splits");
                assert_eq!(plan.names()[plan.assign("", &wf)], section.name);
            }
        }
    }
    assert_eq!(by_session.len(), 12);
}

#[tokio::test]
async fn a_damaged_split_section_is_reported_by_name() {
    let tmp = tempfile::TempDir::new().unwrap();
    let store = store_over(Arc::new(InMemory::new()));
    seal(&store, &tmp.path().join("bundles"), 0..4).await;
    let dir = tmp.path().join("out");
    export(
        &store,
        "jsonl",
        json!({"splits": {"a": 0.5, "b": 0.5}}),
        &dir,
    )
    .await;
    let path = dir.join("manifest.json");
    let mut m: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    m["splits"][0]["rows"] = json!(m["splits"][0]["rows"].as_u64().unwrap() + 1);
    std::fs::write(&path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    let t = ExportTarget::local(dir.to_str().unwrap()).unwrap();
    let report = nusomi_export::sink::verify(&t.store, &t.prefix)
        .await
        .unwrap();
    let text: Vec<String> = report.mismatches.iter().map(|m| m.to_string()).collect();
    assert_eq!(text.len(), 1, "{text:?}");
    assert!(text[0].starts_with("manifest.json: split a: "), "{text:?}");
}
