//! Destinations against real servers on 127.0.0.1, started by
//! `scripts/test.sh` (which runs these ignored tests): SeaweedFS (S3
//! put/multipart/list, presigned links really checked, STS AssumeRole with
//! ExternalId), moto (STS AssumeRole as a second peer, S3), Azurite (Azure
//! Blob, SAS links really checked). GCS has no local server that accepts
//! object_store's uploads: its configuration and V4 link signing are tested
//! offline here (not ignored).

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use nusomi_export::dest::ShardLinks;
use nusomi_export::dest::{AssumedRole, DestConfig, ExportTarget};
use nusomi_export::sink::Manifest;
use nusomi_export::spec::{Destination, ExportSpec};
use nusomi_export::store::{SealOptions, SealedStore};
use nusomi_export::Export;
use object_store::CredentialProvider;
use serde_json::json;
use sha2::{Digest, Sha256};
use tempfile::TempDir;

use crate::support::{sealed_memory_store, spec, with_param, write_session};

fn env(k: &str) -> String {
    std::env::var(k).unwrap_or_else(|_| panic!("{k} is not set: run scripts/test.sh"))
}

fn nonce() -> String {
    format!(
        "{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

async fn http_get(url: &str) -> (u16, Vec<u8>) {
    let r = reqwest::get(url).await.expect("GET");
    let status = r.status().as_u16();
    (status, r.bytes().await.unwrap().to_vec())
}

/// Downloads every link of the manifest and checks size and SHA-256.
async fn links_download_and_match(m: &Manifest) {
    assert!(m.links_expire_at.is_some());
    for s in &m.shards {
        let url = s.url.as_deref().expect("a link per shard");
        let (status, body) = http_get(url).await;
        assert_eq!(status, 200, "{url}");
        assert_eq!(body.len() as u64, s.bytes);
        assert_eq!(hex::encode(Sha256::digest(&body)), s.sha256);
    }
}

/// Reads every shard back through the target; sizes and hashes match.
async fn shards_match(t: &ExportTarget, m: &Manifest) {
    use object_store::ObjectStoreExt;
    for s in &m.shards {
        let b = t
            .store
            .get(&t.prefix.clone().join(s.path.as_str()))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(b.len() as u64, s.bytes, "{}", s.path);
        assert_eq!(hex::encode(Sha256::digest(&b)), s.sha256, "{}", s.path);
    }
}

/// The same URL with one character of the named query parameter changed.
fn tamper(url: &str, param: &str) -> String {
    with_param(url, param, |v| {
        let mut c: Vec<char> = v.chars().collect();
        let i = c.len() / 2;
        c[i] = if c[i] == 'a' { 'b' } else { 'a' };
        c.into_iter().collect()
    })
}

fn s3_storage(prefix: &str) -> Destination {
    Destination::S3 {
        bucket: "nusomi-test".into(),
        prefix: prefix.into(),
        region: Some("us-east-1".into()),
        role_arn: None,
        endpoint: Some(env("NUSOMI_TEST_S3_ENDPOINT")),
    }
}

#[tokio::test]
#[ignore = "needs SeaweedFS: run scripts/test.sh"]
async fn s3_multipart_export_with_presigned_links_checked_by_seaweedfs() {
    let (_tmp, store) = sealed_memory_store(47, 3).await;
    let cfg = DestConfig {
        signed_storage: s3_storage(&format!("signed-{}", nonce())),
        link_ttl: Duration::from_secs(600),
        // Parts of 64 KiB: every shard of 160 KiB is a multipart upload.
        part_bytes: 64 * 1024,
        ..Default::default()
    };
    let spec = spec(
        "parquet",
        json!({"shard_size_bytes": 160 * 1024, "destination": json!({"kind": "signed_url"})}),
    );
    let t = ExportTarget::open(&Destination::SignedUrl, "exp_S3LINKS", &cfg).unwrap();
    let out = Export::new(&store, &spec)
        .with_target(t.clone())
        .await
        .unwrap();
    assert!(out.manifest.shard_count >= 2);
    links_download_and_match(&out.manifest).await;
    // The manifest link works and serves the manifest.
    let (status, body) = http_get(&out.manifest_url).await;
    assert_eq!(status, 200);
    let served: Manifest = serde_json::from_slice(&body).unwrap();
    assert_eq!(served.digest, out.manifest.digest);
    // Tampered signature, or a tampered expiry: refused.
    let first = out.manifest.shards[0].url.clone().unwrap();
    assert_eq!(http_get(&tamper(&first, "X-Amz-Signature")).await.0, 403);
    let longer = with_param(&first, "X-Amz-Expires", |_| "604800".into());
    assert_eq!(
        http_get(&longer).await.0,
        403,
        "a lengthened expiry must be refused"
    );

    // Expired: links of 1 s, fetched after 2.5 s.
    let short = DestConfig {
        link_ttl: Duration::from_secs(1),
        signed_storage: s3_storage(&format!("signed-{}", nonce())),
        ..cfg.clone()
    };
    let t = ExportTarget::open(&Destination::SignedUrl, "exp_S3EXPIRED", &short).unwrap();
    let out = Export::new(&store, &spec)
        .with_target(t.clone())
        .await
        .unwrap();
    let url = out.manifest.shards[0].url.clone().unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        http_get(&url).await.0,
        403,
        "an expired link must be refused"
    );
}

/// Seals a few sessions into a store folder for the CLI.
async fn cli_store() -> (TempDir, String) {
    let tmp = TempDir::new().unwrap();
    let root = tmp.path().join("store");
    let store = SealedStore::open(root.to_str().unwrap()).await.unwrap();
    for i in 0..3 {
        let (_, dir) = write_session(tmp.path(), 53, i);
        store.seal(&dir, &SealOptions::default()).await.unwrap();
    }
    let root = root.display().to_string();
    (tmp, root)
}

fn export_cli(
    store: &str,
    spec: &serde_json::Value,
    dir: &std::path::Path,
    envs: &[(&str, &str)],
) -> (bool, String, String) {
    let path = dir.join(format!("spec-{}.json", nonce()));
    std::fs::write(&path, spec.to_string()).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nusomi"));
    cmd.args(["export", "create", "--store", store, "--json"])
        .arg(&path);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
#[ignore = "needs SeaweedFS with STS: run scripts/test.sh"]
async fn s3_assume_role_on_seaweedfs_and_no_secret_leaks() {
    let (tmp, root) = cli_store().await;
    let reader = env("NUSOMI_TEST_S3_READER");
    let (key, secret) = reader.split_once(':').unwrap();
    let endpoint = env("NUSOMI_TEST_S3_ENDPOINT");
    let prefix = format!("role-{}", nonce());
    let dest = |role: bool, prefix: &str| {
        let mut d = json!({"kind": "s3", "bucket": "nusomi-test", "prefix": prefix,
                           "region": "us-east-1", "endpoint": endpoint});
        if role {
            d["role_arn"] = json!("arn:aws:iam::000000000000:role/exporter");
        }
        json!({"workflow": ["process_invoice", "triage_ticket", "update_crm_record", "book_travel", "reconcile_payments"],
               "format": "webdataset", "as_of": "2030-01-01T00:00:00Z",
               "frame_sampling": {"mode": "all"}, "destination": d})
    };
    let base = [
        ("AWS_ACCESS_KEY_ID", key),
        ("AWS_SECRET_ACCESS_KEY", secret),
    ];
    // Read-only base credentials cannot write by themselves…
    let (ok, _, err) = export_cli(&root, &dest(false, &prefix), tmp.path(), &base);
    assert!(!ok, "the read-only identity must not be able to write");
    assert!(!err.contains(secret), "stderr leaks the secret: {err}");
    // …but the role they assume with the workspace's external id can.
    let mut with_ws = base.to_vec();
    with_ws.push(("NUSOMI_WORKSPACE_ID", "ws_nusomi_test"));
    let (ok, stdout, err) = export_cli(&root, &dest(true, &prefix), tmp.path(), &with_ws);
    assert!(ok, "export through the assumed role failed: {err}");
    let job: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        job["manifest_url"],
        format!("s3://nusomi-test/{prefix}/manifest.json")
    );
    assert!(job["rows"].as_u64().unwrap() > 0);
    for s in [key, secret] {
        assert!(!stdout.contains(s), "the job object leaks credentials");
    }
    // The manifest is there (read with the CI identity) and holds no credential.
    let store = object_store::aws::AmazonS3Builder::from_env()
        .with_bucket_name("nusomi-test")
        .build()
        .unwrap();
    use object_store::ObjectStoreExt;
    let m = store
        .get(&object_store::path::Path::from(format!(
            "{prefix}/manifest.json"
        )))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let text = String::from_utf8(m.to_vec()).unwrap();
    assert!(!text.contains(secret) && !text.contains(key));
    // Wrong base credentials: STS refuses the signature; the error names
    // the role, never the secret.
    let bad_secret = "not-the-secret-0123456789abcdef";
    let wrong = [
        ("AWS_ACCESS_KEY_ID", key),
        ("AWS_SECRET_ACCESS_KEY", bad_secret),
        ("NUSOMI_WORKSPACE_ID", "ws_nusomi_test"),
    ];
    let (ok, _, err) = export_cli(
        &root,
        &dest(true, &format!("{prefix}-wrong")),
        tmp.path(),
        &wrong,
    );
    assert!(!ok, "a bad secret must be refused");
    assert!(err.contains("role/exporter"), "{err}");
    assert!(!err.contains(bad_secret), "stderr leaks the secret: {err}");
}

/// A loopback tap in front of `upstream`: forwards one connection at a time
/// and records what clients sent.
async fn tap(upstream: String) -> (String, Arc<std::sync::Mutex<Vec<u8>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let rec = Arc::clone(&seen);
    let up = upstream.trim_start_matches("http://").to_string();
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            let mut server = tokio::net::TcpStream::connect(&up).await.unwrap();
            let rec = Arc::clone(&rec);
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let (mut cr, mut cw) = client.split();
                let (mut sr, mut sw) = server.split();
                let to_server = async {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let n = cr.read(&mut buf).await.unwrap_or(0);
                        if n == 0 {
                            let _ = sw.shutdown().await;
                            break;
                        }
                        rec.lock().unwrap().extend_from_slice(&buf[..n]);
                        if sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                };
                let to_client = async {
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                    let _ = cw.shutdown().await;
                };
                tokio::join!(to_server, to_client);
            });
        }
    });
    (format!("http://{addr}"), seen)
}

