//! Shard writer throughput (MB of shard output per second) for each format,
//! over the same rows in memory, hashing included; and the sampling
//! functions' throughput (rows per second).

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Int64Array, RecordBatch};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use nusomi_export::datagen::Generator;
use nusomi_export::sink::{output_schema, to_output_batch, ShardedWriter};
use nusomi_export::spec::{compile_sql, ExportSpec, OutputFormat};
use nusomi_export::store::{SealOptions, SealedStore};
use object_store::memory::InMemory;
use object_store::path::Path;

fn rows(rt: &tokio::runtime::Runtime) -> Vec<RecordBatch> {
    rt.block_on(async {
        let tmp = tempfile::TempDir::new().expect("temp dir");
        let bundles = Generator::new(3).write_bundles(&tmp.path().join("b"), 8).expect("bundles");
        let store = SealedStore::open("memory://").await.expect("store");
        let options = SealOptions::default();
        let _ = store.seal_all(bundles, &options).collect::<Vec<_>>().await;
        let ctx = SessionContext::new();
        nusomi_export::register(&ctx, &store).expect("register");
        let spec = ExportSpec::parse(
            &serde_json::json!({"workflow": ["process_invoice", "triage_ticket", "update_crm_record", "book_travel", "reconcile_payments"],
                                "format": "parquet", "frame_sampling": {"mode": "all"}}),
            chrono::Utc::now(),
        )
        .expect("spec");
        let batches = ctx.sql(&compile_sql(&spec).expect("sql")).await.expect("plan").collect().await.expect("run");
        batches.iter().map(|b| to_output_batch(b).expect("output batch")).collect()
    })
}

fn writers(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let batches = rows(&rt);
    let n: usize = batches.iter().map(|b| b.num_rows()).sum();
    let mut group = c.benchmark_group("writers");
    group.sample_size(10);
    for format in OutputFormat::ALL {
        // Measure output bytes once to set the throughput.
        let write = |batches: Vec<RecordBatch>| async move {
            let store = Arc::new(InMemory::new());
            let mut w = ShardedWriter::new(store, Path::from("out"), format, 64 << 20);
            for b in &batches {
                w.write_batch(b).await.expect("write");
            }
            let (shards, _) = w.finish().await.expect("finish");
            shards.iter().map(|s| s.bytes).sum::<u64>()
        };
        let bytes = rt.block_on(write(batches.clone()));
        group.throughput(Throughput::Bytes(bytes));
        group.bench_function(format.as_str(), |b| {
            b.to_async(&rt).iter(|| write(batches.clone()))
        });
    }
    group.finish();
    assert_eq!(output_schema().fields().len(), 18);
    let _ = n;
}

fn sampling(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let n = 1_000_000usize;
    let t: Vec<i64> = (0..n as i64).map(|i| (i % 500) * 37).collect();
    let prev: Vec<Option<i64>> = t
        .iter()
        .enumerate()
        .map(|(i, _)| if i % 500 == 0 { None } else { Some(t[i - 1]) })
        .collect();
    let flags = |m: usize| {
        Arc::new(BooleanArray::from(
            (0..n).map(|i| i % m == 0).collect::<Vec<_>>(),
        )) as ArrayRef
    };
    let batch = RecordBatch::try_from_iter(vec![
        ("t_ms", Arc::new(Int64Array::from(t)) as ArrayRef),
        ("prev_t_ms", Arc::new(Int64Array::from(prev)) as ArrayRef),
        ("is_event_frame", flags(3)),
        ("is_action_frame", flags(5)),
        ("is_keyframe", flags(7)),
    ])
    .expect("batch");
    let ctx = SessionContext::new();
    nusomi_export::engine::register_functions(&ctx);
    ctx.register_batch("f", batch).expect("register");
    let mut group = c.benchmark_group("sampling_udfs");
    group.throughput(Throughput::Elements(n as u64));
    for (name, expr) in [
        (
            "every_n_ms",
            "sample_every_n_ms(t_ms, prev_t_ms, 100, is_action_frame, true)",
        ),
        (
            "event_only",
            "sample_event_only(is_event_frame, is_action_frame, true)",
        ),
        (
            "keyframes_only",
            "sample_keyframes_only(is_keyframe, is_action_frame, false)",
        ),
    ] {
        let sql = format!("SELECT count(*) FROM f WHERE {expr}");
        group.bench_function(name, |b| {
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
    group.finish();
}

criterion_group!(benches, writers, sampling);
criterion_main!(benches);
