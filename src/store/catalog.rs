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

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type};
use chrono::{DateTime, SecondsFormat, Utc};
use deltalake_core::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake_core::kernel::transaction::{CommitBuilder, CommitProperties, TransactionError};
use deltalake_core::kernel::{Action, Add, StructType};
use deltalake_core::logstore::{default_logstore, LogStoreRef, StorageConfig};
use deltalake_core::operations::create::CreateBuilder;
use deltalake_core::operations::vacuum::VacuumMode;
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use deltalake_core::table::state::DeltaTableState;
use deltalake_core::{DeltaTable, DeltaTableError};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::ObjectStore;
use percent_encoding::percent_decode_str;
use url::Url;

use super::layout::{FRAMES_DIR, SESSIONS_DIR};
use super::location::StoreLocation;
use super::pack::{decode_members, encode_members, PackFile, PackMember, TAG_SESSIONS};
use super::schema::{frames_file_schema, sessions_schema};
use super::sessions_pack::{
    decode_members as decode_session_members, encode_members as encode_session_members,
    SessionMember, SessionsFile,
};
use crate::error::{Error, Result};

/// Versions between checkpoints (Delta's `delta.checkpointInterval`).
pub(crate) const CHECKPOINT_INTERVAL: u64 = 20;
/// Tag of a frames `add`: the size of the file's Parquet footer.
const TAG_FOOTER_BYTES: &str = "nusomi.footer_bytes";
/// Tag of a one-row sessions `add` (stores sealed before claims had their
/// own objects): the session's frames file, relative to the root.
const TAG_FRAMES_PATH: &str = "nusomi.frames_path";

/// Which of the two tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Table {
    /// `ROOT/sessions`.
    Sessions = 0,
    /// `ROOT/frames`.
    Frames = 1,
}

impl Table {
    /// The table's folder under the store root.
    pub(crate) fn dir(self) -> &'static str {
        match self {
            Table::Sessions => SESSIONS_DIR,
            Table::Frames => FRAMES_DIR,
        }
    }

    /// Application transaction id of every commit that moves rows of this
    /// table between files (see [`Catalog::commit_layout`]).
    fn layout_app_id(self) -> &'static str {
        match self {
            Table::Sessions => "nusomi.sessions-layout",
            Table::Frames => "nusomi.frames-layout",
        }
    }

    /// Columns with statistics (Delta's `delta.dataSkippingStatsColumns`).
    fn stats_columns(self) -> &'static str {
        match self {
            Table::Sessions => "session_id,workflow,started_at,sealed_at,seal,frame_count",
            Table::Frames => "session_id,workflow,started_at,frame_idx",
        }
    }
}

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

/// One sealed session, as both log entries describe it.
#[derive(Debug, Clone)]
pub(crate) struct CommitEntry {
    /// Session id.
    pub session_id: String,
    /// Workflow.
    pub workflow: String,
    /// `started_at`, µs.
    pub started_at_us: i64,
    /// `sealed_at`, µs.
    pub sealed_at_us: i64,
    /// Content digest.
    pub seal: String,
    /// Rows of the frames file.
    pub frame_count: i64,
    /// The sessions file, relative to the store root.
    pub session_path: String,
    /// Its size.
    pub session_bytes: u64,
    /// The frames file, relative to the store root.
    pub frames_path: String,
    /// Its size.
    pub frames_bytes: u64,
    /// Bytes after its last row group (page indexes, footer; 0: unknown).
    pub frames_footer_bytes: u64,
}