/// A loopback proxy in front of `upstream` that answers every other new
/// connection with one `503 Slow Down` (after reading the whole request)
/// and forwards the rest; returns its URL and the number of 503s sent.
async fn flaky_proxy(upstream: String) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let refused = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&refused);
    let up = upstream.trim_start_matches("http://").to_string();
    tokio::spawn(async move {
        let mut n = 0usize;
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            n += 1;
            if n % 2 == 1 {
                let count = Arc::clone(&count);
                tokio::spawn(async move {
                    // Read the head, then the body by Content-Length.
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 8192];
                    let head_end = loop {
                        let k = client.read(&mut chunk).await.unwrap_or(0);
                        if k == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..k]);
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    let mut have = buf.len() - head_end;
                    while have < len {
                        let k = client.read(&mut chunk).await.unwrap_or(0);
                        if k == 0 {
                            return;
                        }
                        have += k;
                    }
                    count.fetch_add(1, Ordering::SeqCst);
                    let body = "<Error><Code>SlowDown</Code></Error>";
                    let _ = client
                        .write_all(
                            format!(
                                "HTTP/1.1 503 Service Unavailable\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                                body.len()
                            )
                            .as_bytes(),
                        )
                        .await;
                    let _ = client.shutdown().await;
                });
                continue;
            }
            let Ok(mut server) = tokio::net::TcpStream::connect(&up).await else {
                continue;
            };
            tokio::spawn(async move {
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            });
        }
    });
    (format!("http://{addr}"), refused)
}

