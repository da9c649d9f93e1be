//! Scanning `frames` through our provider against DataFusion's own
//! `ListingTable` over the same files: a full scan with images, and a scan
//! without them. The ratio of the two is our provider's overhead.
//!
//! `NUSOMI_BENCH_STORE=DIR` scans an existing store (e.g. the one
//! `benches/compare_peers.sh` builds) instead of generating 24 sessions.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use futures::StreamExt;
use nusomi_export::datagen::Generator;
use nusomi_export::store::{SealOptions, SealedStore};

const QUERIES: [(&str, &str); 2] = [
    (
        "with_images",
        "SELECT count(*), sum(t_ms), count(image) FROM {t}",
    ),
    (
        "no_images",
        "SELECT count(*), sum(t_ms), sum(width) FROM {t} WHERE is_event_frame",
    ),
];

fn scan(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let tmp = tempfile::Builder::new()
        .prefix("nusomi-bench")
        .tempdir()
        .expect("temp dir");
    let existing = std::env::var("NUSOMI_BENCH_STORE")
        .ok()
        .map(std::path::PathBuf::from);
    let root = existing.clone().unwrap_or_else(|| tmp.path().join("store"));
    let store = rt.block_on(async {
        if existing.is_some() {
            return SealedStore::open(root.to_str().expect("utf-8"))
                .await
                .expect("store");
        }
        let bundles = Generator::new(5)
            .write_bundles(&tmp.path().join("bundles"), 24)
            .expect("bundles");
        let store = SealedStore::open(root.to_str().expect("utf-8"))
            .await
            .expect("store");
        let options = SealOptions::default();
        let n = store
            .seal_all(bundles, &options)
            .filter(|(_, r)| futures::future::ready(r.is_ok()))
            .count()
            .await;
        assert_eq!(n, 24);
        store
    });
    let bytes: u64 = rt
        .block_on(store.snapshot())
        .expect("snapshot")
        .sessions
        .iter()
        .map(|s| s.frames_bytes)
        .sum();
    let config = SessionConfig::new().set_bool(
        "datafusion.execution.listing_table_ignore_subdirectory",
        false,
    );
    let ctx = SessionContext::new_with_config(config);
    nusomi_export::register(&ctx, &store).expect("register");
    rt.block_on(ctx.register_parquet(
        "listing_frames",
        format!("{}/frames/", root.display()),
        ParquetReadOptions::default(),
    ))
    .expect("listing table");
    let mut group = c.benchmark_group("scan");
    group.sample_size(20);
    group.throughput(Throughput::Bytes(bytes));
    for (name, q) in QUERIES {
        for table in ["frames", "listing_frames"] {
            let sql = q.replace("{t}", table);
            group.bench_function(format!("{name}/{table}"), |b| {
                b.to_async(&rt).iter(|| async {
                    ctx.sql(&sql)
                        .await
                        .expect("plan")
                        .collect()
                        .await
                        .expect("run")
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, scan);
criterion_main!(benches);
