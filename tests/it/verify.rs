//! `nusomi export verify` and `GET /v1/exports/{id}/verify`: an export is
//! checked against its own manifest without the store; a flipped byte, a
//! truncated shard, a missing shard and a tampered digest are each reported
//! by name, with a non-zero exit.

use std::path::Path;
use std::time::Duration;

use nusomi_export::dest::ExportTarget;
use nusomi_export::Export;
use serde_json::{json, Value};

use crate::support::{json_of, nusomi, sealed_memory_store, spec, spec_json, store_dir, Server};

fn verify_cli(location: &str, json: bool) -> (bool, String) {
    let mut args = vec!["export", "verify", location];
    if json {
        args.push("--json");
    }
    nusomi(&args)
}

/// A local export of several shards.
async fn exported(dir: &Path) {
    let (_tmp, store) = sealed_memory_store(81, 2).await;
    let s = spec("jsonl", json!({"shard_size_bytes": 64 * 1024}));
    let t = ExportTarget::local(dir.to_str().unwrap()).unwrap();
    let out = Export::new(&store, &s).with_target(t).await.unwrap();
    assert!(out.manifest.shard_count >= 4, "want several shards");
}

#[tokio::test]
async fn verify_passes_a_fresh_export_and_names_every_damaged_shard() {
    let tmp = tempfile::TempDir::new().unwrap();
    let dir = tmp.path().join("out");
    exported(&dir).await;
    let d = dir.to_str().unwrap();
    let (ok, text) = verify_cli(d, false);
    assert!(ok && text.contains("intact"), "{text}");
    let (ok, text) = verify_cli(&format!("{d}/manifest.json"), false);
    assert!(ok, "{text}");
    let (ok, text) = verify_cli(&format!("file://{d}"), false);
    assert!(ok, "{text}");

    // One flipped byte, one truncated shard, one missing shard.
    let s0 = dir.join("shard-000000.jsonl");
    let mut b = std::fs::read(&s0).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 1;
    std::fs::write(&s0, b).unwrap();
    let s1 = dir.join("shard-000001.jsonl");
    let b = std::fs::read(&s1).unwrap();
    std::fs::write(&s1, &b[..b.len() - 10]).unwrap();
    std::fs::remove_file(dir.join("shard-000002.jsonl")).unwrap();
    let (ok, text) = verify_cli(d, false);
    assert!(!ok, "{text}");
    assert!(text.contains("shard-000000.jsonl: sha256"), "{text}");
    assert!(text.contains("shard-000001.jsonl: size"), "{text}");
    assert!(text.contains("shard-000002.jsonl: missing"), "{text}");
    assert!(!text.contains("shard-000003.jsonl"), "{text}");
    let (ok, text) = verify_cli(d, true);
    assert!(!ok);
    let report: Value = serde_json::from_str(&text[..text.rfind('}').unwrap() + 1]).unwrap();
    let problems: Vec<&str> = report["mismatches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["problem"].as_str().unwrap())
        .collect();
    assert_eq!(problems, ["sha256", "size", "missing"]);

    // A manifest whose digest does not match its own shard list.
    let other = tmp.path().join("other");
    exported(&other).await;
    let m = other.join("manifest.json");
    let mut v: Value = serde_json::from_slice(&std::fs::read(&m).unwrap()).unwrap();
    v["digest"] = json!("0".repeat(64));
    std::fs::write(&m, v.to_string()).unwrap();
    let (ok, text) = verify_cli(other.to_str().unwrap(), false);
    assert!(!ok && text.contains("manifest.json: digest"), "{text}");
    // A folder that does not exist is an error, not an empty success.
    let (ok, text) = verify_cli(tmp.path().join("nothing").to_str().unwrap(), false);
    assert!(!ok && text.contains("no such folder"), "{text}");
}

#[tokio::test]
async fn the_api_verifies_a_completed_export_where_it_was_written() {
    let (tmp, store) = store_dir(82, 2).await;
    let server = Server::start(&store, &tmp.path().join("data")).await;
    let out = tmp.path().join("api-out");
    let (s, job) = server
        .post(&spec_json(
            "webdataset",
            json!({"shard_size_bytes": 64 * 1024, "destination": {"kind": "local", "path": out}}),
        ))
        .await;
    assert_eq!(s, 202, "{job}");
    let id = job["id"].as_str().unwrap();
    server.wait_final(id, Duration::from_secs(60)).await;
    let (s, report) = server.get(&format!("/v1/exports/{id}/verify")).await;
    assert_eq!(s, 200, "{report}");
    assert_eq!(report["intact"], true, "{report}");
    std::fs::remove_file(out.join("shard-000001.tar")).unwrap();
    let (_, report) = server.get(&format!("/v1/exports/{id}/verify")).await;
    assert_eq!(report["intact"], false);
    assert_eq!(report["mismatches"][0]["path"], "shard-000001.tar");
    assert_eq!(report["mismatches"][0]["problem"], "missing");
    assert_eq!(server.get("/v1/exports/exp_NOPE/verify").await.0, 404);
}

#[tokio::test]
#[ignore = "needs SeaweedFS: run scripts/test.sh"]
async fn verify_reads_an_export_on_seaweedfs() {
    use object_store::ObjectStoreExt;
    let (_tmp, store) = sealed_memory_store(83, 2).await;
    let prefix = format!("verify-{}", std::process::id());
    let endpoint = std::env::var("NUSOMI_TEST_S3_ENDPOINT").unwrap();
    let s = spec(
        "parquet",
        json!({"shard_size_bytes": 64 * 1024, "destination": {"kind": "s3", "bucket": "nusomi-test",
               "prefix": prefix, "region": "us-east-1", "endpoint": endpoint}}),
    );
    let t = Export::open_target(&s, "exp_VERIFY", &Default::default())
        .await
        .unwrap();
    let out = Export::new(&store, &s)
        .with_target(t.clone())
        .await
        .unwrap();
    let url = format!("s3://nusomi-test/{prefix}");
    let (ok, text) = verify_cli(&url, false);
    assert!(ok, "{text}");
    let last = &out.manifest.shards.last().unwrap().path;
    t.store
        .delete(&t.prefix.clone().join(last.as_str()))
        .await
        .unwrap();
    let (ok, text) = verify_cli(&format!("{url}/manifest.json"), false);
    assert!(!ok && text.contains(&format!("{last}: missing")), "{text}");
}

#[tokio::test]
#[ignore = "needs Azurite: run scripts/test.sh"]
async fn verify_reads_an_export_on_azurite_from_its_manifest_url() {
    use object_store::ObjectStoreExt;
    let (_tmp, store) = sealed_memory_store(84, 2).await;
    let s = spec(
        "webdataset",
        json!({"shard_size_bytes": 64 * 1024, "destination": {"kind": "azure_blob",
               "account": "devstoreaccount1", "container": "nusomi-test",
               "prefix": format!("verify-{}", std::process::id())}}),
    );
    let t = Export::open_target(&s, "exp_VERIFY", &Default::default())
        .await
        .unwrap();
    let out = Export::new(&store, &s)
        .with_target(t.clone())
        .await
        .unwrap();
    let (ok, text) = verify_cli(&out.manifest_url, false);
    assert!(ok, "{}: {text}", out.manifest_url);
    let first = &out.manifest.shards[0].path;
    let key = t.prefix.clone().join(first.as_str());
    let bytes = t.store.get(&key).await.unwrap().bytes().await.unwrap();
    let mut flipped = bytes.to_vec();
    flipped[bytes.len() / 2] ^= 1;
    t.store.put(&key, flipped.into()).await.unwrap();
    let (ok, text) = verify_cli(&out.manifest_url, false);
    assert!(!ok && text.contains(&format!("{first}: sha256")), "{text}");
}

/// The Parquet files below `dir`, sorted.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    crate::support::files_below(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .filter(|p| !p.components().any(|c| c.as_os_str() == "_delta_log"))
        .collect()
}

