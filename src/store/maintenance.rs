//! Store maintenance: converting a store of the layout before Delta Lake
//! and committing what interrupted seals left (`migrate`), removing
//! sessions (`forget`), writing checkpoints and deleting unreferenced files
//! (`vacuum`). `nusomi store …` runs these.

use std::collections::{BTreeMap, HashSet};

use arrow::array::{Array, AsArray};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::ObjectStoreExt;

use super::layout::{child, claim_path, CLAIMS_DIR, SESSIONS_DIR};
use super::log_actions::{
    frames_remove, is_pack, one_row_sessions_add, pack_add, relative_to, sessions_file_add,
    sessions_remove, under, CommitEntry, Table,
};
use super::pack::{delete_packs, pack_path, write_pack, PackSource};
use super::seal::{Pending, SealSummary, STALE_CLAIM};
use super::sealed_store::{SealedStore, Snapshot};
use super::sessions_pack::{read_sessions_rows, sessions_pack_path, write_sessions_file};
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
    /// Claims of interrupted seals committed by this run.
    pub claims_committed: usize,
    /// Uncommitted claims younger than [`STALE_CLAIM`], left to the seal
    /// that may be committing them.
    pub claims_in_flight: usize,
}

/// The session id a claim path names.
fn claimed_id(path: &Path) -> Option<String> {
    path.filename()?
        .strip_suffix(".parquet")
        .map(str::to_string)
}

