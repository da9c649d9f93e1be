//! [`ShardedWriter`]: turns the ordered stream of output rows into shards
//! `shard-000000.<ext>`, `shard-000001.<ext>`, … under a prefix. A shard is
//! closed before the next row would push it past `shard_size_bytes` (only a
//! row that alone is larger gets a shard of its own); each shard is uploaded
//! as it is written and hashed on the way. Keys that already hold an object
//! (an interrupted earlier attempt) are verified byte by byte instead of
//! uploaded again, and replaced only if they differ. On failure,
//! [`ShardedWriter::abort`] aborts the open upload and deletes every shard
//! key this attempt created; keys that existed before it are left as found.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use super::format::{open_shard, ShardFile};
use super::hashing::HashingWriter;
use super::layout::ExportLayout;
use super::manifest::ShardInfo;
use crate::error::Result;
use crate::spec::OutputFormat;

/// Live counters of an export, readable while it runs.
#[derive(Debug, Default)]
pub struct Progress {
    /// Rows written.
    pub rows: AtomicU64,
    /// Bytes of finished shards plus the open one.
    pub bytes: AtomicU64,
    /// Shards finished.
    pub shards: AtomicU64,
    /// Shards found already written by an earlier attempt and kept.
    pub shards_reused: AtomicU64,
    /// Set to stop the export at its next row (it then fails with
    /// [`crate::error::Error::Cancelled`] and cleans up like any failure).
    pub cancel: std::sync::atomic::AtomicBool,
}

/// Totals of what a [`ShardedWriter`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShardTotals {
    /// Rows (= frames).
    pub rows: u64,
    /// Action events in the rows.
    pub actions: u64,
    /// Distinct sessions with at least one row.
    pub sessions: u64,
    /// Per shard, in order, its entry in the series' loader index (MDS and
    /// WebDataset; empty for the other formats).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub loader: Vec<serde_json::Value>,
}

struct OpenShard {
    file: Box<dyn ShardFile>,
    path: Path,
    name: String,
    rows: u64,
    existed: bool,
}

/// Writes shards of one format under one prefix.
pub struct ShardedWriter {
    store: Arc<dyn ObjectStore>,
    layout: ExportLayout,
    limit: u64,
    open: Option<OpenShard>,
    shards: Vec<ShardInfo>,
    totals: ShardTotals,
    sessions: HashSet<String>,
    progress: Arc<Progress>,
    finished_bytes: u64,
    part_bytes: usize,
    /// Objects under the prefix before this attempt: name → size.
    existing: HashMap<String, u64>,
    /// Per finished shard: whether this attempt created its key.
    created: Vec<bool>,
}

impl std::fmt::Debug for ShardedWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardedWriter")
            .field("prefix", self.layout.prefix())
            .field("shards", &self.shards.len())
            .finish()
    }
}