#[tokio::test]
async fn from_manifest_reproduces_byte_identical_shards_and_reports_a_lost_session() {
    let (tmp, store) = store_dir(85, 3).await;
    let original = tmp.path().join("original");
    let spec_file = tmp.path().join("spec.json");
    // No as_of in the spec: the manifest records the one it ran at.
    std::fs::write(
        &spec_file,
        json!({"workflow": ["process_invoice", "triage_ticket", "update_crm_record", "book_travel", "reconcile_payments"],
               "format": "parquet", "frame_sampling": {"mode": "all"}, "shard_size_bytes": 64 * 1024,
               "destination": {"kind": "local", "path": original}})
        .to_string(),
    )
    .unwrap();
    let (ok, text) = nusomi(&[
        "export",
        "create",
        "--store",
        &store,
        spec_file.to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
    // Sessions sealed later do not change a reproduction at the same as_of.
    let (later_draft, later) = crate::support::write_session(tmp.path(), 86, 0);
    let (ok, text) = nusomi(&["seal", "--store", &store, later.to_str().unwrap()]);
    assert!(ok, "{text}");
    let again = tmp.path().join("again");
    let (ok, text) = nusomi(&[
        "export",
        "create",
        "--store",
        &store,
        "--from-manifest",
        original.join("manifest.json").to_str().unwrap(),
        "--to",
        again.to_str().unwrap(),
    ]);
    assert!(ok && text.contains("byte for byte"), "{text}");
    for (name, bytes) in crate::support::files(&original) {
        if name.starts_with("shard-") {
            assert_eq!(std::fs::read(again.join(&name)).unwrap(), bytes, "{name}");
        }
    }
    // A store that lost a sealed session whole (its row and its frames):
    // the report names it.
    let frames: Vec<_> = walk(&Path::new(&store).join("frames"));
    let session_of = |p: &Path| {
        let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
        stem.split('-').next().unwrap().to_string()
    };
    let gone = session_of(&frames[0]);
    let reproduce = |to: &str| {
        nusomi(&[
            "export",
            "create",
            "--store",
            &store,
            "--from-manifest",
            original.to_str().unwrap(),
            "--to",
            tmp.path().join(to).to_str().unwrap(),
        ])
    };
    let (ok, text) = nusomi(&["store", "forget", &store, &gone]);
    assert!(ok && text.contains("1 of 1 sessions removed"), "{text}");
    // Removed from the tables, its files still there: the reproduction
    // reads the versions the manifest records, which still hold it.
    let recorded: Value =
        serde_json::from_slice(&std::fs::read(original.join("manifest.json")).unwrap()).unwrap();
    assert!(recorded["store_version"]["sessions"].as_u64().unwrap() >= 1);
    let (ok, text) = reproduce("pinned");
    assert!(ok && text.contains("byte for byte"), "{text}");
    // Its files deleted too: the version the original read can no longer be
    // read; the newest one is, and the lost session is named.
    let (ok, text) = nusomi(&["store", "vacuum", &store, "--retain-hours", "0"]);
    assert!(ok && text.contains(&gone), "{text}");
    let (ok, text) = reproduce("third");
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!("session {gone}: lost: its ")),
        "the lost session {gone} is not named: {text}"
    );
    assert_eq!(text.matches("session ses_").count(), 1, "{text}");
    // Frames lost under a session row that is still there: the run fails
    // naming the missing file (and so the session).
    let frame_file = frames
        .iter()
        .find(|f| ![gone.as_str(), later_draft.session_id()].contains(&session_of(f).as_str()))
        .unwrap();
    let session = session_of(frame_file);
    std::fs::remove_file(frame_file).unwrap();
    let (ok, text) = reproduce("fourth");
    assert!(!ok, "{text}");
    assert!(
        text.contains(&session),
        "the lost session {session} is not named: {text}"
    );
    // --to is required: the original destination already holds the export.
    let (ok, text) = nusomi(&[
        "export",
        "create",
        "--store",
        &store,
        "--from-manifest",
        original.to_str().unwrap(),
    ]);
    assert!(!ok && text.contains("--to"), "{text}");
}

