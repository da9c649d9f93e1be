//! Workspaces of a hosted service: who may call it, which store each
//! caller reads, and where each may export. `nusomi serve --workspaces FILE`
//! reads them from a JSON file ([`Workspaces::from_json`]); the single-user
//! flags (`--store`, `--token`, `--workspace-id`) make one implicit,
//! *trusted* workspace ([`Workspaces::single`]) whose callers have the CLI's
//! freedom of destination. Every workspace from a file is checked against
//! its [`DestinationPolicy`] (`policy.rs`).

mod file;
mod policy;

use std::sync::Arc;

use sha2::{Digest, Sha256};

pub use policy::{DestinationPolicy, S3Policy};

/// Default quota of queued plus running jobs per workspace.
pub const DEFAULT_MAX_ACTIVE_JOBS: usize = 50;

/// Bytes of `signed_url` exports the service keeps for a workspace unless
/// its entry says otherwise (100 GiB).
pub const DEFAULT_MAX_SIGNED_BYTES: u64 = 100 << 30;

/// Job records a workspace keeps unless its entry says otherwise: past it,
/// posting a job forgets the workspace's oldest finished ones.
pub const DEFAULT_MAX_RECORDS: usize = 10_000;

/// One workspace.
#[derive(Clone, PartialEq, Eq)]
pub struct Workspace {
    /// The id: jobs record it, and it is the STS external id of its roles.
    pub id: String,
    /// SHA-256 digests of its bearer tokens.
    pub(crate) token_digests: Vec<[u8; 32]>,
    /// Root of the store its exports read.
    pub store: String,
    /// Where it may export (ignored when `trusted`).
    pub policy: DestinationPolicy,
    /// The operator's own team: any destination, as with the CLI.
    pub trusted: bool,
    /// Queued plus running jobs allowed at once.
    pub max_active_jobs: usize,
    /// Job records kept: posting past it forgets the oldest finished ones
    /// (with their `signed_url` files).
    pub max_records: usize,
    /// Bytes of finished `signed_url` exports the service keeps for it: a
    /// `signed_url` export posted at or past it is refused (`507`).
    pub max_signed_bytes: u64,
}

impl std::fmt::Debug for Workspace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workspace")
            .field("id", &self.id)
            .field("tokens", &self.token_digests.len())
            .field("store", &self.store)
            .field("trusted", &self.trusted)
            .finish_non_exhaustive()
    }
}

/// Every workspace of a service, looked up by token.
#[derive(Debug, Clone, Default)]
pub struct Workspaces {
    all: Vec<Arc<Workspace>>,
}

/// SHA-256 of a bearer token, as the workspaces file lists them.
pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.trim().as_bytes()).into()
}

fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Workspaces {
    /// One trusted workspace `id` over `store`, called with `tokens` (none:
    /// an open API), with no limit on active jobs (see
    /// [`Workspaces::with_max_active_jobs`]).
    pub fn single(id: &str, store: &str, tokens: &[String]) -> Self {
        let token_digests = tokens
            .iter()
            .filter(|t| !t.trim().is_empty())
            .map(|t| token_digest(t))
            .collect();
        Workspaces {
            all: vec![Arc::new(Workspace {
                id: id.to_string(),
                token_digests,
                store: store.to_string(),
                policy: DestinationPolicy::default(),
                trusted: true,
                max_active_jobs: usize::MAX,
                max_records: usize::MAX,
                max_signed_bytes: u64::MAX,
            })],
        }
    }

    /// Sets every workspace's quota of queued plus running jobs.
    pub fn with_max_active_jobs(mut self, n: usize) -> Self {
        for w in &mut self.all {
            Arc::make_mut(w).max_active_jobs = n.max(1);
        }
        self
    }

    /// Every workspace.
    pub fn all(&self) -> &[Arc<Workspace>] {
        &self.all
    }

    /// The workspace `id`.
    pub fn get(&self, id: &str) -> Option<&Arc<Workspace>> {
        self.all.iter().find(|w| w.id == id)
    }

    /// True when no workspace has a token: the API is open (one trusted
    /// workspace, loopback only).
    pub fn is_open(&self) -> bool {
        self.all.iter().all(|w| w.token_digests.is_empty())
    }

    /// The workspace whose token is `token` (compared as SHA-256 digests,
    /// without early exit); with an open API, the only workspace.
    pub fn authenticate(&self, token: Option<&str>) -> Option<Arc<Workspace>> {
        if self.is_open() {
            return self.all.first().cloned();
        }
        let d = token_digest(token?);
        let mut found = None;
        for w in &self.all {
            for t in &w.token_digests {
                if same(t, &d) && found.is_none() {
                    found = Some(Arc::clone(w));
                }
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_finds_its_workspace_only() {
        let w = Workspaces::single("ws_a", "/s", &["alpha-token".into(), " ".into()]);
        assert_eq!(w.authenticate(Some("alpha-token")).unwrap().id, "ws_a");
        assert!(w.authenticate(Some("alpha-toke")).is_none());
        assert!(w.authenticate(None).is_none());
        assert!(!format!("{w:?}").contains("alpha"));
        let open = Workspaces::single("ws_a", "/s", &[]);
        assert!(open.is_open());
        assert_eq!(open.authenticate(None).unwrap().id, "ws_a");
    }
}
