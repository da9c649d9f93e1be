//! [`SealedStore`]: a handle on one store root, and the [`Snapshot`] of its
//! committed sessions that every query plans against.
//!
//! A session is committed when its one-row `sessions/…/<id>.parquet` file
//! exists (see `layout.rs`); that file's footer also names its frames file and
//! that file's size, so planning a `frames` scan needs one LIST of
//! `sessions/` and no request to `frames/` at all. Session files are
//! immutable, so their rows are cached by path for the life of the handle.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use arrow::array::{AsArray, RecordBatch};
use arrow::compute::concat_batches;
use arrow::datatypes::{Int64Type, TimestampMicrosecondType};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::ObjectStoreExt;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::layout::{child, SESSIONS_DIR};
use super::location::StoreLocation;
use super::schema::sessions_schema;
use crate::error::{Error, Result};

/// Footer key naming a session's frames file, relative to the store root.
pub(super) const META_FRAMES_PATH: &str = "nusomi.frames_path";
/// Footer key giving a session's frames file size in bytes.
pub(super) const META_FRAMES_BYTES: &str = "nusomi.frames_bytes";
/// Footer key giving the size of the frames file's own footer, so a scan
/// fetches exactly the footer (no image bytes) in its first request.
pub(super) const META_FRAMES_FOOTER: &str = "nusomi.frames_footer_bytes";

/// One committed session, as its sessions file describes it.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    /// Session id.
    pub session_id: String,
    /// Workflow name.
    pub workflow: String,
    /// `started_at`, µs since the epoch.
    pub started_at_us: i64,
    /// `sealed_at`, µs since the epoch.
    pub sealed_at_us: i64,
    /// Content digest.
    pub seal: String,
    /// Number of frames (rows of the frames file).
    pub frame_count: i64,
    /// The frames file.
    pub frames_path: Path,
    /// Its size in bytes.
    pub frames_bytes: u64,
    /// Size of its Parquet footer in bytes, if recorded.
    pub frames_footer_bytes: Option<u64>,
    /// The session's row, in the `sessions` schema.
    pub row: RecordBatch,
}

/// The committed sessions of a store at one instant, sorted by `session_id`.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Sessions in `session_id` byte order.
    pub sessions: Vec<Arc<SessionRecord>>,
}

impl Snapshot {
    /// All session rows as one batch, in `session_id` order.
    pub fn sessions_batch(&self) -> Result<RecordBatch> {
        let rows: Vec<&RecordBatch> = self.sessions.iter().map(|s| &s.row).collect();
        Ok(concat_batches(&sessions_schema(), rows)?)
    }

    /// The session with this id, if committed.
    pub fn get(&self, session_id: &str) -> Option<&Arc<SessionRecord>> {
        self.sessions
            .binary_search_by(|s| s.session_id.as_str().cmp(session_id))
            .ok()
            .map(|i| &self.sessions[i])
    }
}

/// A store root: where sessions are sealed and from which the `sessions` and
/// `frames` tables read.
#[derive(Debug)]
pub struct SealedStore {
    location: StoreLocation,
    cache: Mutex<HashMap<Path, Arc<SessionRecord>>>,
    /// Session id → seal of every session this handle committed.
    committed: Mutex<HashMap<String, String>>,
}

impl SealedStore {
    /// Opens (for a local path: creates) the store at `root`; see
    /// [`StoreLocation::parse`] for the accepted forms.
    pub async fn open(root: &str) -> Result<Arc<Self>> {
        Ok(Self::new(StoreLocation::parse(root)?))
    }

    /// A store over an already resolved location.
    pub fn new(location: StoreLocation) -> Arc<Self> {
        Arc::new(SealedStore {
            location,
            cache: Mutex::new(HashMap::new()),
            committed: Mutex::new(HashMap::new()),
        })
    }

    /// Where the store lives.
    pub fn location(&self) -> &StoreLocation {
        &self.location
    }

    /// Lists the committed sessions now. Session files already seen by this
    /// handle are not read again.
    pub async fn snapshot(&self) -> Result<Snapshot> {
        let dir = child(&self.location.prefix, &[SESSIONS_DIR]);
        let metas: Vec<_> = self
            .location
            .store
            .list(Some(&dir))
            .try_filter(|m| futures::future::ready(m.location.as_ref().ends_with(".parquet")))
            .try_collect()
            .await?;
        let missing: Vec<Path> = {
            let cache = self.lock_cache();
            metas
                .iter()
                .map(|m| m.location.clone())
                .filter(|p| !cache.contains_key(p))
                .collect()
        };
        let loaded: Vec<(Path, Arc<SessionRecord>)> = futures::stream::iter(missing)
            .map(|path| async move {
                let rec = self.read_session(&path).await?;
                Ok::<_, Error>((path, Arc::new(rec)))
            })
            .buffer_unordered(32)
            .try_collect()
            .await?;
        let mut cache = self.lock_cache();
        cache.extend(loaded);
        // One record per session id; if a cross-process race ever committed an
        // id twice (under two workflows), the earliest seal wins, deterministically.
        let mut by_id: BTreeMap<String, Arc<SessionRecord>> = BTreeMap::new();
        for meta in &metas {
            if let Some(rec) = cache.get(&meta.location) {
                by_id
                    .entry(rec.session_id.clone())
                    .and_modify(|cur| {
                        if (rec.sealed_at_us, &rec.seal) < (cur.sealed_at_us, &cur.seal) {
                            *cur = Arc::clone(rec);
                        }
                    })
                    .or_insert_with(|| Arc::clone(rec));
            }
        }
        Ok(Snapshot {
            sessions: by_id.into_values().collect(),
        })
    }