#[tokio::test]
#[ignore = "needs SeaweedFS: run scripts/test.sh"]
async fn transient_503s_are_retried_and_the_export_is_unchanged() {
    let (_tmp, store) = sealed_memory_store(47, 3).await;
    let (proxy, refused) = flaky_proxy(env("NUSOMI_TEST_S3_ENDPOINT")).await;
    let prefix = format!("flaky-{}", nonce());
    let d = json!({"kind": "s3", "bucket": "nusomi-test", "prefix": prefix, "region": "us-east-1",
                   "endpoint": proxy});
    let flaky = spec(
        "parquet",
        json!({"shard_size_bytes": 160 * 1024, "destination": d}),
    );
    let cfg = DestConfig {
        part_bytes: 64 * 1024,
        // A new connection per request, so every other request meets a 503.
        client: object_store::ClientOptions::new().with_pool_max_idle_per_host(0),
        ..Default::default()
    };
    let t = ExportTarget::open(flaky.destination.as_ref().unwrap(), "exp_FLAKY", &cfg).unwrap();
    let out = Export::new(&store, &flaky)
        .with_target(t.clone())
        .await
        .unwrap();
    let served_503 = refused.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        served_503 >= 5,
        "the proxy refused only {served_503} requests"
    );
    shards_match(&t, &out.manifest).await;
    // The same shards as an export that met no errors.
    let tmp = tempfile::TempDir::new().unwrap();
    let calm = spec(
        "parquet",
        json!({"shard_size_bytes": 160 * 1024, "destination": json!({"kind": "local", "path": tmp.path()})}),
    );
    let t2 = ExportTarget::open(calm.destination.as_ref().unwrap(), "exp_CALM", &cfg).unwrap();
    let out2 = Export::new(&store, &calm)
        .with_target(t2.clone())
        .await
        .unwrap();
    assert_eq!(out.manifest.shards, out2.manifest.shards);
    eprintln!(
        "flaky S3: {served_503} requests answered 503 and retried; {} shards identical",
        out.manifest.shard_count
    );
}

