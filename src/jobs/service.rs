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
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use object_store::ObjectStoreExt;
use serde_json::Value;
use tokio::sync::{Notify, Semaphore};

use super::db::{JobDb, JobFilter};
use super::export::{new_export_id, run_export};
use super::record::{JobRecord, JobStatus};
use crate::dest::{DestConfig, ExportTarget, UrlSigner};
use crate::sink::{objects_under, Progress};
use crate::spec::{format_instant, ExportSpec, SpecError, SpecErrors};
use crate::store::SealedStore;
use crate::{Error, Result};

/// Why a submitted spec was refused (HTTP 400).
#[derive(Debug)]
pub enum Rejected {
    /// Every problem, with its field path.
    Spec(SpecErrors),
    /// Something else went wrong storing the job.
    Internal(Error),
}

/// The export job queue and its workers.
pub struct JobService {
    store: Arc<SealedStore>,
    db: JobDb,
    dest: DestConfig,
    workers: usize,
    exec: tokio::runtime::Handle,
    live: Mutex<HashMap<String, Arc<Progress>>>,
    wake: Notify,
}

impl std::fmt::Debug for JobService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobService")
            .field("workers", &self.workers)
            .finish_non_exhaustive()
    }
}

fn now() -> String {
    format_instant(Utc::now())
}

impl JobService {
    /// A service over `store` and `db`, running at most `workers` exports at
    /// once on the runtime `exec`.
    pub fn new(
        store: Arc<SealedStore>,
        db: JobDb,
        dest: DestConfig,
        workers: usize,
        exec: tokio::runtime::Handle,
    ) -> Arc<Self> {
        Arc::new(JobService {
            store,
            db,
            dest,
            workers: workers.max(1),
            exec,
            live: Mutex::new(HashMap::new()),
            wake: Notify::new(),
        })
    }

    /// Destination settings (signing key, signed storage, …).
    pub fn dest_config(&self) -> &DestConfig {
        &self.dest
    }

    /// Workers in the pool.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Queues again the jobs a dead process left `running`; returns how many.
    pub fn recover(&self) -> Result<usize> {
        let stale = self.db.with_status(JobStatus::Running)?;
        for r in &stale {
            self.db.update(&r.id, |r| r.status = JobStatus::Queued)?;
            tracing::warn!(id = %r.id, "re-queued a job that was running when the service stopped");
        }
        Ok(stale.len())
    }

    /// Validates `body` (a spec) and stores a queued job; the record is
    /// durable before this returns.
    pub fn submit(&self, body: &str) -> std::result::Result<JobRecord, Rejected> {
        let created = Utc::now();
        let spec = ExportSpec::from_json(body, created).map_err(Rejected::Spec)?;
        let id = new_export_id(created);
        let Some(destination) = &spec.destination else {
            return Err(Rejected::Spec(SpecErrors(vec![SpecError {
                field: "destination".into(),
                message: "missing required field (e.g. {\"kind\": \"local\", \"path\": \"…\"})"
                    .into(),
            }])));
        };
        // Settings the destination cannot work without are the caller's error.
        if let Err(e) = ExportTarget::open(destination, &id, &self.dest) {
            let (field, message) = match e {
                Error::Config { field, message } => (field, message),
                other => ("destination".into(), other.to_string()),
            };
            return Err(Rejected::Spec(SpecErrors(vec![SpecError {
                field,
                message,
            }])));
        }
        let record = JobRecord {
            id,
            status: JobStatus::Queued,
            spec: body.to_string(),
            workflows: spec.workflows.clone(),
            tag: spec.tag.clone(),
            format: spec.format.as_str().to_string(),
            shard_size_bytes: spec.shard_size_bytes,
            created_at: format_instant(created),
            started_at: None,
            finished_at: None,
            attempts: 0,
            rows: None,
            frames: None,
            actions: None,
            sessions: None,
            shards: None,
            bytes: None,
            shards_reused: None,
            manifest_url: None,
            error: None,
        };
        self.db.put(&record).map_err(Rejected::Internal)?;
        self.wake.notify_one();
        Ok(record)
    }