/// One file of a table at a version, with what its `add` says.
#[derive(Debug, Clone)]
pub(crate) struct LoggedFile {
    /// Path relative to the store root (`sessions/…` or `frames/…`).
    pub path: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Rows.
    pub rows: i64,
    /// min = max `session_id`.
    pub session_id: String,
    /// min = max `workflow`.
    pub workflow: String,
    /// min = max `started_at`, µs.
    pub started_at_us: i64,
    /// min = max `sealed_at`, µs (sessions only).
    pub sealed_at_us: Option<i64>,
    /// min = max `seal` (sessions only).
    pub seal: Option<String>,
    /// The sessions of a frames pack (`None`: the file holds the one
    /// session its statistics name).
    pub members: Option<Vec<PackMember>>,
    /// The rows of a sessions file of many sessions, in row order (`None`:
    /// a one-row file, the session its statistics name).
    pub session_rows: Option<Vec<SessionMember>>,
}

/// The files of a table at one version.
#[derive(Debug, Clone)]
pub(crate) struct TableFiles {
    /// The version.
    pub version: u64,
    /// What each file's `add` says (all but its tags).
    pub files: Vec<LoggedFile>,
    /// The version's state, for what is read file by file on demand.
    pub state: Arc<DeltaTableState>,
}

/// The tail sizes (bytes after the last row group) the `frames` log's tags
/// record for the files in `wanted` (paths relative to the root). Tags are
/// not among the columnar add statistics, so this walks the files one by
/// one: callers ask for the files a scan reads, not the whole table.
pub(crate) fn frames_tails(
    state: &DeltaTableState,
    wanted: &HashSet<String>,
) -> HashMap<String, u64> {
    tags(state, Table::Frames, wanted, TAG_FOOTER_BYTES)
        .into_iter()
        .filter_map(|(path, tail)| Some((path, tail.parse().ok()?)))
        .collect()
}