impl ShardedWriter {
    /// A writer of `format` shards of at most `shard_size_bytes` under `prefix`.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        prefix: Path,
        format: OutputFormat,
        shard_size_bytes: u64,
    ) -> Self {
        Self::with_layout(store, ExportLayout::new(prefix, format), shard_size_bytes)
    }

    /// A writer of shards named by `layout`.
    pub(crate) fn with_layout(
        store: Arc<dyn ObjectStore>,
        layout: ExportLayout,
        shard_size_bytes: u64,
    ) -> Self {
        ShardedWriter {
            store,
            layout,
            limit: shard_size_bytes,
            open: None,
            shards: Vec::new(),
            totals: ShardTotals::default(),
            sessions: HashSet::new(),
            progress: Arc::new(Progress::default()),
            finished_bytes: 0,
            part_bytes: crate::dest::DEFAULT_PART_BYTES,
            existing: HashMap::new(),
            created: Vec::new(),
        }
    }

    /// Uploads shards larger than `part_bytes` in parts of that size.
    pub fn with_part_bytes(mut self, part_bytes: usize) -> Self {
        self.part_bytes = part_bytes.max(1);
        self
    }

    /// Objects already under the prefix (name → size), left by an earlier
    /// attempt: shards at those keys are verified rather than re-uploaded.
    pub fn with_existing(mut self, existing: HashMap<String, u64>) -> Self {
        self.existing = existing;
        self
    }

    /// Reports into `progress` as it writes.
    pub fn with_progress(mut self, progress: Arc<Progress>) -> Self {
        self.progress = progress;
        self
    }

    /// Writes every row of `batch` (output schema), in order.
    pub async fn write_batch(&mut self, batch: &RecordBatch) -> Result<()> {
        for r in 0..batch.num_rows() {
            self.write_row(&batch.slice(r, 1)).await?;
        }
        Ok(())
    }

    async fn write_row(&mut self, row: &RecordBatch) -> Result<()> {
        if self.progress.cancel.load(Ordering::Relaxed) {
            return Err(crate::error::Error::Cancelled);
        }
        if let Some(open) = self.open.as_mut() {
            if open.rows > 0 && open.file.size_with(row)? > self.limit {
                self.close_shard().await?;
            }
        }
        if self.open.is_none() {
            self.open = Some(self.open_shard(row.schema()).await?);
        }
        if let Some(open) = self.open.as_mut() {
            open.file.add(row).await?;
            open.rows += 1;
        }
        self.count(row);
        Ok(())
    }

    fn count(&mut self, row: &RecordBatch) {
        self.totals.rows += 1;
        if let Some(a) = row.column_by_name("actions") {
            let l = a.as_list::<i32>();
            if l.is_valid(0) {
                self.totals.actions += l.value(0).len() as u64;
            }
        }
        if let Some(s) = row.column_by_name("session_id") {
            let s = s.as_string::<i32>();
            if s.is_valid(0) && self.sessions.insert(s.value(0).to_string()) {
                self.totals.sessions += 1;
            }
        }
        self.progress.rows.fetch_add(1, Ordering::Relaxed);
    }

    async fn open_shard(&mut self, schema: arrow::datatypes::SchemaRef) -> Result<OpenShard> {
        let name = self.layout.shard_name(self.shards.len());
        let path = self.layout.key(&name);
        let existed = self.existing.contains_key(&name);
        let out = if existed {
            HashingWriter::resume(Arc::clone(&self.store), path.clone(), self.part_bytes).await?
        } else {
            HashingWriter::upload(Arc::clone(&self.store), path.clone(), self.part_bytes)
        };
        Ok(OpenShard {
            file: open_shard(self.layout.format(), out, schema, self.limit)?,
            path,
            name,
            rows: 0,
            existed,
        })
    }

    async fn close_shard(&mut self) -> Result<()> {
        let Some(open) = self.open.take() else {
            return Ok(());
        };
        let entry = open.file.loader_entry();
        let done = match open.file.finish().await {
            Ok(done) => done,
            Err(e) => {
                if !open.existed {
                    let _ = self.store.delete(&open.path).await;
                }
                return Err(e);
            }
        };
        self.finished_bytes += done.bytes;
        // Several writers (one per split) may report into one Progress.
        self.progress.bytes.fetch_add(done.bytes, Ordering::Relaxed);
        self.progress.shards.fetch_add(1, Ordering::Relaxed);
        if done.reused {
            self.progress.shards_reused.fetch_add(1, Ordering::Relaxed);
        }
        self.created.push(!open.existed);
        self.totals.loader.extend(entry);
        self.shards.push(ShardInfo {
            path: open.name,
            bytes: done.bytes,
            rows: open.rows,
            sha256: done.sha256,
            url: None,
        });
        Ok(())
    }

    /// The store it writes to.
    pub(crate) fn store(&self) -> Arc<dyn ObjectStore> {
        Arc::clone(&self.store)
    }

    /// The names it writes.
    pub(crate) fn layout(&self) -> &ExportLayout {
        &self.layout
    }

    /// Closes the last shard; returns every shard and the totals.
    /// On failure every shard is deleted.
    pub async fn finish(self) -> Result<(Vec<ShardInfo>, ShardTotals)> {
        let (shards, totals, _) = self.finish_with_created().await?;
        Ok((shards, totals))
    }

    /// As [`ShardedWriter::finish`], plus per shard whether this attempt
    /// created its key (false: an earlier attempt's shard, verified).
    pub async fn finish_with_created(mut self) -> Result<(Vec<ShardInfo>, ShardTotals, Vec<bool>)> {
        if let Err(e) = self.close_shard().await {
            self.abort().await;
            return Err(e);
        }
        Ok((self.shards, self.totals, self.created))
    }

    /// Aborts the open shard and deletes the shard keys this attempt created.
    pub async fn abort(mut self) {
        if let Some(open) = self.open.take() {
            let sent = open.file.abort().await;
            if sent && !open.existed {
                let _ = self.store.delete(&open.path).await;
            }
        }
        for (s, created) in self.shards.iter().zip(&self.created) {
            if *created {
                let _ = self.store.delete(&self.layout.key(&s.path)).await;
            }
        }
    }
}