#[tokio::test]
#[ignore = "needs moto: run scripts/test.sh"]
async fn the_workspace_id_goes_to_sts_as_external_id() {
    // SeaweedFS checks who may assume a role but does not evaluate
    // `sts:ExternalId` conditions, and moto checks no trust policy: so the
    // external id is checked on the wire, in the signed AssumeRole request.
    let (endpoint, seen) = tap(env("NUSOMI_TEST_MOTO")).await;
    let role = AssumedRole::new(
        "arn:aws:iam::123456789012:role/exporter",
        "ws_on_the_wire_42",
        "us-east-1",
        Some(endpoint),
        Duration::from_secs(300),
    );
    let c = role.get_credential().await.unwrap();
    assert!(c.token.is_some());
    let sent = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
    assert!(sent.contains("Action=AssumeRole"), "{sent}");
    assert!(sent.contains("ExternalId=ws_on_the_wire_42"), "{sent}");
    assert!(sent.contains("RoleSessionName=nusomi-export"), "{sent}");
    assert!(
        sent.contains("AWS4-HMAC-SHA256"),
        "the request is SigV4-signed"
    );
    // An export's session is named after it (the customer's CloudTrail
    // shows which export acted) and lasts what NUSOMI_ROLE_SESSION_SECS says.
    let (endpoint, seen) = tap(env("NUSOMI_TEST_MOTO")).await;
    let role = AssumedRole::new(
        "arn:aws:iam::123456789012:role/exporter",
        "ws_on_the_wire_42",
        "us-east-1",
        Some(endpoint),
        Duration::from_secs(300),
    )
    .with_session("exp_01KTESTSESSION", Some(Duration::from_secs(900)));
    role.get_credential().await.unwrap();
    let sent = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
    assert!(
        sent.contains("RoleSessionName=exp_01KTESTSESSION"),
        "{sent}"
    );
    assert!(sent.contains("DurationSeconds=900"), "{sent}");
}

#[tokio::test]
#[ignore = "needs SeaweedFS and moto with STS: run scripts/test.sh"]
async fn assumed_role_sessions_are_cached_and_renewed_before_expiry() {
    let peers = [
        (
            env("NUSOMI_TEST_S3_ENDPOINT"),
            "arn:aws:iam::000000000000:role/exporter",
        ),
        (
            env("NUSOMI_TEST_MOTO"),
            "arn:aws:iam::123456789012:role/exporter",
        ),
    ];
    for (endpoint, arn) in peers {
        // Renew when less than 5 min are left: a 1 h session is reused.
        let cached = AssumedRole::new(
            arn,
            "ws_nusomi_test",
            "us-east-1",
            Some(endpoint.clone()),
            Duration::from_secs(300),
        );
        let a = cached.get_credential().await.unwrap();
        let b = cached.get_credential().await.unwrap();
        assert_eq!(cached.sessions_started(), 1, "{endpoint}");
        assert_eq!(a.token, b.token);
        assert!(a.token.is_some(), "{endpoint}: an STS session token");
        let exp = cached.expires().await.expect("STS gives an expiry");
        assert!(exp > std::time::SystemTime::now() + Duration::from_secs(300));
        // Renew when less than 2 days are left: every call renews.
        let eager = AssumedRole::new(
            arn,
            "ws_nusomi_test",
            "us-east-1",
            Some(endpoint.clone()),
            Duration::from_secs(2 * 86400),
        );
        let a = eager.get_credential().await.unwrap();
        let b = eager.get_credential().await.unwrap();
        assert_eq!(eager.sessions_started(), 2, "{endpoint}");
        assert_ne!(a.key_id, b.key_id, "{endpoint}: a new session");
        assert!(!format!("{eager:?}").contains(&a.secret_key));
    }
}

