//! [`JobDb`]: durable job records in an embedded `redb` database
//! (`DATA_DIR/jobs.redb`). Every write is one committed (fsynced)
//! transaction, so a job answered with `202` survives a crash. Records are
//! keyed by job id, whose ULIDs sort by creation time, and two index tables
//! kept in the same transactions let the service avoid scanning them all:
//!
//! * `jobs_by_workspace`: `workspace ␟ id` — a workspace's list, newest
//!   first, is a reverse range scan of its own entries;
//! * `jobs_by_status`: `status ␟ id` — counting a workspace's active jobs
//!   reads only the queued and running ones;
//! * `jobs_queued_by_workspace`: `workspace ␟ id` of queued jobs only —
//!   dispatch takes the oldest queued job of the workspace after the one it
//!   served last (round robin), with one range lookup, so one workspace's
//!   long queue never holds the others' jobs back.
//!
//! A database written before an index existed is indexed when opened.

use std::path::Path;

use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table, TableDefinition,
};

use super::record::{JobRecord, JobStatus};
use crate::error::{Error, Result};

const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("jobs");
const BY_WORKSPACE: TableDefinition<&str, ()> = TableDefinition::new("jobs_by_workspace");
const BY_STATUS: TableDefinition<&str, ()> = TableDefinition::new("jobs_by_status");
const QUEUED: TableDefinition<&str, ()> = TableDefinition::new("jobs_queued_by_workspace");

/// Separates the parts of an index key (never in ids or workspace ids).
const SEP: char = '\u{1f}';

fn db_err(e: impl std::fmt::Display) -> Error {
    Error::Jobs(format!("job database: {e}"))
}

fn ws_key(r: &JobRecord) -> String {
    format!("{}{SEP}{}", r.workspace_id(), r.id)
}

fn status_key(r: &JobRecord) -> String {
    format!("{}{SEP}{}", r.status.as_str(), r.id)
}

/// The `[start, end)` keys of every index entry under `group`.
fn group_range(group: &str) -> (String, String) {
    (
        format!("{group}{SEP}"),
        format!("{group}{}", char::from(0x20)),
    )
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

type Tables<'t> = (
    Table<'t, &'static str, &'static [u8]>,
    Table<'t, &'static str, ()>,
    Table<'t, &'static str, ()>,
    Table<'t, &'static str, ()>,
);

fn open_tables(w: &redb::WriteTransaction) -> Result<Tables<'_>> {
    Ok((
        w.open_table(JOBS).map_err(db_err)?,
        w.open_table(BY_WORKSPACE).map_err(db_err)?,
        w.open_table(BY_STATUS).map_err(db_err)?,
        w.open_table(QUEUED).map_err(db_err)?,
    ))
}

/// Removes the index entries of `old`.
fn unindex(t: &mut Tables<'_>, old: &JobRecord) -> Result<()> {
    t.1.remove(ws_key(old).as_str()).map_err(db_err)?;
    t.2.remove(status_key(old).as_str()).map_err(db_err)?;
    t.3.remove(ws_key(old).as_str()).map_err(db_err)?;
    Ok(())
}

/// Writes `r` and its index entries, replacing those of `old`.
fn store(t: &mut Tables<'_>, old: Option<&JobRecord>, r: &JobRecord) -> Result<()> {
    if let Some(old) = old {
        unindex(t, old)?;
    }
    let bytes = serde_json::to_vec(r).map_err(db_err)?;
    t.0.insert(r.id.as_str(), bytes.as_slice())
        .map_err(db_err)?;
    t.1.insert(ws_key(r).as_str(), ()).map_err(db_err)?;
    t.2.insert(status_key(r).as_str(), ()).map_err(db_err)?;
    if r.status == JobStatus::Queued {
        t.3.insert(ws_key(r).as_str(), ()).map_err(db_err)?;
    }
    Ok(())
}

/// The job id an index key ends with.
fn id_of(key: &str) -> String {
    key.rsplit(SEP).next().unwrap_or_default().to_string()
}

/// Entries of `table` in `[start, end)`.
fn count_range(
    table: &impl ReadableTable<&'static str, ()>,
    start: &str,
    end: &str,
) -> Result<u64> {
    let mut n = 0;
    for item in table.range::<&str>(start..end).map_err(db_err)? {
        item.map_err(db_err)?;
        n += 1;
    }
    Ok(n)
}

