//! Exports end to end into object stores: every format's shards and manifest,
//! shard rolling, byte-identical reruns across partition counts, the empty
//! selection, rows larger than a shard, and failures that leave nothing.

use std::sync::Arc;

use datafusion::prelude::{SessionConfig, SessionContext};
use nusomi_export::dest::ExportTarget;
use nusomi_export::sink::{shards_digest, Manifest};
use nusomi_export::Export;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::support::{all_objects, sealed_memory_store, spec, Counted, InstrumentedStore};

const FORMATS: [&str; 4] = ["parquet", "arrow", "jsonl", "webdataset"];

fn memory_target() -> (Arc<InMemory>, ExportTarget) {
    let mem = Arc::new(InMemory::new());
    let target = ExportTarget::new(
        Arc::clone(&mem) as Arc<dyn ObjectStore>,
        Path::from("out"),
        "memory:///out/",
    );
    (mem, target)
}

async fn read(store: &InMemory, path: &str) -> Vec<u8> {
    store
        .get(&Path::from(path))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec()
}

/// Checks the manifest against the objects: sizes, rows, hashes, digest, and no stray files.
async fn check_manifest(mem: &Arc<InMemory>, m: &Manifest) {
    // Every format gets its dataset card.
    let mut expected = vec!["out/manifest.json".to_string(), "out/README.md".to_string()];
    for s in &m.shards {
        let bytes = read(mem, &format!("out/{}", s.path)).await;
        assert_eq!(bytes.len() as u64, s.bytes, "{}", s.path);
        assert_eq!(hex::encode(Sha256::digest(&bytes)), s.sha256, "{}", s.path);
        expected.push(format!("out/{}", s.path));
    }
    for s in &m.index_files {
        let bytes = read(mem, &format!("out/{}", s.path)).await;
        assert_eq!(hex::encode(Sha256::digest(&bytes)), s.sha256, "{}", s.path);
        expected.push(format!("out/{}", s.path));
    }
    let index_expected = match m.format.as_str() {
        "mds" | "webdataset" => 1,
        _ => 0,
    };
    assert_eq!(m.index_files.len(), index_expected, "{}", m.format);
    assert_eq!(m.digest, shards_digest(&m.shards));
    assert_eq!(m.rows, m.shards.iter().map(|s| s.rows).sum::<u64>());
    assert_eq!(m.frames, m.rows);
    assert_eq!(m.shard_count as usize, m.shards.len());
    expected.sort();
    let objects = all_objects(&(Arc::clone(mem) as Arc<dyn ObjectStore>)).await;
    assert_eq!(objects, expected);
}

#[tokio::test]
async fn every_format_writes_shards_and_a_matching_manifest() {
    let (_tmp, store) = sealed_memory_store(41, 5).await;
    let ctx = SessionContext::new();
    nusomi_export::register(&ctx, &store).unwrap();
    let b = ctx
        .sql("SELECT count(*), count(DISTINCT session_id) FROM frames")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let col = |i| {
        b[0].column(i)
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .unwrap()
            .value(0) as u64
    };
    let (frames, sessions) = (col(0), col(1));
    let b = ctx
        .sql("SELECT sum(action_count) FROM sessions")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let actions = b[0]
        .column(0)
        .as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .unwrap()
        .value(0) as u64;
    for format in FORMATS {
        let (mem, target) = memory_target();
        let out = Export::new(&store, &spec(format, json!({})))
            .with_target(target.clone())
            .await
            .unwrap();
        let m = &out.manifest;
        assert_eq!(
            (m.rows, m.sessions, m.actions),
            (frames, sessions, actions),
            "{format}"
        );
        assert_eq!(m.format, format);
        assert!(m
            .sql
            .as_deref()
            .unwrap()
            .contains("ORDER BY f.session_id, f.frame_idx"));
        let on_disk: serde_json::Value =
            serde_json::from_slice(&read(&mem, "out/manifest.json").await).unwrap();
        for field in [
            "shards",
            "rows",
            "frames",
            "actions",
            "sessions",
            "shard_count",
            "shard_size_bytes",
            "spec",
            "resolved",
            "as_of",
            "sql",
            "schema",
            "version",
            "digest",
        ] {
            assert!(on_disk.get(field).is_some(), "manifest lacks {field}");
        }
        check_manifest(&mem, m).await;
    }
}

#[tokio::test]
async fn shards_roll_before_passing_the_size_cap() {
    let (_tmp, store) = sealed_memory_store(41, 4).await;
    for format in FORMATS {
        let limit = 96 * 1024;
        let (mem, target) = memory_target();
        let out = Export::new(&store, &spec(format, json!({"shard_size_bytes": limit})))
            .with_target(target.clone())
            .await
            .unwrap();
        let m = &out.manifest;
        assert!(m.shards.len() > 2, "{format}: {} shards", m.shards.len());
        for (i, s) in m.shards.iter().enumerate() {
            assert_eq!(
                s.path,
                format!(
                    "shard-{i:06}.{}",
                    match format {
                        "webdataset" => "tar",
                        f => f,
                    }
                )
            );
            assert!(
                s.bytes <= limit || s.rows == 1,
                "{format}: {} has {} bytes in {} rows",
                s.path,
                s.bytes,
                s.rows
            );
        }
        // Shards are filled: merging two neighbours would pass the cap.
        for w in m.shards.windows(2) {
            assert!(
                w[0].bytes + w[1].bytes > limit / 2,
                "{format}: shards far below the cap"
            );
        }
        check_manifest(&mem, m).await;
    }
}