#[tokio::test]
#[ignore = "needs moto: run scripts/test.sh"]
async fn s3_export_through_an_assumed_role_on_moto() {
    let (_tmp, store) = sealed_memory_store(47, 2).await;
    let moto = env("NUSOMI_TEST_MOTO");
    let bucket = format!("nusomi-moto-{}", nonce());
    let r = reqwest::Client::new()
        .put(format!("{moto}/{bucket}"))
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_success(),
        "create bucket on moto: {}",
        r.status()
    );
    let cfg = DestConfig {
        workspace_id: Some("ws_nusomi_test".into()),
        ..Default::default()
    };
    let d = json!({"kind": "s3", "bucket": bucket, "prefix": "exports/a", "region": "us-east-1",
                   "endpoint": moto, "role_arn": "arn:aws:iam::123456789012:role/exporter"});
    let spec = spec(
        "jsonl",
        json!({"shard_size_bytes": 160 * 1024, "destination": d}),
    );
    let t = ExportTarget::open(spec.destination.as_ref().unwrap(), "exp_MOTO", &cfg).unwrap();
    // What the service runs before it answers 202: assume the role, list.
    t.check().await.unwrap();
    let out = Export::new(&store, &spec)
        .with_target(t.clone())
        .await
        .unwrap();
    assert_eq!(
        out.manifest_url,
        format!("s3://{bucket}/exports/a/manifest.json")
    );
    // Read back through the same target: every shard matches its hash.
    shards_match(&t, &out.manifest).await;
}

#[tokio::test]
#[ignore = "needs Azurite: run scripts/test.sh"]
async fn azure_blob_export_and_sas_links_on_azurite() {
    let (_tmp, store) = sealed_memory_store(47, 3).await;
    let prefix = format!("exp-{}", nonce());
    let d = json!({"kind": "azure_blob", "account": "devstoreaccount1", "container": "nusomi-test",
                   "prefix": prefix});
    let spec_az = spec(
        "webdataset",
        json!({"shard_size_bytes": 160 * 1024, "destination": d}),
    );
    let cfg = DestConfig {
        part_bytes: 64 * 1024,
        ..Default::default()
    };
    let t = ExportTarget::open(spec_az.destination.as_ref().unwrap(), "exp_AZ", &cfg).unwrap();
    let out = Export::new(&store, &spec_az)
        .with_target(t.clone())
        .await
        .unwrap();
    assert_eq!(
        out.manifest_url,
        format!("az://devstoreaccount1/nusomi-test/{prefix}/manifest.json")
    );
    assert!(out.manifest.shard_count >= 2);
    shards_match(&t, &out.manifest).await;
    // The same export again is a no-op answering the same manifest; another
    // spec into the same prefix is refused (the manifest is there).
    let again = Export::new(&store, &spec_az)
        .with_target(t.clone())
        .await
        .unwrap();
    assert_eq!(again.manifest, out.manifest);
    let mut other = spec_az.raw.clone();
    other["tag"] = json!("another export");
    let other = ExportSpec::parse(&other, spec_az.as_of).unwrap();
    let refused = Export::new(&store, &other).with_target(t.clone()).await;
    assert!(refused
        .unwrap_err()
        .to_string()
        .contains("already holds a finished export"));

    // signed_url kept on Azure: SAS links, checked by Azurite.
    let cfg = DestConfig {
        signed_storage: Destination::AzureBlob {
            account: "devstoreaccount1".into(),
            container: "nusomi-test".into(),
            prefix: format!("signed-{}", nonce()),
            tenant_id: None,
        },
        link_ttl: Duration::from_secs(600),
        ..Default::default()
    };
    let spec_signed = spec(
        "jsonl",
        json!({"shard_size_bytes": 160 * 1024, "destination": json!({"kind": "signed_url"})}),
    );
    let t = ExportTarget::open(&Destination::SignedUrl, "exp_AZSAS", &cfg).unwrap();
    let out = Export::new(&store, &spec_signed)
        .with_target(t.clone())
        .await
        .unwrap();
    links_download_and_match(&out.manifest).await;
    let first = out.manifest.shards[0].url.clone().unwrap();
    assert_eq!(http_get(&tamper(&first, "sig")).await.0, 403);
}

