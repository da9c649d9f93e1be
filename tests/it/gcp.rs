//! GCS under an impersonated customer account, against a loopback fake of
//! the Google endpoints the flow calls — STS token exchange (for an
//! `external_account` file with a file-sourced subject token), IAM
//! Credentials `generateAccessToken` and `signBlob` — and of the GCS XML
//! API object_store uses. The fake checks every request (audience, subject
//! token type and value, target principal, scope, lifetime, bearer tokens)
//! and records what was wrong; signed links are checked by recomputing the
//! V4 canonical request. No GCS emulator that accepts object_store's
//! uploads runs here (see README), hence the fake.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use nusomi_export::dest::{BaseIdentity, ImpersonatedAccount, ImpersonatedSigner};
use object_store::signer::Signer;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const AUDIENCE: &str =
    "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/pool/providers/aws";
const SUBJECT: &str = "subject-token-from-the-oidc-file";
const STS_TOKEN: &str = "sts-federated-token";
const SA: &str = "nusomi-export@acme-prod.iam.gserviceaccount.com";
const SA_TOKEN: &str = "impersonated-customer-token";
const SIGNING_KEY: &[u8] = b"the fake's signBlob key";

#[derive(Default)]
struct Fake {
    objects: Mutex<BTreeMap<String, Vec<u8>>>,
    problems: Mutex<Vec<String>>,
    calls: Mutex<BTreeMap<&'static str, usize>>,
}

impl Fake {
    fn problem(&self, p: String) {
        self.problems.lock().unwrap().push(p);
    }
    fn count(&self, what: &'static str) {
        *self.calls.lock().unwrap().entry(what).or_default() += 1;
    }
    fn calls(&self, what: &str) -> usize {
        self.calls.lock().unwrap().get(what).copied().unwrap_or(0)
    }
}

fn hmac(data: &[u8]) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(SIGNING_KEY).unwrap();
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

fn strict(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The V4 string to sign of a signed link, recomputed from the request.
fn string_to_sign(method: &str, path: &str, query: &[(String, String)], host: &str) -> String {
    let mut q: Vec<&(String, String)> = query
        .iter()
        .filter(|(k, _)| k != "X-Goog-Signature")
        .collect();
    q.sort();
    let q = q
        .iter()
        .map(|(k, v)| format!("{}={}", strict(k), strict(v)))
        .collect::<Vec<_>>()
        .join("&");
    let canonical = format!("{method}\n{path}\n{q}\nhost:{host}\n\nhost\nUNSIGNED-PAYLOAD");
    let date = &query.iter().find(|(k, _)| k == "X-Goog-Date").unwrap().1;
    format!(
        "GOOG4-RSA-SHA256\n{date}\n{}/auto/storage/goog4_request\n{}",
        &date[..8],
        hex::encode(Sha256::digest(canonical.as_bytes()))
    )
}

fn json_response(v: Value) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        v.to_string(),
    )
        .into_response()
}

