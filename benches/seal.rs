//! Sealing throughput: MB of frame images sealed per second into a local
//! store, for a batch of generated 960×600 sessions (PNG and JPEG), all
//! bundles sealed in one call (one per core at a time).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures::StreamExt;
use nusomi_export::datagen::Generator;
use nusomi_export::store::{SealOptions, SealedStore};

fn seal(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let tmp = tempfile::TempDir::new().expect("temp dir");
    let bundles = Generator::new(99)
        .write_bundles(&tmp.path().join("bundles"), 8)
        .expect("bundles");
    let bytes: u64 = bundles
        .iter()
        .flat_map(|b| std::fs::read_dir(b.join("frames")).expect("frames dir"))
        .map(|e| e.expect("entry").metadata().expect("metadata").len())
        .sum();
    let mut group = c.benchmark_group("seal");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(bytes));
    let mut run = 0;
    group.bench_function("8_sessions_local", |b| {
        b.to_async(&rt).iter(|| {
            run += 1;
            let root = tmp.path().join(format!("store-{run}"));
            let bundles = bundles.clone();
            async move {
                let store = SealedStore::open(root.to_str().expect("utf-8"))
                    .await
                    .expect("store");
                let options = SealOptions::default();
                let results: Vec<_> = store.seal_all(bundles, &options).collect().await;
                assert!(results.iter().all(|(_, r)| r.is_ok()));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, seal);
criterion_main!(benches);
