//! The job database at 100,000 jobs (20 workspaces of 5,000 jobs, one of
//! them small with 1,000; 40 jobs queued): what dispatch and the API read
//! with the indexes, against the table scans they did before them
//! (`JobDb::scan_all` + a filter). Run in one process, so report ratios.
//!
//! `cargo bench --bench jobs` (release), or `cargo bench --profile dev
//! --bench jobs` to compare without a release build.

use chrono::Utc;
use criterion::{criterion_group, criterion_main, Criterion};
use nusomi_export::jobs::{JobDb, JobFilter, JobRecord, JobStatus};
use nusomi_export::spec::ExportSpec;

const JOBS: usize = 100_000;
const QUEUED: usize = 40;

fn database() -> (tempfile::TempDir, JobDb) {
    let tmp = tempfile::TempDir::new().expect("tempdir");
    let db = JobDb::open(tmp.path()).expect("open");
    let spec = ExportSpec::parse(
        &serde_json::json!({"workflow": "process_invoice", "format": "parquet", "tag": "nightly"}),
        Utc::now(),
    )
    .expect("spec");
    let mut batch = Vec::with_capacity(10_000);
    for i in 0..JOBS {
        // Ids sort by creation, like ULIDs.
        let mut r = JobRecord::queued(format!("exp_{i:08}"), &spec, "{}", Utc::now());
        // ws_small holds 1 % of the jobs, spread over time.
        r.workspace = Some(if i % 100 == 0 {
            "ws_small".to_string()
        } else {
            format!("ws_{:02}", i % 19)
        });
        if i < JOBS - QUEUED {
            r.start();
            r.failed("done");
            r.status = JobStatus::Completed;
        }
        batch.push(r);
        if batch.len() == batch.capacity() {
            db.put_all(&batch).expect("put");
            batch.clear();
        }
    }
    db.put_all(&batch).expect("put");
    (tmp, db)
}

fn bench(c: &mut Criterion) {
    let (_tmp, db) = database();
    let small = JobFilter {
        workspace: Some("ws_small".into()),
        ..Default::default()
    };
    let mut g = c.benchmark_group("jobs_100k");
    g.sample_size(10);
    g.bench_function("dispatch: oldest queued, indexed", |b| {
        b.iter(|| db.oldest_with_status(JobStatus::Queued).expect("q"))
    });
    g.bench_function("dispatch: oldest queued, scan", |b| {
        b.iter(|| {
            db.scan_all()
                .expect("scan")
                .into_iter()
                .find(|r| r.status == JobStatus::Queued)
        })
    });
    g.bench_function("list: first page of a 1% workspace, indexed", |b| {
        b.iter(|| db.list(&small, 50, None).expect("list"))
    });
    g.bench_function("list: first page of a 1% workspace, scan", |b| {
        b.iter(|| {
            let mut v: Vec<JobRecord> = db
                .scan_all()
                .expect("scan")
                .into_iter()
                .filter(|r| r.workspace.as_deref() == Some("ws_small"))
                .collect();
            v.reverse();
            v.truncate(50);
            v
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
