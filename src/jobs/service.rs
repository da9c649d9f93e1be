//! [`JobService`]: the export queue behind `nusomi serve`. Accepted specs
//! become durable [`JobRecord`]s; a dispatcher hands queued jobs, oldest
//! first, to a bounded pool of workers that run on their own runtime (so the
//! HTTP side stays responsive while exports use the cores). On start, jobs
//! left `running` by a dead process are queued again: exports are
//! deterministic and resume, so the rerun completes the same shards.
//! Cancelling stops a running export at the next row, deletes its shards and
//! leaves no manifest.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::Notify;

use super::db::{JobDb, JobFilter};
use super::record::{JobRecord, JobStatus};
use crate::dest::{DestConfig, UrlSigner};
use crate::error::{Error, Result};
use crate::sink::{ExportLayout, Progress};
use crate::spec::{ExportSpec, SpecErrors};
use crate::store::SealedStore;
use crate::workspace::{Workspace, Workspaces};

mod dispatch;
mod retention;
mod submission;
mod verification;

pub use verification::{VERIFIES_AT_ONCE, VERIFY_SECS};

/// Why a submitted spec was refused.
#[derive(Debug)]
pub enum Rejected {
    /// Every problem, with its field path (HTTP 400).
    Spec(SpecErrors),
    /// The workspace has `limit` jobs queued or running already (HTTP 429).
    Quota {
        /// The workspace's `max_active_jobs`.
        limit: usize,
    },
    /// The workspace's finished `signed_url` exports the service keeps hold
    /// `used` bytes, at or past its `max_signed_bytes` (HTTP 507).
    Storage {
        /// Bytes kept.
        used: u64,
        /// The workspace's `max_signed_bytes`.
        limit: u64,
    },
    /// An unfinished job of the workspace writes another export to the same
    /// destination (HTTP 409).
    Conflict {
        /// That job.
        id: String,
    },
    /// Something else went wrong storing the job.
    Internal(Error),
}

/// A posted spec [`JobService::prepare`] accepted, with its export id.
#[derive(Debug)]
pub struct Prepared {
    id: String,
    spec: ExportSpec,
    created: DateTime<Utc>,
}

/// The export job queue and its workers.
pub struct JobService {
    /// The workspaces and their stores, swapped whole by [`JobService::reload`].
    tenants: RwLock<Arc<Tenants>>,
    db: JobDb,
    dest: DestConfig,
    workers: usize,
    exec: tokio::runtime::Handle,
    live: Mutex<LiveMap>,
    /// Workspaces with a verification running.
    verifying: Arc<Mutex<std::collections::HashSet<String>>>,
    submitting: Mutex<()>,
    wake: Notify,
    /// How far past the posting time a spec's `as_of` may lie (clock skew).
    max_future_as_of: std::sync::atomic::AtomicU64,
    /// The Ballista scheduler exports run on (`df://HOST:PORT`), if any.
    cluster: std::sync::OnceLock<String>,
}

/// Default of [`JobService::set_max_future_as_of`]: one minute of clock skew.
pub const MAX_FUTURE_AS_OF_SECS: u64 = 60;

/// Attempts a job gets: one that was running when the process died this
/// many times fails at the next start instead of running again.
pub const MAX_ATTEMPTS: u32 = 2;

impl std::fmt::Debug for JobService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobService")
            .field("workers", &self.workers)
            .finish_non_exhaustive()
    }
}

/// The workspaces served and the store each reads.
#[derive(Debug)]
struct Tenants {
    workspaces: Workspaces,
    stores: HashMap<String, Arc<SealedStore>>,
}

/// Live progress of running jobs, by id.
type LiveMap = HashMap<String, Arc<Progress>>;

