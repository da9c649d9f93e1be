//! The destination byte path: a shard streamed through `HashingWriter`
//! (SHA-256 + upload, multipart above the part size) into a local folder and
//! into memory, and the resume path that verifies an existing shard instead
//! of uploading it. Throughput in MB of shard per second.

use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use nusomi_export::sink::HashingWriter;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::ObjectStore;

const SHARD: usize = 64 << 20;
const CHUNK: usize = 64 << 10;
const PART: usize = 10 << 20;

fn chunks() -> Vec<Bytes> {
    // Incompressible-looking bytes (a simple LCG), like encoded images.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..SHARD / CHUNK)
        .map(|_| {
            let mut v = vec![0u8; CHUNK];
            for b in v.iter_mut() {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                *b = (x >> 56) as u8;
            }
            Bytes::from(v)
        })
        .collect()
}

async fn upload(store: Arc<dyn ObjectStore>, path: Path, data: &[Bytes]) {
    let mut w = HashingWriter::upload(store, path, PART);
    for c in data {
        w.write(c).await.expect("write");
    }
    let done = w.finish().await.expect("finish");
    assert!(!done.reused);
}

async fn verify(store: Arc<dyn ObjectStore>, path: Path, data: &[Bytes]) {
    let mut w = HashingWriter::resume(store, path, PART)
        .await
        .expect("resume");
    for c in data {
        w.write(c).await.expect("write");
    }
    let done = w.finish().await.expect("finish");
    assert!(done.reused, "an identical object is reused");
}

fn destinations(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let data = chunks();
    let tmp = tempfile::TempDir::new().expect("temp dir");
    let local: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(tmp.path()).expect("local store"));
    let memory: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let mut group = c.benchmark_group("upload");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(SHARD as u64));
    group.bench_function("local_fs_multipart", |b| {
        b.to_async(&rt)
            .iter(|| upload(Arc::clone(&local), Path::from("shard.bin"), &data))
    });
    group.bench_function("in_memory_multipart", |b| {
        b.to_async(&rt)
            .iter(|| upload(Arc::clone(&memory), Path::from("shard.bin"), &data))
    });
    // With the object in place, resuming verifies it byte by byte.
    rt.block_on(upload(Arc::clone(&local), Path::from("shard.bin"), &data));
    group.bench_function("local_fs_resume_verify", |b| {
        b.to_async(&rt)
            .iter(|| verify(Arc::clone(&local), Path::from("shard.bin"), &data))
    });
    group.finish();
}

criterion_group!(benches, destinations);
criterion_main!(benches);
