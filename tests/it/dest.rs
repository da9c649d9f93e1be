//! Destination behaviour that needs no server: a fault injected at every
//! single object-store operation of a multi-shard multipart export leaves no
//! manifest, no shard and no open upload, and a clean rerun is byte-identical
//! to an undisturbed export; an interrupted export resumes by writing only
//! the missing shards; stale or foreign shards are replaced; configuration
//! errors name the setting and never echo secrets.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::StreamExt;
use nusomi_export::dest::{DestConfig, ExportTarget};
use nusomi_export::sink::Progress;
use nusomi_export::spec::{Destination, ExportSpec};
use nusomi_export::Export;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use serde_json::json;
use tempfile::TempDir;
use tokio::sync::Notify;

use crate::support::{sealed_memory_store, spec, Counted, InstrumentedStore};

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
        let spec = spec(format, json!({"shard_size_bytes": SHARD}));
        // The undisturbed export, and how many operations it takes.
        let clean = Arc::new(InstrumentedStore::default());
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
            let faulty =
                Arc::new(InstrumentedStore::new(Arc::clone(&inner)).failing_at(n, Counted::Every));
            let result = Export::new(&store, &spec)
                .with_target(target(faulty.clone(), "out", PART))
                .await;
            let failed_op = faulty.failed_op.lock().unwrap().clone().unwrap_or_default();
            let Err(err) = result else {
                // The one operation after the manifest: releasing the lease
                // is best effort (the manifest marks the export finished).
                assert_eq!(
                    failed_op, "delete out/.nusomi-export.json",
                    "{format}: a failure at operation #{n} must fail the export"
                );
                // A rerun is a no-op that removes the leftover lease.
                let rerun = Arc::new(InstrumentedStore::new(Arc::clone(&inner)));
                Export::new(&store, &spec)
                    .with_target(target(rerun, "out", PART))
                    .await
                    .unwrap();
                assert_eq!(objects(&inner, "out").await, expected, "{format} #{n}");
                continue;
            };
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
            let rerun = Arc::new(InstrumentedStore::new(Arc::clone(&inner)));
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
    let spec = spec("jsonl", json!({"shard_size_bytes": SHARD}));
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
    let gated = Arc::new(
        InstrumentedStore::new(Arc::clone(&inner))
            .parking_from(format!("shard-{k:06}"), Arc::clone(&notify)),
    );
    let t = target(gated.clone(), "out", PART);
    tokio::select! {
        r = Export::new(&store, &spec).with_target(t.clone()) => {
            panic!("the export should have been parked, got {:?}", r.map(|o| o.manifest.rows));
        }
        _ = notify.notified() => {}
    }
    let left = objects(&inner, "out").await;
    let names: Vec<&String> = left.keys().collect();
    let mut want: Vec<String> = (0..k).map(|i| format!("shard-{i:06}.jsonl")).collect();
    want.insert(0, ".nusomi-export.json".into());
    assert_eq!(
        names,
        want.iter().collect::<Vec<_>>(),
        "after the interruption: the lease and the first {k} shards, no manifest"
    );

    // The rerun verifies the first k shards and uploads only the rest.
    let rerun = Arc::new(InstrumentedStore::new(Arc::clone(&inner)));
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

/// The lease an export of `spec` puts on its prefix, as an attempt killed
/// before its first shard leaves it.
async fn lease_of(store: &Arc<nusomi_export::store::SealedStore>, spec: &ExportSpec) -> Vec<u8> {
    let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let notify = Arc::new(Notify::new());
    let gated = Arc::new(
        InstrumentedStore::new(Arc::clone(&inner))
            .parking_from("shard-".into(), Arc::clone(&notify)),
    );
    tokio::select! {
        r = Export::new(store, spec).with_target(target(gated, "out", PART)) => {
            panic!("the export should have been parked, got {:?}", r.map(|o| o.manifest.rows));
        }
        _ = notify.notified() => {}
    }
    objects(&inner, "out")
        .await
        .remove(".nusomi-export.json")
        .expect("a lease")
}

