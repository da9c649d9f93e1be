//! Shared helpers: small bundles, and object stores that count or fail
//! operations, wrapped around a real store.

use std::fmt;
use std::ops::Range;
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use datafusion::execution::object_store::ObjectStoreUrl;
use futures::stream::BoxStream;
use futures::TryStreamExt;
use nusomi_export::datagen::{BundleDraft, Generator};
use nusomi_export::store::{SealedStore, StoreLocation};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, UploadPart,
};

/// A small, fast generator (640×400, short sessions).
pub fn small_generator(seed: u64) -> Generator {
    Generator::new(seed).with_size(640, 400).with_scale(0.15)
}

/// Writes session `i` of `seed` under `dir` and returns (draft, path).
pub fn write_session(dir: &FsPath, seed: u64, i: usize) -> (BundleDraft, PathBuf) {
    let draft = small_generator(seed).session(i);
    let path = dir.join(draft.session_id());
    draft.write(&path).unwrap();
    (draft, path)
}

/// `url` with query parameter `param` passed through `f`.
pub fn with_param(url: &str, param: &str, f: impl Fn(&str) -> String) -> String {
    let mut u = url::Url::parse(url).unwrap();
    let pairs: Vec<(String, String)> = u
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == param { f(&v) } else { v.into_owned() };
            (k.into_owned(), v)
        })
        .collect();
    u.query_pairs_mut().clear().extend_pairs(pairs);
    u.to_string()
}

/// Every object path under the store.
pub async fn all_objects(store: &Arc<dyn ObjectStore>) -> Vec<String> {
    let mut v: Vec<String> = store
        .list(None)
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    v.sort();
    v
}

/// A sealed store over `inner` at `memory://`.
pub fn store_over(inner: Arc<dyn ObjectStore>) -> Arc<SealedStore> {
    SealedStore::new(StoreLocation::new(
        inner,
        ObjectStoreUrl::parse("memory://").unwrap(),
        Path::from(""),
    ))
}

/// A sealed in-memory store of sessions `0..n` of generator `seed` (the
/// bundles stay in the returned folder).
pub async fn sealed_memory_store(seed: u64, n: usize) -> (tempfile::TempDir, Arc<SealedStore>) {
    let tmp = tempfile::TempDir::new().unwrap();
    let store = store_over(Arc::new(InMemory::new()));
    for i in 0..n {
        let (_, dir) = write_session(tmp.path(), seed, i);
        store
            .seal(&dir, &nusomi_export::store::SealOptions::default())
            .await
            .unwrap();
    }
    (tmp, store)
}

/// Records every read (get / get_ranges / head) by path, and the bytes read.
#[derive(Debug, Default)]
pub struct CountingStore {
    pub inner: InMemory,
    pub reads: Mutex<Vec<String>>,
    pub bytes_read: AtomicUsize,
    pub writes: AtomicUsize,
}

impl CountingStore {
    pub fn reads_matching(&self, needle: &str) -> usize {
        self.reads
            .lock()
            .unwrap()
            .iter()
            .filter(|p| p.contains(needle))
            .count()
    }
    pub fn frame_reads_of(&self, session_id: &str) -> usize {
        self.reads
            .lock()
            .unwrap()
            .iter()
            .filter(|p| p.contains("frames/") && p.contains(session_id))
            .count()
    }
    pub fn reset(&self) {
        self.reads.lock().unwrap().clear();
        self.bytes_read.store(0, Ordering::SeqCst);
        self.writes.store(0, Ordering::SeqCst);
    }
}

impl fmt::Display for CountingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CountingStore")
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
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.put_opts(p, payload, o).await
    }
    async fn put_multipart_opts(
        &self,
        p: &Path,
        o: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.put_multipart_opts(p, o).await
    }
    async fn get_opts(&self, p: &Path, o: GetOptions) -> object_store::Result<GetResult> {
        self.reads.lock().unwrap().push(p.to_string());
        let r = self.inner.get_opts(p, o).await?;
        self.bytes_read
            .fetch_add((r.range.end - r.range.start) as usize, Ordering::SeqCst);
        Ok(r)
    }
    async fn get_ranges(
        &self,
        p: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.reads.lock().unwrap().push(p.to_string());
        let r = self.inner.get_ranges(p, ranges).await?;
        self.bytes_read
            .fetch_add(r.iter().map(|b| b.len()).sum(), Ordering::SeqCst);
        Ok(r)
    }
    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }
    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }
    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(&self, from: &Path, to: &Path, o: CopyOptions) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, o).await
    }
}

/// Fails the `fail_at`-th write operation (1-based; puts, multipart starts,
/// parts and completions all count), then behaves normally.
#[derive(Debug)]
pub struct FailingStore {
    pub inner: Arc<InMemory>,
    pub fail_at: usize,
    pub count: Arc<AtomicUsize>,
}

impl FailingStore {
    pub fn new(fail_at: usize) -> Self {
        FailingStore {
            inner: Arc::new(InMemory::new()),
            fail_at,
            count: Arc::new(AtomicUsize::new(0)),
        }
    }
    fn tick(count: &AtomicUsize, fail_at: usize, what: &str) -> object_store::Result<()> {
        if count.fetch_add(1, Ordering::SeqCst) + 1 == fail_at {
            return Err(object_store::Error::Generic {
                store: "FailingStore",
                source: format!("injected failure at write #{fail_at} ({what})").into(),
            });
        }
        Ok(())
    }
}

impl fmt::Display for FailingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FailingStore({})", self.fail_at)
    }
}

#[derive(Debug)]
struct FailingUpload {
    inner: Box<dyn MultipartUpload>,
    fail_at: usize,
    count: Arc<AtomicUsize>,
}

#[async_trait]
impl MultipartUpload for FailingUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        if let Err(e) = FailingStore::tick(&self.count, self.fail_at, "put_part") {
            return Box::pin(futures::future::ready(Err(e)));
        }
        self.inner.put_part(data)
    }
    async fn complete(&mut self) -> object_store::Result<PutResult> {
        FailingStore::tick(&self.count, self.fail_at, "complete")?;
        self.inner.complete().await
    }
    async fn abort(&mut self) -> object_store::Result<()> {
        self.inner.abort().await
    }
}

#[async_trait]
impl ObjectStore for FailingStore {
    async fn put_opts(
        &self,
        p: &Path,
        payload: PutPayload,
        o: PutOptions,
    ) -> object_store::Result<PutResult> {
        Self::tick(&self.count, self.fail_at, "put")?;
        self.inner.put_opts(p, payload, o).await
    }
    async fn put_multipart_opts(
        &self,
        p: &Path,
        o: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        Self::tick(&self.count, self.fail_at, "put_multipart")?;
        let inner = self.inner.put_multipart_opts(p, o).await?;
        Ok(Box::new(FailingUpload {
            inner,
            fail_at: self.fail_at,
            count: Arc::clone(&self.count),
        }))
    }
    async fn get_opts(&self, p: &Path, o: GetOptions) -> object_store::Result<GetResult> {
        self.inner.get_opts(p, o).await
    }
    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }
    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }
    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(&self, from: &Path, to: &Path, o: CopyOptions) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, o).await
    }
}
