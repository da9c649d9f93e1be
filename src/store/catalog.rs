//! The store's catalog: the `sessions` and `frames` tables are Delta Lake
//! tables (`ROOT/sessions/_delta_log`, `ROOT/frames/_delta_log`), read and
//! committed through `deltalake-core`.
//!
//! A table's data files are the files `layout.rs` names (sessions files of
//! many sessions, frames files of one session or packs of many); what
//! makes them part of the table is an `add` action in a log entry. Each
//! `add` carries exact statistics written by us — `numRecords`, and min /
//! max of `session_id`, `workflow`, `started_at` (and `sealed_at`, `seal`,
//! `frame_count` for sessions; `frame_idx`'s range for frames) at
//! microsecond precision — and, for a file of many sessions, its index as a
//! tag (`sessions_pack.rs`, `pack.rs`), so a query plans from the log
//! alone: it never lists `sessions/` or `frames/` and opens no data file it
//! does not read rows from.
//!
//! Commit protocol, per batch of sealed sessions: (1) one log entry adding
//! their frames files to `frames`, then (2) one adding the batch's sessions
//! files to `sessions`. Each entry is a conditional put of the next version
//! (`deltalake-core`'s default log store: `PutMode::Create`); a writer that
//! loses the race re-reads and retries at the next version (blind appends
//! never conflict). Visibility is (2): a session is in the store when its
//! sessions file is in the `sessions` log, and readers take its frames from
//! the `frames` log, so a crash between (1) and (2) leaves frames no query of
//! ours reads, which the next seal of that bundle commits again (adding the
//! same path twice is idempotent in Delta). Checkpoints are written every
//! [`CHECKPOINT_INTERVAL`] versions by the committing writer.
//!
//! The actions written for each file are `log_actions.rs`'s; reading the
//! files of a version back is `logged_files.rs`'s.

use std::sync::Arc;

use chrono::Utc;
use deltalake_core::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake_core::kernel::transaction::{CommitBuilder, CommitProperties, TransactionError};
use deltalake_core::kernel::{Action, StructType};
use deltalake_core::logstore::{default_logstore, LogStoreRef, StorageConfig};
use deltalake_core::operations::create::CreateBuilder;
use deltalake_core::operations::vacuum::VacuumMode;
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use deltalake_core::table::state::DeltaTableState;
use deltalake_core::{DeltaTable, DeltaTableError};
use futures::TryStreamExt;
use object_store::prefix::PrefixStore;
use object_store::ObjectStore;
use url::Url;

use super::location::StoreLocation;
use super::log_actions::{frames_add, remove, within, CommitEntry, Table};
use super::logged_files::{logged_files, with_members, TableFiles};
use super::schema::{frames_file_schema, sessions_schema};
use crate::error::{Error, Result};

/// Versions between checkpoints (Delta's `delta.checkpointInterval`).
pub(crate) const CHECKPOINT_INTERVAL: u64 = 20;

/// A Delta error on `table`, as the crate's [`Error::Catalog`].
pub(crate) fn catalog_error(table: Table) -> impl Fn(DeltaTableError) -> Error {
    move |e| Error::Catalog {
        table: table.dir(),
        message: e.to_string(),
    }
}

/// A failed [`Catalog::commit`].
#[derive(Debug)]
pub(crate) struct CommitError {
    /// What failed.
    pub error: Error,
    /// Whether the `frames` log still adds the batch's frames files (its
    /// entry succeeded and removing them again failed): they must not be
    /// deleted then.
    pub frames_committed: bool,
}

impl CommitError {
    fn nothing_committed(error: Error) -> Self {
        CommitError {
            error,
            frames_committed: false,
        }
    }
}

/// The Delta tables of one store. Each table's newest state is kept and
/// brought up to date incrementally (a LIST of the log after the version
/// held), so a long-lived handle does not replay the log per query.
#[derive(Debug, Clone)]
pub(crate) struct Catalog {
    sessions: LogStoreRef,
    frames: LogStoreRef,
    loaded: Arc<[tokio::sync::Mutex<Option<DeltaTable>>; 2]>,
}