/// The value of tag `key` of the files of `table` in `wanted` that have it.
fn tags(
    state: &DeltaTableState,
    table: Table,
    wanted: &HashSet<String>,
    key: &str,
) -> HashMap<String, String> {
    if wanted.is_empty() {
        return HashMap::new();
    }
    state
        .log_data()
        .iter()
        .filter_map(|view| {
            let path = format!("{}/{}", table.dir(), view.path());
            if !wanted.contains(&path) {
                return None;
            }
            #[allow(deprecated)]
            let add = view.add_action();
            let value = add.tags?.get(key)?.clone()?;
            Some((path, value))
        })
        .collect()
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

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ`, the form Delta statistics hold timestamps in.
fn stats_timestamp(us: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(us)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// An `add` with exact statistics (`data_change`: false for a file that
/// holds rows already in the table, as a pack does).
fn add(
    path: &str,
    bytes: u64,
    written_at_us: i64,
    stats: serde_json::Value,
    tags: HashMap<String, Option<String>>,
    data_change: bool,
) -> Action {
    Action::Add(Add {
        path: path.to_string(),
        partition_values: HashMap::new(),
        size: bytes as i64,
        modification_time: written_at_us.div_euclid(1000),
        data_change,
        stats: Some(stats.to_string()),
        tags: Some(tags),
        deletion_vector: None,
        base_row_id: None,
        default_row_commit_version: None,
        clustering_provider: None,
    })
}

/// A `remove` of a file this crate added (`data_change`: false when its
/// rows stay in the table in another file).
fn remove(path: &str, bytes: u64, data_change: bool) -> Action {
    Action::Remove(deltalake_core::kernel::Remove {
        path: path.to_string(),
        data_change,
        deletion_timestamp: Some(Utc::now().timestamp_millis()),
        extended_file_metadata: Some(true),
        partition_values: Some(HashMap::new()),
        size: Some(bytes as i64),
        tags: None,
        deletion_vector: None,
        base_row_id: None,
        default_row_commit_version: None,
    })
}

fn within(table: Table, path: &str) -> &str {
    path.strip_prefix(table.dir())
        .and_then(|p| p.strip_prefix('/'))
        .unwrap_or(path)
}

/// The `add` of a one-row sessions file (`migrate` of a store sealed before
/// claims had their own objects).
pub(crate) fn one_row_sessions_add(e: &CommitEntry) -> Action {
    let values = serde_json::json!({
        "session_id": e.session_id,
        "workflow": e.workflow,
        "started_at": stats_timestamp(e.started_at_us),
        "sealed_at": stats_timestamp(e.sealed_at_us),
        "seal": e.seal,
        "frame_count": e.frame_count,
    });
    let nulls = serde_json::json!({
        "session_id": 0, "workflow": 0, "started_at": 0, "sealed_at": 0, "seal": 0, "frame_count": 0,
    });
    let stats = serde_json::json!({
        "numRecords": 1, "minValues": values, "maxValues": values, "nullCount": nulls,
    });
    let tags = HashMap::from([(TAG_FRAMES_PATH.to_string(), Some(e.frames_path.clone()))]);
    add(
        within(Table::Sessions, &e.session_path),
        e.session_bytes,
        e.sealed_at_us,
        stats,
        tags,
        true,
    )
}

fn frames_add(e: &CommitEntry) -> Action {
    let last = (e.frame_count - 1).max(0);
    let min = serde_json::json!({
        "session_id": e.session_id, "workflow": e.workflow,
        "started_at": stats_timestamp(e.started_at_us), "frame_idx": 0,
    });
    let max = serde_json::json!({
        "session_id": e.session_id, "workflow": e.workflow,
        "started_at": stats_timestamp(e.started_at_us), "frame_idx": last,
    });
    let nulls =
        serde_json::json!({"session_id": 0, "workflow": 0, "started_at": 0, "frame_idx": 0});
    let stats = serde_json::json!({
        "numRecords": e.frame_count, "minValues": min, "maxValues": max, "nullCount": nulls,
    });
    let tags = HashMap::from([(
        TAG_FOOTER_BYTES.to_string(),
        Some(e.frames_footer_bytes.to_string()),
    )]);
    add(
        within(Table::Frames, &e.frames_path),
        e.frames_bytes,
        e.sealed_at_us,
        stats,
        tags,
        true,
    )
}

/// The files of one batch of `add_actions_batches(flatten = true)`: what
/// each `add` says, or an [`Error::Corrupt`] naming the file and the missing
/// statistic.
fn logged_files(table: Table, batch: &RecordBatch, out: &mut Vec<LoggedFile>) -> Result<()> {
    let corrupt = |path: &str, message: String| Error::Corrupt {
        path: format!("{}/{path}", table.dir()),
        message: format!("its add action in the {} log {message}", table.dir()),
    };
    let column = |name: &str, to: &DataType| -> Result<Option<ArrayRef>> {
        match batch.column_by_name(name) {
            Some(c) => Ok(Some(cast(c, to)?)),
            None => Ok(None),
        }
    };
    let required = |name: &str, to: &DataType| -> Result<ArrayRef> {
        column(name, to)?.ok_or_else(|| Error::Corrupt {
            path: format!("{}/_delta_log", table.dir()),
            message: format!("the add actions lack {name}"),
        })
    };
    let path = required("path", &DataType::Utf8)?;
    let size = required("size_bytes", &DataType::Int64)?;
    let rows = required("num_records", &DataType::Int64)?;
    let session_id = required("min.session_id", &DataType::Utf8)?;
    let workflow = required("min.workflow", &DataType::Utf8)?;
    let started_at = required("min.started_at", &DataType::Int64)?;
    let (sealed_at, seal) = match table {
        Table::Sessions => (
            Some(required("min.sealed_at", &DataType::Int64)?),
            Some(required("min.seal", &DataType::Utf8)?),
        ),
        Table::Frames => (None, None),
    };
    let (path, size, rows) = (
        path.as_string::<i32>(),
        size.as_primitive::<Int64Type>(),
        rows.as_primitive::<Int64Type>(),
    );
    let (session_id, workflow, started_at) = (
        session_id.as_string::<i32>(),
        workflow.as_string::<i32>(),
        started_at.as_primitive::<Int64Type>(),
    );
    let sealed_at = sealed_at.as_ref().map(|a| a.as_primitive::<Int64Type>());
    let seal = seal.as_ref().map(|a| a.as_string::<i32>());
    for i in 0..batch.num_rows() {
        let p = path.value(i);
        let needs = |ok: bool, what: &str| {
            if ok {
                Ok(())
            } else {
                Err(corrupt(p, format!("lacks {what}")))
            }
        };
        needs(rows.is_valid(i), "numRecords")?;
        needs(session_id.is_valid(i), "session_id statistics")?;
        needs(workflow.is_valid(i), "workflow statistics")?;
        needs(started_at.is_valid(i), "started_at statistics")?;
        if let (Some(a), Some(b)) = (sealed_at, seal) {
            needs(
                a.is_valid(i) && b.is_valid(i),
                "sealed_at and seal statistics",
            )?;
        }
        let decoded = percent_decode_str(p).decode_utf8_lossy();
        out.push(LoggedFile {
            path: format!("{}/{decoded}", table.dir()),
            bytes: size.value(i).max(0) as u64,
            rows: rows.value(i),
            session_id: session_id.value(i).to_string(),
            workflow: workflow.value(i).to_string(),
            started_at_us: started_at.value(i),
            sealed_at_us: sealed_at.map(|a| a.value(i)),
            seal: seal.map(|a| a.value(i).to_string()),
            members: None,
            session_rows: None,
        });
    }
    Ok(())
}

/// Fills in the sessions of the packs among `files` (of `table`) from
/// their tags, or an [`Error::Corrupt`] naming a pack whose index is
/// missing or malformed.
fn with_members(state: &DeltaTableState, table: Table, files: &mut [LoggedFile]) -> Result<()> {
    let packs: HashSet<String> = files
        .iter()
        .filter(|f| is_pack(&f.path))
        .map(|f| f.path.clone())
        .collect();
    let mut tags = tags(state, table, &packs, TAG_SESSIONS);
    for f in files.iter_mut().filter(|f| is_pack(&f.path)) {
        let corrupt = |message: String| Error::Corrupt {
            path: f.path.clone(),
            message: format!("its add action in the {} log {message}", table.dir()),
        };
        let tag = tags
            .remove(&f.path)
            .ok_or_else(|| corrupt(format!("lacks its {TAG_SESSIONS} tag")))?;
        match table {
            Table::Frames => f.members = Some(decode_members(&tag).map_err(corrupt)?),
            Table::Sessions => {
                let rows = decode_session_members(&tag).map_err(corrupt)?;
                if rows.len() as i64 != f.rows {
                    return Err(corrupt(format!(
                        "indexes {} rows, its numRecords is {}",
                        rows.len(),
                        f.rows
                    )));
                }
                f.session_rows = Some(rows);
            }
        }
    }
    Ok(())
}

/// Whether a path (relative to the root) names a file of many sessions.
pub(crate) fn is_pack(path: &str) -> bool {
    path.rsplit('/')
        .next()
        .is_some_and(|name| name.starts_with("pack."))
}

/// An `add` of a pack of `workflow` (statistics over its sessions, the
/// index in its tags).
pub(crate) fn pack_add(root: &Path, pack: &PackFile, workflow: &str, data_change: bool) -> Action {
    let (first, last) = match (pack.members.first(), pack.members.last()) {
        (Some(a), Some(b)) => (a.session_id.as_str(), b.session_id.as_str()),
        _ => ("", ""),
    };
    let rows: i64 = pack.members.iter().map(|m| m.rows).sum();
    let most = pack.members.iter().map(|m| m.rows).max().unwrap_or(0);
    let min = serde_json::json!({
        "session_id": first, "workflow": workflow,
        "started_at": stats_timestamp(pack.started_at_us.0), "frame_idx": 0,
    });
    let max = serde_json::json!({
        "session_id": last, "workflow": workflow,
        "started_at": stats_timestamp(pack.started_at_us.1), "frame_idx": (most - 1).max(0),
    });
    let nulls =
        serde_json::json!({"session_id": 0, "workflow": 0, "started_at": 0, "frame_idx": 0});
    let stats = serde_json::json!({
        "numRecords": rows, "minValues": min, "maxValues": max, "nullCount": nulls,
    });
    let tags = HashMap::from([
        (TAG_FOOTER_BYTES.to_string(), Some(pack.footer.to_string())),
        (
            TAG_SESSIONS.to_string(),
            Some(encode_members(&pack.members)),
        ),
    ]);
    add(
        within(Table::Frames, &relative_to(root, &pack.path)),
        pack.bytes,
        Utc::now().timestamp_micros(),
        stats,
        tags,
        data_change,
    )
}

/// The `add` of a sessions file of many sessions (statistics over its rows,
/// the index in its tags).
pub(crate) fn sessions_file_add(root: &Path, file: &SessionsFile, data_change: bool) -> Action {
    let m = &file.members;
    let (first, last) = match (m.first(), m.last()) {
        (Some(a), Some(b)) => (a.session_id.as_str(), b.session_id.as_str()),
        _ => ("", ""),
    };
    let span = |f: fn(&SessionMember) -> i64| {
        let min = m.iter().map(f).min().unwrap_or(0);
        let max = m.iter().map(f).max().unwrap_or(0);
        (min, max)
    };
    let (started, sealed, frames) = (
        span(|x| x.started_at_us),
        span(|x| x.sealed_at_us),
        span(|x| x.frame_count),
    );
    let seal_min = m.iter().map(|x| x.seal.as_str()).min().unwrap_or("");
    let seal_max = m.iter().map(|x| x.seal.as_str()).max().unwrap_or("");
    let min = serde_json::json!({
        "session_id": first, "workflow": file.workflow,
        "started_at": stats_timestamp(started.0), "sealed_at": stats_timestamp(sealed.0),
        "seal": seal_min, "frame_count": frames.0,
    });
    let max = serde_json::json!({
        "session_id": last, "workflow": file.workflow,
        "started_at": stats_timestamp(started.1), "sealed_at": stats_timestamp(sealed.1),
        "seal": seal_max, "frame_count": frames.1,
    });
    let nulls = serde_json::json!({
        "session_id": 0, "workflow": 0, "started_at": 0, "sealed_at": 0, "seal": 0, "frame_count": 0,
    });
    let stats = serde_json::json!({
        "numRecords": m.len(), "minValues": min, "maxValues": max, "nullCount": nulls,
    });
    let tags = HashMap::from([(TAG_SESSIONS.to_string(), Some(encode_session_members(m)))]);
    add(
        within(Table::Sessions, &relative_to(root, &file.path)),
        file.bytes,
        Utc::now().timestamp_micros(),
        stats,
        tags,
        data_change,
    )
}

/// A `remove` of a sessions file (relative to the root).
pub(crate) fn sessions_remove(path: &str, bytes: u64, data_change: bool) -> Action {
    remove(within(Table::Sessions, path), bytes, data_change)
}

/// A `remove` of a frames file (relative to the root) by maintenance.
pub(crate) fn frames_remove(path: &str, bytes: u64, data_change: bool) -> Action {
    remove(within(Table::Frames, path), bytes, data_change)
}

/// `p` relative to `root` (`sessions/…`), as logs and footers name files.
pub(crate) fn relative_to(root: &Path, p: &Path) -> String {
    p.prefix_match(root)
        .map(|parts| Path::from_iter(parts).to_string())
        .unwrap_or_else(|| p.to_string())
}

/// A relative path (`sessions/…`) as a path under `root`.
pub(crate) fn under(root: &Path, relative: &str) -> Path {
    Path::from_iter(root.parts().chain(Path::from(relative).parts()))
}
