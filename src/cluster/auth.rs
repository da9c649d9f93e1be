//! [`ClusterSecret`]: the secret every process of a cluster shares, read
//! from a file (`--secret-file` / `NUSOMI_CLUSTER_SECRET_FILE`), and how it
//! guards every channel. Each process sends a token derived from it
//! (`SHA-256("nusomi-cluster-token\n" ‖ secret)`, never the secret itself)
//! on every gRPC and Arrow Flight request it makes — client → scheduler,
//! executor → scheduler, client and executors → executors' Flight, scheduler
//! → executors — and the scheduler's gRPC port and each executor's Flight
//! port refuse a request without it (`Unauthenticated`) before Ballista sees
//! it. Ballista 55 has one hook on every outgoing channel, the endpoint
//! override, which can set the `user-agent` header only (the metadata
//! interceptor covers client → scheduler alone), so the token travels as
//! `user-agent: nusomi-cluster/<token> …`. The token is a bearer credential
//! in cleartext on the wire: keep the cluster's network private (see
//! docs/scale-out.md). The secret also yields the key jobs are signed with
//! (`grant.rs`), unless a separate job-key file is given
//! (`--job-key-file` / `NUSOMI_JOB_KEY_FILE`) to the submitting processes
//! and the executors only.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The key jobs are signed with (32 bytes; `grant.rs` signs and checks).
#[derive(Clone)]
pub(crate) struct JobKey(pub(crate) [u8; 32]);

impl std::fmt::Debug for JobKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JobKey(…)")
    }
}

/// SHA-256 of `domain ‖ bytes`.
fn digest(domain: &[u8], bytes: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(domain);
    h.update(bytes);
    h.finalize().into()
}

/// The trimmed bytes of a secret file, at least [`MIN_SECRET_BYTES`] of
/// them; the error names the file (and `field`), never its content.
fn read_secret(path: &Path, field: &str) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let secret = bytes.trim_ascii();
    if secret.len() < MIN_SECRET_BYTES {
        return Err(Error::Config {
            field: field.into(),
            message: format!(
                "{}: holds {} bytes; a cluster secret needs at least {MIN_SECRET_BYTES} \
                 (e.g. `head -c 48 /dev/urandom | base64 > FILE`)",
                path.display(),
                secret.len()
            ),
        });
    }
    Ok(secret.to_vec())
}

/// The environment variable naming the secret file.
pub const SECRET_FILE_ENV: &str = "NUSOMI_CLUSTER_SECRET_FILE";

/// The fewest bytes a secret file may hold (after trimming blanks).
const MIN_SECRET_BYTES: usize = 32;

/// What the `user-agent` of an authenticated request starts with, before
/// the token.
const AGENT_PREFIX: &str = "nusomi-cluster/";

/// The environment variable naming the job-key file.
pub const JOB_KEY_FILE_ENV: &str = "NUSOMI_JOB_KEY_FILE";

/// The shared secret of a cluster (its token, derived once), and the key
/// jobs are signed with (`grant.rs`): from its own file where one is given
/// ([`ClusterSecret::with_job_key_file`]), else derived from the secret.
#[derive(Clone)]
pub struct ClusterSecret {
    token: String,
    job_key: JobKey,
}

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterSecret(…)")
    }
}

impl ClusterSecret {
    /// Reads the secret from `path`: at least 32 bytes (blanks around it
    /// trimmed). The error names the file, never its content.
    pub fn from_file(path: &Path) -> Result<Self> {
        Ok(Self::from_bytes(&read_secret(path, "secret_file")?))
    }

    /// Signs and checks jobs with the key in `path` (at least 32 bytes)
    /// instead of one derived from the secret: give it to the processes
    /// that submit exports and to the executors, not to the scheduler, and
    /// a scheduler (or any other holder of the cluster secret) cannot make
    /// the executors run a job of its own.
    pub fn with_job_key_file(mut self, path: &Path) -> Result<Self> {
        self.job_key = JobKey(digest(
            b"nusomi-job-key-file\n",
            &read_secret(path, "job_key_file")?,
        ));
        Ok(self)
    }

    fn from_bytes(secret: &[u8]) -> Self {
        ClusterSecret {
            token: hex::encode(digest(b"nusomi-cluster-token\n", secret)),
            job_key: JobKey(digest(b"nusomi-job-key\n", secret)),
        }
    }

