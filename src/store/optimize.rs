//! `optimize`: rewriting a store's small frames files — one per session, as
//! sealing writes them, and small packs — into packs of many sessions
//! (`pack.rs`), and its small sessions files — one per seal commit and
//! workflow-month, or one per session in older stores — into files of up
//! to [`MAX_PACK_SESSIONS`] rows (`sessions_pack.rs`), so both logs hold few
//! files whatever the number of sessions.
//!
//! Per workflow and month (the layout's folders): the committed sessions
//! whose frames sit in files smaller than half the target are copied, in
//! `session_id` order, into packs of at most the target size, and one
//! `frames` log entry removes the old files and adds the packs, both with
//! `dataChange = false` (the rows are the same). Readers of older versions
//! still read the old files until a vacuum past the retention deletes them;
//! exports read the same rows in the same order, so their bytes do not
//! change. Each group commits on its own, so an interrupted run keeps what
//! it finished and a second run does the rest; a group that another
//! optimize or a forget changed meanwhile is left for the next run.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use arrow::array::RecordBatch;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};

use super::layout::{claim_path, month_of};
use super::log_actions::{
    frames_remove, pack_add, relative_to, sessions_file_add, sessions_remove, Table,
};
use super::pack::{delete_packs, pack_path, write_pack, PackSource};
use super::sealed_store::{SealedStore, SessionRecord};
use super::sessions_pack::{
    read_sessions_rows, sessions_pack_path, write_sessions_file, SessionsFile, MAX_PACK_SESSIONS,
};
use crate::error::Result;

/// Default target size of a pack.
pub const DEFAULT_PACK_BYTES: u64 = 256 << 20;

/// What [`SealedStore::optimize`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OptimizeSummary {
    /// Workflow-month groups rewritten.
    pub groups: usize,
    /// Groups left as they were because the store changed under them.
    pub skipped: usize,
    /// Sessions whose frames moved.
    pub sessions: usize,
    /// Frames files the log no longer adds.
    pub files_removed: usize,
    /// Packs written.
    pub packs_written: usize,
    /// Bytes of those packs.
    pub bytes_written: u64,
    /// Sessions files the `sessions` log no longer adds.
    pub sessions_files_removed: usize,
    /// Sessions files written in their place.
    pub sessions_files_written: usize,
}

impl SealedStore {
    /// Packs the small frames files of the newest version into files of
    /// about `target_bytes` (see the module documentation).
    pub async fn optimize(&self, target_bytes: u64) -> Result<OptimizeSummary> {
        let target = target_bytes.max(1);
        let snapshot = self.snapshot_at(None).await?;
        let root = self.location().prefix.clone();
        // (workflow, month) → sessions whose frames file is small.
        let mut groups: BTreeMap<(String, String), Vec<Arc<SessionRecord>>> = BTreeMap::new();
        for s in &snapshot.sessions {
            if s.frames_bytes >= target / 2 {
                continue;
            }
            let key = (s.workflow.clone(), month_of(s.started_at_us));
            groups.entry(key).or_default().push(Arc::clone(s));
        }
        let mut summary = OptimizeSummary::default();
        for ((workflow, _), sessions) in groups {
            let files: HashSet<&object_store::path::Path> =
                sessions.iter().map(|s| &s.frames_path).collect();
            if files.len() < 2 {
                continue;
            }
            // A pack is rewritten whole: every session it holds moves
            // (sessions of the group are sorted by id already).
            let mut packs: Vec<Vec<PackSource>> = vec![Vec::new()];
            let mut in_pack = 0u64;
            for s in &sessions {
                if in_pack > 0 && in_pack + s.frames_weight() > target {
                    packs.push(Vec::new());
                    in_pack = 0;
                }
                in_pack += s.frames_weight();
                packs
                    .last_mut()
                    .expect("one pack at least")
                    .push(PackSource::from(&**s));
            }
            let store = &self.location().store;
            let mut written = Vec::with_capacity(packs.len());
            for members in &packs {
                let path = pack_path(&root, &workflow, members[0].started_at_us);
                match write_pack(store, &path, members).await {
                    Ok(p) => written.push(p),
                    Err(e) => {
                        delete_packs(store, written.iter().map(|p| &p.path)).await;
                        return Err(e);
                    }
                }
            }
            let mut removed: Vec<(String, u64)> = sessions
                .iter()
                .map(|s| (relative_to(&root, &s.frames_path), s.frames_bytes))
                .collect();
            removed.sort();
            removed.dedup();
            let mut actions: Vec<_> = removed
                .iter()
                .map(|(p, b)| frames_remove(p, *b, false))
                .collect();
            actions.extend(written.iter().map(|p| pack_add(&root, p, &workflow, false)));
            match self
                .catalog()
                .commit_layout(Table::Frames, actions, "optimize")
                .await
            {
                Ok(Some(_)) => {
                    summary.groups += 1;
                    summary.sessions += sessions.len();
                    summary.files_removed += removed.len();
                    summary.packs_written += written.len();
                    summary.bytes_written += written.iter().map(|p| p.bytes).sum::<u64>();
                }
                other => {
                    delete_packs(store, written.iter().map(|p| &p.path)).await;
                    other?;
                    summary.skipped += 1;
                }
            }
        }
        // The frames side's snapshot is not needed any more: one snapshot
        // (one record per session) in memory at a time.
        drop(snapshot);
        self.optimize_sessions(&mut summary).await?;
        Ok(summary)
    }

