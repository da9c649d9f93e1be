//! Dispatch: the loop that hands queued jobs, oldest first, to the bounded
//! pool of workers on the export runtime, runs each export with its
//! workspace's destination settings, and records how it ended (removing
//! what a failed or cancelled attempt wrote).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::Semaphore;

use super::super::record::{JobRecord, JobStatus};
use crate::error::{Error, Result};
use crate::export::{Export, ExportOutcome};
use crate::sink::{purge_unpublished, Progress};

use super::JobService;

impl JobService {
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
    pub(super) async fn remove_attempt(&self, r: &JobRecord) {
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
