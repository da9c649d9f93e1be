//! Acting as a customer's Google service account: the service's own base
//! identity is exchanged through the IAM Credentials API for tokens of the
//! account a `gcs` destination names by e-mail (`service_account`), the
//! customer having granted the service `roles/iam.serviceAccountTokenCreator`
//! on it — the GCP form of AWS's role with an external id.
//!
//! * **Base identity** ([`BaseIdentity`]): an `external_account` file in
//!   `GOOGLE_APPLICATION_CREDENTIALS` (workload-identity federation: the
//!   subject token from a file or a URL is exchanged at the file's STS
//!   `token_url`, then optionally through its
//!   `service_account_impersonation_url`), else whatever object_store's
//!   default chain gives (a service-account key file, `authorized_user`
//!   credentials, the metadata server).
//! * **Impersonation** ([`ImpersonatedAccount`]): `generateAccessToken`
//!   (scope `devstorage.read_write`), cached and renewed before it expires,
//!   handed to object_store as its `CredentialProvider`.
//! * **Signed links** ([`ImpersonatedSigner`]): V4 signed URLs whose
//!   signature is the IAM Credentials `signBlob` of the string to sign
//!   (object_store can only sign with a key it holds).
//!
//! The IAM Credentials base URL is `https://iamcredentials.googleapis.com`
//! (`NUSOMI_GCP_IAM_URL` overrides it for the operator and tests). Tokens
//! and subject tokens never reach an error, a log or a record.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use base64::Engine;
use chrono::{DateTime, Utc};
use object_store::gcp::GcpCredential;
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::CredentialProvider;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

/// The scope of the tokens the base identity asks for.
const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";
/// The scope of the customer account's tokens: objects, nothing else.
const READ_WRITE: &str = "https://www.googleapis.com/auth/devstorage.read_write";
/// Default IAM Credentials API.
pub const IAM_CREDENTIALS_URL: &str = "https://iamcredentials.googleapis.com";
/// Tokens are renewed when less than this is left.
const RENEW_BEFORE: Duration = Duration::from_secs(300);

fn err(message: impl Into<String>) -> object_store::Error {
    object_store::Error::Generic {
        store: "GCS",
        source: message.into().into(),
    }
}

/// Sends `request` (one of the Google calls, named `what` in errors) and
/// returns its JSON answer; a refusal becomes an error with Google's own
/// reason (`error_description` of STS, `error.message` of IAM). reqwest's
/// `json` feature is not enabled: bodies are parsed here.
async fn post_json(request: reqwest::RequestBuilder, what: &str) -> Result<Value, String> {
    let got = request.send().await.map_err(|e| format!("{what}: {e}"))?;
    let status = got.status();
    let bytes = got
        .bytes()
        .await
        .map_err(|e| format!("{what}: unreadable answer: {e}"))?;
    let body: Value =
        serde_json::from_slice(&bytes).map_err(|e| format!("{what}: unreadable answer: {e}"))?;
    if !status.is_success() {
        let reason = body["error_description"]
            .as_str()
            .or(body["error"]["message"].as_str())
            .or(body["error"].as_str())
            .unwrap_or("");
        return Err(format!("{what} answers {status}: {reason}"));
    }
    Ok(body)
}

/// A bearer token and when it expires.
#[derive(Clone)]
struct Token {
    bearer: Arc<GcpCredential>,
    expires: SystemTime,
}

impl Token {
    fn fresh(&self) -> bool {
        self.expires
            .duration_since(SystemTime::now())
            .is_ok_and(|left| left > RENEW_BEFORE)
    }
}

/// A token kept until less than [`RENEW_BEFORE`] of it is left.
#[derive(Default)]
struct TokenCache(Mutex<Option<Token>>);

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenCache(..)")
    }
}

impl TokenCache {
    /// The kept token while fresh, else the one `fetch` gets (then kept).
    async fn get<F, Fut, E>(&self, fetch: F) -> Result<Token, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Token, E>>,
    {
        let mut slot = self.0.lock().await;
        if let Some(t) = slot.as_ref().filter(|t| t.fresh()) {
            return Ok(t.clone());
        }
        let t = fetch().await?;
        *slot = Some(t.clone());
        Ok(t)
    }
}

/// Where the subject token of an `external_account` file comes from.
#[derive(Debug, Clone)]
enum SubjectSource {
    File(String),
    Url {
        url: String,
        headers: Vec<(String, String)>,
    },
}

/// An `external_account` credential file (workload-identity federation).
#[derive(Debug, Clone)]
struct ExternalAccount {
    audience: String,
    subject_token_type: String,
    token_url: String,
    source: SubjectSource,
    /// `json`: the token is this field of a JSON document; else the text.
    json_field: Option<String>,
    impersonation_url: Option<String>,
}