impl JobService {
    /// A service for `workspaces`, each reading its store in `stores` (by
    /// workspace id), with jobs in `db`, running at most `workers` exports
    /// at once on the runtime `exec`.
    pub fn new(
        workspaces: Workspaces,
        stores: HashMap<String, Arc<SealedStore>>,
        db: JobDb,
        dest: DestConfig,
        workers: usize,
        exec: tokio::runtime::Handle,
    ) -> Arc<Self> {
        Arc::new(JobService {
            tenants: RwLock::new(Arc::new(Tenants { workspaces, stores })),
            db,
            dest,
            workers: workers.max(1),
            exec,
            live: Mutex::new(HashMap::new()),
            verifying: Arc::new(Mutex::new(std::collections::HashSet::new())),
            submitting: Mutex::new(()),
            wake: Notify::new(),
            max_future_as_of: MAX_FUTURE_AS_OF_SECS.into(),
            cluster: std::sync::OnceLock::new(),
        })
    }

    /// Refuses posted specs whose `as_of` lies more than `secs` after the
    /// posting time: a snapshot in the future is not one (sessions sealed
    /// until then would join a rerun).
    pub fn set_max_future_as_of(&self, secs: u64) {
        self.max_future_as_of.store(secs, Ordering::Relaxed);
    }

    /// Runs exports on the Ballista cluster whose scheduler is at `url`
    /// (`df://HOST:PORT`) instead of in this process; redacted and step
    /// exports still run here. Set once, before jobs run.
    pub fn set_cluster(&self, url: String) {
        let _ = self.cluster.set(url);
    }

    /// The live map. Lock policy: a panic while holding it (none is known)
    /// must not take the service down, and the map stays consistent under
    /// any single insert or remove, so a poisoned lock is used as is.
    fn live(&self) -> MutexGuard<'_, LiveMap> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Destination settings (signing key, signed storage, …).
    pub fn dest_config(&self) -> &DestConfig {
        &self.dest
    }

    /// The workspaces served now.
    pub fn workspaces(&self) -> Workspaces {
        self.tenants().workspaces.clone()
    }

