//! `GET /v1/exports/{id}/verify` as the service runs it: bounded — one
//! verification per workspace and [`VERIFIES_AT_ONCE`] in all, each on the
//! export runtime (never the one answering requests) and within
//! [`VERIFY_SECS`] — and never through a link planted in a workspace's
//! export folder.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use super::JobService;
use crate::error::{Error, Result};
use crate::export::Export;
use crate::jobs::record::JobStatus;
use crate::sink::Verification;
use crate::workspace::Workspace;

/// Why `dir` cannot be verified without following a link, if so: the
/// first symbolic link at or below it (relative to it), found without
/// following any; or that it holds more than 1,000,000 entries (refused,
/// not taken for a folder without links).
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
            let at = if d == dir { ".".into() } else { rel() };
            return Ok(Some(format!(
                "{at} in the export's folder is a symbolic link"
            )));
        }
        if meta.is_dir() {
            for e in std::fs::read_dir(&d).map_err(|e| Error::io(&d, e))? {
                seen += 1;
                if seen > 1_000_000 {
                    return Ok(Some(format!(
                        "the export's folder holds more than 1,000,000 entries (from {}): not all could be checked for links",
                        rel()
                    )));
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
/// when dropped — by the task that verifies, so a caller that hangs up
/// does not free it while the work goes on.
struct VerifyTurn {
    running: Arc<Mutex<HashSet<String>>>,
    workspace: String,
}

impl VerifyTurn {
    fn take(running: &Arc<Mutex<HashSet<String>>>, workspace: &str) -> Result<Self> {
        let mut set = running.lock().unwrap_or_else(PoisonError::into_inner);
        if set.len() >= VERIFIES_AT_ONCE || set.contains(workspace) {
            return Err(Error::Busy { what: "verify" });
        }
        set.insert(workspace.to_string());
        Ok(VerifyTurn {
            running: Arc::clone(running),
            workspace: workspace.to_string(),
        })
    }
}

impl Drop for VerifyTurn {
    fn drop(&mut self) {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
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
        let spec = self.record_spec(ws, &r)?;
        // Bounded: one verification per workspace and a few in all, each
        // on the export runtime (never the one answering requests) and
        // within VERIFY_SECS.
        let turn = VerifyTurn::take(&self.verifying, &ws.id)?;
        let target = Export::open_target(&spec, &r.id, &self.dest_for(ws)).await?;
        // A link planted in a workspace's folder since the export (a shard
        // made a link to a server file) is refused, never followed.
        if let (Some(dir), false) = (&target.local_dir, ws.trusted) {
            let dir = dir.clone();
            let link = tokio::task::spawn_blocking(move || first_link_under(&dir)).await??;
            if let Some(link) = link {
                return Err(Error::Config {
                    field: "destination.path".into(),
                    message: format!("{link}: not followed, the export is not verified"),
                });
            }
        }
        let task = self.exec.spawn(async move {
            let _turn = turn;
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