impl ExternalAccount {
    fn parse(v: &Value, path: &str) -> Result<Self, String> {
        let s = |k: &str| v[k].as_str().map(str::to_string);
        let need = |k: &str| s(k).ok_or_else(|| format!("{path}: external_account lacks `{k}`"));
        let cs = &v["credential_source"];
        let source = if let Some(f) = cs["file"].as_str() {
            SubjectSource::File(f.to_string())
        } else if let Some(u) = cs["url"].as_str() {
            let headers = cs["headers"]
                .as_object()
                .map(|h| {
                    h.iter()
                        .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                        .collect()
                })
                .unwrap_or_default();
            SubjectSource::Url {
                url: u.to_string(),
                headers,
            }
        } else if cs.get("executable").is_some() || cs.get("environment_id").is_some() {
            return Err(format!(
                "{path}: executable- and AWS/Azure-sourced subject tokens are not supported yet \
                 (use a file or URL credential_source)"
            ));
        } else {
            return Err(format!("{path}: credential_source names no file or url"));
        };
        let json_field = (cs["format"]["type"] == "json")
            .then(|| {
                cs["format"]["subject_token_field_name"]
                    .as_str()
                    .map(str::to_string)
            })
            .flatten();
        Ok(ExternalAccount {
            audience: need("audience")?,
            subject_token_type: need("subject_token_type")?,
            token_url: need("token_url")?,
            source,
            json_field,
            impersonation_url: s("service_account_impersonation_url"),
        })
    }

    async fn subject_token(&self, http: &reqwest::Client) -> Result<String, String> {
        let raw = match &self.source {
            SubjectSource::File(f) => {
                std::fs::read_to_string(f).map_err(|e| format!("subject token file {f}: {e}"))?
            }
            SubjectSource::Url { url, headers } => {
                let mut r = http.get(url);
                for (k, v) in headers {
                    r = r.header(k, v);
                }
                let got = r
                    .send()
                    .await
                    .map_err(|e| format!("subject token URL: {e}"))?;
                if !got.status().is_success() {
                    return Err(format!("subject token URL answers {}", got.status()));
                }
                got.text()
                    .await
                    .map_err(|e| format!("subject token URL: {e}"))?
            }
        };
        match &self.json_field {
            Some(field) => {
                let v: Value = serde_json::from_str(&raw)
                    .map_err(|e| format!("subject token is not JSON: {e}"))?;
                v[field]
                    .as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("subject token JSON lacks `{field}`"))
            }
            None => Ok(raw.trim().to_string()),
        }
    }

    /// STS token exchange, then (if the file says so) impersonation of the
    /// federated service account.
    async fn token(&self, http: &reqwest::Client) -> Result<Token, String> {
        let subject = self.subject_token(http).await?;
        let form = [
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("audience", self.audience.as_str()),
            ("scope", CLOUD_PLATFORM),
            (
                "requested_token_type",
                "urn:ietf:params:oauth:token-type:access_token",
            ),
            ("subject_token_type", self.subject_token_type.as_str()),
            ("subject_token", subject.as_str()),
        ];
        let what = format!("STS token exchange at {}", self.token_url);
        let body = post_json(http.post(&self.token_url).form(&form), &what).await?;
        let access = body["access_token"]
            .as_str()
            .ok_or("STS token exchange: no access_token")?;
        let expires =
            SystemTime::now() + Duration::from_secs(body["expires_in"].as_u64().unwrap_or(3600));
        let sts = Token {
            bearer: Arc::new(GcpCredential {
                bearer: access.to_string(),
            }),
            expires,
        };
        match &self.impersonation_url {
            None => Ok(sts),
            Some(url) => generate_access_token(http, url, &sts.bearer.bearer, CLOUD_PLATFORM).await,
        }
    }
}

/// The service's own Google identity.
#[derive(Clone)]
pub enum BaseIdentity {
    /// Workload-identity federation from an `external_account` file.
    External(Arc<ExternalAccountSource>),
    /// object_store's default chain (key file, authorized user, metadata).
    Default(object_store::gcp::GcpCredentialProvider),
}

impl std::fmt::Debug for BaseIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BaseIdentity::External(_) => f.write_str("BaseIdentity::External"),
            BaseIdentity::Default(_) => f.write_str("BaseIdentity::Default"),
        }
    }
}

/// An `external_account` file with its cached token.
#[derive(Debug)]
pub struct ExternalAccountSource {
    account: ExternalAccount,
    http: reqwest::Client,
    cache: TokenCache,
}

