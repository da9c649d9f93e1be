//! Counting a store's object-store requests, for benchmarks: with
//! `NUSOMI_COUNT_REQUESTS=1` in the environment, [`StoreLocation::parse`]
//! wraps the store in [`CountingStore`] and the CLI prints the totals on
//! stderr when it ends (`object-store requests: …`).
//!
//! [`StoreLocation::parse`]: super::StoreLocation::parse

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

/// The environment variable that turns counting on.
pub const COUNT_REQUESTS_ENV: &str = "NUSOMI_COUNT_REQUESTS";

/// Requests by kind: get (incl. head and each range of a ranged read), list,
/// put (incl. multipart starts), delete, copy.
static COUNTS: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];
const GET: usize = 0;
const LIST: usize = 1;
const PUT: usize = 2;
const DELETE: usize = 3;
const COPY: usize = 4;

fn count(kind: usize, n: u64) {
    COUNTS[kind].fetch_add(n, Ordering::Relaxed);
}

/// Whether counting is on.
pub(crate) fn enabled() -> bool {
    std::env::var(COUNT_REQUESTS_ENV).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The totals so far, as one line.
pub fn request_counts() -> String {
    let c: Vec<u64> = COUNTS.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    format!(
        "object-store requests: {} (get {}, list {}, put {}, delete {}, copy {})",
        c.iter().sum::<u64>(),
        c[GET],
        c[LIST],
        c[PUT],
        c[DELETE],
        c[COPY]
    )
}

/// An object store that counts the requests made through it.
#[derive(Debug)]
pub(crate) struct CountingStore(pub Arc<dyn ObjectStore>);

impl std::fmt::Display for CountingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Counting({})", self.0)
    }
}

#[async_trait]
impl ObjectStore for CountingStore {
    async fn put_opts(
        &self,
        p: &Path,
        payload: PutPayload,
        o: PutOptions,
    ) -> object_store::Result<PutResult> {
        count(PUT, 1);
        self.0.put_opts(p, payload, o).await
    }
    async fn put_multipart_opts(
        &self,
        p: &Path,
        o: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        count(PUT, 1);
        self.0.put_multipart_opts(p, o).await
    }
    async fn get_opts(&self, p: &Path, o: GetOptions) -> object_store::Result<GetResult> {
        count(GET, 1);
        self.0.get_opts(p, o).await
    }
    async fn get_ranges(
        &self,
        p: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        count(GET, ranges.len() as u64);
        self.0.get_ranges(p, ranges).await
    }
    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let counted = locations.inspect(|_| count(DELETE, 1)).boxed();
        self.0.delete_stream(counted)
    }
    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        count(LIST, 1);
        self.0.list(prefix)
    }
    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        count(LIST, 1);
        self.0.list_with_offset(prefix, offset)
    }
    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        count(LIST, 1);
        self.0.list_with_delimiter(prefix).await
    }
    async fn copy_opts(&self, from: &Path, to: &Path, o: CopyOptions) -> object_store::Result<()> {
        count(COPY, 1);
        self.0.copy_opts(from, to, o).await
    }
}
