//! Destination behaviour that needs no server: a fault injected at every
//! single object-store operation of a multi-shard multipart export leaves no
//! manifest, no shard and no open upload, and a clean rerun is byte-identical
//! to an undisturbed export; an interrupted export resumes by writing only
//! the missing shards; stale or foreign shards are replaced; configuration
//! errors name the setting and never echo secrets.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{TimeZone, Utc};
use futures::stream::BoxStream;
use futures::StreamExt;
use nusomi_export::dest::{DestConfig, ExportTarget};
use nusomi_export::sink::Progress;
use nusomi_export::spec::{Destination, ExportSpec};
use nusomi_export::Export;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult, UploadPart,
};
use serde_json::json;
use tempfile::TempDir;
use tokio::sync::Notify;

use crate::support::sealed_memory_store;

/// Wraps a store: counts every operation (reads, lists, puts, multipart
/// starts, parts, completions, deletes), fails the `fail_at`-th, tracks open
/// multipart uploads, logs writes by key, and can park uploads of shards at
/// or after a given name (an export "killed" there).
#[derive(Debug)]
struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    fail_at: usize,
    ops: Arc<AtomicUsize>,
    open_uploads: Arc<AtomicIsize>,
    writes: Mutex<Vec<String>>,
    park_from: Option<(String, Arc<Notify>)>,
}

impl FaultyStore {
    fn new(inner: Arc<dyn ObjectStore>, fail_at: usize) -> Self {
        FaultyStore {
            inner,
            fail_at,
            ops: Arc::new(AtomicUsize::new(0)),
            open_uploads: Arc::new(AtomicIsize::new(0)),
            writes: Mutex::new(Vec::new()),
            park_from: None,
        }
    }

    fn tick(ops: &AtomicUsize, fail_at: usize, what: &str, key: &str) -> object_store::Result<()> {
        let n = ops.fetch_add(1, Ordering::SeqCst) + 1;
        if n == fail_at {
            return Err(object_store::Error::Generic {
                store: "FaultyStore",
                source: format!("injected failure at operation #{n} ({what} {key})").into(),
            });
        }
        Ok(())
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

    fn written(&self) -> Vec<String> {
        self.writes.lock().unwrap().clone()
    }
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyStore")
    }
}

#[derive(Debug)]
struct FaultyUpload {
    inner: Box<dyn MultipartUpload>,
    key: String,
    fail_at: usize,
    ops: Arc<AtomicUsize>,
    open: Arc<AtomicIsize>,
}