    fn tenants(&self) -> Arc<Tenants> {
        Arc::clone(&self.tenants.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Serves `workspaces` from now on (a re-read workspaces file), opening
    /// their stores first: on any error nothing changes. Jobs of a workspace
    /// that is gone stay in the database and fail when they run.
    pub async fn reload(&self, workspaces: Workspaces) -> Result<()> {
        let mut stores = HashMap::new();
        let current = self.tenants();
        for ws in workspaces.all() {
            let store = match (current.workspaces.get(&ws.id), current.stores.get(&ws.id)) {
                (Some(old), Some(s)) if old.store == ws.store => Arc::clone(s),
                _ => SealedStore::open(&ws.store).await?,
            };
            stores.insert(ws.id.clone(), store);
        }
        *self.tenants.write().unwrap_or_else(PoisonError::into_inner) =
            Arc::new(Tenants { workspaces, stores });
        Ok(())
    }

    /// Destination settings for exports of `ws`: its id is the STS external
    /// id, and only a trusted workspace may have its destination's endpoint
    /// serve as the STS endpoint.
    fn dest_for(&self, ws: &Workspace) -> DestConfig {
        let mut d = self.dest.clone();
        d.workspace_id = Some(ws.id.clone());
        d.sts_from_destination = ws.trusted;
        d
    }

    /// Workers in the pool.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Queues again the jobs a dead process left `running`; returns how
    /// many. A job that was running when the process died
    /// [`MAX_ATTEMPTS`] times fails instead: it may be what kills the
    /// process, and requeuing it forever would crash-loop the service for
    /// every workspace.
    pub async fn recover(&self) -> Result<usize> {
        let stale = self.db.with_status(JobStatus::Running)?;
        let mut queued = 0;
        for r in &stale {
            if r.attempts >= MAX_ATTEMPTS {
                let attempts = r.attempts;
                self.db.update(&r.id, |r| {
                    r.failed(format!(
                        "the service stopped while this export ran, {attempts} times: it is not \
                         tried again (a job that takes the process down would stop it for every \
                         workspace); post it again with a smaller spec (fewer partitions or \
                         splits, a smaller selection), or ask the operator"
                    ))
                })?;
                tracing::error!(id = %r.id, attempts, "a job the service stopped under too often failed");
                self.remove_attempt(r).await;
            } else {
                self.db.update(&r.id, |r| r.status = JobStatus::Queued)?;
                tracing::warn!(id = %r.id, "re-queued a job that was running when the service stopped");
                queued += 1;
            }
        }
        Ok(queued)
    }

    /// Marks the jobs running now as interrupted by a clean stop (Ctrl-C,
    /// SIGTERM): the attempt they are in is given back, so routine
    /// restarts never exhaust [`MAX_ATTEMPTS`]; only a process that died
    /// under a job counts against it. Returns how many.
    pub fn stopped_cleanly(&self) -> Result<usize> {
        let running = self.db.with_status(JobStatus::Running)?;
        for r in &running {
            self.db
                .update(&r.id, |r| r.attempts = r.attempts.saturating_sub(1))?;
        }
        Ok(running.len())
    }

    /// The API object of job `id` of workspace `ws`, with live progress
    /// while it runs (None: unknown here, also when another workspace's).
    pub fn get(&self, ws: &Workspace, id: &str) -> Result<Option<Value>> {
        let Some(r) = self.record(ws, id)? else {
            return Ok(None);
        };
        let p = self.live().get(id).cloned();
        Ok(Some(self.fresh_links(&r, r.to_api(p.as_deref()))))
    }

    /// For `signed_url` exports served by this service, a `manifest_url`
    /// signed now (the stored one may have expired); the manifest it
    /// points to is re-signed the same way when downloaded.
    fn fresh_links(&self, r: &JobRecord, mut api: Value) -> Value {
        if let (Some(signer), Some(url)) = (&self.dest.signing_key, &r.manifest_url) {
            let base = &self.dest.public_url;
            if UrlSigner::is_own_link(url, base, &r.id) {
                let expires = std::time::SystemTime::now() + self.dest.link_ttl;
                api["manifest_url"] =
                    Value::String(signer.link(base, &r.id, ExportLayout::MANIFEST, expires));
            }
        }
        api
    }

    /// The record of job `id` if it belongs to workspace `ws`.
    pub fn record(&self, ws: &Workspace, id: &str) -> Result<Option<JobRecord>> {
        Ok(self.db.get(id)?.filter(|r| r.workspace_id() == ws.id))
    }

    /// A page of workspace `ws`'s jobs, newest first.
    pub fn list(
        &self,
        ws: &Workspace,
        filter: &JobFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<(Vec<Value>, Option<String>)> {
        let mut filter = filter.clone();
        filter.workspace = Some(ws.id.clone());
        let (recs, next) = self.db.list(&filter, limit, cursor)?;
        let live = self.live();
        Ok((
            recs.iter()
                .map(|r| self.fresh_links(r, r.to_api(live.get(&r.id).map(|p| p.as_ref()))))
                .collect(),
            next,
        ))
    }

    /// Cancels a queued or running job of workspace `ws`. Returns the record
    /// (None: unknown here); a finished job is returned unchanged.
    pub fn cancel(&self, ws: &Workspace, id: &str) -> Result<Option<JobRecord>> {
        if self.record(ws, id)?.is_none() {
            return Ok(None);
        }
        // A running job stops at its next row; its worker records the result.
        if let Some(p) = self.live().get(id) {
            p.cancel.store(true, Ordering::SeqCst);
        }
        self.db.update(id, |r| {
            if r.status == JobStatus::Queued {
                r.failed("cancelled");
            }
        })
    }

    /// Forgets finished job `id` of workspace `ws`: removes its record and,
    /// for a `signed_url` export, the files the service keeps for it.
    /// Returns false for a job that is unknown here or not finished.
    pub async fn forget(&self, ws: &Workspace, id: &str) -> Result<bool> {
        let Some(r) = self.record(ws, id)? else {
            return Ok(false);
        };
        if !r.status.is_final() {
            return Ok(false);
        }
        self.remove_signed_files(&r).await;
        self.db.remove(id)
    }
}
