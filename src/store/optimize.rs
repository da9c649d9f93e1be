//! `optimize`: rewriting a store's small frames files — one per session, as
//! sealing writes them, and small packs — into packs of many sessions
//! (`pack.rs`), so the `frames` log holds few files whatever the number of
//! sessions.
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

use super::catalog::{frames_remove, pack_add, relative_to};
use super::layout::month_of;
use super::pack::{delete_packs, pack_path, write_pack, PackSource};
use super::sealed_store::{SealedStore, SessionRecord};
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
            match self.catalog().commit_layout(actions, "optimize").await {
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
        Ok(summary)
    }
}