    /// The key this process signs or checks jobs with.
    pub(crate) fn job_key(&self) -> &JobKey {
        &self.job_key
    }

    /// The `user-agent` value authenticated requests carry.
    fn agent(&self) -> String {
        format!("{AGENT_PREFIX}{}", self.token)
    }

    /// Whether a request's `user-agent` carries this cluster's token
    /// (compared in constant time).
    pub(crate) fn admits(&self, user_agent: Option<&[u8]>) -> bool {
        let Some(agent) = user_agent else {
            return false;
        };
        let want = self.agent();
        let got = agent.get(..want.len()).unwrap_or_default();
        got.len() == want.len()
            && got
                .iter()
                .zip(want.as_bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }

    /// The endpoint override every outgoing channel is made with: sets the
    /// token as its `user-agent`.
    pub(crate) fn endpoint_override(&self) -> ballista_core::extension::EndpointOverrideFn {
        let agent = self.agent();
        Arc::new(move |endpoint: tonic::transport::Endpoint| {
            endpoint
                .user_agent(agent.clone())
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
        })
    }

    /// A tonic interceptor refusing requests without the token.
    pub(crate) fn interceptor(
        &self,
    ) -> impl FnMut(tonic::Request<()>) -> std::result::Result<tonic::Request<()>, tonic::Status> + Clone
    {
        let me = self.clone();
        move |req: tonic::Request<()>| {
            let agent = req.metadata().get("user-agent").map(|v| v.as_bytes());
            if me.admits(agent) {
                Ok(req)
            } else {
                Err(unauthenticated())
            }
        }
    }
}

/// The answer to a peer without the cluster's token.
pub(crate) fn unauthenticated() -> tonic::Status {
    tonic::Status::unauthenticated(
        "this cluster admits only peers that share its secret (--secret-file)",
    )
}

/// The secret of this process, set once at start by the command that runs
/// a scheduler, an executor or a client.
static SECRET: OnceLock<ClusterSecret> = OnceLock::new();

/// Installs this process's cluster secret (the first call wins).
pub fn install(secret: ClusterSecret) {
    let _ = SECRET.set(secret);
}

/// This process's cluster secret: the installed one, else the file
/// [`SECRET_FILE_ENV`] names. A cluster process without one refuses to
/// start; a client without one cannot submit.
pub(crate) fn current() -> Result<ClusterSecret> {
    if let Some(s) = SECRET.get() {
        return Ok(s.clone());
    }
    match std::env::var_os(SECRET_FILE_ENV) {
        Some(path) => {
            let mut s = ClusterSecret::from_file(Path::new(&path))?;
            if let Some(key) = std::env::var_os(JOB_KEY_FILE_ENV) {
                s = s.with_job_key_file(Path::new(&key))?;
            }
            install(s.clone());
            Ok(s)
        }
        None => Err(Error::Config {
            field: "secret_file".into(),
            message: format!(
                "a cluster needs a shared secret: give every scheduler, executor and client \
                 the same --secret-file (or {SECRET_FILE_ENV})"
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_admitted_and_nothing_else() {
        let s = ClusterSecret::from_bytes(b"0123456789abcdef0123456789abcdef");
        let agent = format!("{} tonic/0.14.9", s.agent());
        assert!(s.admits(Some(agent.as_bytes())));
        assert!(!s.admits(None));
        assert!(!s.admits(Some(b"tonic/0.14.9")));
        let other = ClusterSecret::from_bytes(b"another secret of thirty-two bytes!");
        assert!(!s.admits(Some(other.agent().as_bytes())));
        assert!(!s.admits(Some(&s.agent().as_bytes()[..20])));
        assert!(!format!("{s:?}").contains(&s.token));
    }

    #[test]
    fn a_short_secret_file_is_refused_naming_the_file_not_the_secret() {
        let tmp = tempfile::TempDir::new().unwrap();
        let f = tmp.path().join("secret");
        std::fs::write(&f, "short-secret\n").unwrap();
        let e = ClusterSecret::from_file(&f).unwrap_err().to_string();
        assert!(
            e.contains("secret") && e.contains("12 bytes") && !e.contains("short-secret"),
            "{e}"
        );
        std::fs::write(&f, "x".repeat(40)).unwrap();
        assert!(ClusterSecret::from_file(&f).is_ok());
    }
}