impl Catalog {
    /// The catalog of the store at `location` (nothing is read yet).
    pub(crate) fn new(location: &StoreLocation) -> Result<Self> {
        Ok(Catalog {
            sessions: log_store(location, Table::Sessions)?,
            frames: log_store(location, Table::Frames)?,
            loaded: Arc::new([tokio::sync::Mutex::new(None), tokio::sync::Mutex::new(None)]),
        })
    }

    /// The newest state of `table`, or `None` when it has no log yet.
    async fn newest(&self, table: Table) -> Result<Option<DeltaTableState>> {
        let slot = &self.loaded[table as usize];
        let mut guard = slot.lock().await;
        match guard.as_mut() {
            Some(t) => t
                .update_incremental(None)
                .await
                .map_err(catalog_error(table))?,
            None => {
                if !self.exists(table).await? {
                    return Ok(None);
                }
                let mut t = DeltaTable::new(Arc::clone(self.log(table)));
                t.load().await.map_err(catalog_error(table))?;
                *guard = Some(t);
            }
        }
        match guard.as_ref() {
            Some(t) => Ok(Some(t.snapshot().map_err(catalog_error(table))?.clone())),
            None => Ok(None),
        }
    }

    fn log(&self, table: Table) -> &LogStoreRef {
        match table {
            Table::Sessions => &self.sessions,
            Table::Frames => &self.frames,
        }
    }

    /// Whether `table` has a log yet.
    pub(crate) async fn exists(&self, table: Table) -> Result<bool> {
        self.log(table)
            .is_delta_table_location()
            .await
            .map_err(catalog_error(table))
    }

    /// Creates both tables where they do not exist yet (version 0: protocol
    /// and schema). Safe against concurrent creators.
    pub(crate) async fn ensure_tables(&self) -> Result<()> {
        for table in [Table::Frames, Table::Sessions] {
            if self.exists(table).await? {
                continue;
            }
            let schema = match table {
                Table::Sessions => sessions_schema(),
                Table::Frames => frames_file_schema(),
            };
            let kernel: StructType =
                schema
                    .as_ref()
                    .try_into_kernel()
                    .map_err(|e| Error::Catalog {
                        table: table.dir(),
                        message: e.to_string(),
                    })?;
            let created = CreateBuilder::new()
                .with_log_store(Arc::clone(self.log(table)))
                .with_table_name(table.dir())
                .with_columns(kernel.fields().cloned())
                .with_save_mode(SaveMode::Ignore)
                // A creator that loses the race for version 0 must fail, not
                // commit its protocol and schema again as version 1.
                .with_commit_properties(CommitProperties::default().with_max_retries(0))
                .with_configuration_property(
                    deltalake_core::TableProperty::CheckpointInterval,
                    Some(CHECKPOINT_INTERVAL.to_string()),
                )
                .with_configuration_property(
                    deltalake_core::TableProperty::DataSkippingStatsColumns,
                    Some(table.stats_columns()),
                )
                .await;
            match created {
                Ok(_) => {}
                // Another writer created it first.
                Err(_) if self.exists(table).await? => {}
                Err(e) => return Err(catalog_error(table)(e)),
            }
        }
        Ok(())
    }

    /// Commits `entries`: one log entry on `frames` adding their frames
    /// files, then one on `sessions` of the actions `sessions` (the adds of
    /// the sessions files holding their rows). Returns the new `sessions`
    /// version. If the `sessions` entry fails
    /// after the `frames` one succeeded, a second `frames` entry removes the
    /// files again ([`CommitError::framesCommitted`] says whether that
    /// compensation failed, in which case the files must stay).
    pub(crate) async fn commit(
        &self,
        entries: &[CommitEntry],
        sessions: Vec<Action>,
        operation: &str,
    ) -> std::result::Result<u64, CommitError> {
        if entries.is_empty() {
            return self
                .latest_version(Table::Sessions)
                .await
                .map_err(CommitError::nothing_committed);
        }
        self.ensure_tables()
            .await
            .map_err(CommitError::nothing_committed)?;
        let frames: Vec<Action> = entries.iter().map(frames_add).collect();
        self.commit_actions(Table::Frames, frames, operation)
            .await
            .map_err(CommitError::nothing_committed)?;
        match self
            .commit_actions(Table::Sessions, sessions, operation)
            .await
        {
            Ok(v) => Ok(v),
            Err(error) => {
                let undo: Vec<Action> = entries
                    .iter()
                    .map(|e| remove(within(Table::Frames, &e.frames_path), e.frames_bytes, true))
                    .collect();
                let undone = self
                    .commit_actions(Table::Frames, undo, "seal rolled back")
                    .await
                    .is_ok();
                Err(CommitError {
                    error,
                    frames_committed: !undone,
                })
            }
        }
    }