#[tokio::test]
async fn gcs_destination_configuration_and_v4_links_offline() {
    let key_path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/gcs-test-service-account.json"
    );
    let key_json = std::fs::read_to_string(key_path).unwrap();
    let key: serde_json::Value = serde_json::from_str(&key_json).unwrap();
    let private = key["private_key"].as_str().unwrap();
    let body_line = private.lines().nth(1).unwrap();
    // From a key file and from the key JSON itself.
    for sa in [key_path.to_string(), key_json.clone()] {
        let d = Destination::Gcs {
            bucket: "nusomi-bucket".into(),
            prefix: "exports/x".into(),
            service_account: Some(sa),
        };
        let t = ExportTarget::open(&d, "exp_GCS", &DestConfig::default()).unwrap();
        assert_eq!(
            t.url_of("manifest.json"),
            "gs://nusomi-bucket/exports/x/manifest.json"
        );
        assert!(!format!("{t:?}").contains(body_line), "Debug leaks the key");
    }
    // signed_url kept on GCS: V4 links signed locally with the key.
    let cfg = DestConfig {
        signed_storage: Destination::Gcs {
            bucket: "nusomi-bucket".into(),
            prefix: "signed".into(),
            service_account: Some(key_path.into()),
        },
        link_ttl: Duration::from_secs(900),
        ..Default::default()
    };
    let t = ExportTarget::open(&Destination::SignedUrl, "exp_GCSLINK", &cfg).unwrap();
    let links = t.links.clone().unwrap();
    let (url, _) = links.link("shard-000000.parquet").await.unwrap();
    let u = url::Url::parse(&url).unwrap();
    assert!(
        u.path()
            .ends_with("/nusomi-bucket/signed/exp_GCSLINK/shard-000000.parquet"),
        "{url}"
    );
    let q: std::collections::HashMap<_, _> = u.query_pairs().into_owned().collect();
    assert_eq!(q["X-Goog-Algorithm"], "GOOG4-RSA-SHA256");
    assert_eq!(q["X-Goog-Expires"], "900");
    assert!(q["X-Goog-Credential"].starts_with("exporter@nusomi-test.iam.gserviceaccount.com/"));
    assert_eq!(
        q["X-Goog-Signature"].len(),
        512,
        "an RSA-2048 signature in hex"
    );
    assert!(!url.contains(body_line));
}

#[tokio::test]
#[ignore = "needs SeaweedFS with STS: run scripts/test.sh"]
async fn a_role_the_service_may_not_assume_is_refused_at_post_with_the_trust_policy_hint() {
    let (tmp, store) = crate::support::store_dir(88, 1).await;
    let server = crate::support::Server::start(&store, &tmp.path().join("data")).await;
    let endpoint = env("NUSOMI_TEST_S3_ENDPOINT");
    let post = |role: &str| {
        crate::support::spec_json(
            "jsonl",
            json!({"destination": {"kind": "s3", "bucket": "nusomi-test", "prefix": format!("post-{}", nonce()),
                   "region": "us-east-1", "endpoint": endpoint,
                   "role_arn": format!("arn:aws:iam::000000000000:role/{role}")}}),
        )
    };
    // SeaweedFS's `stranger` role trusts another principal only.
    let (s, body) = server.post(&post("stranger")).await;
    assert_eq!(s, 400, "{body}");
    let e = &body["errors"][0];
    assert_eq!(e["field"], "destination.role_arn", "{body}");
    let m = e["message"].as_str().unwrap();
    for needle in [
        "cannot assume role arn:aws:iam::000000000000:role/stranger",
        "with external id \"default\"",
        "trust policy",
        "\"sts:ExternalId\":\"default\"",
        "\"Action\":\"sts:AssumeRole\"",
    ] {
        assert!(m.contains(needle), "{needle:?} not in {m}");
    }
    let secret = std::env::var("AWS_SECRET_ACCESS_KEY").unwrap();
    assert!(!m.contains(&secret), "the answer leaks the secret");
    // Nothing was queued.
    let (_, list) = server.get("/v1/exports").await;
    assert_eq!(list["data"].as_array().map(Vec::len), Some(0), "{list}");
    // The role that trusts the service passes the check and is queued.
    let (s, body) = server.post(&post("exporter")).await;
    assert_eq!(s, 202, "{body}");
    assert!(body["resolved"]["destination"]["role_arn"]
        .as_str()
        .unwrap()
        .ends_with("role/exporter"));
    let done = server
        .wait_final(body["id"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["resolved"], body["resolved"]);
}
