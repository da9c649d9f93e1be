//! `GET /v1/exports/{id}/verify` as the service runs it: bounded — one
//! verification per workspace and [`VERIFIES_AT_ONCE`] in all, each on the
//! export runtime (never the one answering requests) and within
//! [`VERIFY_SECS`] — and never through a link planted in a workspace's
//! export folder.

use chrono::{DateTime, Utc};

use super::JobService;
use crate::error::{Error, Result};
use crate::export::Export;
use crate::jobs::record::JobStatus;
use crate::sink::Verification;
use crate::workspace::Workspace;

/// The first symbolic link at or below `dir` (relative to it), without
/// following any; at most 1,000,000 entries are looked at.
fn first_link_under(dir: &std::path::Path) -> Result<Option<String>> {
    let mut stack = vec![dir.to_path_buf()];
    let mut seen = 0usize;
    while let Some(d) = stack.pop() {
        let meta = match std::fs::symlink_metadata(&d) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(&d, e)),
        };
        let rel = || d.strip_prefix(dir).unwrap_or(&d).display().to_string();
        if meta.file_type().is_symlink() {
            return Ok(Some(if d == dir { ".".into() } else { rel() }));
        }
        if meta.is_dir() {
            for e in std::fs::read_dir(&d).map_err(|e| Error::io(&d, e))? {
                seen += 1;
                if seen > 1_000_000 {
                    return Ok(None);
                }
                stack.push(e.map_err(|e| Error::io(&d, e))?.path());
            }
        }
    }
    Ok(None)
}

/// Time one `GET /v1/exports/{id}/verify` may take.
pub const VERIFY_SECS: u64 = 600;
/// Verifications the service runs at once (each workspace one at most).
pub const VERIFIES_AT_ONCE: usize = 2;

/// A running verification's place: taken for one workspace, given back
/// when dropped.
struct VerifyTurn<'a> {
    service: &'a JobService,
    workspace: String,
}

impl<'a> VerifyTurn<'a> {
    fn take(service: &'a JobService, workspace: &str) -> Result<Self> {
        let mut running = service
            .verifying
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if running.len() >= VERIFIES_AT_ONCE || running.contains(workspace) {
            return Err(Error::Busy { what: "verify" });
        }
        running.insert(workspace.to_string());
        Ok(VerifyTurn {
            service,
            workspace: workspace.to_string(),
        })
    }
}

impl Drop for VerifyTurn<'_> {
    fn drop(&mut self) {
        self.service
            .verifying
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.workspace);
    }
}

impl JobService {
    /// Verifies completed job `id` of workspace `ws` against its manifest,
    /// where the export was written (`None`: unknown here or not completed).
    pub async fn verify(&self, ws: &Workspace, id: &str) -> Result<Option<Verification>> {
        let Some(r) = self.record(ws, id)? else {
            return Ok(None);
        };
        if r.status != JobStatus::Completed {
            return Ok(None);
        }
        let created = DateTime::parse_from_rfc3339(&r.created_at)
            .map_err(|e| Error::Jobs(format!("job {id}: bad created_at: {e}")))?
            .with_timezone(&Utc);
        let spec = self.checked_spec(ws, &r.spec, created)?;
        // Bounded: one verification per workspace and a few in all, each
        // on the export runtime (never the one answering requests) and
        // within VERIFY_SECS.
        let _turn = VerifyTurn::take(self, &ws.id)?;
        let target = Export::open_target(&spec, &r.id, &self.dest_for(ws)).await?;
        // A link planted in a workspace's folder since the export (a shard
        // made a link to a server file) is refused, never followed.
        if let (Some(dir), false) = (&target.local_dir, ws.trusted) {
            let dir = dir.clone();
            let link = tokio::task::spawn_blocking(move || first_link_under(&dir)).await??;
            if let Some(link) = link {
                return Err(Error::Config {
                    field: "destination.path".into(),
                    message: format!(
                        "{link} in the export's folder is a symbolic link: not followed, the export is not verified"
                    ),
                });
            }
        }
        let task = self.exec.spawn(async move {
            let run = crate::sink::verify(&target.store, &target.prefix);
            tokio::time::timeout(std::time::Duration::from_secs(VERIFY_SECS), run).await
        });
        match task.await {
            Ok(Ok(report)) => Ok(Some(report?)),
            Ok(Err(_)) => Err(Error::TimedOut {
                what: "verify",
                secs: VERIFY_SECS,
            }),
            Err(e) => Err(Error::Task(e)),
        }
    }
}