#[tokio::test]
async fn verify_follows_signed_links_of_a_split_export_and_names_a_damaged_shard() {
    let (tmp, store) = store_dir(87, 4).await;
    let server = Server::start(&store, &tmp.path().join("data")).await;
    let job = server
        .completed(&spec_json(
            "webdataset",
            json!({"destination": {"kind": "signed_url"}, "shard_size_bytes": 64 * 1024,
                   "splits": {"train": 0.5, "rest": 0.5}}),
        ))
        .await;
    let id = job["id"].as_str().unwrap().to_string();
    let link = job["manifest_url"].as_str().unwrap().to_string();
    assert!(
        link.starts_with("http://127.0.0.1:") && link.contains("signature="),
        "{link}"
    );
    let (ok, text) = verify_cli(&link, false);
    assert!(ok && text.contains("intact"), "{text}");
    // One shard of a split series, damaged where the service keeps it.
    let kept = server.data_dir.join("files").join(&id);
    let m: Value =
        serde_json::from_slice(&std::fs::read(kept.join("manifest.json")).unwrap()).unwrap();
    let shard = m["splits"][0]["shards"][0].as_str().unwrap().to_string();
    assert!(shard.contains('/'), "{shard}");
    let path = kept.join(&shard);
    let mut b = std::fs::read(&path).unwrap();
    b[600] ^= 1;
    std::fs::write(&path, b).unwrap();
    let (ok, text) = verify_cli(&link, true);
    assert!(!ok, "{text}");
    let report: Value = serde_json::from_str(&text[..text.rfind('}').unwrap() + 1]).unwrap();
    assert_eq!(report["mismatches"][0]["path"], shard.as_str(), "{report}");
    assert_eq!(report["mismatches"][0]["problem"], "sha256", "{report}");
    // A link whose signature is wrong is refused, not reported intact.
    let (ok, text) = verify_cli(&link.replace("signature=", "signature=0"), false);
    assert!(!ok && text.contains("403"), "{text}");
}