    /// Commits `actions` to `table`; a commit that conflicts with a
    /// concurrent one (deltalake aborts on any metadata change, e.g. a
    /// second creation racing the first) is retried on the newest state.
    async fn commit_actions(
        &self,
        table: Table,
        actions: Vec<Action>,
        operation: &str,
    ) -> Result<u64> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.commit_once(table, actions.clone(), operation).await {
                Err(DeltaTableError::Transaction {
                    source: TransactionError::CommitConflict(_),
                }) if attempt < 5 => continue,
                other => return other.map_err(catalog_error(table)),
            }
        }
    }

    async fn commit_once(
        &self,
        table: Table,
        actions: Vec<Action>,
        operation: &str,
    ) -> std::result::Result<u64, DeltaTableError> {
        let log = Arc::clone(self.log(table));
        let Some(state) = self
            .newest(table)
            .await
            .map_err(|e| DeltaTableError::Generic(e.to_string()))?
        else {
            return Err(DeltaTableError::Generic("no Delta log to commit to".into()));
        };
        let props = CommitProperties::default()
            .with_create_checkpoint(true)
            .with_cleanup_expired_logs(Some(false))
            .with_max_retries(1000)
            .with_metadata([(
                "nusomi.operation".to_string(),
                serde_json::Value::String(operation.to_string()),
            )]);
        let done = CommitBuilder::from(props)
            .with_actions(actions)
            .build(
                Some(&state),
                log,
                DeltaOperation::Write {
                    mode: SaveMode::Append,
                    partition_by: None,
                    predicate: None,
                },
            )
            .await?;
        Ok(done.version())
    }

    /// Commits `actions`, a change of which files of `table` hold which
    /// sessions' rows. Every such commit on a table carries the same
    /// application transaction id, so of two racing ones (two optimizes, an
    /// optimize and a forget) the later fails instead of committing a second
    /// copy of a session's rows: `Ok(None)` then, and the caller re-plans
    /// from the newest state. Seals (plain appends) never conflict with it.
    pub(crate) async fn commit_layout(
        &self,
        table: Table,
        mut actions: Vec<Action>,
        operation: &str,
    ) -> Result<Option<u64>> {
        actions.push(Action::Txn(deltalake_core::kernel::Transaction::new(
            table.layout_app_id(),
            Utc::now().timestamp_millis(),
        )));
        match self.commit_once(table, actions, operation).await {
            Ok(v) => Ok(Some(v)),
            Err(DeltaTableError::Transaction {
                source: TransactionError::CommitConflict(_),
            }) => Ok(None),
            Err(e) => Err(catalog_error(table)(e)),
        }
    }

    /// The newest version of `table` (0 for a table without log).
    pub(crate) async fn latest_version(&self, table: Table) -> Result<u64> {
        if !self.exists(table).await? {
            return Ok(0);
        }
        let t = DeltaTable::new(Arc::clone(self.log(table)));
        t.get_latest_version().await.map_err(catalog_error(table))
    }

    /// The files of `table` at `version` (default: the newest), or `None`
    /// when the table has no log yet.
    pub(crate) async fn files(
        &self,
        table: Table,
        version: Option<u64>,
    ) -> Result<Option<TableFiles>> {
        let state = match version {
            None => self.newest(table).await?,
            Some(v) => {
                if !self.exists(table).await? {
                    return Ok(None);
                }
                let mut t = DeltaTable::new(Arc::clone(self.log(table)));
                t.load_version(v).await.map_err(catalog_error(table))?;
                Some(t.snapshot().map_err(catalog_error(table))?.clone())
            }
        };
        let Some(state) = state else {
            return Ok(None);
        };
        let batches = state
            .add_actions_batches(true)
            .map_err(catalog_error(table))?;
        let mut files = Vec::with_capacity(batches.iter().map(|b| b.num_rows()).sum());
        for batch in &batches {
            logged_files(table, batch, &mut files)?;
        }
        with_members(&state, table, &mut files)?;
        Ok(Some(TableFiles {
            version: state.version(),
            files,
            state: Arc::new(state),
        }))
    }

    /// Writes a checkpoint of both tables at their newest versions.
    pub(crate) async fn checkpoint(&self) -> Result<(u64, u64)> {
        let mut versions = [0u64; 2];
        for (i, table) in [Table::Sessions, Table::Frames].into_iter().enumerate() {
            if !self.exists(table).await? {
                continue;
            }
            let mut t = DeltaTable::new(Arc::clone(self.log(table)));
            t.load().await.map_err(catalog_error(table))?;
            deltalake_core::checkpoints::create_checkpoint(&t, None)
                .await
                .map_err(catalog_error(table))?;
            versions[i] = t.version().unwrap_or(0);
        }
        Ok((versions[0], versions[1]))
    }

    /// Paths (relative to the root) that the newest version of `table` has
    /// removed (tombstones), with their deletion times in ms.
    pub(crate) async fn removed(&self, table: Table) -> Result<Vec<(String, i64)>> {
        let Some(state) = self.newest(table).await? else {
            return Ok(Vec::new());
        };
        let log = Arc::clone(self.log(table));
        let tombstones: Vec<_> = state
            .all_tombstones(log.as_ref())
            .map_ok(|t| {
                (
                    format!("{}/{}", table.dir(), t.path()),
                    t.deletion_timestamp().unwrap_or(0),
                )
            })
            .try_collect()
            .await
            .map_err(catalog_error(table))?;
        Ok(tombstones)
    }

    /// Files under the tables' folders that no log entry adds and that
    /// are older than `retain` (Delta's full vacuum, as a dry run: nothing
    /// is deleted here), as paths relative to the store root.
    pub(crate) async fn unreferenced(&self, retain: chrono::Duration) -> Result<Vec<String>> {
        let mut found = Vec::new();
        for table in [Table::Sessions, Table::Frames] {
            if !self.exists(table).await? {
                continue;
            }
            let mut t = DeltaTable::new(Arc::clone(self.log(table)));
            t.load().await.map_err(catalog_error(table))?;
            let (_, metrics) = t
                .vacuum()
                .with_mode(VacuumMode::Full)
                .with_retention_period(retain)
                .with_enforce_retention_duration(false)
                .with_dry_run(true)
                .await
                .map_err(catalog_error(table))?;
            found.extend(
                metrics
                    .files_deleted
                    .into_iter()
                    .map(|p| format!("{}/{p}", table.dir())),
            );
        }
        Ok(found)
    }
}

/// The log store of `table` under the store root.
fn log_store(location: &StoreLocation, table: Table) -> Result<LogStoreRef> {
    let bad = |message: String| Error::Location {
        location: location.display.clone(),
        message,
    };
    let prefix = location.prefix.clone().join(table.dir());
    let base = Url::parse(location.url.as_str()).map_err(|e| bad(e.to_string()))?;
    let mut url = base;
    url.set_path(&format!("/{prefix}/"));
    let root: Arc<dyn ObjectStore> = Arc::clone(&location.store);
    let prefixed: Arc<dyn ObjectStore> = Arc::new(PrefixStore::new(Arc::clone(&root), prefix));
    Ok(default_logstore(
        prefixed,
        root,
        &url,
        &StorageConfig::default(),
    ))
}