    /// The API object of job `id`, with live progress while it runs.
    pub fn get(&self, id: &str) -> Result<Option<Value>> {
        let Some(r) = self.db.get(id)? else {
            return Ok(None);
        };
        let p = self.live.lock().expect("live map").get(id).cloned();
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
                    Value::String(signer.link(base, &r.id, "manifest.json", expires));
            }
        }
        api
    }

    /// The record of job `id`.
    pub fn record(&self, id: &str) -> Result<Option<JobRecord>> {
        self.db.get(id)
    }

    /// A page of jobs, newest first.
    pub fn list(
        &self,
        filter: &JobFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<(Vec<Value>, Option<String>)> {
        let (recs, next) = self.db.list(filter, limit, cursor)?;
        let live = self.live.lock().expect("live map");
        Ok((
            recs.iter()
                .map(|r| self.fresh_links(r, r.to_api(live.get(&r.id).map(|p| p.as_ref()))))
                .collect(),
            next,
        ))
    }

    /// Cancels a queued or running job. Returns the record (None: unknown
    /// id); a finished job is returned unchanged.
    pub fn cancel(&self, id: &str) -> Result<Option<JobRecord>> {
        // A running job stops at its next row; its worker records the result.
        if let Some(p) = self.live.lock().expect("live map").get(id) {
            p.cancel.store(true, Ordering::SeqCst);
        }
        self.db.update(id, |r| {
            if r.status == JobStatus::Queued {
                r.status = JobStatus::Failed;
                r.error = Some("cancelled".into());
                r.finished_at = Some(now());
            }
        })
    }

    /// Runs the dispatcher until the process ends.
    pub fn start(self: &Arc<Self>) {
        let me = Arc::clone(self);
        tokio::spawn(async move { me.dispatch().await });
    }

    async fn dispatch(self: Arc<Self>) {
        let pool = Arc::new(Semaphore::new(self.workers));
        loop {
            let Ok(permit) = Arc::clone(&pool).acquire_owned().await else {
                return;
            };
            let next = match self.db.with_status(JobStatus::Queued) {
                Ok(q) => q.into_iter().next(),
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
            // Registered before the claim, so a cancel that sees the job
            // `running` always finds its flag.
            let progress = Arc::new(Progress::default());
            self.live
                .lock()
                .expect("live map")
                .insert(job.id.clone(), Arc::clone(&progress));
            let claimed = self.db.update(&job.id, |r| {
                if r.status == JobStatus::Queued {
                    r.status = JobStatus::Running;
                    r.started_at = Some(now());
                    r.attempts += 1;
                }
            });
            match claimed {
                Ok(Some(r)) if r.status == JobStatus::Running => {}
                _ => {
                    self.live.lock().expect("live map").remove(&job.id);
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

    async fn run(&self, job: JobRecord, progress: Arc<Progress>) -> Result<JobRecord> {
        let created: DateTime<Utc> = DateTime::parse_from_rfc3339(&job.created_at)
            .map_err(|e| Error::Jobs(format!("job {}: bad created_at: {e}", job.id)))?
            .with_timezone(&Utc);
        // Resolved against the creation time: a rerun selects the same rows.
        let spec = ExportSpec::from_json(&job.spec, created)?;
        let destination = spec
            .destination
            .clone()
            .ok_or_else(|| Error::Jobs(format!("job {}: the spec has no destination", job.id)))?;
        let target = ExportTarget::open(&destination, &job.id, &self.dest)?;
        match run_export(&self.store, &spec, &target, Arc::clone(&progress)).await {
            Ok(out) => {
                let m = out.manifest;
                let mut done = job;
                done.rows = Some(m.rows);
                done.frames = Some(m.frames);
                done.actions = Some(m.actions);
                done.sessions = Some(m.sessions);
                done.shards = Some(m.shard_count);
                done.bytes = Some(m.shards.iter().map(|s| s.bytes).sum());
                done.shards_reused = Some(progress.shards_reused.load(Ordering::Relaxed));
                done.manifest_url = Some(out.manifest_url);
                Ok(done)
            }
            Err(Error::Cancelled) => {
                purge_unpublished(&target).await;
                Err(Error::Cancelled)
            }
            Err(e) => Err(e),
        }
    }

    async fn finish(&self, id: &str, progress: &Progress, result: Result<JobRecord>) {
        let finished = now();
        let update = match result {
            Ok(done) => self.db.update(id, |r| {
                r.status = JobStatus::Completed;
                r.rows = done.rows;
                r.frames = done.frames;
                r.actions = done.actions;
                r.sessions = done.sessions;
                r.shards = done.shards;
                r.bytes = done.bytes;
                r.shards_reused = done.shards_reused;
                r.manifest_url = done.manifest_url.clone();
                r.error = None;
                r.finished_at = Some(finished.clone());
            }),
            Err(e) => {
                let cancelled =
                    matches!(e, Error::Cancelled) || progress.cancel.load(Ordering::SeqCst);
                let message = if cancelled {
                    "cancelled".to_string()
                } else {
                    e.to_string()
                };
                tracing::warn!(%id, error = %message, "export failed");
                self.db.update(id, |r| {
                    r.status = JobStatus::Failed;
                    r.error = Some(message.clone());
                    r.finished_at = Some(finished.clone());
                })
            }
        };
        if let Err(e) = update {
            tracing::error!(%id, "cannot record the job's result: {e}");
        }
    }
}

/// Deletes what an unfinished export left under its prefix (shards of this
/// and earlier attempts, the dataset card), unless a manifest is there.
pub async fn purge_unpublished(target: &ExportTarget) {
    let manifest = target.prefix.clone().join("manifest.json");
    if target.store.head(&manifest).await.is_ok() {
        return;
    }
    let Ok(names) = objects_under(&target.store, &target.prefix).await else {
        return;
    };
    for name in names.keys() {
        if name.starts_with("shard-") || name == "README.md" {
            let _ = target
                .store
                .delete(&target.prefix.clone().join(name.as_str()))
                .await;
        }
    }
}
