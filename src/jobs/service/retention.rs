//! What the service forgets, and when: records of jobs finished more than
//! `--record-retention-days` ago, files of `signed_url` exports past
//! `--retention-days`, and a workspace's oldest finished records past its
//! `max_records` — each sweep reading the records through the status index
//! a bounded number at a time.

use chrono::{DateTime, Utc};
use object_store::ObjectStoreExt;
use serde_json::Value;

use super::JobService;
use crate::error::Result;
use crate::jobs::record::{JobRecord, JobStatus};
use crate::spec::Destination;
use crate::workspace::Workspace;

impl JobService {
    /// Deletes what the service keeps of `signed_url` export `r` (all of it
    /// is the service's own, under the export id); returns how many files.
    pub(super) async fn remove_signed_files(&self, r: &JobRecord) -> usize {
        if !is_signed(r) {
            return 0;
        }
        let Ok(t) = crate::dest::ExportTarget::open(&Destination::SignedUrl, &r.id, &self.dest)
        else {
            return 0;
        };
        let mut removed = 0;
        let listed: Vec<_> = futures::StreamExt::collect(t.store.list(Some(&t.prefix))).await;
        for meta in listed.into_iter().flatten() {
            if t.store.delete(&meta.location).await.is_ok() {
                removed += 1;
            }
        }
        if let Some(dir) = &t.local_dir {
            // Split folders emptied above; the export's folder is the
            // service's own.
            let _ = std::fs::remove_dir_all(dir);
        }
        removed
    }

    /// Removes the files of `signed_url` exports that finished more than
    /// `days` ago (their records stay; their links then answer 404).
    pub async fn sweep_signed_files(&self, days: u64) -> Result<usize> {
        let mut swept = 0;
        // Only records whose files are still kept: a sweep never meets
        // the same ones again, so it always gets past what it did.
        for r in self.finished_before(days, |r| is_signed(r) && !r.files_removed)? {
            if self.remove_signed_files(&r).await > 0 {
                swept += 1;
            }
            self.db.update(&r.id, |r| r.files_removed = true)?;
        }
        Ok(swept)
    }

    /// Forgets the records of jobs that finished more than `days` ago, and
    /// the files the service keeps for their `signed_url` exports.
    pub async fn sweep_records(&self, days: u64) -> Result<usize> {
        let mut forgotten = 0;
        for r in self.finished_before(days, |_| true)? {
            self.remove_signed_files(&r).await;
            if self.db.remove(&r.id)? {
                forgotten += 1;
            }
        }
        Ok(forgotten)
    }

    /// Finished records whose job ended more than `days` ago, read one at
    /// a time through the status index (at most a few thousand per sweep,
    /// so memory stays bounded; the next sweep takes the rest).
    fn finished_before(
        &self,
        days: u64,
        wanted: impl Fn(&JobRecord) -> bool,
    ) -> Result<Vec<JobRecord>> {
        const PER_SWEEP: usize = 4096;
        // (At most a thousand years: chrono's durations are bounded.)
        let cutoff = Utc::now() - chrono::Duration::days(days.min(365_000) as i64);
        let mut out = Vec::new();
        for status in [JobStatus::Completed, JobStatus::Failed] {
            for id in self.db.ids_with_status(status)? {
                if out.len() == PER_SWEEP {
                    return Ok(out);
                }
                let Some(r) = self.db.get(&id)? else { continue };
                let old = r
                    .finished_at
                    .as_deref()
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .is_some_and(|t| t.with_timezone(&Utc) < cutoff);
                if old && wanted(&r) {
                    out.push(r);
                }
            }
        }
        Ok(out)
    }

    /// Bytes of the finished `signed_url` exports of `ws` whose files the
    /// service still keeps.
    pub(super) fn signed_bytes(&self, ws: &Workspace) -> Result<u64> {
        let mut used = 0u64;
        for id in self.db.oldest_of_workspace(&ws.id, usize::MAX)? {
            let Some(r) = self.db.get(&id)? else { continue };
            if r.status == JobStatus::Completed && is_signed(&r) && !r.files_removed {
                used = used.saturating_add(r.bytes.unwrap_or(0));
            }
        }
        Ok(used)
    }

    /// Makes room for one more record of `ws`: past its `max_records`,
    /// its oldest finished records are forgotten (with their `signed_url`
    /// files), so a workspace posting without end fills neither the job
    /// database nor the disk.
    pub(super) async fn make_room(&self, ws: &Workspace) -> Result<()> {
        let count = self.db.count_of_workspace(&ws.id)?;
        if count < ws.max_records {
            return Ok(());
        }
        let mut excess = count + 1 - ws.max_records;
        // Active jobs are never forgotten (the quota bounds them).
        for id in self
            .db
            .oldest_of_workspace(&ws.id, excess + ws.max_active_jobs.min(10_000))?
        {
            if excess == 0 {
                break;
            }
            let Some(r) = self.db.get(&id)? else { continue };
            if r.status.is_final() {
                self.remove_signed_files(&r).await;
                self.db.remove(&r.id)?;
                excess -= 1;
            }
        }
        Ok(())
    }
}

/// Whether job `r` exports to `signed_url` (the service's own storage).
fn is_signed(r: &JobRecord) -> bool {
    serde_json::from_str::<Value>(&r.spec).is_ok_and(|v| v["destination"]["kind"] == "signed_url")
}