#[tokio::test]
async fn a_signed_url_step_export_serves_and_verifies_its_image_files() {
    let (tmp, store) = store_dir(88, 2).await;
    let server = Server::start(&store, &tmp.path().join("data")).await;
    let job = server
        .completed(&spec_json(
            "jsonl",
            json!({"destination": {"kind": "signed_url"}, "unit": "step",
                   "history": {"frames": 2}, "messages": {"preset": "sharegpt"}}),
        ))
        .await;
    let id = job["id"].as_str().unwrap().to_string();
    let link = job["manifest_url"].as_str().unwrap().to_string();
    // The manifest the service serves carries a fresh link per image file.
    let served = json_of(reqwest::get(&link).await.unwrap()).await;
    let files = served["images"]["files"].as_array().unwrap();
    assert!(!files.is_empty(), "{served}");
    let first = files[0]["url"].as_str().unwrap();
    assert!(
        first.contains("/files/images/") && first.contains("signature="),
        "{first}"
    );
    let got = reqwest::get(first).await.unwrap();
    assert_eq!(got.status(), 200);
    let bytes = got.bytes().await.unwrap();
    assert_eq!(
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)),
        files[0]["sha256"].as_str().unwrap()
    );
    let (ok, text) = verify_cli(&link, false);
    assert!(ok && text.contains("intact"), "{text}");
    // A damaged image file where the service keeps it is named.
    let kept = server.data_dir.join("files").join(&id);
    let name = files[0]["path"].as_str().unwrap();
    let mut b = std::fs::read(kept.join(name)).unwrap();
    let last = b.len() - 1;
    b[last] ^= 1;
    std::fs::write(kept.join(name), b).unwrap();
    let (ok, text) = verify_cli(&link, false);
    assert!(!ok && text.contains(name), "{text}");
}
