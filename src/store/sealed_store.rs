//! [`SealedStore`]: a handle on one store root, and the [`Snapshot`] of its
//! committed sessions that every query plans against.
//!
//! A session is committed when a sessions file holding its row is in the
//! `sessions` Delta log (`catalog.rs`); the `frames` log names its frames
//! file (or its range of a pack), that file's size and its tail's size. A
//! snapshot is read from the two logs alone (the latest checkpoint and the
//! entries after it, sessions files' rows from their tags), so planning costs the
//! same few requests whatever the number of sessions, and never lists
//! `sessions/` or `frames/` nor opens a session's file.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use arrow::array::{AsArray, RecordBatch};
use arrow::compute::concat_batches;
use arrow::datatypes::{Int64Type, TimestampMicrosecondType};
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::ObjectStoreExt;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::catalog::Catalog;
use super::layout::{child, SESSIONS_DIR};
use super::location::StoreLocation;
use super::log_actions::{relative_to, under, CommitEntry, Table};
use super::logged_files::{frames_tails, LoggedFile};
use super::pack::{PackMember, PackSource};
use super::schema::{sessions_schema, with_instruction};
use super::sessions_pack::SessionMember;
use crate::error::{Error, Result};
use deltalake_core::table::state::DeltaTableState;

/// Footer key naming a session's frames file, relative to the store root.
pub(super) const META_FRAMES_PATH: &str = "nusomi.frames_path";
/// Footer key giving a session's frames file size in bytes.
pub(super) const META_FRAMES_BYTES: &str = "nusomi.frames_bytes";
/// Footer key giving the size of the frames file's own footer, so a scan
/// fetches exactly the footer (no image bytes) in its first request.
pub(super) const META_FRAMES_FOOTER: &str = "nusomi.frames_footer_bytes";

/// One committed session, as the two logs describe it.
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
    /// The sessions file holding its row.
    pub session_path: Path,
    /// Its size in bytes.
    pub session_bytes: u64,
    /// Its row in that file and the file's row count when the file holds
    /// many sessions, else `None`.
    pub session_row: Option<(u64, u64)>,
    /// The frames file.
    pub frames_path: Path,
    /// Its size in bytes.
    pub frames_bytes: u64,
    /// The session's byte range of the frames file when that is a pack of
    /// many sessions (its row groups start inside it), else `None`.
    pub frames_range: Option<(u64, u64)>,
    /// Bytes after its last row group (page indexes and footer; the
    /// footer alone for files sealed before the Delta catalog): filled in
    /// for scans that read no image (see `table.rs`), else `None`.
    pub frames_footer_bytes: Option<u64>,
}

/// The table versions a [`Snapshot`] was read at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoreVersion {
    /// Version of the `sessions` Delta table.
    pub sessions: u64,
    /// Version of the `frames` Delta table.
    pub frames: u64,
}

/// The committed sessions of a store at one pair of table versions, sorted
/// by `session_id`.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The versions read; `None` for a store nothing was sealed into yet.
    pub version: Option<StoreVersion>,
    /// Sessions in `session_id` byte order.
    pub sessions: Vec<Arc<SessionRecord>>,
    /// The `frames` log at the snapshot's version (for per-file tags).
    pub(crate) frames_log: Option<Arc<DeltaTableState>>,
    /// Whether some session's row is a one-row sessions file of a store
    /// sealed before claims had their own objects (that file is its claim).
    pub(crate) legacy_sessions: bool,
}

impl SessionRecord {
    /// Bytes of its frames file that hold its frames.
    pub fn frames_weight(&self) -> u64 {
        self.frames_range
            .map_or(self.frames_bytes, |(start, end)| end - start)
    }
}

impl From<&SessionRecord> for PackSource {
    /// Where a committed session's frames are.
    fn from(s: &SessionRecord) -> Self {
        PackSource {
            session_id: s.session_id.clone(),
            started_at_us: s.started_at_us,
            path: s.frames_path.clone(),
            file_bytes: s.frames_bytes,
            range: s.frames_range,
            rows: s.frame_count,
        }
    }
}