async fn handle(
    fake: Arc<Fake>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let query: Vec<(String, String)> =
        url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    let q = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_string();
    if path == "/sts/v1/token" {
        fake.count("sts");
        let form: BTreeMap<String, String> = url::form_urlencoded::parse(&body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        for (k, want) in [
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("audience", AUDIENCE),
            ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
            ("subject_token", SUBJECT),
            (
                "requested_token_type",
                "urn:ietf:params:oauth:token-type:access_token",
            ),
            ("scope", "https://www.googleapis.com/auth/cloud-platform"),
        ] {
            if form.get(k).map(String::as_str) != Some(want) {
                fake.problem(format!("sts: {k} = {:?}, want {want:?}", form.get(k)));
            }
        }
        return json_response(json!({"access_token": STS_TOKEN, "issued_token_type":
            "urn:ietf:params:oauth:token-type:access_token", "token_type": "Bearer", "expires_in": 3600}));
    }
    if let Some(rest) = path.strip_prefix("/iam/v1/projects/-/serviceAccounts/") {
        let (account, op) = rest.split_once(':').unwrap_or((rest, ""));
        if account != SA {
            fake.problem(format!("iam: target principal {account}, want {SA}"));
        }
        if bearer != STS_TOKEN {
            fake.problem(format!(
                "iam {op}: bearer {bearer:?} is not the base identity's"
            ));
        }
        let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        return match op {
            "generateAccessToken" => {
                fake.count("generateAccessToken");
                if req["scope"] != json!(["https://www.googleapis.com/auth/devstorage.read_write"])
                {
                    fake.problem(format!("generateAccessToken: scope {}", req["scope"]));
                }
                if req["lifetime"] != "3600s" {
                    fake.problem(format!("generateAccessToken: lifetime {}", req["lifetime"]));
                }
                let expires = chrono::Utc::now() + chrono::Duration::hours(1);
                json_response(json!({"accessToken": SA_TOKEN, "expireTime": expires.to_rfc3339()}))
            }
            "signBlob" => {
                fake.count("signBlob");
                let b64 = base64::engine::general_purpose::STANDARD;
                let payload = b64
                    .decode(req["payload"].as_str().unwrap_or(""))
                    .unwrap_or_default();
                json_response(json!({"keyId": "k1", "signedBlob": b64.encode(hmac(&payload))}))
            }
            other => {
                fake.problem(format!("iam: unknown method {other}"));
                StatusCode::NOT_FOUND.into_response()
            }
        };
    }
    let decoded = percent_decode(&path);
    let Some(rest) = decoded.strip_prefix("/gcs/my-bucket") else {
        fake.problem(format!("unexpected request {method} {path}"));
        return StatusCode::NOT_FOUND.into_response();
    };
    // GCS: the impersonated token, or a valid V4 signature on a GET.
    if let Some(sig) = q("X-Goog-Signature") {
        let host = headers
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let sts = string_to_sign(method.as_str(), &path, &query, host);
        fake.count("signed GET");
        if hex::encode(hmac(sts.as_bytes())) != sig || method != Method::GET {
            fake.problem(format!("bad signature on {method} {path}"));
            return StatusCode::FORBIDDEN.into_response();
        }
        if !q("X-Goog-Credential").is_some_and(|c| c.starts_with(&format!("{SA}/"))) {
            fake.problem(format!("link credential {:?}", q("X-Goog-Credential")));
        }
    } else if bearer != SA_TOKEN {
        fake.problem(format!(
            "gcs {method} {path}: bearer {bearer:?} is not the impersonated token"
        ));
        return StatusCode::UNAUTHORIZED.into_response();
    } else {
        fake.count("gcs");
    }
    let name = rest.trim_start_matches('/').to_string();
    let mut objects = fake.objects.lock().unwrap();
    let meta = |len: usize| {
        [
            ("etag", "\"e1\"".to_string()),
            ("last-modified", "Sun, 29 Nov 2026 00:00:00 GMT".to_string()),
            ("x-goog-generation", "1".to_string()),
            ("content-length", len.to_string()),
        ]
    };
    match method {
        Method::GET if name.is_empty() => {
            let prefix = q("prefix").unwrap_or_default();
            let delimiter = q("delimiter");
            let mut contents = String::new();
            let mut prefixes = std::collections::BTreeSet::new();
            for (k, v) in objects.iter().filter(|(k, _)| k.starts_with(&prefix)) {
                match delimiter.as_deref().and_then(|d| k[prefix.len()..].find(d).map(|i| (d, i))) {
                    Some((d, i)) => {
                        prefixes.insert(format!("{}{}", &k[..prefix.len() + i], d));
                    }
                    None => contents.push_str(&format!(
                        "<Contents><Key>{k}</Key><Size>{}</Size><LastModified>2026-11-29T00:00:00.000Z</LastModified><ETag>\"e1\"</ETag></Contents>",
                        v.len()
                    )),
                }
            }
            let prefixes: String = prefixes
                .iter()
                .map(|p| format!("<CommonPrefixes><Prefix>{p}</Prefix></CommonPrefixes>"))
                .collect();
            let xml = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult><Name>my-bucket</Name>{contents}{prefixes}<IsTruncated>false</IsTruncated></ListBucketResult>");
            (StatusCode::OK, [("content-type", "application/xml")], xml).into_response()
        }
        Method::PUT => {
            let create = headers
                .get("x-goog-if-generation-match")
                .is_some_and(|v| v == "0");
            if create && objects.contains_key(&name) {
                return StatusCode::PRECONDITION_FAILED.into_response();
            }
            objects.insert(name, body.to_vec());
            let mut h = HeaderMap::new();
            for (k, v) in meta(0).into_iter().take(3) {
                h.insert(k, v.parse().unwrap());
            }
            (StatusCode::OK, h).into_response()
        }
        Method::GET | Method::HEAD => match objects.get(&name) {
            Some(v) => {
                let mut h = HeaderMap::new();
                for (k, val) in meta(v.len()) {
                    h.insert(k, val.parse().unwrap());
                }
                let body = if method == Method::GET {
                    v.clone()
                } else {
                    Vec::new()
                };
                (StatusCode::OK, h, body).into_response()
            }
            None => StatusCode::NOT_FOUND.into_response(),
        },
        Method::DELETE => match objects.remove(&name) {
            Some(_) => StatusCode::NO_CONTENT.into_response(),
            None => StatusCode::NOT_FOUND.into_response(),
        },
        other => {
            fake.problem(format!("gcs: unexpected {other} {path}"));
            StatusCode::METHOD_NOT_ALLOWED.into_response()
        }
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Starts the fake on a free loopback port; returns its base URL.
async fn start_fake() -> (String, Arc<Fake>) {
    let fake = Arc::new(Fake::default());
    let f = Arc::clone(&fake);
    let app = axum::Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let f = Arc::clone(&f);
            async move { handle(f, method, uri, headers, body).await }
        },
    );
    (crate::support::serve_loopback(app).await, fake)
}

/// An `external_account` file whose subject token comes from a file.
fn external_account(dir: &std::path::Path, base: &str) -> std::path::PathBuf {
    let token = dir.join("oidc-token");
    std::fs::write(&token, SUBJECT).unwrap();
    let file = dir.join("external-account.json");
    std::fs::write(
        &file,
        json!({"type": "external_account", "audience": AUDIENCE,
               "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
               "token_url": format!("{base}/sts/v1/token"),
               "credential_source": {"file": token}})
        .to_string(),
    )
    .unwrap();
    file
}

#[tokio::test]
async fn the_products_gcs_example_exports_under_the_impersonated_account() {
    let (base, fake) = start_fake().await;
    let (tmp, store) = crate::support::store_dir(89, 2).await;
    let creds = external_account(tmp.path(), &base);
    let spec_file = tmp.path().join("spec.json");
    std::fs::write(
        &spec_file,
        crate::support::spec_json(
            "jsonl",
            json!({"shard_size_bytes": 64 * 1024,
                   "destination": {"kind": "gcs", "bucket": "my-bucket", "prefix": "nusomi/v1/",
                                   "service_account": SA}}),
        )
        .to_string(),
    )
    .unwrap();
    // The fake runs on this test's runtime: the CLI is awaited, not blocked on.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_nusomi"))
        .args(["export", "create", "--json", "--store", &store])
        .arg(&spec_file)
        .env("GOOGLE_APPLICATION_CREDENTIALS", &creds)
        .env("GOOGLE_BASE_URL", format!("{base}/gcs"))
        .env("NUSOMI_GCP_IAM_URL", format!("{base}/iam"))
        .env("NUSOMI_MAX_RETRIES", "0")
        .env_remove("GOOGLE_SERVICE_ACCOUNT")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let problems = fake.problems.lock().unwrap().clone();
    assert!(problems.is_empty(), "{problems:#?}");
    let job: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        job["manifest_url"],
        "gs://my-bucket/nusomi/v1/manifest.json"
    );
    let objects = fake.objects.lock().unwrap().clone();
    let manifest: Value = serde_json::from_slice(&objects["nusomi/v1/manifest.json"]).unwrap();
    assert!(manifest["shard_count"].as_u64().unwrap() >= 2, "{manifest}");
    for s in manifest["shards"].as_array().unwrap() {
        let bytes = &objects[&format!("nusomi/v1/{}", s["path"].as_str().unwrap())];
        assert_eq!(hex::encode(Sha256::digest(bytes)), s["sha256"]);
    }
    // One federation and one impersonation served the whole export (cached).
    assert_eq!(fake.calls("sts"), 1);
    assert_eq!(fake.calls("generateAccessToken"), 1);
    assert!(
        fake.calls("gcs") > 4,
        "every GCS call carried the impersonated token"
    );
    for secret in [SUBJECT, STS_TOKEN, SA_TOKEN] {
        assert!(!stderr.contains(secret) && !String::from_utf8_lossy(&out.stdout).contains(secret));
        assert!(!String::from_utf8_lossy(&objects["nusomi/v1/manifest.json"]).contains(secret));
    }
}

