//! The loader formats: MDS shards with their `index.json` (MosaicML
//! Streaming), and the `wids.json` shard list beside WebDataset exports.
//! The bytes are checked here against the layouts those loaders read; the
//! loaders themselves read the exports in `scripts/check_loaders.py`.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use nusomi_export::dest::ExportTarget;
use nusomi_export::sink::{shard_rows, verify, Manifest};
use nusomi_export::spec::{ExportSpec, OutputFormat, MAX_MDS_SHARD_SIZE_BYTES};
use nusomi_export::store::SealedStore;
use serde_json::{json, Value};

use crate::support::{export_to_dir, sealed_memory_store, spec_json};

const SEED: u64 = 2525;

async fn run(
    store: &Arc<SealedStore>,
    format: OutputFormat,
    fields: Value,
    dir: &Path,
) -> Manifest {
    export_to_dir(store, format.as_str(), fields, dir).await
}

fn u32_at(b: &[u8], at: usize) -> usize {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize
}

fn json_file(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[tokio::test]
async fn mds_shards_hold_the_rows_of_parquet_and_an_index_streaming_reads() {
    let (_b, store) = sealed_memory_store(SEED, 3).await;
    let tmp = tempfile::TempDir::new().unwrap();
    let cap = 48 * 1024;
    let fields = json!({"shard_size_bytes": cap});
    let pq = run(
        &store,
        OutputFormat::Parquet,
        fields.clone(),
        &tmp.path().join("pq"),
    )
    .await;
    let dir = tmp.path().join("mds");
    let m = run(&store, OutputFormat::Mds, fields.clone(), &dir).await;
    assert!(m.shard_count > 1, "the cap rolls shards");
    assert_eq!((m.rows, m.sessions), (pq.rows, pq.sessions));

    // The same rows in the same order as the Parquet export.
    let t = ExportTarget::local(dir.to_str().unwrap()).unwrap();
    let pt = ExportTarget::local(tmp.path().join("pq").to_str().unwrap()).unwrap();
    let mut keys = Vec::new();
    for s in &m.shards {
        for r in shard_rows(&t.store, &t.prefix, s, OutputFormat::Mds)
            .await
            .unwrap()
        {
            keys.push((r.session_id, r.key));
        }
    }
    let mut pq_keys = Vec::new();
    for s in &pq.shards {
        for r in shard_rows(&pt.store, &pt.prefix, s, OutputFormat::Parquet)
            .await
            .unwrap()
        {
            pq_keys.push((r.session_id, r.key));
        }
    }
    assert_eq!(keys, pq_keys);

    // index.json: MDS version 2, one entry per shard with the manifest's
    // size and SHA-256, sample counts that add up to the rows, and the
    // config each shard carries in its own header.
    let index = json_file(&dir.join("index.json"));
    assert_eq!(index["version"], 2);
    let entries = index["shards"].as_array().unwrap();
    assert_eq!(entries.len(), m.shards.len());
    let mut samples = 0;
    for (e, s) in entries.iter().zip(&m.shards) {
        assert_eq!(e["raw_data"]["basename"], s.path.as_str());
        assert_eq!(e["raw_data"]["bytes"], s.bytes);
        assert_eq!(e["raw_data"]["hashes"]["sha256"], s.sha256.as_str());
        assert_eq!(
            (e["format"].clone(), e["version"].clone()),
            (json!("mds"), json!(2))
        );
        assert_eq!(e["zip_data"], Value::Null);
        assert_eq!(e["size_limit"], cap);
        assert_eq!(e["samples"], s.rows);
        samples += s.rows;
        let bytes = std::fs::read(dir.join(&s.path)).unwrap();
        assert!(s.bytes <= cap || s.rows == 1, "{} is over the cap", s.path);
        let n = u32_at(&bytes, 0);
        assert_eq!(n as u64, s.rows);
        assert_eq!(u32_at(&bytes, 4 + 4 * n), bytes.len(), "last offset = end");
        let first = u32_at(&bytes, 4);
        let config: Value = serde_json::from_slice(&bytes[4 + 4 * (n + 1)..first]).unwrap();
        for k in [
            "column_names",
            "column_encodings",
            "column_sizes",
            "size_limit",
            "hashes",
        ] {
            assert_eq!(config[k], e[k], "{k}");
        }
        let names: Vec<&str> = config["column_names"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(
            names, sorted,
            "columns in name order, as MDSWriter has them"
        );
        let enc = |c: &str| {
            config["column_encodings"][names.iter().position(|n| *n == c).unwrap()].clone()
        };
        // Sample 0's columns: the sizes of the variable ones, then the data.
        let sizes = config["column_sizes"].as_array().unwrap();
        let mut at = first;
        let mut lens = Vec::new();
        for size in sizes {
            lens.push(match size.as_u64() {
                Some(n) => n as usize,
                None => {
                    at += 4;
                    u32_at(&bytes, at - 4)
                }
            });
        }
        let mut column = std::collections::HashMap::new();
        for (name, len) in names.iter().zip(lens) {
            column.insert(*name, &bytes[at..at + len]);
            at += len;
        }
        let format = std::str::from_utf8(column["image_format"]).unwrap();
        let magic = if format == "jpeg" {
            &b"\xff\xd8"[..]
        } else {
            &b"\x89PNG"[..]
        };
        assert!(column["image"].starts_with(magic), "{format}");
        assert_eq!(
            enc("image"),
            format,
            "the first image's format names the encoding"
        );
        let key = std::str::from_utf8(column["key"]).unwrap();
        assert_eq!(
            key,
            keys[(samples - s.rows) as usize].1,
            "sample 0 is the shard's first row"
        );
        assert_eq!(enc("key"), "str");
        assert_eq!(enc("frame_idx"), "int");
        assert_eq!(enc("events"), "json");
    }
    assert_eq!(samples, m.rows);
    assert_eq!(m.index_files.len(), 1);
    assert_eq!(m.index_files[0].path, "index.json");
    assert_eq!(m.index_files[0].rows, m.rows);
    let report = verify(&t.store, &t.prefix).await.unwrap();
    assert!(report.is_intact(), "{:?}", report.mismatches);
    assert!(std::fs::read_to_string(dir.join("README.md"))
        .unwrap()
        .contains("StreamingDataset(local="));

    // A rerun writes the same bytes; a changed index shows in verify.
    let again = tmp.path().join("mds-again");
    let m2 = run(&store, OutputFormat::Mds, fields, &again).await;
    assert_eq!(m2.to_bytes(), m.to_bytes());
    assert_eq!(
        std::fs::read(again.join("index.json")).unwrap(),
        std::fs::read(dir.join("index.json")).unwrap()
    );
    let mut text = std::fs::read(dir.join("index.json")).unwrap();
    let at = text.len() - 3;
    text[at] ^= 1;
    std::fs::write(dir.join("index.json"), &text).unwrap();
    let report = verify(&t.store, &t.prefix).await.unwrap();
    assert!(!report.is_intact());
    assert!(
        format!("{:?}", report.mismatches).contains("index.json"),
        "{:?}",
        report.mismatches
    );
}

#[tokio::test]
async fn an_mds_shard_size_cap_above_32_bit_offsets_is_refused_by_name() {
    let now = chrono::Utc::now();
    let mut v = spec_json("mds", json!({}));
    v["shard_size_bytes"] = json!(MAX_MDS_SHARD_SIZE_BYTES + 1);
    let err = ExportSpec::parse(&v, now).unwrap_err().to_string();
    assert!(
        err.contains("shard_size_bytes") && err.contains("32-bit"),
        "{err}"
    );
    v["format"] = json!("parquet");
    assert!(ExportSpec::parse(&v, now).is_ok());
    v["format"] = json!("mds");
    v["shard_size_bytes"] = json!(MAX_MDS_SHARD_SIZE_BYTES);
    assert!(ExportSpec::parse(&v, now).is_ok());
}

/// Sample groups of a tar shard as `wids` and `webdataset` form them:
/// consecutive members with the same key (the name up to its first dot).
fn tar_groups(path: &Path) -> u64 {
    let mut a = tar::Archive::new(std::fs::File::open(path).unwrap());
    let mut keys: Vec<String> = Vec::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut sink = Vec::new();
        e.read_to_end(&mut sink).unwrap();
        let key = name.split('.').next().unwrap().to_string();
        if keys.last() != Some(&key) {
            keys.push(key);
        }
    }
    keys.len() as u64
}

fn check_wids(dir: &Path, folder: &str, shards: &[&nusomi_export::sink::ShardInfo]) -> u64 {
    let index = json_file(&dir.join(folder).join("wids.json"));
    assert_eq!(index["wids_version"], 1);
    assert_eq!(index["__kind__"], "wids-shard-index-v1");
    let list = index["shardlist"].as_array().unwrap();
    assert_eq!(list.len(), shards.len());
    let mut total = 0;
    for (e, s) in list.iter().zip(shards) {
        let base = s.path.rsplit('/').next().unwrap();
        assert_eq!(e["url"], base, "urls are relative to the index's folder");
        assert_eq!(e["filesize"], s.bytes);
        let groups = tar_groups(&dir.join(&s.path));
        assert_eq!(e["nsamples"], groups, "{}", s.path);
        total += groups;
    }
    total
}

#[tokio::test]
async fn webdataset_exports_have_a_wids_shard_list_with_the_samples_a_tar_reader_sees() {
    let (_b, store) = sealed_memory_store(SEED, 3).await;
    let tmp = tempfile::TempDir::new().unwrap();

    // Frames: one sample per row.
    let dir = tmp.path().join("frames");
    let m = run(
        &store,
        OutputFormat::Webdataset,
        json!({"shard_size_bytes": 64 * 1024}),
        &dir,
    )
    .await;
    assert!(m.shard_count > 1);
    let shards: Vec<_> = m.shards.iter().collect();
    assert_eq!(check_wids(&dir, "", &shards), m.rows);
    assert_eq!(m.index_files[0].path, "wids.json");
    assert_eq!(m.index_files[0].rows, m.rows);

    // Steps: an observation image is a sample of its own key.
    let dir = tmp.path().join("steps");
    let fields = json!({
        "unit": "step",
        "frame_sampling": {"mode": "event_only"},
        "shard_size_bytes": 64 * 1024,
        "splits": {"train": 0.5, "val": 0.5},
    });
    let m = run(&store, OutputFormat::Webdataset, fields, &dir).await;
    let steps = m.steps.as_ref().unwrap();
    let mut total = 0;
    let mut folders = BTreeSet::new();
    for split in m.splits.as_ref().unwrap() {
        let shards: Vec<_> = m
            .shards
            .iter()
            .filter(|s| split.shards.contains(&s.path))
            .collect();
        total += check_wids(&dir, &split.name, &shards);
        folders.insert(split.name.clone());
    }
    assert_eq!(total, m.rows + steps.observations);
    let listed: BTreeSet<String> = m.index_files.iter().map(|f| f.path.clone()).collect();
    let expected: BTreeSet<String> = folders.iter().map(|f| format!("{f}/wids.json")).collect();
    assert_eq!(listed, expected);
    let t = ExportTarget::local(dir.to_str().unwrap()).unwrap();
    assert!(verify(&t.store, &t.prefix).await.unwrap().is_intact());
}