    /// The seal of `session_id` if this handle committed it.
    pub(crate) fn committed_seal(&self, session_id: &str) -> Option<String> {
        let map = self.committed.lock().unwrap_or_else(|p| p.into_inner());
        map.get(session_id).cloned()
    }

    /// Records a commit made through this handle.
    pub(crate) fn note_committed(&self, session_id: &str, seal: &str) {
        let mut map = self.committed.lock().unwrap_or_else(|p| p.into_inner());
        map.insert(session_id.to_string(), seal.to_string());
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashMap<Path, Arc<SessionRecord>>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads one committed session file.
    pub(crate) async fn read_session(&self, path: &Path) -> Result<SessionRecord> {
        let bytes = self.location.store.get(path).await?.bytes().await?;
        decode_session_file(&self.location.prefix, path, bytes)
    }
}

fn decode_session_file(root: &Path, path: &Path, bytes: Bytes) -> Result<SessionRecord> {
    let corrupt = |message: String| Error::Corrupt {
        path: path.to_string(),
        message,
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)?;
    let kv: HashMap<String, String> = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .map(|kvs| {
            kvs.iter()
                .filter_map(|kv| Some((kv.key.clone(), kv.value.clone()?)))
                .collect()
        })
        .unwrap_or_default();
    let frames_path = kv
        .get(META_FRAMES_PATH)
        .ok_or_else(|| corrupt(format!("footer lacks {META_FRAMES_PATH}")))?;
    let frames_bytes: u64 = kv
        .get(META_FRAMES_BYTES)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| corrupt(format!("footer lacks a numeric {META_FRAMES_BYTES}")))?;
    let batches: Vec<RecordBatch> = builder.build()?.collect::<Result<_, _>>()?;
    let schema = sessions_schema();
    let batches = batches
        .into_iter()
        .map(with_instruction)
        .collect::<Result<Vec<_>>>()?;
    let row = concat_batches(&schema, &batches).map_err(|e| corrupt(e.to_string()))?;
    if row.num_rows() != 1 || row.schema().fields() != schema.fields() {
        return Err(corrupt(format!(
            "expected one row in the sessions schema, found {} rows of {:?}",
            row.num_rows(),
            row.schema()
        )));
    }
    let text = |name: &str| {
        row.column_by_name(name)
            .map(|c| c.as_string::<i32>().value(0).to_string())
    };
    let int = |name: &str| {
        row.column_by_name(name)
            .map(|c| c.as_primitive::<Int64Type>().value(0))
    };
    let ts = |name: &str| {
        row.column_by_name(name)
            .map(|c| c.as_primitive::<TimestampMicrosecondType>().value(0))
    };
    let missing = || corrupt("a required column is null".into());
    Ok(SessionRecord {
        session_id: text("session_id").ok_or_else(missing)?,
        workflow: text("workflow").ok_or_else(missing)?,
        started_at_us: ts("started_at").ok_or_else(missing)?,
        sealed_at_us: ts("sealed_at").ok_or_else(missing)?,
        seal: text("seal").ok_or_else(missing)?,
        frame_count: int("frame_count").ok_or_else(missing)?,
        frames_path: Path::from_iter(root.parts().chain(Path::from(frames_path.as_str()).parts())),
        frames_bytes,
        frames_footer_bytes: kv.get(META_FRAMES_FOOTER).and_then(|v| v.parse().ok()),
        row,
    })
}

/// A session row of a store sealed before `instruction` existed, with a
/// null `instruction` appended (the column is last and nullable); rows of
/// today's schema as they are.
fn with_instruction(batch: RecordBatch) -> Result<RecordBatch> {
    let schema = sessions_schema();
    if batch.num_columns() + 1 != schema.fields().len() {
        return Ok(batch);
    }
    let mut columns = batch.columns().to_vec();
    columns.push(arrow::array::new_null_array(
        &arrow::datatypes::DataType::Utf8,
        batch.num_rows(),
    ));
    Ok(RecordBatch::try_new(schema, columns)?)
}
