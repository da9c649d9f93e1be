//! `azure_blob` destinations with a customer's `tenant_id`: the service's
//! multi-tenant Entra ID app gets its token from that tenant (client secret
//! or federated token), and the token is what reaches the storage. A
//! loopback fake of the Entra ID token endpoint checks the tenant in the
//! URL and the request body; a fake Blob endpoint checks the bearer token
//! (Azurite accepts OAuth over HTTPS only, so it cannot stand in here).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use nusomi_export::dest::{AzureApp, DestConfig, ExportTarget, Secret};
use nusomi_export::spec::Destination;
use serde_json::json;

const TENANT: &str = "8f3c2a6e-1b2d-4c5e-9f70-0a1b2c3d4e5f";
const CLIENT_ID: &str = "nusomi-multitenant-app";
const SECRET: &str = "app-secret-value-0123456789";
const ASSERTION: &str = "federated-assertion-jwt";
const TOKEN: &str = "entra-access-token-for-the-customer";

#[derive(Default)]
struct Fake {
    problems: Mutex<Vec<String>>,
    calls: Mutex<BTreeMap<String, usize>>,
}

async fn handle(
    fake: Arc<Fake>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let problem = |p: String| fake.problems.lock().unwrap().push(p);
    *fake.calls.lock().unwrap().entry(path.clone()).or_default() += 1;
    if let Some(rest) = path.strip_prefix("/entra/") {
        let (tenant, endpoint) = rest.split_once('/').unwrap_or((rest, ""));
        if endpoint != "oauth2/v2.0/token" || method != Method::POST {
            problem(format!("entra: unexpected {method} {path}"));
        }
        if tenant != TENANT {
            // Entra answers an unknown tenant like this.
            return (
                StatusCode::BAD_REQUEST,
                json!({"error": "invalid_tenant"}).to_string(),
            )
                .into_response();
        }
        let form: BTreeMap<String, String> = url::form_urlencoded::parse(&body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let want = |k: &str, v: &str| {
            if form.get(k).map(String::as_str) != Some(v) {
                problem(format!("entra: {k} = {:?}, want {v:?}", form.get(k)));
            }
        };
        want("client_id", CLIENT_ID);
        want("scope", "https://storage.azure.com/.default");
        want("grant_type", "client_credentials");
        match form.get("client_assertion") {
            Some(a) => {
                want(
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                );
                if a != ASSERTION {
                    problem(format!("entra: assertion {a:?}"));
                }
            }
            None => want("client_secret", SECRET),
        }
        return (
            StatusCode::OK,
            [("content-type", "application/json")],
            json!({"token_type": "Bearer", "expires_in": 3599, "access_token": TOKEN}).to_string(),
        )
            .into_response();
    }
    if path.starts_with("/blob/customeracct/exports") {
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if auth != format!("Bearer {TOKEN}") {
            problem(format!("blob: authorization {auth:?}"));
            return StatusCode::FORBIDDEN.into_response();
        }
        let xml = "<?xml version=\"1.0\" encoding=\"utf-8\"?><EnumerationResults ContainerName=\"exports\"><Blobs></Blobs><NextMarker/></EnumerationResults>";
        return (StatusCode::OK, [("content-type", "application/xml")], xml).into_response();
    }
    problem(format!("unexpected {method} {path}"));
    StatusCode::NOT_FOUND.into_response()
}

async fn start_fake() -> (String, Arc<Fake>) {
    let fake = Arc::new(Fake::default());
    let f = Arc::clone(&fake);
    let app = axum::Router::new().fallback(move |m: Method, u: Uri, h: HeaderMap, b: Bytes| {
        let f = Arc::clone(&f);
        async move { handle(f, m, u, h, b).await }
    });
    (crate::support::serve_loopback(app).await, fake)
}

fn destination(tenant: &str) -> Destination {
    Destination::AzureBlob {
        account: "customeracct".into(),
        container: "exports".into(),
        prefix: "nusomi/v1".into(),
        tenant_id: Some(tenant.into()),
    }
}

#[tokio::test]
async fn a_tenant_id_gets_the_token_from_that_tenant_and_it_reaches_the_storage() {
    let (base, fake) = start_fake().await;
    let tmp = tempfile::TempDir::new().unwrap();
    let assertion = tmp.path().join("federated-token");
    std::fs::write(&assertion, ASSERTION).unwrap();
    for federated in [false, true] {
        let cfg = DestConfig {
            azure_app: Some(AzureApp {
                client_id: CLIENT_ID.into(),
                client_secret: (!federated).then(|| Secret(SECRET.into())),
                federated_token_file: federated.then(|| assertion.to_str().unwrap().to_string()),
                authority_host: Some(format!("{base}/entra")),
            }),
            azure_endpoint: Some(format!("{base}/blob/customeracct")),
            ..Default::default()
        };
        assert!(
            !format!("{cfg:?}").contains(SECRET),
            "Debug shows the secret"
        );
        let t = ExportTarget::open(&destination(TENANT), "exp_AZ", &cfg).unwrap();
        t.check().await.unwrap();
        let problems = fake.problems.lock().unwrap().clone();
        assert!(problems.is_empty(), "federated={federated}: {problems:#?}");
        // Another tenant (one that did not consent): the check says so.
        let t =
            ExportTarget::open(&destination("contoso.onmicrosoft.com"), "exp_AZ", &cfg).unwrap();
        let e = t.check().await.unwrap_err().to_string();
        assert!(
            e.contains("cannot list az://customeracct/exports/nusomi/v1/"),
            "{e}"
        );
        assert!(!e.contains(SECRET) && !e.contains(ASSERTION), "{e}");
    }
    let calls = fake.calls.lock().unwrap().clone();
    assert_eq!(
        calls[&format!("/entra/{TENANT}/oauth2/v2.0/token")],
        2,
        "{calls:?}"
    );
}

#[tokio::test]
async fn a_tenant_id_without_a_service_app_and_a_key_for_another_account_are_refused() {
    let e = ExportTarget::open(&destination(TENANT), "exp_AZ", &DestConfig::default()).unwrap_err();
    assert!(e.to_string().contains("destination.tenant_id"), "{e}");
    assert!(e.to_string().contains("AZURE_CLIENT_ID"), "{e}");
    // The server's account key belongs to one account: not to the customer's.
    let tmp = tempfile::TempDir::new().unwrap();
    let spec = tmp.path().join("spec.json");
    std::fs::write(
        &spec,
        crate::support::spec_json(
            "jsonl",
            json!({"destination": {"kind": "azure_blob", "account": "customeracct", "container": "exports"}}),
        )
        .to_string(),
    )
    .unwrap();
    let store = tmp.path().join("store");
    std::fs::create_dir_all(&store).unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_nusomi"))
        .args(["export", "create", "--store", store.to_str().unwrap()])
        .arg(&spec)
        .env("AZURE_STORAGE_ACCOUNT_NAME", "serversownacct")
        .env("AZURE_STORAGE_ACCOUNT_KEY", "c2VydmVyLWtleQ==")
        .env_remove("AZURE_STORAGE_USE_EMULATOR")
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(
            "AZURE_STORAGE_ACCOUNT_KEY belongs to account \"serversownacct\", not \"customeracct\""
        ),
        "{err}"
    );
    assert!(!err.contains("c2VydmVyLWtleQ=="), "{err}");
}