/// The ids of up to `limit` index entries in `[start, end)`, in order.
fn index_ids(
    index: &impl ReadableTable<&'static str, ()>,
    start: &str,
    end: &str,
    limit: usize,
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for item in index.range::<&str>(start..end).map_err(db_err)? {
        if out.len() == limit {
            break;
        }
        let (k, _) = item.map_err(db_err)?;
        out.push(id_of(k.value()));
    }
    Ok(out)
}

fn decode(bytes: &[u8]) -> Result<JobRecord> {
    serde_json::from_slice(bytes).map_err(db_err)
}

impl JobDb {
    /// Opens (or creates) `dir/jobs.redb`, indexing older databases.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let db = Database::create(dir.join("jobs.redb")).map_err(db_err)?;
        let w = db.begin_write().map_err(db_err)?;
        {
            let mut t = open_tables(&w)?;
            let (jobs, indexed) = (t.0.len().map_err(db_err)?, t.2.len().map_err(db_err)?);
            let (start, end) = group_range(JobStatus::Queued.as_str());
            let queued = count_range(&t.2, &start, &end)?;
            if indexed < jobs || t.3.len().map_err(db_err)? != queued {
                // Rebuilt from the records: entries of older versions go.
                for table in [&mut t.1, &mut t.2, &mut t.3] {
                    table.retain(|_, _| false).map_err(db_err)?;
                }
                let mut all = Vec::new();
                for item in t.0.iter().map_err(db_err)? {
                    let (_, v) = item.map_err(db_err)?;
                    all.push(decode(v.value())?);
                }
                for r in &all {
                    store(&mut t, None, r)?;
                }
                tracing::info!(jobs = all.len(), "indexed the job database");
            }
        }
        w.commit().map_err(db_err)?;
        Ok(JobDb { db })
    }

    /// Stores `r` (insert or replace), durably.
    pub fn put(&self, r: &JobRecord) -> Result<()> {
        self.put_all(std::slice::from_ref(r))
    }

    /// Stores every record of `records` in one transaction.
    pub fn put_all(&self, records: &[JobRecord]) -> Result<()> {
        let w = self.db.begin_write().map_err(db_err)?;
        {
            let mut t = open_tables(&w)?;
            for r in records {
                let old = match t.0.get(r.id.as_str()).map_err(db_err)? {
                    Some(v) => Some(decode(v.value())?),
                    None => None,
                };
                store(&mut t, old.as_ref(), r)?;
            }
        }
        w.commit().map_err(db_err)
    }

    /// Applies `f` to the record `id` in one transaction; returns the new
    /// record (None if there is no such job).
    pub fn update(&self, id: &str, f: impl FnOnce(&mut JobRecord)) -> Result<Option<JobRecord>> {
        let w = self.db.begin_write().map_err(db_err)?;
        let out = {
            let mut t = open_tables(&w)?;
            let current = match t.0.get(id).map_err(db_err)? {
                Some(v) => Some(decode(v.value())?),
                None => None,
            };
            match current {
                Some(old) => {
                    let mut r = old.clone();
                    f(&mut r);
                    store(&mut t, Some(&old), &r)?;
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
            let mut t = open_tables(&w)?;
            let old = match t.0.remove(id).map_err(db_err)? {
                Some(v) => Some(decode(v.value())?),
                None => None,
            };
            if let Some(old) = &old {
                unindex(&mut t, old)?;
            }
            old.is_some()
        };
        w.commit().map_err(db_err)?;
        Ok(found)
    }

    /// The record `id`.
    pub fn get(&self, id: &str) -> Result<Option<JobRecord>> {
        let r = self.db.begin_read().map_err(db_err)?;
        let t = r.open_table(JOBS).map_err(db_err)?;
        match t.get(id).map_err(db_err)? {
            Some(v) => Ok(Some(decode(v.value())?)),
            None => Ok(None),
        }
    }

    /// Up to `limit` records matching `filter`, newest first, strictly older
    /// than `cursor` (an id); and the cursor of the next page. With a
    /// workspace in the filter only that workspace's entries are read.
    pub fn list(
        &self,
        filter: &JobFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<(Vec<JobRecord>, Option<String>)> {
        let r = self.db.begin_read().map_err(db_err)?;
        let jobs = r.open_table(JOBS).map_err(db_err)?;
        let mut out = Vec::new();
        let mut more = false;
        let mut take = |rec: JobRecord| {
            if !filter.matches(&rec) {
                return true;
            }
            if out.len() == limit {
                more = true;
                return false;
            }
            out.push(rec);
            true
        };
        match &filter.workspace {
            Some(ws) => {
                let index = r.open_table(BY_WORKSPACE).map_err(db_err)?;
                let (start, end) = group_range(ws);
                let end = cursor.map_or(end, |c| format!("{ws}{SEP}{c}"));
                for item in index
                    .range::<&str>(start.as_str()..end.as_str())
                    .map_err(db_err)?
                    .rev()
                {
                    let (k, _) = item.map_err(db_err)?;
                    let id = id_of(k.value());
                    let Some(v) = jobs.get(id.as_str()).map_err(db_err)? else {
                        continue;
                    };
                    if !take(decode(v.value())?) {
                        break;
                    }
                }
            }
            None => {
                let iter = match cursor {
                    Some(c) => jobs.range::<&str>(..c).map_err(db_err)?,
                    None => jobs.range::<&str>(..).map_err(db_err)?,
                };
                for item in iter.rev() {
                    let (_, v) = item.map_err(db_err)?;
                    if !take(decode(v.value())?) {
                        break;
                    }
                }
            }
        }
        let next = if more {
            out.last().map(|r| r.id.clone())
        } else {
            None
        };
        Ok((out, next))
    }

    /// Every record in `status`, oldest first (reads only those).
    pub fn with_status(&self, status: JobStatus) -> Result<Vec<JobRecord>> {
        self.in_status(status, usize::MAX)
    }

    /// The oldest record in `status`, if any (one index lookup).
    pub fn oldest_with_status(&self, status: JobStatus) -> Result<Option<JobRecord>> {
        Ok(self.in_status(status, 1)?.into_iter().next())
    }

    /// The next job to run: the oldest queued job of the first workspace
    /// after `after` (in id order) that has one, else of the first
    /// workspace with one — round robin over the workspaces with queued
    /// jobs, oldest first within each.
    pub fn next_queued(&self, after: Option<&str>) -> Result<Option<JobRecord>> {
        let r = self.db.begin_read().map_err(db_err)?;
        let jobs = r.open_table(JOBS).map_err(db_err)?;
        let index = r.open_table(QUEUED).map_err(db_err)?;
        // Past every key of `after` (its keys are `after ␟ id`, and ␟ is
        // below the space): the next workspace's first key.
        let start = after.map_or_else(String::new, |w| format!("{w}{}", char::from(0x20)));
        // From the next workspace on, then from the start; an entry whose
        // record is not queued (an index older versions left) is passed.
        let after_start = index.range::<&str>(start.as_str()..).map_err(db_err)?;
        let wrapped = index.range::<&str>(..start.as_str()).map_err(db_err)?;
        for item in after_start.chain(wrapped) {
            let (k, _) = item.map_err(db_err)?;
            let id = id_of(k.value());
            if let Some(v) = jobs.get(id.as_str()).map_err(db_err)? {
                let r = decode(v.value())?;
                if r.status == JobStatus::Queued {
                    return Ok(Some(r));
                }
            }
        }
        Ok(None)
    }

    /// Ids of the records in `status`, oldest first (index keys only: a
    /// sweep reads the records one at a time).
    pub fn ids_with_status(&self, status: JobStatus) -> Result<Vec<String>> {
        let r = self.db.begin_read().map_err(db_err)?;
        let index = r.open_table(BY_STATUS).map_err(db_err)?;
        let (start, end) = group_range(status.as_str());
        index_ids(&index, &start, &end, usize::MAX)
    }

    /// How many records workspace `ws` has.
    pub fn count_of_workspace(&self, ws: &str) -> Result<usize> {
        let r = self.db.begin_read().map_err(db_err)?;
        let index = r.open_table(BY_WORKSPACE).map_err(db_err)?;
        let (start, end) = group_range(ws);
        Ok(count_range(&index, &start, &end)? as usize)
    }

    /// Up to `limit` ids of workspace `ws`'s records, oldest first.
    pub fn oldest_of_workspace(&self, ws: &str, limit: usize) -> Result<Vec<String>> {
        let r = self.db.begin_read().map_err(db_err)?;
        let index = r.open_table(BY_WORKSPACE).map_err(db_err)?;
        let (start, end) = group_range(ws);
        index_ids(&index, &start, &end, limit)
    }

    fn in_status(&self, status: JobStatus, limit: usize) -> Result<Vec<JobRecord>> {
        let r = self.db.begin_read().map_err(db_err)?;
        let jobs = r.open_table(JOBS).map_err(db_err)?;
        let index = r.open_table(BY_STATUS).map_err(db_err)?;
        let (start, end) = group_range(status.as_str());
        let mut out = Vec::new();
        for item in index
            .range::<&str>(start.as_str()..end.as_str())
            .map_err(db_err)?
        {
            if out.len() == limit {
                break;
            }
            let (k, _) = item.map_err(db_err)?;
            let id = id_of(k.value());
            if let Some(v) = jobs.get(id.as_str()).map_err(db_err)? {
                out.push(decode(v.value())?);
            }
        }
        Ok(out)
    }

    /// Every record, oldest first, reading the whole table: what listing
    /// and dispatch cost without the indexes (for the `jobs` benchmark).
    pub fn scan_all(&self) -> Result<Vec<JobRecord>> {
        let r = self.db.begin_read().map_err(db_err)?;
        let t = r.open_table(JOBS).map_err(db_err)?;
        let mut out = Vec::new();
        for item in t.iter().map_err(db_err)? {
            let (_, v) = item.map_err(db_err)?;
            out.push(decode(v.value())?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::ExportSpec;

    fn record(id: &str, ws: &str) -> JobRecord {
        let spec = ExportSpec::parse(
            &serde_json::json!({"workflow": "a", "format": "jsonl"}),
            chrono::Utc::now(),
        )
        .unwrap();
        let mut r = JobRecord::queued(id.into(), &spec, "{}", chrono::Utc::now());
        r.workspace = Some(ws.into());
        r
    }

    #[test]
    fn indexes_follow_every_change() {
        let tmp = tempfile::TempDir::new().unwrap();
        let db = JobDb::open(tmp.path()).unwrap();
        let recs: Vec<JobRecord> = (0..6)
            .map(|i| record(&format!("exp_{i:02}"), if i % 2 == 0 { "a" } else { "b" }))
            .collect();
        db.put_all(&recs).unwrap();
        let ws = |w: &str| JobFilter {
            workspace: Some(w.into()),
            ..Default::default()
        };
        let ids = |v: Vec<JobRecord>| v.into_iter().map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(
            ids(db.list(&ws("a"), 10, None).unwrap().0),
            ["exp_04", "exp_02", "exp_00"]
        );
        let (page, next) = db.list(&ws("b"), 2, None).unwrap();
        assert_eq!(ids(page), ["exp_05", "exp_03"]);
        assert_eq!(
            ids(db.list(&ws("b"), 2, next.as_deref()).unwrap().0),
            ["exp_01"]
        );
        assert_eq!(
            db.oldest_with_status(JobStatus::Queued)
                .unwrap()
                .unwrap()
                .id,
            "exp_00"
        );
        db.update("exp_00", |r| r.start()).unwrap();
        assert_eq!(
            db.oldest_with_status(JobStatus::Queued)
                .unwrap()
                .unwrap()
                .id,
            "exp_01"
        );
        assert_eq!(ids(db.with_status(JobStatus::Running).unwrap()), ["exp_00"]);
        assert!(db.remove("exp_01").unwrap());
        assert_eq!(db.with_status(JobStatus::Queued).unwrap().len(), 4);
        assert_eq!(
            ids(db.list(&ws("b"), 10, None).unwrap().0),
            ["exp_05", "exp_03"]
        );
        // Reopened, nothing is indexed twice.
        drop(db);
        let db = JobDb::open(tmp.path()).unwrap();
        assert_eq!(db.with_status(JobStatus::Queued).unwrap().len(), 4);
    }

    #[test]
    fn dispatch_takes_workspaces_in_turn_oldest_first() {
        let tmp = tempfile::TempDir::new().unwrap();
        let db = JobDb::open(tmp.path()).unwrap();
        // Workspace a queued five jobs before b and c queued one each.
        let mut recs: Vec<JobRecord> = (0..5).map(|i| record(&format!("exp_0{i}"), "a")).collect();
        recs.push(record("exp_10", "b"));
        recs.push(record("exp_20", "c-x"));
        db.put_all(&recs).unwrap();
        let mut order = Vec::new();
        let mut last: Option<String> = None;
        while let Some(r) = db.next_queued(last.as_deref()).unwrap() {
            db.update(&r.id, |r| r.start()).unwrap();
            last = Some(r.workspace_id().to_string());
            order.push(r.id);
        }
        assert_eq!(
            order,
            ["exp_00", "exp_10", "exp_20", "exp_01", "exp_02", "exp_03", "exp_04"]
        );
        // The queue survives reopening.
        db.put(&record("exp_30", "b")).unwrap();
        drop(db);
        let db = JobDb::open(tmp.path()).unwrap();
        assert_eq!(db.next_queued(Some("a")).unwrap().unwrap().id, "exp_30");
    }
}