#[async_trait]
impl MultipartUpload for FaultyUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        if let Err(e) = FaultyStore::tick(&self.ops, self.fail_at, "put_part", &self.key) {
            return Box::pin(futures::future::ready(Err(e)));
        }
        self.inner.put_part(data)
    }
    async fn complete(&mut self) -> object_store::Result<PutResult> {
        FaultyStore::tick(&self.ops, self.fail_at, "complete", &self.key)?;
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
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        p: &Path,
        payload: PutPayload,
        o: PutOptions,
    ) -> object_store::Result<PutResult> {
        Self::tick(&self.ops, self.fail_at, "put", p.as_ref())?;
        self.maybe_park(p).await;
        self.writes.lock().unwrap().push(p.to_string());
        self.inner.put_opts(p, payload, o).await
    }
    async fn put_multipart_opts(
        &self,
        p: &Path,
        o: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        Self::tick(&self.ops, self.fail_at, "put_multipart", p.as_ref())?;
        self.maybe_park(p).await;
        self.writes.lock().unwrap().push(p.to_string());
        let inner = self.inner.put_multipart_opts(p, o).await?;
        self.open_uploads.fetch_add(1, Ordering::SeqCst);
        Ok(Box::new(FaultyUpload {
            inner,
            key: p.to_string(),
            fail_at: self.fail_at,
            ops: Arc::clone(&self.ops),
            open: Arc::clone(&self.open_uploads),
        }))
    }
    async fn get_opts(&self, p: &Path, o: GetOptions) -> object_store::Result<GetResult> {
        Self::tick(&self.ops, self.fail_at, "get", p.as_ref())?;
        self.inner.get_opts(p, o).await
    }
    async fn get_ranges(
        &self,
        p: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        Self::tick(&self.ops, self.fail_at, "get_ranges", p.as_ref())?;
        self.inner.get_ranges(p, ranges).await
    }
    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let (ops, fail_at) = (Arc::clone(&self.ops), self.fail_at);
        let checked = locations
            .map(move |p| {
                let p = p?;
                FaultyStore::tick(&ops, fail_at, "delete", p.as_ref())?;
                Ok(p)
            })
            .boxed();
        self.inner.delete_stream(checked)
    }
    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let key = prefix.map(|p| p.to_string()).unwrap_or_default();
        if let Err(e) = Self::tick(&self.ops, self.fail_at, "list", &key) {
            return futures::stream::once(futures::future::ready(Err(e))).boxed();
        }
        self.inner.list(prefix)
    }
    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let key = prefix.map(|p| p.to_string()).unwrap_or_default();
        Self::tick(&self.ops, self.fail_at, "list", &key)?;
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(&self, from: &Path, to: &Path, o: CopyOptions) -> object_store::Result<()> {
        Self::tick(&self.ops, self.fail_at, "copy", to.as_ref())?;
        self.inner.copy_opts(from, to, o).await
    }
}

fn spec(format: &str, shard_size: u64) -> ExportSpec {
    let v = json!({
        "workflow": ["process_invoice", "triage_ticket", "update_crm_record", "book_travel", "reconcile_payments"],
        "format": format,
        "as_of": "2030-01-01T00:00:00Z",
        "frame_sampling": {"mode": "all"},
        "shard_size_bytes": shard_size,
    });
    ExportSpec::parse(&v, Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap()).unwrap()
}

/// Every object under `prefix` with its bytes.
async fn objects(store: &Arc<dyn ObjectStore>, prefix: &str) -> BTreeMap<String, Vec<u8>> {
    let metas: Vec<ObjectMeta> = store
        .list(Some(&Path::from(prefix)))
        .map(|m| m.unwrap())
        .collect()
        .await;
    let mut out = BTreeMap::new();
    for m in metas {
        let b = store.get(&m.location).await.unwrap().bytes().await.unwrap();
        out.insert(m.location.filename().unwrap().to_string(), b.to_vec());
    }
    out
}

fn target(store: Arc<dyn ObjectStore>, prefix: &str, part_bytes: usize) -> ExportTarget {
    ExportTarget::new(store, Path::from(prefix), format!("memory:///{prefix}/"))
        .with_part_bytes(part_bytes)
}

/// Small multipart parts so every shard is a real multipart upload.
const PART: usize = 16 * 1024;
const SHARD: u64 = 96 * 1024;