impl Snapshot {
    /// `sessions` with `frames_footer_bytes` filled in from the `frames`
    /// log's tags (`root`: the store root), for scans that read no image.
    pub(crate) fn with_tails(
        &self,
        root: &Path,
        sessions: Vec<Arc<SessionRecord>>,
    ) -> Vec<Arc<SessionRecord>> {
        let Some(log) = &self.frames_log else {
            return sessions;
        };
        let wanted: HashSet<String> = sessions
            .iter()
            .map(|s| relative_to(root, &s.frames_path))
            .collect();
        let tails = frames_tails(log, &wanted);
        sessions
            .into_iter()
            .map(|s| match tails.get(&relative_to(root, &s.frames_path)) {
                Some(&t) => Arc::new(SessionRecord {
                    frames_footer_bytes: Some(t),
                    ..SessionRecord::clone(&s)
                }),
                None => s,
            })
            .collect()
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
    catalog: Catalog,
    /// A snapshot every query of this handle reads (see [`SealedStore::pinned`]).
    pinned: Option<Arc<Snapshot>>,
    /// The version every query of this handle reads, read when first
    /// needed (see [`SealedStore::at_version`]).
    version: Option<StoreVersion>,
    /// Session id → seal of every session this handle committed.
    committed: Mutex<HashMap<String, String>>,
}

impl SealedStore {
    /// Opens (for a local path: creates) the store at `root`; see
    /// [`StoreLocation::parse`] for the accepted forms.
    pub async fn open(root: &str) -> Result<Arc<Self>> {
        Self::try_new(StoreLocation::parse(root)?)
    }

    /// A store over an already resolved location.
    ///
    /// # Panics
    /// When `location`'s URL cannot name a Delta table (never for locations
    /// made by [`StoreLocation::parse`] or [`StoreLocation::new`] with a
    /// valid URL); use [`SealedStore::try_new`] to get an error instead.
    pub fn new(location: StoreLocation) -> Arc<Self> {
        match Self::try_new(location) {
            Ok(store) => store,
            Err(e) => panic!("{e}"),
        }
    }

    /// A store over an already resolved location.
    pub fn try_new(location: StoreLocation) -> Result<Arc<Self>> {
        Ok(Arc::new(SealedStore {
            catalog: Catalog::new(&location)?,
            location,
            pinned: None,
            version: None,
            committed: Mutex::new(HashMap::new()),
        }))
    }

    /// A handle on the store at `location` whose queries all read
    /// `version`, without reading anything yet (a cluster's scheduler
    /// rebuilds an export's tables so).
    pub fn at_version(location: StoreLocation, version: StoreVersion) -> Result<Arc<Self>> {
        Ok(Arc::new(SealedStore {
            catalog: Catalog::new(&location)?,
            location,
            pinned: None,
            version: Some(version),
            committed: Mutex::new(HashMap::new()),
        }))
    }

    /// The version this handle's queries read, when it is pinned to one.
    pub fn pinned_version(&self) -> Option<StoreVersion> {
        self.pinned
            .as_ref()
            .and_then(|s| s.version)
            .or(self.version)
    }

    /// Where the store lives.
    pub fn location(&self) -> &StoreLocation {
        &self.location
    }

    pub(crate) fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// A handle whose queries all read one snapshot: the newest one, or the
    /// one at `version` (an export's recorded version, for reproduction).
    /// Sealing through the returned handle is not meant.
    pub async fn pinned(&self, version: Option<StoreVersion>) -> Result<Arc<Self>> {
        let snapshot = match version {
            Some(v) => self.snapshot_at(Some(v)).await?,
            None => self.snapshot().await?,
        };
        Ok(self.with_snapshot(snapshot))
    }