impl BaseIdentity {
    /// The base identity from the environment: an `external_account`
    /// file in `GOOGLE_APPLICATION_CREDENTIALS`, else object_store's chain.
    pub fn from_env() -> Result<Self, String> {
        if let Ok(path) = std::env::var("GOOGLE_APPLICATION_CREDENTIALS") {
            if let Some(external) = Self::external_from_file(&path)? {
                return Ok(external);
            }
        }
        let store = object_store::gcp::GoogleCloudStorageBuilder::from_env()
            .with_bucket_name("nusomi-base-identity")
            .build()
            .map_err(|e| e.to_string())?;
        Ok(BaseIdentity::Default(Arc::clone(store.credentials())))
    }

    /// The `external_account` credentials in file `path` (`None`: the file
    /// holds another kind of credentials).
    pub fn external_from_file(path: &str) -> Result<Option<Self>, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        let v: Value = serde_json::from_str(&text).map_err(|e| format!("{path}: not JSON: {e}"))?;
        if v["type"] != "external_account" {
            return Ok(None);
        }
        Ok(Some(BaseIdentity::External(Arc::new(
            ExternalAccountSource {
                account: ExternalAccount::parse(&v, path)?,
                http: http_client(),
                cache: TokenCache::default(),
            },
        ))))
    }

    async fn bearer(&self) -> Result<String, String> {
        match self {
            BaseIdentity::Default(p) => p
                .get_credential()
                .await
                .map(|c| c.bearer.clone())
                .map_err(|e| e.to_string()),
            BaseIdentity::External(src) => {
                let t = src.cache.get(|| src.account.token(&src.http)).await?;
                Ok(t.bearer.bearer.clone())
            }
        }
    }
}

/// The token of an `external_account` file itself, as object_store's
/// credentials (no `service_account` e-mail in the destination).
#[derive(Debug)]
pub(super) struct FederatedCredential(pub(super) Arc<ExternalAccountSource>);

#[async_trait]
impl CredentialProvider for FederatedCredential {
    type Credential = GcpCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<GcpCredential>> {
        let bearer = BaseIdentity::External(Arc::clone(&self.0))
            .bearer()
            .await
            .map_err(|e| err(format!("workload-identity federation failed: {e}")))?;
        Ok(Arc::new(GcpCredential { bearer }))
    }
}

/// IAM Credentials `generateAccessToken` at `url` with `base` as bearer.
async fn generate_access_token(
    http: &reqwest::Client,
    url: &str,
    base: &str,
    scope: &str,
) -> Result<Token, String> {
    let request = http
        .post(url)
        .bearer_auth(base)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(json!({"scope": [scope], "lifetime": "3600s"}).to_string());
    let body = post_json(request, "generateAccessToken").await?;
    let token = body["accessToken"]
        .as_str()
        .ok_or("generateAccessToken: no accessToken")?;
    let expires = body["expireTime"]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| SystemTime::from(t.with_timezone(&Utc)))
        .unwrap_or_else(|| SystemTime::now() + Duration::from_secs(3600));
    Ok(Token {
        bearer: Arc::new(GcpCredential {
            bearer: token.to_string(),
        }),
        expires,
    })
}

/// Tokens of the customer's service account `email`, obtained with the
/// service's base identity.
pub struct ImpersonatedAccount {
    email: String,
    base: BaseIdentity,
    iam_url: String,
    http: reqwest::Client,
    cache: TokenCache,
}

impl std::fmt::Debug for ImpersonatedAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImpersonatedAccount")
            .field("email", &self.email)
            .field("iam_url", &self.iam_url)
            .finish_non_exhaustive()
    }
}

impl ImpersonatedAccount {
    /// Acts as `email` with `base`, through the IAM Credentials API at `iam_url`.
    pub fn new(email: &str, base: BaseIdentity, iam_url: &str) -> Self {
        ImpersonatedAccount {
            email: email.to_string(),
            base,
            iam_url: iam_url.trim_end_matches('/').to_string(),
            http: http_client(),
            cache: TokenCache::default(),
        }
    }

    /// The account acted as.
    pub fn email(&self) -> &str {
        &self.email
    }

    fn method_url(&self, method: &str) -> String {
        format!(
            "{}/v1/projects/-/serviceAccounts/{}:{method}",
            self.iam_url, self.email
        )
    }