#[tokio::test]
async fn a_failure_at_every_operation_leaves_nothing_and_a_rerun_is_identical() {
    let (_tmp, store) = sealed_memory_store(43, 3).await;
    for format in ["parquet", "webdataset"] {
        let spec = spec(format, SHARD);
        // The undisturbed export, and how many operations it takes.
        let clean = Arc::new(FaultyStore::new(Arc::new(InMemory::new()), usize::MAX));
        let out = Export::new(&store, &spec)
            .with_target(target(clean.clone(), "out", PART))
            .await
            .unwrap();
        assert!(
            out.manifest.shard_count >= 3,
            "{format}: want several shards"
        );
        let total_ops = clean.ops.load(Ordering::SeqCst);
        let inner_clean: Arc<dyn ObjectStore> = clean.inner.clone();
        let expected = objects(&inner_clean, "out").await;
        let multipart = clean
            .written()
            .iter()
            .filter(|k| k.contains("shard-"))
            .count();
        assert!(
            multipart >= 3,
            "{format}: shards should be multipart uploads"
        );
        assert_eq!(clean.open_uploads.load(Ordering::SeqCst), 0);
        eprintln!(
            "{format}: {} shards, {total_ops} operations, each failed once",
            out.manifest.shard_count
        );

        for n in 1..=total_ops {
            let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
            let faulty = Arc::new(FaultyStore::new(Arc::clone(&inner), n));
            let err = Export::new(&store, &spec)
                .with_target(target(faulty.clone(), "out", PART))
                .await
                .expect_err(&format!(
                    "{format}: a failure at operation #{n} must fail the export"
                ));
            let msg = err.to_string();
            assert!(
                msg.contains(&format!("injected failure at operation #{n}")) && msg.contains("out"),
                "{format} #{n}: the error must name the operation and key: {msg}"
            );
            let left = objects(&inner, "").await;
            assert!(left.is_empty(), "{format} #{n}: left {:?}", left.keys());
            assert_eq!(
                faulty.open_uploads.load(Ordering::SeqCst),
                0,
                "{format} #{n}: an open multipart upload was left"
            );
            // A clean rerun on the same store is byte-identical.
            let rerun = Arc::new(FaultyStore::new(Arc::clone(&inner), usize::MAX));
            Export::new(&store, &spec)
                .with_target(target(rerun, "out", PART))
                .await
                .unwrap();
            assert_eq!(objects(&inner, "out").await, expected, "{format} #{n}");
        }
    }
}

#[tokio::test]
async fn an_interrupted_export_resumes_writing_only_the_missing_shards() {
    let (_tmp, store) = sealed_memory_store(43, 3).await;
    let spec = spec("jsonl", SHARD);
    let baseline: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let full = Export::new(&store, &spec)
        .with_target(target(Arc::clone(&baseline), "out", PART))
        .await
        .unwrap();
    let shards = full.manifest.shard_count as usize;
    assert!(shards >= 4, "want several shards, got {shards}");
    let expected = objects(&baseline, "out").await;

    // "Kill" the export when it starts uploading shard k: the future is
    // dropped, so no cleanup runs, as after kill -9.
    let k = 2;
    let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let notify = Arc::new(Notify::new());
    let mut gated = FaultyStore::new(Arc::clone(&inner), usize::MAX);
    gated.park_from = Some((format!("shard-{k:06}"), Arc::clone(&notify)));
    let gated = Arc::new(gated);
    let t = target(gated.clone(), "out", PART);
    tokio::select! {
        r = Export::new(&store, &spec).with_target(t.clone()) => {
            panic!("the export should have been parked, got {:?}", r.map(|o| o.manifest.rows));
        }
        _ = notify.notified() => {}
    }
    let left = objects(&inner, "out").await;
    let names: Vec<&String> = left.keys().collect();
    assert_eq!(
        names,
        (0..k)
            .map(|i| format!("shard-{i:06}.jsonl"))
            .collect::<Vec<_>>()
            .iter()
            .collect::<Vec<_>>(),
        "after the interruption: the first {k} shards, no manifest"
    );

    // The rerun verifies the first k shards and uploads only the rest.
    let rerun = Arc::new(FaultyStore::new(Arc::clone(&inner), usize::MAX));
    let progress = Arc::new(Progress::default());
    Export::new(&store, &spec)
        .with_target(target(rerun.clone(), "out", PART))
        .with_progress(Arc::clone(&progress))
        .await
        .unwrap();
    let written = rerun.written();
    for i in 0..k {
        let name = format!("out/shard-{i:06}.jsonl");
        assert!(
            !written.contains(&name),
            "{name} was uploaded again: {written:?}"
        );
    }
    for i in k..shards {
        let name = format!("out/shard-{i:06}.jsonl");
        assert!(
            written.contains(&name),
            "{name} was not written: {written:?}"
        );
    }
    assert!(written.contains(&"out/manifest.json".to_string()));
    assert_eq!(progress.shards_reused.load(Ordering::SeqCst), k as u64);
    assert_eq!(objects(&inner, "out").await, expected);
}

