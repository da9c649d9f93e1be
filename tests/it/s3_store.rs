//! The store on a real S3-compatible server (SeaweedFS, started by
//! `scripts/test.sh`, which sets `NUSOMI_TEST_S3_URL` and the `AWS_*`
//! variables and runs the ignored tests).

use nusomi_export::store::{SealOptions, SealOutcome, SealedStore};

use crate::support::write_session;

/// A fresh store URL under the test bucket.
fn fresh_store(name: &str) -> String {
    let base =
        std::env::var("NUSOMI_TEST_S3_URL").expect("NUSOMI_TEST_S3_URL (scripts/test.sh sets it)");
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{base}/{name}-{nonce}")
}

// On a current-thread runtime deltalake-core gives each log read an engine
// with a background runtime of its own; connections of the store's HTTP
// pool opened there die with it, and a later request that draws one fails
// once with "error sending request", which object_store does not retry.
// The `nusomi` binary and servers run a multi-thread runtime, where the
// engine uses the caller's: so does this test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an S3 server: run scripts/test.sh"]
async fn store_on_s3_seals_queries_and_prunes() {
    let url = fresh_store("store");
    let store = SealedStore::open(&url).await.unwrap();
    let tmp = tempfile::TempDir::new().unwrap();
    let mut frames = 0;
    let mut dirs = Vec::new();
    for i in 0..4 {
        let (d, dir) = write_session(tmp.path(), 31, i);
        frames += d.frames.len();
        let out = store.seal(&dir, &SealOptions::default()).await.unwrap();
        assert!(matches!(out, SealOutcome::Sealed(_)));
        dirs.push(dir);
    }
    // Identical again: a no-op through a fresh handle.
    let fresh = SealedStore::open(&url).await.unwrap();
    let again = fresh.seal(&dirs[0], &SealOptions::default()).await.unwrap();
    assert!(matches!(again, SealOutcome::AlreadySealed(_)));

    let ctx = datafusion::prelude::SessionContext::new();
    nusomi_export::register(&ctx, &fresh).unwrap();
    let b = ctx
        .sql("SELECT count(*) FROM frames f JOIN sessions s USING (session_id)")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let n = b[0]
        .column(0)
        .as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .unwrap()
        .value(0);
    assert_eq!(n as usize, frames);
}

// On a current-thread runtime deltalake-core gives each log read an engine
// with a background runtime of its own; connections of the store's HTTP
// pool opened there die with it, and a later request that draws one fails
// once with "error sending request", which object_store does not retry.
// The `nusomi` binary and servers run a multi-thread runtime, where the
// engine uses the caller's: so does this test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an S3 server: run scripts/test.sh"]
async fn four_processes_sealing_at_once_lose_and_duplicate_nothing() {
    let url = fresh_store("concurrent");
    let tmp = tempfile::TempDir::new().unwrap();
    let bundles: Vec<_> = (0..12).map(|i| write_session(tmp.path(), 41, i)).collect();
    // Process p seals bundles p, p+4, p+8 (its own) and every bundle with
    // i % 3 == 0 (shared by all four: the same session from four sealers).
    let mut children = Vec::new();
    for p in 0..4 {
        let mut args = vec!["seal".to_string(), "--store".into(), url.clone()];
        for (i, (_, dir)) in bundles.iter().enumerate() {
            if i % 4 == p || i % 3 == 0 {
                args.push(dir.to_str().unwrap().to_string());
            }
        }
        children.push(
            std::process::Command::new(env!("CARGO_BIN_EXE_nusomi"))
                .args(&args)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap(),
        );
    }
    let mut sealed_lines = 0;
    for c in children {
        let out = c.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{text}");
        sealed_lines += text.lines().filter(|l| l.starts_with("sealed ")).count();
    }
    // Each session was newly sealed by exactly one process.
    assert_eq!(sealed_lines, bundles.len());
    let store = SealedStore::open(&url).await.unwrap();
    let snapshot = store.snapshot().await.unwrap();
    let mut want: Vec<String> = bundles
        .iter()
        .map(|(d, _)| d.session_id().to_string())
        .collect();
    want.sort();
    let got: Vec<String> = snapshot
        .sessions
        .iter()
        .map(|s| s.session_id.clone())
        .collect();
    assert_eq!(got, want);
    let ctx = datafusion::prelude::SessionContext::new();
    nusomi_export::register(&ctx, &store).unwrap();
    let b = ctx
        .sql(
            "SELECT (SELECT count(*) FROM sessions) AS a, (SELECT count(DISTINCT session_id) FROM sessions) AS b, \
             (SELECT count(*) FROM frames) AS c, (SELECT count(image) FROM frames) AS d, \
             (SELECT count(seal) FROM sessions) AS e",
        )
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let col = |i: usize| {
        b[0].column(i)
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .unwrap()
            .value(0) as usize
    };
    let frames: usize = bundles.iter().map(|(d, _)| d.frames.len()).sum();
    assert_eq!((col(0), col(1), col(2)), (12, 12, frames));
    // Every frames file and sessions row read back (a count over `image`
    // and `seal` opens the files; the counts above come from the logs).
    assert_eq!((col(3), col(4)), (frames, 12));
}