    /// The IAM Credentials `signBlob` signature of `payload`, made by the
    /// customer's account on the service's behalf.
    pub async fn sign_blob(&self, payload: &[u8]) -> object_store::Result<Vec<u8>> {
        let base = self.base.bearer().await.map_err(|e| self.refused(&e))?;
        let b64 = base64::engine::general_purpose::STANDARD;
        let request = self
            .http
            .post(self.method_url("signBlob"))
            .bearer_auth(base)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(json!({"payload": b64.encode(payload)}).to_string());
        let body = post_json(request, "signBlob")
            .await
            .map_err(|e| self.refused(&e))?;
        let signed = body["signedBlob"]
            .as_str()
            .ok_or_else(|| self.refused("signBlob: no signedBlob"))?;
        b64.decode(signed)
            .map_err(|e| self.refused(&format!("signBlob: {e}")))
    }

    fn refused(&self, why: &str) -> object_store::Error {
        err(format!(
            "acting as service account {} failed (grant the service's identity \
             roles/iam.serviceAccountTokenCreator on it): {why}",
            self.email
        ))
    }
}

#[async_trait]
impl CredentialProvider for ImpersonatedAccount {
    type Credential = GcpCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<GcpCredential>> {
        let t = self
            .cache
            .get(|| async {
                let base = self.base.bearer().await?;
                let url = self.method_url("generateAccessToken");
                generate_access_token(&self.http, &url, &base, READ_WRITE).await
            })
            .await
            .map_err(|e| self.refused(&e))?;
        Ok(t.bearer)
    }
}

/// V4 signed URLs of objects in `bucket`, signed through `signBlob`.
#[derive(Debug)]
pub struct ImpersonatedSigner {
    account: Arc<ImpersonatedAccount>,
    base_url: String,
    bucket: String,
}

impl ImpersonatedSigner {
    /// Links to `bucket` at `base_url` (`https://storage.googleapis.com`).
    pub fn new(account: Arc<ImpersonatedAccount>, base_url: &str, bucket: &str) -> Self {
        ImpersonatedSigner {
            account,
            base_url: base_url.trim_end_matches('/').to_string(),
            bucket: bucket.to_string(),
        }
    }
}

/// Percent-encodes everything but `A-Z a-z 0-9 - _ . ~`.
fn strict(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The V4 canonical request and string to sign of a `method` link to
/// `url` (query without the signature) on `host`, dated `date`.
pub fn v4_string_to_sign(method: &str, url: &url::Url, host: &str, date: DateTime<Utc>) -> String {
    let mut query: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    query.sort();
    let query = query
        .iter()
        .map(|(k, v)| format!("{}={}", strict(k), strict(v)))
        .collect::<Vec<_>>()
        .join("&");
    let canonical = format!(
        "{method}\n{}\n{query}\nhost:{host}\n\nhost\nUNSIGNED-PAYLOAD",
        url.path()
    );
    format!(
        "GOOG4-RSA-SHA256\n{}\n{}/auto/storage/goog4_request\n{}",
        date.format("%Y%m%dT%H%M%SZ"),
        date.format("%Y%m%d"),
        hex::encode(Sha256::digest(canonical.as_bytes()))
    )
}

#[async_trait]
impl Signer for ImpersonatedSigner {
    async fn signed_url(
        &self,
        method: http::Method,
        path: &Path,
        expires_in: Duration,
    ) -> object_store::Result<url::Url> {
        if expires_in.as_secs() > 604_800 {
            return Err(err("links live at most 7 days (604800 s)"));
        }
        let encoded: Vec<String> = path.parts().map(|p| strict(p.as_ref())).collect();
        let mut url = url::Url::parse(&format!(
            "{}/{}/{}",
            self.base_url,
            strict(&self.bucket),
            encoded.join("/")
        ))
        .map_err(|e| err(e.to_string()))?;
        let host = match url.port() {
            Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_string(),
        };
        let date = Utc::now();
        url.query_pairs_mut()
            .append_pair("X-Goog-Algorithm", "GOOG4-RSA-SHA256")
            .append_pair(
                "X-Goog-Credential",
                &format!(
                    "{}/{}/auto/storage/goog4_request",
                    self.account.email(),
                    date.format("%Y%m%d")
                ),
            )
            .append_pair("X-Goog-Date", &date.format("%Y%m%dT%H%M%SZ").to_string())
            .append_pair("X-Goog-Expires", &expires_in.as_secs().to_string())
            .append_pair("X-Goog-SignedHeaders", "host");
        let to_sign = v4_string_to_sign(method.as_str(), &url, &host, date);
        let signature = self.account.sign_blob(to_sign.as_bytes()).await?;
        url.query_pairs_mut()
            .append_pair("X-Goog-Signature", &hex::encode(signature));
        Ok(url)
    }
}

/// The HTTP client of token exchanges: bounded in time, so a token host
/// that stops answering fails the export instead of holding it.
fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