#[tokio::test]
async fn links_under_impersonation_are_v4_signed_through_sign_blob() {
    let (base, fake) = start_fake().await;
    let tmp = tempfile::TempDir::new().unwrap();
    let creds = external_account(tmp.path(), &base);
    let identity = BaseIdentity::external_from_file(creds.to_str().unwrap())
        .unwrap()
        .expect("an external_account file");
    let account = Arc::new(ImpersonatedAccount::new(
        SA,
        identity,
        &format!("{base}/iam"),
    ));
    fake.objects.lock().unwrap().insert(
        "exports/a b/shard-000000.tar".into(),
        b"shard bytes".to_vec(),
    );
    let signer = ImpersonatedSigner::new(Arc::clone(&account), &format!("{base}/gcs"), "my-bucket");
    let url = signer
        .signed_url(
            http::Method::GET,
            &object_store::path::Path::from_iter(["exports", "a b", "shard-000000.tar"]),
            Duration::from_secs(600),
        )
        .await
        .unwrap();
    assert_eq!(fake.calls("signBlob"), 1);
    let q: BTreeMap<String, String> = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    assert_eq!(q["X-Goog-Algorithm"], "GOOG4-RSA-SHA256");
    assert_eq!(q["X-Goog-Expires"], "600");
    assert_eq!(q["X-Goog-SignedHeaders"], "host");
    assert!(q["X-Goog-Credential"].starts_with(&format!("{SA}/")));
    // The fake recomputes the canonical request and checks the signature.
    let got = reqwest::get(url.clone()).await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.unwrap().as_ref(), b"shard bytes");
    // A link changed after signing is refused.
    let tampered = url
        .to_string()
        .replace("X-Goog-Expires=600", "X-Goog-Expires=601");
    assert_eq!(reqwest::get(tampered).await.unwrap().status(), 403);
    let problems = fake.problems.lock().unwrap().clone();
    assert_eq!(problems.len(), 1, "only the tampered link: {problems:#?}");
    // More than 7 days is refused before anything is signed.
    let long = signer
        .signed_url(
            http::Method::GET,
            &object_store::path::Path::from("x"),
            Duration::from_secs(8 * 86400),
        )
        .await;
    assert!(long.is_err());
    assert_eq!(fake.calls("signBlob"), 1);
}