#[tokio::test]
async fn reruns_and_partition_counts_give_identical_bytes() {
    let (_tmp, store) = sealed_memory_store(41, 5).await;
    for format in FORMATS {
        let spec = spec(
            format,
            json!({"shard_size_bytes": 200_000, "frame_sampling": {"mode": "event_only"}}),
        );
        let mut runs = Vec::new();
        for partitions in [1, 4, 1] {
            let (mem, target) = memory_target();
            let ctx = SessionContext::new_with_config(
                SessionConfig::new().with_target_partitions(partitions),
            );
            Export::new(&store, &spec)
                .with_context(ctx)
                .with_target(target.clone())
                .await
                .unwrap();
            let mut files = Vec::new();
            for p in all_objects(&(Arc::clone(&mem) as Arc<dyn ObjectStore>)).await {
                files.push((p.clone(), read(&mem, &p).await));
            }
            runs.push(files);
        }
        assert!(runs[0].len() > 2);
        assert_eq!(runs[0], runs[1], "{format}: 1 vs 4 partitions differ");
        assert_eq!(runs[0], runs[2], "{format}: reruns differ");
    }
}

#[tokio::test]
async fn an_empty_selection_gives_zero_shards_and_a_valid_manifest() {
    let (_tmp, store) = sealed_memory_store(41, 2).await;
    for format in FORMATS {
        let (mem, target) = memory_target();
        let s = spec(format, json!({"filter": {"tag": "no-such-tag"}}));
        let out = Export::new(&store, &s)
            .with_target(target.clone())
            .await
            .unwrap();
        assert_eq!(
            (
                out.manifest.rows,
                out.manifest.shard_count,
                out.manifest.sessions
            ),
            (0, 0, 0)
        );
        assert_eq!(out.manifest.digest, hex::encode(Sha256::digest(b"")));
        check_manifest(&mem, &out.manifest).await;
    }
}

#[tokio::test]
async fn a_row_larger_than_the_cap_gets_a_shard_of_its_own() {
    let (_tmp, store) = sealed_memory_store(41, 2).await;
    for format in FORMATS {
        let (mem, target) = memory_target();
        let out = Export::new(&store, &spec(format, json!({"shard_size_bytes": 4096})))
            .with_target(target.clone())
            .await
            .unwrap();
        assert!(out.manifest.rows > 2);
        assert!(
            out.manifest
                .shards
                .iter()
                .all(|s| s.rows == 1 && s.bytes > 4096),
            "{format}"
        );
        check_manifest(&mem, &out.manifest).await;
    }
}

#[tokio::test]
async fn a_failing_destination_leaves_no_manifest_and_no_shards() {
    let (_tmp, store) = sealed_memory_store(41, 3).await;
    for format in FORMATS {
        let spec = spec(format, json!({"shard_size_bytes": 64 * 1024}));
        let mut n = 1;
        loop {
            let failing = Arc::new(InstrumentedStore::default().failing_at(n, Counted::Writes));
            let inner = Arc::clone(&failing.inner) as Arc<dyn ObjectStore>;
            let target = ExportTarget::new(
                failing as Arc<dyn ObjectStore>,
                Path::from("out"),
                "memory:///out/",
            );
            match Export::new(&store, &spec).with_target(target.clone()).await {
                Ok(out) => {
                    assert!(
                        n > out.manifest.shard_count as usize,
                        "{format}: every write must count"
                    );
                    break;
                }
                Err(e) => {
                    assert!(
                        e.to_string().contains("injected failure"),
                        "{format} #{n}: {e}"
                    );
                    let left = all_objects(&inner).await;
                    assert!(
                        left.is_empty(),
                        "{format}: failure at write #{n} left {left:?}"
                    );
                }
            }
            n += 1;
        }
    }
}

#[tokio::test]
async fn dataframe_write_shards_and_copy_match_export_create() {
    use nusomi_export::engine::WriteShards;
    use nusomi_export::spec::compile_sql;
    let (_tmp, store) = sealed_memory_store(41, 3).await;
    for format in FORMATS {
        let s = spec(format, json!({"shard_size_bytes": 150_000}));
        let (mem_a, target) = memory_target();
        let a = Export::new(&store, &s)
            .with_target(target.clone())
            .await
            .unwrap()
            .manifest;
        // The same query as a DataFrame, written through the extension trait.
        let ctx = SessionContext::new();
        nusomi_export::register(&ctx, &store).unwrap();
        let df = ctx.sql(&compile_sql(&s).unwrap()).await.unwrap();
        let mem_b = Arc::new(InMemory::new());
        let b = df
            .write_shards(
                s.format,
                Arc::clone(&mem_b) as Arc<dyn ObjectStore>,
                Path::from("out"),
                150_000,
            )
            .await
            .unwrap();
        assert_eq!(
            a.shards, b.shards,
            "{format}: DataFrame shards differ from export create's"
        );
        assert!(b.spec.is_null() && b.sql.is_none());
        // And through SQL COPY into a registered store.
        ctx.register_object_store(
            &url::Url::parse("memory://copy").unwrap(),
            Arc::new(InMemory::new()),
        );
        let name = s.format.sql_name();
        let q = format!("COPY ({}) TO 'memory://copy/out/' STORED AS {name} OPTIONS ('shard_size_bytes' '150000')", compile_sql(&s).unwrap());
        let n = ctx.sql(&q).await.unwrap().collect().await.unwrap();
        let copied = n[0]
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::UInt64Array>()
            .unwrap()
            .value(0);
        assert_eq!(copied, a.rows);
        let copy_store = ctx
            .runtime_env()
            .object_store(
                datafusion::execution::object_store::ObjectStoreUrl::parse("memory://copy")
                    .unwrap(),
            )
            .unwrap();
        let m: Manifest = serde_json::from_slice(
            &copy_store
                .get(&Path::from("out/manifest.json"))
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            m.shards, a.shards,
            "{format}: COPY shards differ from export create's"
        );
        let _ = (&mem_a, &mem_b);
    }
}
