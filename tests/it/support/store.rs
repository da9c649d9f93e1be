//! [`InstrumentedStore`]: the one test wrapper around a real object store.

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, UploadPart,
};
use tokio::sync::Notify;

/// Which operations count towards an [`InstrumentedStore`]'s injected failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// Every operation: reads, lists, puts, multipart starts, parts,
    /// completions, deletes, copies.
    Every,
    /// Writes only: puts, multipart starts, parts and completions.
    Writes,
}

/// The one test wrapper around a real store. It records every read by path
/// and the bytes read, logs writes by key, counts operations and fails the
/// `fail_at`-th counted one (1-based; `usize::MAX` never), tracks open
/// multipart uploads, and can park uploads of shards at or after a given
/// name (an export "killed" there).
#[derive(Debug)]
pub struct InstrumentedStore {
    pub inner: Arc<dyn ObjectStore>,
    fail_at: usize,
    counted: Counted,
    pub ops: Arc<AtomicUsize>,
    pub open_uploads: Arc<AtomicIsize>,
    writes: Mutex<Vec<String>>,
    reads: Mutex<Vec<String>>,
    bytes_read: AtomicUsize,
    park_from: Option<(String, Arc<Notify>)>,
    /// The operation the injected failure hit (`"put out/shard-000000.tar"`).
    pub failed_op: Arc<Mutex<Option<String>>>,
}

impl Default for InstrumentedStore {
    fn default() -> Self {
        Self::new(Arc::new(InMemory::new()))
    }
}

impl InstrumentedStore {
    /// Wraps `inner`, injecting nothing.
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        InstrumentedStore {
            inner,
            fail_at: usize::MAX,
            counted: Counted::Every,
            ops: Arc::new(AtomicUsize::new(0)),
            open_uploads: Arc::new(AtomicIsize::new(0)),
            writes: Mutex::new(Vec::new()),
            reads: Mutex::new(Vec::new()),
            bytes_read: AtomicUsize::new(0),
            park_from: None,
            failed_op: Arc::new(Mutex::new(None)),
        }
    }

    /// Fails the `n`-th operation of kind `counted`, then behaves normally.
    pub fn failing_at(mut self, n: usize, counted: Counted) -> Self {
        self.fail_at = n;
        self.counted = counted;
        self
    }

    /// Parks (never finishes) uploads of shards named `from` or later, and
    /// signals `notify` when the first one parks.
    pub fn parking_from(mut self, from: String, notify: Arc<Notify>) -> Self {
        self.park_from = Some((from, notify));
        self
    }

    fn tick(&self, write: bool, what: &str, key: &str) -> object_store::Result<()> {
        let r = tick(&self.ops, self.fail_at, self.counted, write, what, key);
        if r.is_err() {
            *self.failed_op.lock().unwrap() = Some(format!("{what} {key}"));
        }
        r
    }

    async fn maybe_park(&self, p: &Path) {
        if let Some((from, notify)) = &self.park_from {
            let name = p.filename().unwrap_or_default();
            if name.starts_with("shard-") && name >= from.as_str() {
                notify.notify_one();
                futures::future::pending::<()>().await;
            }
        }
    }

    fn read(&self, p: &Path, bytes: usize) {
        self.reads.lock().unwrap().push(p.to_string());
        self.bytes_read.fetch_add(bytes, Ordering::SeqCst);
    }

    /// Keys written (puts and multipart starts), in order.
    pub fn written(&self) -> Vec<String> {
        self.writes.lock().unwrap().clone()
    }

    /// Paths read whose path contains `needle`, in order.
    pub fn reads_of(&self, needle: &str) -> Vec<String> {
        let reads = self.reads.lock().unwrap();
        reads
            .iter()
            .filter(|p| p.contains(needle))
            .cloned()
            .collect()
    }

    /// Reads whose path contains `needle`.
    pub fn reads_matching(&self, needle: &str) -> usize {
        self.reads_of(needle).len()
    }

    /// Reads of frames files of `session_id`.
    pub fn frame_reads_of(&self, session_id: &str) -> usize {
        let reads = self.reads.lock().unwrap();
        reads
            .iter()
            .filter(|p| p.contains("frames/") && p.contains(session_id))
            .count()
    }

    /// Bytes read since the last reset.
    pub fn bytes_read(&self) -> usize {
        self.bytes_read.load(Ordering::SeqCst)
    }

    /// Forgets reads and writes.
    pub fn reset(&self) {
        self.reads.lock().unwrap().clear();
        self.writes.lock().unwrap().clear();
        self.bytes_read.store(0, Ordering::SeqCst);
    }
}