    /// Merges the small sessions files of each workflow and month (one-row
    /// files of older stores, the files of small seal commits) into files
    /// of up to [`MAX_PACK_SESSIONS`] rows, in one `sessions` log entry per
    /// group (`dataChange = false`). A one-row file is also its session's
    /// claim: it is copied to the claim path first.
    async fn optimize_sessions(&self, summary: &mut OptimizeSummary) -> Result<()> {
        let snapshot = self.snapshot_at(None).await?;
        let loc = self.location();
        let root = &loc.prefix;
        let small = |s: &SessionRecord| {
            s.session_row
                .is_none_or(|(_, total)| total < (MAX_PACK_SESSIONS / 2) as u64)
        };
        let mut groups: BTreeMap<(String, String), Vec<Arc<SessionRecord>>> = BTreeMap::new();
        for s in snapshot.sessions.iter().filter(|s| small(s)) {
            let key = (s.workflow.clone(), month_of(s.started_at_us));
            groups.entry(key).or_default().push(Arc::clone(s));
        }
        for ((workflow, _), sessions) in groups {
            let files: BTreeMap<&Path, (u64, bool)> = sessions
                .iter()
                .map(|s| (&s.session_path, (s.session_bytes, s.session_row.is_none())))
                .collect();
            // One file is left as it is, unless it is a one-row file of an
            // older store (its session gets a claim of its own).
            if files.len() < 2 && files.values().all(|(_, one_row)| !one_row) {
                continue;
            }
            // A one-row file is its session's claim until the claim has an
            // object of its own.
            for s in sessions.iter().filter(|s| s.session_row.is_none()) {
                let bytes = loc.store.get(&s.session_path).await?.bytes().await?;
                let opts = PutOptions {
                    mode: PutMode::Create,
                    ..Default::default()
                };
                let claim = claim_path(root, &s.session_id);
                match loc
                    .store
                    .put_opts(&claim, PutPayload::from(bytes), opts)
                    .await
                {
                    Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            let mut written: Vec<SessionsFile> = Vec::new();
            let mut paths: Vec<Path> = Vec::new();
            let mut failed = None;
            for chunk in sessions.chunks(MAX_PACK_SESSIONS) {
                let to = sessions_pack_path(root, &workflow, chunk[0].started_at_us);
                paths.push(to.clone());
                match self.session_rows(chunk).await {
                    Ok(rows) => match write_sessions_file(&loc.store, &to, &rows).await {
                        Ok(Some(f)) => written.push(f),
                        Ok(None) => {}
                        Err(e) => failed = Some(e),
                    },
                    Err(e) => failed = Some(e),
                }
                if failed.is_some() {
                    break;
                }
            }
            if let Some(e) = failed {
                delete_packs(&loc.store, &paths).await;
                return Err(e);
            }
            let mut actions: Vec<_> = files
                .iter()
                .map(|(p, (bytes, _))| sessions_remove(&relative_to(root, p), *bytes, false))
                .collect();
            actions.extend(written.iter().map(|f| sessions_file_add(root, f, false)));
            match self
                .catalog()
                .commit_layout(Table::Sessions, actions, "optimize")
                .await
            {
                Ok(Some(_)) => {
                    summary.sessions_files_removed += files.len();
                    summary.sessions_files_written += written.len();
                }
                other => {
                    delete_packs(&loc.store, &paths).await;
                    other?;
                    summary.skipped += 1;
                }
            }
        }
        Ok(())
    }

    /// The rows of `sessions` (sorted by id), read from the sessions files
    /// the snapshot reads them from.
    async fn session_rows(&self, sessions: &[Arc<SessionRecord>]) -> Result<Vec<RecordBatch>> {
        let store = &self.location().store;
        let mut wanted: BTreeMap<&Path, HashSet<&str>> = BTreeMap::new();
        for s in sessions {
            wanted
                .entry(&s.session_path)
                .or_default()
                .insert(s.session_id.as_str());
        }
        let mut out = Vec::with_capacity(wanted.len());
        for (path, ids) in wanted {
            out.push(read_sessions_rows(store, path, |id| ids.contains(id)).await?);
        }
        Ok(out)
    }
}
