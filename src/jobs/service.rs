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
use tokio::sync::{Notify, Semaphore};

use super::db::{JobDb, JobFilter};
use super::record::{JobRecord, JobStatus};
use crate::dest::{DestConfig, UrlSigner};
use crate::error::{Error, Result};
use crate::export::{new_export_id, Export, ExportOutcome};
use crate::sink::{purge_unpublished, ExportLayout, Progress};
use crate::spec::Destination;
use crate::spec::{ExportSpec, SpecError, SpecErrors};
use crate::store::SealedStore;
use crate::workspace::{Workspace, Workspaces};

mod retention;
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

    /// The spec of `body` as `ws` may run it: validated, with key material
    /// refused and, unless the workspace is trusted, its destination checked
    /// against the workspace's policy (and a `local` path resolved under
    /// its root).
    /// The spec of job `r` as `ws` may run it ([`Self::checked_spec`]),
    /// resolved against the job's creation time, so a rerun selects the
    /// same rows.
    fn record_spec(&self, ws: &Workspace, r: &JobRecord) -> Result<ExportSpec> {
        let created = DateTime::parse_from_rfc3339(&r.created_at)
            .map_err(|e| Error::Jobs(format!("job {}: bad created_at: {e}", r.id)))?
            .with_timezone(&Utc);
        Ok(self.checked_spec(ws, &r.spec, created)?)
    }

    fn checked_spec(
        &self,
        ws: &Workspace,
        body: &str,
        created: DateTime<Utc>,
    ) -> std::result::Result<ExportSpec, SpecErrors> {
        let mut spec = ExportSpec::from_json(body, created)?;
        let refuse = |field: &str, message: &str| {
            SpecErrors(vec![SpecError {
                field: field.into(),
                message: message.into(),
            }])
        };
        if let Some(Destination::Gcs {
            service_account: Some(sa),
            ..
        }) = &spec.destination
        {
            if sa.trim_start().starts_with('{') {
                return Err(refuse(
                    "destination.service_account",
                    "key material is not accepted by the service (it would be stored with \
                     the job): name a service-account e-mail",
                ));
            }
        }
        if !ws.trusted {
            if let Some(d) = &spec.destination {
                let resolved = ws.policy.resolve(d).map_err(|e| SpecErrors(vec![e]))?;
                spec.destination = Some(resolved);
            }
        }
        Ok(spec)
    }

    /// Jobs of workspace `ws_id` that are queued or running.
    fn active_jobs(&self, ws_id: &str) -> Result<Vec<JobRecord>> {
        let mut out = Vec::new();
        for status in [JobStatus::Queued, JobStatus::Running] {
            out.extend(
                self.db
                    .with_status(status)?
                    .into_iter()
                    .filter(|r| r.workspace_id() == ws_id),
            );
        }
        Ok(out)
    }

    /// The active jobs of `ws`, or its quota's refusal when they are
    /// `max_active_jobs` already.
    fn within_quota(&self, ws: &Workspace) -> std::result::Result<Vec<JobRecord>, Rejected> {
        let active = self.active_jobs(&ws.id).map_err(Rejected::Internal)?;
        if active.len() >= ws.max_active_jobs {
            return Err(Rejected::Quota {
                limit: ws.max_active_jobs,
            });
        }
        Ok(active)
    }

    /// An active job of `ws` that writes to the destination of `spec` but
    /// exports something else (the same spec would resume or no-op).
    fn conflicting(
        &self,
        ws: &Workspace,
        spec: &ExportSpec,
        active: &[JobRecord],
    ) -> Option<String> {
        let dest = spec.destination.as_ref()?;
        if matches!(dest, Destination::SignedUrl) {
            return None;
        }
        let resolved = spec.resolved_json();
        active.iter().find_map(|r| {
            // The record's resolved spec (with its policy-resolved
            // destination) decides without parsing the spec again: no
            // caller regex is compiled under the submit lock.
            let conflicts = match &r.resolved {
                Some(other) => {
                    other.get("destination") == resolved.get("destination") && *other != resolved
                }
                // Records of older versions: their spec, parsed again.
                None => {
                    let other = self.record_spec(ws, r).ok()?;
                    other.destination.as_ref() == Some(dest) && other.resolved_json() != resolved
                }
            };
            conflicts.then(|| r.id.clone())
        })
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

    /// Validates a posted spec and checks its destination before anything
    /// is queued: the spec (with the workspace's policy), settings the
    /// destination cannot work without, and — for object stores — that the
    /// role (if any) can be assumed and the prefix listed. Returns what
    /// [`JobService::submit`] queues.
    pub async fn prepare(
        &self,
        ws: &Workspace,
        body: &str,
    ) -> std::result::Result<Prepared, Rejected> {
        let created = Utc::now();
        let spec = self
            .checked_spec(ws, body, created)
            .map_err(Rejected::Spec)?;
        let skew = chrono::Duration::seconds(
            i64::try_from(self.max_future_as_of.load(Ordering::Relaxed)).unwrap_or(i64::MAX / 2),
        );
        if spec.as_of > created + skew {
            return Err(Rejected::Spec(SpecErrors(vec![SpecError {
                field: "as_of".into(),
                message: format!(
                    "{} is in the future (now {}): a snapshot must not lie ahead, or sessions \
                     sealed until then would join a rerun; omit as_of to export as of now",
                    crate::spec::format_instant(spec.as_of),
                    crate::spec::format_instant(created)
                ),
            }])));
        }
        // A workspace at its quota is answered before any outbound call
        // (STS, IAM, LIST) is made for it; `submit` checks again under
        // its lock.
        self.within_quota(ws)?;
        if matches!(spec.destination, Some(Destination::SignedUrl)) {
            let used = self.signed_bytes(ws).map_err(Rejected::Internal)?;
            if used >= ws.max_signed_bytes {
                return Err(Rejected::Storage {
                    used,
                    limit: ws.max_signed_bytes,
                });
            }
        }
        self.make_room(ws).await.map_err(Rejected::Internal)?;
        let id = new_export_id(created);
        let as_spec_errors = |e: Error| {
            Rejected::Spec(match e {
                Error::Spec(errors) => errors,
                Error::Config { field, message } => SpecErrors(vec![SpecError { field, message }]),
                other => SpecErrors(vec![SpecError {
                    field: "destination".into(),
                    message: other.to_string(),
                }]),
            })
        };
        // Settings the destination cannot work without are the caller's error.
        let target = Export::open_target(&spec, &id, &self.dest_for(ws))
            .await
            .map_err(as_spec_errors)?;
        let remote = !matches!(
            spec.destination,
            Some(Destination::Local { .. }) | Some(Destination::SignedUrl) | None
        );
        if remote {
            target.check().await.map_err(as_spec_errors)?;
        }
        Ok(Prepared { id, spec, created })
    }

    /// Queues a job `prepare` accepted, unless the workspace's quota is
    /// full or another unfinished job writes to the same destination.
    pub fn submit(
        &self,
        ws: &Workspace,
        body: &str,
        prepared: Prepared,
    ) -> std::result::Result<JobRecord, Rejected> {
        let Prepared { id, spec, created } = prepared;
        // Checks and insert are one step: two posts cannot both pass them.
        let _one_at_a_time = self
            .submitting
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let active = self.within_quota(ws)?;
        if let Some(id) = self.conflicting(ws, &spec, &active) {
            return Err(Rejected::Conflict { id });
        }
        let mut record = JobRecord::queued(id, &spec, body, created);
        record.workspace = Some(ws.id.clone());
        self.db.put(&record).map_err(Rejected::Internal)?;
        self.wake.notify_one();
        Ok(record)
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

    /// Runs the dispatcher until the process ends.
    pub fn start(self: &Arc<Self>) {
        let me = Arc::clone(self);
        tokio::spawn(async move { me.dispatch().await });
    }

    async fn dispatch(self: Arc<Self>) {
        let pool = Arc::new(Semaphore::new(self.workers));
        // Workspaces take turns: the last one served goes to the back.
        let mut last_workspace: Option<String> = None;
        loop {
            let Ok(permit) = Arc::clone(&pool).acquire_owned().await else {
                return;
            };
            let next = match self.db.next_queued(last_workspace.as_deref()) {
                Ok(q) => q,
                Err(e) => {
                    tracing::error!("cannot read the job queue: {e}");
                    None
                }
            };
            let Some(job) = next else {
                drop(permit);
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
                }
                continue;
            };
            last_workspace = Some(job.workspace_id().to_string());
            // Registered before the claim, so a cancel that sees the job
            // `running` always finds its flag.
            let progress = Arc::new(Progress::default());
            self.live
                .lock()
                .expect("live map")
                .insert(job.id.clone(), Arc::clone(&progress));
            let claimed = self.db.update(&job.id, |r| {
                if r.status == JobStatus::Queued {
                    r.start();
                }
            });
            match claimed {
                Ok(Some(r)) if r.status == JobStatus::Running => {}
                _ => {
                    // Taken or cancelled meanwhile: try again shortly, not
                    // in a hot loop.
                    self.live().remove(&job.id);
                    drop(permit);
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    continue;
                }
            }
            let me = Arc::clone(&self);
            let exec = self.exec.clone();
            tokio::spawn(async move {
                let id = job.id.clone();
                let worker = {
                    let me = Arc::clone(&me);
                    let progress = Arc::clone(&progress);
                    exec.spawn(async move { me.run(job, progress).await })
                };
                let result = match worker.await {
                    Ok(r) => r,
                    Err(e) => Err(Error::Jobs(format!("export worker failed: {e}"))),
                };
                me.finish(&id, &progress, result).await;
                me.live.lock().expect("live map").remove(&id);
                drop(permit);
                me.wake.notify_one();
            });
        }
    }

    async fn run(&self, job: JobRecord, progress: Arc<Progress>) -> Result<ExportOutcome> {
        let ws_id = job.workspace_id().to_string();
        let tenants = self.tenants();
        let (Some(ws), Some(store)) = (tenants.workspaces.get(&ws_id), tenants.stores.get(&ws_id))
        else {
            return Err(Error::Jobs(format!(
                "job {}: its workspace {ws_id:?} is no longer configured",
                job.id
            )));
        };
        let spec = self.record_spec(ws, &job)?;
        let target = Export::open_target(&spec, &job.id, &self.dest_for(ws)).await?;
        let job_id = job.id.clone();
        let mut export = Export::new(store, &spec)
            .with_id(job.id.clone())
            .with_target(target.clone())
            .with_progress(progress);
        if let Some(url) = self.cluster.get() {
            if spec.steps.is_none() && spec.redact.is_none() {
                export = export.with_cluster(url.clone());
            }
        }
        match export.await {
            Err(Error::Cancelled) => {
                purge_unpublished(&target, &job_id, &spec.split_names()).await;
                Err(Error::Cancelled)
            }
            other => other,
        }
    }

    /// Deletes what the unfinished attempts of job `r` left at its
    /// destination (shards, card, lease), as a failed export leaves
    /// nothing; a destination that cannot be opened is only logged.
    async fn remove_attempt(&self, r: &JobRecord) {
        let tenants = self.tenants();
        let Some(ws) = tenants.workspaces.get(r.workspace_id()) else {
            return;
        };
        let opened = match self.record_spec(ws, r) {
            Ok(spec) => Export::open_target(&spec, &r.id, &self.dest_for(ws))
                .await
                .map(|t| (t, spec.split_names())),
            Err(e) => Err(e),
        };
        match opened {
            Ok((target, splits)) => purge_unpublished(&target, &r.id, &splits).await,
            Err(e) => tracing::warn!(id = %r.id, "cannot remove the files of its attempts: {e}"),
        }
    }

    async fn finish(&self, id: &str, progress: &Progress, result: Result<ExportOutcome>) {
        let update = match result {
            Ok(outcome) => self.db.update(id, |r| r.completed(&outcome)),
            Err(e) => {
                let cancelled =
                    matches!(e, Error::Cancelled) || progress.cancel.load(Ordering::SeqCst);
                let message = if cancelled {
                    "cancelled".to_string()
                } else {
                    e.to_string()
                };
                tracing::warn!(%id, error = %message, "export failed");
                self.db.update(id, |r| r.failed(message.clone()))
            }
        };
        if let Err(e) = update {
            tracing::error!(%id, "cannot record the job's result: {e}");
        }
    }
}