#[tokio::test]
async fn stale_and_foreign_shards_are_replaced_or_removed() {
    let (_tmp, store) = sealed_memory_store(43, 3).await;
    let spec = spec("webdataset", SHARD);
    let baseline: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    Export::new(&store, &spec)
        .with_target(target(Arc::clone(&baseline), "out", PART))
        .await
        .unwrap();
    let expected = objects(&baseline, "out").await;

    // In memory and in a local folder (whose reads take another path).
    let dir = tempfile::TempDir::new().unwrap();
    let stores: [Arc<dyn ObjectStore>; 2] = [
        Arc::new(InMemory::new()),
        Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap()),
    ];
    for inner in stores {
        // shard 0: right length, one byte flipped in the middle; shard 1: a
        // truncated copy; shard 2: longer than it should be; shard 99: left
        // over from a larger export; shard 3: intact (kept, not re-uploaded).
        let mut s0 = expected["shard-000000.tar"].clone();
        let mid = s0.len() / 2;
        s0[mid] ^= 0xff;
        let s1 = expected["shard-000001.tar"][..1000].to_vec();
        let mut s2 = expected["shard-000002.tar"].clone();
        s2.extend_from_slice(b"trailing junk");
        for (name, bytes) in [
            ("shard-000000.tar", s0),
            ("shard-000001.tar", s1),
            ("shard-000002.tar", s2),
            ("shard-000003.tar", expected["shard-000003.tar"].clone()),
            ("shard-000099.tar", b"junk".to_vec()),
        ] {
            inner
                .put(&Path::from(format!("out/{name}")), bytes.into())
                .await
                .unwrap();
        }
        let progress = Arc::new(Progress::default());
        Export::new(&store, &spec)
            .with_target(target(Arc::clone(&inner), "out", PART))
            .with_progress(Arc::clone(&progress))
            .await
            .unwrap();
        assert_eq!(progress.shards_reused.load(Ordering::SeqCst), 1, "{inner}");
        assert_eq!(objects(&inner, "out").await, expected, "{inner}");
    }
}