impl SealedStore {
    /// Converts a store sealed before the Delta Lake catalog in place: every
    /// one-row sessions file under `sessions/` (and the frames file its
    /// footer names) is added to the `sessions` and `frames` Delta logs, in
    /// batches of 2,000 per log entry. Then commits the claims under
    /// `claims/` that interrupted seals left uncommitted and that are older
    /// than [`STALE_CLAIM`] (younger ones may be a seal's commit in flight).
    /// Nothing is moved or deleted; a second run (or one after an
    /// interruption) adds only what is missing.
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
                        && !m.location.prefix_matches(&log_dir)
                        && !is_pack(m.location.as_ref()),
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
                .map(|(path, _)| async move { Ok::<_, Error>(self.read_claim(&path).await?.0) })
                .buffered(32)
                .try_collect()
                .await?;
            let adds = entries.iter().map(one_row_sessions_add).collect();
            self.catalog()
                .commit(&entries, adds, "migrate")
                .await
                .map_err(|e| e.error)?;
            summary.committed += entries.len();
            summary.commits += 1;
        }
        self.commit_stale_claims(&mut summary).await?;
        Ok(summary)
    }

    /// Commits the stale claims no snapshot holds (see [`SealedStore::migrate`]).
    async fn commit_stale_claims(&self, summary: &mut MigrateSummary) -> Result<()> {
        let loc = self.location();
        let snapshot = self.snapshot_at(None).await?;
        let now = chrono::Utc::now();
        let claims: Vec<Path> = loc
            .store
            .list(Some(&child(&loc.prefix, &[CLAIMS_DIR])))
            .try_filter_map(|m| {
                let id = claimed_id(&m.location);
                let young = now
                    .signed_duration_since(m.last_modified)
                    .to_std()
                    .unwrap_or_default()
                    < STALE_CLAIM;
                let open = id.is_some_and(|id| snapshot.get(&id).is_none());
                if open && young {
                    summary.claims_in_flight += 1;
                }
                futures::future::ready(Ok((open && !young).then_some(m.location)))
            })
            .try_collect()
            .await?;
        for chunk in claims.chunks(MIGRATE_BATCH) {
            let pending: Vec<Pending> = futures::stream::iter(chunk.iter().cloned())
                .map(|path| async move {
                    let (entry, row) = self.read_claim(&path).await?;
                    Ok::<_, Error>(Pending {
                        summary: SealSummary {
                            session_id: entry.session_id.clone(),
                            workflow: entry.workflow.clone(),
                            frames: entry.frame_count as usize,
                            events: 0,
                            image_bytes: 0,
                            seal: entry.seal.clone(),
                        },
                        entry,
                        row,
                        wrote_claim: false,
                    })
                })
                .buffered(32)
                .try_collect()
                .await?;
            for (_, result) in self.commit_batch(pending).await {
                result?;
            }
            summary.claims_committed += chunk.len();
            summary.commits += 1;
        }
        Ok(())
    }

    /// Removes the sessions `ids` from the store (retention, erasure): their
    /// rows leave the `sessions` table in one log entry (a sessions file
    /// holding one is written again without it), then their frames leave
    /// `frames` (a pack holding one is written again without it); later
    /// snapshots do not hold them, exports pinned to earlier versions still
    /// do. Their claims are deleted, so the same bundle may be sealed
    /// again; their files are deleted by a vacuum once older than its
    /// retention period. Returns how many of `ids` were in the store.
    pub async fn forget(&self, ids: &[String]) -> Result<usize> {
        let wanted: HashSet<&str> = ids.iter().map(String::as_str).collect();
        let mut attempts = 0;
        let (snapshot, gone) = loop {
            attempts += 1;
            let snapshot = self.snapshot_at(None).await?;
            let gone: HashSet<String> = snapshot
                .sessions
                .iter()
                .filter(|s| wanted.contains(s.session_id.as_str()))
                .map(|s| s.session_id.clone())
                .collect();
            if gone.is_empty() {
                return Ok(0);
            }
            let gone_ref: HashSet<&str> = gone.iter().map(String::as_str).collect();
            if self.forget_sessions(&snapshot, &gone_ref).await? {
                break (snapshot, gone);
            }
            if attempts >= FORGET_ATTEMPTS {
                return Err(Error::Catalog {
                    table: "sessions",
                    message: format!(
                        "the sessions files changed under {FORGET_ATTEMPTS} attempts to take \
                         the sessions out; nothing was removed, run forget again"
                    ),
                });
            }
        };
        let gone_ref: HashSet<&str> = gone.iter().map(String::as_str).collect();
        self.forget_frames(&snapshot, &gone_ref).await?;
        let loc = self.location();
        for id in &gone {
            match loc.store.delete(&claim_path(&loc.prefix, id)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(gone.len())
    }

    /// Takes the rows of `gone` out of the `sessions` table at `snapshot`'s
    /// version in one log entry; `false` when an optimize changed the files
    /// meanwhile (nothing committed, re-plan).
    async fn forget_sessions(&self, snapshot: &Snapshot, gone: &HashSet<&str>) -> Result<bool> {
        let loc = self.location();
        let root = &loc.prefix;
        // Sessions file → (its size, whether it holds many sessions).
        let mut files: BTreeMap<&Path, (u64, bool)> = BTreeMap::new();
        for s in snapshot
            .sessions
            .iter()
            .filter(|s| gone.contains(s.session_id.as_str()))
        {
            files.insert(&s.session_path, (s.session_bytes, s.session_row.is_some()));
        }
        let mut actions = Vec::new();
        let mut written: Vec<Path> = Vec::new();
        for (path, (bytes, many)) in files {
            actions.push(sessions_remove(&relative_to(root, path), bytes, true));
            if !many {
                continue;
            }
            // The rows that stay: sessions the snapshot reads from this file.
            let kept = read_sessions_rows(&loc.store, path, |id| {
                !gone.contains(id) && snapshot.get(id).is_some_and(|s| &s.session_path == path)
            })
            .await?;
            let Some(first) = kept
                .column_by_name("session_id")
                .map(|c| c.as_string::<i32>())
                .filter(|ids| !ids.is_empty())
                .and_then(|ids| snapshot.get(ids.value(0)))
            else {
                continue;
            };
            let (workflow, started) = (first.workflow.clone(), first.started_at_us);
            let to = sessions_pack_path(root, &workflow, started);
            written.push(to.clone());
            match write_sessions_file(&loc.store, &to, &[kept]).await {
                Ok(Some(file)) => actions.push(sessions_file_add(root, &file, true)),
                Ok(None) => {}
                Err(e) => {
                    delete_packs(&loc.store, &written).await;
                    return Err(e);
                }
            }
        }
        match self
            .catalog()
            .commit_layout(Table::Sessions, actions, "forget")
            .await
        {
            Ok(Some(_)) => Ok(true),
            Ok(None) => {
                delete_packs(&loc.store, &written).await;
                Ok(false)
            }
            Err(e) => {
                delete_packs(&loc.store, &written).await;
                Err(e)
            }
        }
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
            match self
                .catalog()
                .commit_layout(Table::Frames, actions, "forget")
                .await
            {
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
        // Unreferenced one-row sessions files are claims of an older store;
        // sessions files of many sessions outside the log are what failed
        // commits left, deleted like orphaned frames files.
        let (mut claims, frames): (Vec<String>, Vec<String>) = candidates
            .into_iter()
            .filter(|p| !removed.contains(p))
            .partition(|p| p.starts_with(&format!("{SESSIONS_DIR}/")) && !is_pack(p));
        let snapshot = self.snapshot_at(None).await?;
        let mut listed = loc.store.list(Some(&child(&loc.prefix, &[CLAIMS_DIR])));
        while let Some(m) = listed.try_next().await? {
            if claimed_id(&m.location).is_some_and(|id| snapshot.get(&id).is_none()) {
                claims.push(relative_to(&loc.prefix, &m.location));
            }
        }
        claims.sort();
        let mut named: HashSet<String> = HashSet::new();
        for claim in &claims {
            let path = super::log_actions::under(&loc.prefix, claim);
            if let Ok((s, _)) = self.read_claim(&path).await {
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
                    .delete(&super::log_actions::under(&loc.prefix, f))
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
    /// Claims (and one-row sessions files of older stores) whose session
    /// no log entry adds (commit them with `migrate`).
    pub uncommitted: Vec<String>,
}
