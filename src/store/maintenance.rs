//! Store maintenance: converting a store of the layout before Delta Lake
//! (`migrate`), writing checkpoints and deleting unreferenced files
//! (`vacuum`). `nusomi store …` runs these.

use std::collections::HashSet;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::ObjectStoreExt;

use super::catalog::{frames_remove, pack_add, relative_to, under, CommitEntry, Table};
use super::layout::{child, SESSIONS_DIR};
use super::pack::{delete_packs, pack_path, write_pack, PackSource};
use super::sealed_store::{SealedStore, SessionRecord, Snapshot};
use crate::error::{Error, Result};

/// Attempts of a forget to commit its frames change against optimizes.
const FORGET_ATTEMPTS: usize = 5;

/// Sessions per log entry while migrating.
const MIGRATE_BATCH: usize = 2000;

/// What [`SealedStore::migrate`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrateSummary {
    /// Sessions files found under `sessions/`.
    pub found: usize,
    /// Of them, already in the `sessions` log (an earlier, possibly
    /// interrupted run).
    pub already_committed: usize,
    /// Committed by this run.
    pub committed: usize,
    /// Log entries this run wrote per table.
    pub commits: usize,
}

impl SealedStore {
    /// Converts a store sealed before the Delta Lake catalog in place: every
    /// sessions file under `sessions/` (and the frames file its footer
    /// names) is added to the `sessions` and `frames` Delta logs, in batches
    /// of 2,000 per log entry. Nothing is moved or deleted; a second run
    /// (or one after an interruption) adds only what is missing.
    pub async fn migrate(&self) -> Result<MigrateSummary> {
        let loc = self.location();
        let dir = child(&loc.prefix, &[SESSIONS_DIR]);
        let log_dir = dir.clone().join("_delta_log");
        let mut paths: Vec<(Path, u64)> = loc
            .store
            .list(Some(&dir))
            .try_filter(|m| {
                futures::future::ready(
                    m.location.as_ref().ends_with(".parquet")
                        && !m.location.prefix_matches(&log_dir),
                )
            })
            .map_ok(|m| (m.location, m.size))
            .try_collect()
            .await?;
        paths.sort();
        let logged: HashSet<String> = match self.catalog().files(Table::Sessions, None).await? {
            Some(t) => t.files.into_iter().map(|f| f.path).collect(),
            None => HashSet::new(),
        };
        let relative = |p: &Path| relative_to(&loc.prefix, p);
        let mut summary = MigrateSummary {
            found: paths.len(),
            ..Default::default()
        };
        let todo: Vec<(Path, u64)> = paths
            .into_iter()
            .filter(|(p, _)| {
                let seen = logged.contains(&relative(p));
                if seen {
                    summary.already_committed += 1;
                }
                !seen
            })
            .collect();
        for chunk in todo.chunks(MIGRATE_BATCH) {
            let entries: Vec<CommitEntry> = futures::stream::iter(chunk.iter().cloned())
                .map(|(path, _)| async move { self.read_session(&path).await })
                .buffered(32)
                .try_collect()
                .await?;
            self.catalog()
                .commit(&entries, "migrate")
                .await
                .map_err(|e| e.error)?;
            summary.committed += entries.len();
            summary.commits += 1;
        }
        Ok(summary)
    }

    /// Removes the sessions `ids` from the store (retention, erasure): one
    /// log entry per table; later snapshots do not hold them, exports pinned
    /// to earlier versions still do. A pack holding one of them is written
    /// again without it (the old pack is removed like a session's own
    /// file). Their files are deleted by a vacuum once older than its
    /// retention period. Returns how many of `ids` were in the store.
    pub async fn forget(&self, ids: &[String]) -> Result<usize> {
        let snapshot = self.snapshot().await?;
        let root = &self.location().prefix;
        let mut found: Vec<&Arc<SessionRecord>> =
            ids.iter().filter_map(|id| snapshot.get(id)).collect();
        found.sort_by(|a, b| a.session_id.cmp(&b.session_id));
        found.dedup_by(|a, b| a.session_id == b.session_id);
        if found.is_empty() {
            return Ok(0);
        }
        let files: Vec<(String, u64)> = found
            .iter()
            .map(|s| (relative_to(root, &s.session_path), s.session_bytes))
            .collect();
        self.catalog().remove_sessions(&files).await?;
        let gone: HashSet<&str> = found.iter().map(|s| s.session_id.as_str()).collect();
        self.forget_frames(&snapshot, &gone).await?;
        Ok(found.len())
    }