    /// A handle on the same store whose queries all read `snapshot`.
    fn with_snapshot(&self, snapshot: Snapshot) -> Arc<Self> {
        Arc::new(SealedStore {
            location: self.location.clone(),
            catalog: self.catalog.clone(),
            pinned: Some(Arc::new(snapshot)),
            version: None,
            committed: Mutex::new(HashMap::new()),
        })
    }

    /// A handle pinned at `version` if every file that version reads is
    /// still there (files of sessions forgotten since are deleted by a
    /// vacuum past its retention), else `None`. Only files the newest
    /// version no longer reads are checked, one HEAD each.
    pub async fn pinned_if_readable(&self, version: StoreVersion) -> Result<Option<Arc<Self>>> {
        let then = match self.snapshot_at(Some(version)).await {
            Ok(s) => s,
            // The log entries themselves were cleaned up.
            Err(Error::Catalog { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let now = self.snapshot_at(None).await?;
        let mut checked: HashSet<&Path> = HashSet::new();
        for s in &then.sessions {
            let kept = now.get(&s.session_id).is_some_and(|n| {
                n.session_path == s.session_path && n.frames_path == s.frames_path
            });
            if kept {
                continue;
            }
            for path in [&s.session_path, &s.frames_path] {
                if !checked.insert(path) {
                    continue;
                }
                match self.location.store.head(path).await {
                    Ok(_) => {}
                    Err(object_store::Error::NotFound { .. }) => return Ok(None),
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(Some(self.with_snapshot(then)))
    }

    /// The committed sessions now (or the pinned snapshot).
    pub async fn snapshot(&self) -> Result<Snapshot> {
        if let Some(pinned) = &self.pinned {
            return Ok(Snapshot::clone(pinned));
        }
        self.snapshot_at(self.version).await
    }

    /// The committed sessions at `version` (default: the newest).
    pub async fn snapshot_at(&self, version: Option<StoreVersion>) -> Result<Snapshot> {
        let sessions = self
            .catalog
            .files(Table::Sessions, version.map(|v| v.sessions))
            .await?;
        let Some(sessions) = sessions else {
            self.refuse_legacy_layout().await?;
            return Ok(Snapshot {
                version: None,
                sessions: Vec::new(),
                frames_log: None,
                legacy_sessions: false,
            });
        };
        let (sessions_version, session_files) = (sessions.version, sessions.files);
        // The frames log is read after the sessions log, so it covers every
        // committed session (frames are committed first).
        let frames_table = self
            .catalog
            .files(Table::Frames, version.map(|v| v.frames))
            .await?;
        let (frames_version, frames_files, frames_log) = match frames_table {
            Some(t) => (t.version, t.files, Some(t.state)),
            None => (0, Vec::new(), None),
        };
        // Session id → its frames file and, in a pack, its place there; a
        // pack wins over a one-session file naming the same id.
        let mut frames: HashMap<&str, (&LoggedFile, Option<&PackMember>)> = HashMap::new();
        for f in &frames_files {
            match &f.members {
                Some(members) => {
                    for m in members {
                        frames.insert(m.session_id.as_str(), (f, Some(m)));
                    }
                }
                None => {
                    frames.entry(f.session_id.as_str()).or_insert((f, None));
                }
            }
        }
        let root = &self.location.prefix;
        // One record per session id; if a cross-process race ever committed
        // an id twice (under two workflows), the earliest seal wins,
        // deterministically.
        let mut by_id: BTreeMap<String, Arc<SessionRecord>> = BTreeMap::new();
        let mut legacy_sessions = false;
        for s in &session_files {
            let one = [SessionMember {
                session_id: s.session_id.clone(),
                started_at_us: s.started_at_us,
                sealed_at_us: s.sealed_at_us.unwrap_or(0),
                frame_count: s.rows,
                seal: s.seal.clone().unwrap_or_default(),
            }];
            let rows = match &s.session_rows {
                Some(rows) => rows.as_slice(),
                None => {
                    legacy_sessions = true;
                    &one
                }
            };
            let session_path = under(root, &s.path);
            for (row, m) in rows.iter().enumerate() {
                let Some(&(f, member)) = frames.get(m.session_id.as_str()) else {
                    continue;
                };
                let rec = SessionRecord {
                    session_id: m.session_id.clone(),
                    workflow: s.workflow.clone(),
                    started_at_us: m.started_at_us,
                    sealed_at_us: m.sealed_at_us,
                    seal: m.seal.clone(),
                    frame_count: member.map_or(f.rows, |m| m.rows),
                    session_path: session_path.clone(),
                    session_bytes: s.bytes,
                    session_row: s
                        .session_rows
                        .as_ref()
                        .map(|r| (row as u64, r.len() as u64)),
                    frames_path: under(root, &f.path),
                    frames_bytes: f.bytes,
                    frames_range: member.map(|m| (m.start, m.end)),
                    frames_footer_bytes: None,
                };
                by_id
                    .entry(m.session_id.clone())
                    .and_modify(|cur| {
                        let key = |r: &SessionRecord| {
                            (r.sealed_at_us, r.seal.clone(), r.session_path.clone())
                        };
                        if key(&rec) < key(cur) {
                            *cur = Arc::new(rec.clone());
                        }
                    })
                    .or_insert_with(|| Arc::new(rec));
            }
        }
        Ok(Snapshot {
            version: Some(StoreVersion {
                sessions: sessions_version,
                frames: frames_version,
            }),
            sessions: by_id.into_values().collect(),
            frames_log,
            legacy_sessions,
        })
    }

    /// A store without a `sessions` log but with session files is one of
    /// the layout before Delta Lake: refuse it with the way out.
    async fn refuse_legacy_layout(&self) -> Result<()> {
        let dir = child(&self.location.prefix, &[SESSIONS_DIR]);
        let first = self
            .location
            .store
            .list(Some(&dir))
            .try_filter(|m| futures::future::ready(m.location.as_ref().ends_with(".parquet")))
            .try_next()
            .await?;
        match first {
            Some(_) => Err(Error::LegacyStore {
                location: self.location.display.clone(),
            }),
            None => Ok(()),
        }
    }

    /// The seal of `session_id` if this handle committed it.
    pub(crate) fn committed_seal(&self, session_id: &str) -> Option<String> {
        let map = self.committed.lock().unwrap_or_else(|p| p.into_inner());
        map.get(session_id).cloned()
    }

    /// Drops a claim this handle noted whose commit failed.
    pub(crate) fn forget_claim(&self, session_id: &str) {
        let mut map = self.committed.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(session_id);
    }

    /// Records a claim or commit made through this handle.
    pub(crate) fn note_committed(&self, session_id: &str, seal: &str) {
        let mut map = self.committed.lock().unwrap_or_else(|p| p.into_inner());
        map.insert(session_id.to_string(), seal.to_string());
    }

    /// Reads one claim (or one-row sessions file): what its footer names,
    /// as the entry that commits it, and its row.
    pub(crate) async fn read_claim(&self, path: &Path) -> Result<(CommitEntry, RecordBatch)> {
        let bytes = self.location.store.get(path).await?.bytes().await?;
        decode_claim(&self.location.prefix, path, bytes)
    }
}

fn decode_claim(root: &Path, path: &Path, bytes: Bytes) -> Result<(CommitEntry, RecordBatch)> {
    let session_bytes = bytes.len() as u64;
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
    let entry = CommitEntry {
        session_id: text("session_id").ok_or_else(missing)?,
        workflow: text("workflow").ok_or_else(missing)?,
        started_at_us: ts("started_at").ok_or_else(missing)?,
        sealed_at_us: ts("sealed_at").ok_or_else(missing)?,
        seal: text("seal").ok_or_else(missing)?,
        frame_count: int("frame_count").ok_or_else(missing)?,
        session_path: relative_to(root, path),
        session_bytes,
        frames_path: frames_path.clone(),
        frames_bytes,
        frames_footer_bytes: kv
            .get(META_FRAMES_FOOTER)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    };
    Ok((entry, row))
}