/// Shards an interrupted attempt of `expected`'s export might have left:
/// one byte flipped, truncated, too long, intact, and one past the end.
fn damaged_shards(expected: &BTreeMap<String, Vec<u8>>) -> Vec<(&'static str, Vec<u8>)> {
    let mut s0 = expected["shard-000000.tar"].clone();
    let mid = s0.len() / 2;
    s0[mid] ^= 0xff;
    let mut s2 = expected["shard-000002.tar"].clone();
    s2.extend_from_slice(b"trailing junk");
    vec![
        ("shard-000000.tar", s0),
        (
            "shard-000001.tar",
            expected["shard-000001.tar"][..1000].to_vec(),
        ),
        ("shard-000002.tar", s2),
        ("shard-000003.tar", expected["shard-000003.tar"].clone()),
        ("shard-000099.tar", b"junk".to_vec()),
    ]
}

/// The objects of an undisturbed export of `spec` under `out/`.
async fn undisturbed(
    store: &Arc<nusomi_export::store::SealedStore>,
    spec: &ExportSpec,
) -> BTreeMap<String, Vec<u8>> {
    let baseline: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    Export::new(store, spec)
        .with_target(target(Arc::clone(&baseline), "out", PART))
        .await
        .unwrap();
    objects(&baseline, "out").await
}

#[tokio::test]
async fn under_its_own_lease_stale_shards_are_replaced_or_removed() {
    let (_tmp, store) = sealed_memory_store(43, 3).await;
    let spec = spec("webdataset", json!({"shard_size_bytes": SHARD}));
    let expected = undisturbed(&store, &spec).await;
    let lease = lease_of(&store, &spec).await;

    // In memory and in a local folder (whose reads take another path).
    let dir = tempfile::TempDir::new().unwrap();
    let stores: [Arc<dyn ObjectStore>; 2] = [
        Arc::new(InMemory::new()),
        Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap()),
    ];
    for inner in stores {
        // What an interrupted attempt of this very export left, under its lease.
        let mut left = damaged_shards(&expected);
        left.push((".nusomi-export.json", lease.clone()));
        for (name, bytes) in left {
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
async fn objects_it_did_not_write_are_neither_deleted_nor_overwritten() {
    let (_tmp, store) = sealed_memory_store(43, 3).await;
    let spec = spec("webdataset", json!({"shard_size_bytes": SHARD}));
    let expected = undisturbed(&store, &spec).await;
    // The same shard names, but no lease: someone else's files.
    let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    for (name, bytes) in damaged_shards(&expected) {
        inner
            .put(&Path::from(format!("out/{name}")), bytes.into())
            .await
            .unwrap();
    }
    inner
        .put(&Path::from("out/README.md"), b"theirs".to_vec().into())
        .await
        .unwrap();
    let before = objects(&inner, "").await;
    let err = Export::new(&store, &spec)
        .with_target(target(Arc::clone(&inner), "out", PART))
        .await
        .expect_err("a prefix holding foreign objects must be refused");
    let msg = err.to_string();
    assert!(
        msg.contains("did not write")
            && msg.contains("README.md")
            && msg.contains("shard-000000.tar"),
        "{msg}"
    );
    assert_eq!(objects(&inner, "").await, before, "nothing may be touched");

    // A prefix claimed by another, unfinished export (another spec) is refused too.
    let claimed: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let other = spec_with(&spec, "tag", json!("another export"));
    claimed
        .put(
            &Path::from("out/.nusomi-export.json"),
            lease_of(&store, &other).await.into(),
        )
        .await
        .unwrap();
    let err = Export::new(&store, &spec)
        .with_target(target(Arc::clone(&claimed), "out", PART))
        .await
        .expect_err("a prefix claimed by another export must be refused");
    assert!(
        err.to_string()
            .contains("claimed by another unfinished export"),
        "{err}"
    );
    assert_eq!(objects(&claimed, "out").await.len(), 1);
}

/// `spec` with `field` set to `value`.
fn spec_with(spec: &ExportSpec, field: &str, value: serde_json::Value) -> ExportSpec {
    let mut raw = spec.raw.clone();
    raw[field] = value;
    ExportSpec::parse(&raw, spec.as_of).unwrap()
}

#[tokio::test]
async fn staging_files_of_a_killed_local_upload_are_swept_on_resume() {
    let (_tmp, store) = sealed_memory_store(43, 2).await;
    let spec = spec("jsonl", json!({"shard_size_bytes": SHARD}));
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
    std::fs::write(
        dir.path().join(".nusomi-export.json"),
        lease_of(&store, &spec).await,
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
    let mut v = spec("parquet", json!({"shard_size_bytes": SHARD}));
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