fn tick(
    ops: &AtomicUsize,
    fail_at: usize,
    counted: Counted,
    write: bool,
    what: &str,
    key: &str,
) -> object_store::Result<()> {
    if counted == Counted::Writes && !write {
        return Ok(());
    }
    let n = ops.fetch_add(1, Ordering::SeqCst) + 1;
    if n == fail_at {
        return Err(object_store::Error::Generic {
            store: "InstrumentedStore",
            source: format!("injected failure at operation #{n} ({what} {key})").into(),
        });
    }
    Ok(())
}

impl fmt::Display for InstrumentedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InstrumentedStore({})", self.inner)
    }
}

#[derive(Debug)]
struct InstrumentedUpload {
    inner: Box<dyn MultipartUpload>,
    key: String,
    fail_at: usize,
    counted: Counted,
    ops: Arc<AtomicUsize>,
    open: Arc<AtomicIsize>,
}

#[async_trait]
impl MultipartUpload for InstrumentedUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let t = tick(
            &self.ops,
            self.fail_at,
            self.counted,
            true,
            "put_part",
            &self.key,
        );
        if let Err(e) = t {
            return Box::pin(futures::future::ready(Err(e)));
        }
        self.inner.put_part(data)
    }
    async fn complete(&mut self) -> object_store::Result<PutResult> {
        tick(
            &self.ops,
            self.fail_at,
            self.counted,
            true,
            "complete",
            &self.key,
        )?;
        let r = self.inner.complete().await?;
        self.open.fetch_sub(1, Ordering::SeqCst);
        Ok(r)
    }
    async fn abort(&mut self) -> object_store::Result<()> {
        self.open.fetch_sub(1, Ordering::SeqCst);
        self.inner.abort().await
    }
}

#[async_trait]
impl ObjectStore for InstrumentedStore {
    async fn put_opts(
        &self,
        p: &Path,
        payload: PutPayload,
        o: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.tick(true, "put", p.as_ref())?;
        self.maybe_park(p).await;
        self.writes.lock().unwrap().push(p.to_string());
        self.inner.put_opts(p, payload, o).await
    }
    async fn put_multipart_opts(
        &self,
        p: &Path,
        o: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.tick(true, "put_multipart", p.as_ref())?;
        self.maybe_park(p).await;
        self.writes.lock().unwrap().push(p.to_string());
        let inner = self.inner.put_multipart_opts(p, o).await?;
        self.open_uploads.fetch_add(1, Ordering::SeqCst);
        Ok(Box::new(InstrumentedUpload {
            inner,
            key: p.to_string(),
            fail_at: self.fail_at,
            counted: self.counted,
            ops: Arc::clone(&self.ops),
            open: Arc::clone(&self.open_uploads),
        }))
    }
    async fn get_opts(&self, p: &Path, o: GetOptions) -> object_store::Result<GetResult> {
        self.tick(false, "get", p.as_ref())?;
        let r = self.inner.get_opts(p, o).await?;
        self.read(p, (r.range.end - r.range.start) as usize);
        Ok(r)
    }
    async fn get_ranges(
        &self,
        p: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.tick(false, "get_ranges", p.as_ref())?;
        let r = self.inner.get_ranges(p, ranges).await?;
        self.read(p, r.iter().map(|b| b.len()).sum());
        Ok(r)
    }
    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let (ops, fail_at, counted) = (Arc::clone(&self.ops), self.fail_at, self.counted);
        let failed_op = Arc::clone(&self.failed_op);
        let checked = locations
            .map(move |p| {
                let p = p?;
                let t = tick(&ops, fail_at, counted, false, "delete", p.as_ref());
                if t.is_err() {
                    *failed_op.lock().unwrap() = Some(format!("delete {p}"));
                }
                t?;
                Ok(p)
            })
            .boxed();
        self.inner.delete_stream(checked)
    }
    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let key = prefix.map(|p| p.to_string()).unwrap_or_default();
        if let Err(e) = self.tick(false, "list", &key) {
            return futures::stream::once(futures::future::ready(Err(e))).boxed();
        }
        self.inner.list(prefix)
    }
    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let key = prefix.map(|p| p.to_string()).unwrap_or_default();
        self.tick(false, "list", &key)?;
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(&self, from: &Path, to: &Path, o: CopyOptions) -> object_store::Result<()> {
        self.tick(false, "copy", to.as_ref())?;
        self.inner.copy_opts(from, to, o).await
    }
}