    /// Takes the frames of `gone` out of the `frames` table: their own
    /// files are removed, packs holding them rewritten without them (and
    /// without members `kept` does not hold). Re-planned on the newest log
    /// when an optimize changed the files meanwhile.
    async fn forget_frames(&self, kept: &Snapshot, gone: &HashSet<&str>) -> Result<()> {
        let root = &self.location().prefix;
        let store = &self.location().store;
        for _ in 0..FORGET_ATTEMPTS {
            let Some(frames) = self.catalog().files(Table::Frames, None).await? else {
                return Ok(());
            };
            let mut actions = Vec::new();
            let mut written = Vec::new();
            for f in &frames.files {
                let Some(members) = &f.members else {
                    if gone.contains(f.session_id.as_str()) {
                        actions.push(frames_remove(&f.path, f.bytes, true));
                    }
                    continue;
                };
                if !members.iter().any(|m| gone.contains(m.session_id.as_str())) {
                    continue;
                }
                let path = under(root, &f.path);
                let sources: Vec<PackSource> = members
                    .iter()
                    .filter(|m| !gone.contains(m.session_id.as_str()))
                    .filter_map(|m| {
                        let s = kept.get(&m.session_id)?;
                        Some(PackSource {
                            session_id: m.session_id.clone(),
                            started_at_us: s.started_at_us,
                            path: path.clone(),
                            file_bytes: f.bytes,
                            range: Some((m.start, m.end)),
                            rows: m.rows,
                        })
                    })
                    .collect();
                actions.push(frames_remove(&f.path, f.bytes, true));
                if let Some(first) = sources.first() {
                    let to = pack_path(root, &f.workflow, first.started_at_us);
                    let pack = match write_pack(store, &to, &sources).await {
                        Ok(p) => p,
                        Err(e) => {
                            delete_packs(store, &written).await;
                            return Err(e);
                        }
                    };
                    actions.push(pack_add(root, &pack, &f.workflow, true));
                    written.push(pack.path);
                }
            }
            if actions.is_empty() {
                return Ok(());
            }
            match self.catalog().commit_layout(actions, "forget").await {
                Ok(Some(_)) => return Ok(()),
                Ok(None) => delete_packs(store, &written).await,
                Err(e) => {
                    delete_packs(store, &written).await;
                    return Err(e);
                }
            }
        }
        Err(Error::Catalog {
            table: "frames",
            message: format!(
                "the frames files changed under {FORGET_ATTEMPTS} attempts to take the \
                 forgotten sessions out; they are out of the sessions table, run forget again \
                 to remove their frames"
            ),
        })
    }

    /// Writes a checkpoint of both tables at their newest versions and
    /// returns those versions (`sessions`, `frames`).
    pub async fn checkpoint(&self) -> Result<(u64, u64)> {
        self.catalog().checkpoint().await
    }

    /// Deletes, once older than `retain`, the files of forgotten sessions
    /// (see [`SealedStore::forget`]) and — once older than `retain` and
    /// [`ORPHAN_GRACE_HOURS`] both — frames files that no log entry adds
    /// and no sessions file names (what seals that failed before their
    /// claim left behind; a seal in flight has written its frames file and
    /// not yet committed it, so a young one is never taken for an orphan,
    /// whatever `retain` says). Sessions files outside the log are
    /// claims of seals interrupted before their commit (or a store not fully
    /// migrated): they are listed in [`VacuumSummary::uncommitted`], never
    /// deleted (`migrate` commits them). Committed files are never removed —
    /// sessions are never deleted from the tables — so an export pinned to
    /// any version keeps its files. With `dry_run` nothing is deleted.
    pub async fn vacuum(&self, retain: chrono::Duration, dry_run: bool) -> Result<VacuumSummary> {
        let loc = self.location();
        let cutoff = chrono::Utc::now().timestamp_millis() - retain.num_milliseconds();
        let mut removed: HashSet<String> = HashSet::new();
        let mut summary = VacuumSummary::default();
        for table in [Table::Sessions, Table::Frames] {
            for (path, at) in self.catalog().removed(table).await? {
                removed.insert(path.clone());
                if at <= cutoff {
                    summary.deleted.push(path);
                }
            }
        }
        let orphan_age = retain.max(chrono::Duration::hours(ORPHAN_GRACE_HOURS));
        let candidates = self.catalog().unreferenced(orphan_age).await?;
        let (claims, frames): (Vec<String>, Vec<String>) = candidates
            .into_iter()
            .filter(|p| !removed.contains(p))
            .partition(|p| p.starts_with(&format!("{SESSIONS_DIR}/")));
        let mut named: HashSet<String> = HashSet::new();
        for claim in &claims {
            let path = super::catalog::under(&loc.prefix, claim);
            if let Ok(s) = self.read_session(&path).await {
                named.insert(s.frames_path);
            }
        }
        summary.uncommitted = claims;
        summary
            .deleted
            .extend(frames.into_iter().filter(|f| !named.contains(f)));
        summary.deleted.sort();
        if !dry_run {
            for f in &summary.deleted {
                match loc
                    .store
                    .delete(&super::catalog::under(&loc.prefix, f))
                    .await
                {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(summary)
    }
}

/// The youngest a frames file outside the log may be for
/// [`SealedStore::vacuum`] to delete it: a seal writes its frames file
/// before it commits, and a large bundle's upload may take hours.
pub const ORPHAN_GRACE_HOURS: i64 = 24;

/// What [`SealedStore::vacuum`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VacuumSummary {
    /// Files deleted (or, in a dry run, to delete), relative to the root:
    /// files of forgotten sessions past the retention period, and frames
    /// files that failed seals left behind.
    pub deleted: Vec<String>,
    /// Sessions files no log entry adds (commit them with `migrate`).
    pub uncommitted: Vec<String>,
}
