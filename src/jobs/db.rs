//! [`JobDb`]: durable job records in an embedded `redb` database
//! (`DATA_DIR/jobs.redb`). Every write is one committed (fsynced)
//! transaction, so a job answered with `202` survives a crash. Keys are the
//! job ids, whose ULIDs sort by creation time: listing newest first is a
//! reverse scan, and the cursor is the last id returned.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::record::{JobRecord, JobStatus};
use crate::error::{Error, Result};

const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("jobs");

fn db_err(e: impl std::fmt::Display) -> Error {
    Error::Jobs(format!("job database: {e}"))
}

/// Filters of `GET /v1/exports`.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    /// Jobs whose spec names this workflow.
    pub workflow: Option<String>,
    /// Jobs in this state.
    pub status: Option<JobStatus>,
    /// Jobs with this `tag`.
    pub tag: Option<String>,
    /// Jobs of this workspace.
    pub workspace: Option<String>,
}

impl JobFilter {
    fn matches(&self, r: &JobRecord) -> bool {
        self.workflow
            .as_ref()
            .is_none_or(|w| r.workflows.iter().any(|x| x == w))
            && self.status.is_none_or(|s| r.status == s)
            && self
                .tag
                .as_ref()
                .is_none_or(|t| r.tag.as_deref() == Some(t.as_str()))
            && self
                .workspace
                .as_ref()
                .is_none_or(|w| r.workspace_id() == w)
    }
}

/// The job database.
#[derive(Debug)]
pub struct JobDb {
    db: Database,
}

impl JobDb {
    /// Opens (or creates) `dir/jobs.redb`.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let db = Database::create(dir.join("jobs.redb")).map_err(db_err)?;
        let w = db.begin_write().map_err(db_err)?;
        w.open_table(JOBS).map_err(db_err)?;
        w.commit().map_err(db_err)?;
        Ok(JobDb { db })
    }

    /// Stores `r` (insert or replace), durably.
    pub fn put(&self, r: &JobRecord) -> Result<()> {
        let bytes = serde_json::to_vec(r).map_err(db_err)?;
        let w = self.db.begin_write().map_err(db_err)?;
        {
            let mut t = w.open_table(JOBS).map_err(db_err)?;
            t.insert(r.id.as_str(), bytes.as_slice()).map_err(db_err)?;
        }
        w.commit().map_err(db_err)
    }

    /// Applies `f` to the record `id` in one transaction; returns the new
    /// record (None if there is no such job).
    pub fn update(&self, id: &str, f: impl FnOnce(&mut JobRecord)) -> Result<Option<JobRecord>> {
        let w = self.db.begin_write().map_err(db_err)?;
        let out = {
            let mut t = w.open_table(JOBS).map_err(db_err)?;
            let current = match t.get(id).map_err(db_err)? {
                Some(v) => Some(serde_json::from_slice::<JobRecord>(v.value()).map_err(db_err)?),
                None => None,
            };
            match current {
                Some(mut r) => {
                    f(&mut r);
                    let bytes = serde_json::to_vec(&r).map_err(db_err)?;
                    t.insert(id, bytes.as_slice()).map_err(db_err)?;
                    Some(r)
                }
                None => None,
            }
        };
        w.commit().map_err(db_err)?;
        Ok(out)
    }

    /// Removes the record `id`; returns whether there was one.
    pub fn remove(&self, id: &str) -> Result<bool> {
        let w = self.db.begin_write().map_err(db_err)?;
        let found = {
            let mut t = w.open_table(JOBS).map_err(db_err)?;
            let removed = t.remove(id).map_err(db_err)?;
            removed.is_some()
        };
        w.commit().map_err(db_err)?;
        Ok(found)
    }

    /// The record `id`.
    pub fn get(&self, id: &str) -> Result<Option<JobRecord>> {
        let r = self.db.begin_read().map_err(db_err)?;
        let t = r.open_table(JOBS).map_err(db_err)?;
        match t.get(id).map_err(db_err)? {
            Some(v) => Ok(Some(serde_json::from_slice(v.value()).map_err(db_err)?)),
            None => Ok(None),
        }
    }

    /// Up to `limit` records matching `filter`, newest first, strictly older
    /// than `cursor` (an id); and the cursor of the next page.
    pub fn list(
        &self,
        filter: &JobFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<(Vec<JobRecord>, Option<String>)> {
        let r = self.db.begin_read().map_err(db_err)?;
        let t = r.open_table(JOBS).map_err(db_err)?;
        let iter = match cursor {
            Some(c) => t.range::<&str>(..c).map_err(db_err)?,
            None => t.range::<&str>(..).map_err(db_err)?,
        };
        let mut out = Vec::new();
        let mut more = false;
        for item in iter.rev() {
            let (_, v) = item.map_err(db_err)?;
            let rec: JobRecord = serde_json::from_slice(v.value()).map_err(db_err)?;
            if !filter.matches(&rec) {
                continue;
            }
            if out.len() == limit {
                more = true;
                break;
            }
            out.push(rec);
        }
        let next = if more {
            out.last().map(|r| r.id.clone())
        } else {
            None
        };
        Ok((out, next))
    }

    /// Every record in `status`, oldest first.
    pub fn with_status(&self, status: JobStatus) -> Result<Vec<JobRecord>> {
        let r = self.db.begin_read().map_err(db_err)?;
        let t = r.open_table(JOBS).map_err(db_err)?;
        let mut out = Vec::new();
        for item in t.iter().map_err(db_err)? {
            let (_, v) = item.map_err(db_err)?;
            let rec: JobRecord = serde_json::from_slice(v.value()).map_err(db_err)?;
            if rec.status == status {
                out.push(rec);
            }
        }
        Ok(out)
    }
}