#[tokio::test]
async fn staging_files_of_a_killed_local_upload_are_swept_on_resume() {
    let (_tmp, store) = sealed_memory_store(43, 2).await;
    let spec = spec("jsonl", SHARD);
    let clean = tempfile::TempDir::new().unwrap();
    let t = ExportTarget::local(clean.path().to_str().unwrap()).unwrap();
    Export::new(&store, &spec)
        .with_target(t.clone())
        .await
        .unwrap();
    // A folder as kill -9 leaves it: one finished shard, one shard and the
    // manifest caught mid-write in object_store's staging names, and an
    // unrelated file that must stay.
    let dir = tempfile::TempDir::new().unwrap();
    std::fs::copy(
        clean.path().join("shard-000000.jsonl"),
        dir.path().join("shard-000000.jsonl"),
    )
    .unwrap();
    std::fs::write(dir.path().join("shard-000001.jsonl#7"), b"half a shard").unwrap();
    std::fs::write(dir.path().join("manifest.json#12"), b"{").unwrap();
    std::fs::write(dir.path().join("notes#1"), b"not ours").unwrap();
    let t = ExportTarget::local(dir.path().to_str().unwrap()).unwrap();
    let progress = Arc::new(Progress::default());
    Export::new(&store, &spec)
        .with_target(t.clone())
        .with_progress(Arc::clone(&progress))
        .await
        .unwrap();
    assert_eq!(progress.shards_reused.load(Ordering::SeqCst), 1);
    let names = |d: &std::path::Path| {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let mut expected = names(clean.path());
    expected.push("notes#1".into());
    expected.sort();
    assert_eq!(names(dir.path()), expected);
    for n in names(clean.path()) {
        assert_eq!(
            std::fs::read(dir.path().join(&n)).unwrap(),
            std::fs::read(clean.path().join(&n)).unwrap(),
            "{n}"
        );
    }
}

#[test]
fn destination_configuration_errors_name_the_setting() {
    // A role without a workspace id (the external id).
    let d = Destination::S3 {
        bucket: "b".into(),
        prefix: "p".into(),
        region: Some("us-east-1".into()),
        role_arn: Some("arn:aws:iam::1:role/x".into()),
        endpoint: Some("http://127.0.0.1:1".into()),
    };
    let e = ExportTarget::open(&d, "exp_1", &DestConfig::default()).unwrap_err();
    assert!(e.to_string().contains("destination.role_arn"), "{e}");
    assert!(e.to_string().contains("NUSOMI_WORKSPACE_ID"), "{e}");
    // signed_url kept in a folder needs the link key.
    let tmp = TempDir::new().unwrap();
    let cfg = DestConfig {
        signed_storage: Destination::Local {
            path: tmp.path().display().to_string(),
        },
        ..Default::default()
    };
    let e = ExportTarget::open(&Destination::SignedUrl, "exp_1", &cfg).unwrap_err();
    assert!(e.to_string().contains("NUSOMI_SIGNING_KEY"), "{e}");
    // A GCS service account that is neither a file nor key JSON.
    let d = Destination::Gcs {
        bucket: "b".into(),
        prefix: "".into(),
        service_account: Some("/no/such/key.json".into()),
    };
    let e = ExportTarget::open(&d, "exp_1", &DestConfig::default()).unwrap_err();
    assert!(e.to_string().contains("destination.service_account"), "{e}");
}

#[tokio::test]
async fn signed_url_exports_in_a_folder_list_hmac_links_the_service_checks() {
    let (_tmp, store) = sealed_memory_store(43, 2).await;
    let dir = TempDir::new().unwrap();
    let key = "test-signing-key-0123456789";
    let cfg = DestConfig {
        signed_storage: Destination::Local {
            path: dir.path().display().to_string(),
        },
        signing_key: Some(nusomi_export::dest::UrlSigner::new(key.as_bytes().to_vec())),
        public_url: "http://127.0.0.1:9999".into(),
        link_ttl: std::time::Duration::from_secs(600),
        ..Default::default()
    };
    let mut v = spec("parquet", SHARD);
    v.destination = Some(Destination::SignedUrl);
    let t = ExportTarget::open(&Destination::SignedUrl, "exp_TEST", &cfg).unwrap();
    let out = Export::new(&store, &v)
        .with_target(t.clone())
        .await
        .unwrap();
    assert!(out
        .manifest_url
        .starts_with("http://127.0.0.1:9999/v1/exports/exp_TEST/files/manifest.json?expires="));
    assert!(out.manifest.links_expire_at.is_some());
    let signer = nusomi_export::dest::UrlSigner::new(key.as_bytes().to_vec());
    for s in &out.manifest.shards {
        let url = url::Url::parse(s.url.as_deref().expect("a link per shard")).unwrap();
        assert_eq!(url.path(), format!("/v1/exports/exp_TEST/files/{}", s.path));
        let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        signer
            .verify(
                "exp_TEST",
                &s.path,
                &q["expires"],
                &q["signature"],
                std::time::SystemTime::now(),
            )
            .unwrap();
        // The files are in the storage folder under the export id.
        let f = dir.path().join("exp_TEST").join(&s.path);
        assert_eq!(std::fs::metadata(&f).unwrap().len(), s.bytes);
    }
    // The manifest on disk holds the links; the key appears nowhere.
    let text = std::fs::read_to_string(dir.path().join("exp_TEST/manifest.json")).unwrap();
    assert!(text.contains("\"url\""));
    assert!(!text.contains(key));
}
