//! The store on a real S3-compatible server (SeaweedFS, started by
//! `scripts/test.sh`, which sets `NUSOMI_TEST_S3_URL` and the `AWS_*`
//! variables and runs the ignored tests).

use nusomi_export::store::{SealOptions, SealOutcome, SealedStore};

use crate::support::write_session;

#[tokio::test]
#[ignore = "needs an S3 server: run scripts/test.sh"]
async fn store_on_s3_seals_queries_and_prunes() {
    let base =
        std::env::var("NUSOMI_TEST_S3_URL").expect("NUSOMI_TEST_S3_URL (scripts/test.sh sets it)");
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let url = format!("{base}/store-{nonce}");
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
