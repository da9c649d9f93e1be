//! Sealing: adding validated bundles to a [`SealedStore`] atomically.
//!
//! Per bundle: (1) read and check everything (`Bundle::read`, nothing written
//! yet); (2) stream the frames into `frames/…/<id>-<seal16>.parquet` (an
//! object_store upload only becomes visible when it completes); (3) claim
//! the session id by creating the one-row `sessions/…/<id>.parquet` with a
//! conditional put (`PutMode::Create`): of two sealers of one id, one wins
//! and the other compares seals. (4) Commit: the claimed files of a batch of
//! bundles are added to the `frames` and then the `sessions` Delta log
//! (`catalog.rs`); only then are they in the store. A failure before (4)
//! deletes what this call wrote; a crash between (3) and (4) leaves a claim
//! the next seal of that bundle commits.

use std::collections::HashSet;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};

use arrow::array::RecordBatch;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use parquet::arrow::{ArrowWriter, AsyncArrowWriter};
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use super::bundle::{Bundle, BundleLimits};
use super::catalog::{relative_to, under, CommitEntry, Table};
use super::frame_batch::{session_row, FrameBatches};
use super::layout::SessionPaths;
use super::schema::{frames_file_schema, sessions_schema};
use super::sealed_store::{
    SealedStore, Snapshot, META_FRAMES_BYTES, META_FRAMES_FOOTER, META_FRAMES_PATH,
};
use super::writer_props::{frames_writer_props, CREATED_BY, ROW_GROUP_BYTES};
use crate::error::{Error, Result};

/// What sealing one bundle did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealOutcome {
    /// The session is now in the store.
    Sealed(SealSummary),
    /// The store already held this exact session; nothing was written.
    AlreadySealed(SealSummary),
}

impl SealOutcome {
    /// The summary, whichever the outcome.
    pub fn summary(&self) -> &SealSummary {
        match self {
            SealOutcome::Sealed(s) | SealOutcome::AlreadySealed(s) => s,
        }
    }
}

/// Facts about one sealed bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealSummary {
    /// Session id.
    pub session_id: String,
    /// Workflow.
    pub workflow: String,
    /// Number of frames.
    pub frames: usize,
    /// Number of events.
    pub events: usize,
    /// Total bytes of frame images.
    pub image_bytes: u64,
    /// Content digest.
    pub seal: String,
}

/// Options for sealing.
#[derive(Debug, Clone, Default)]
pub struct SealOptions {
    /// Bundles sealed at once by [`SealedStore::seal_all`]; 0 = one per core.
    pub parallelism: usize,
    /// Fixed `sealed_at` (tests, reproducible demos); default: now.
    pub sealed_at: Option<DateTime<Utc>>,
    /// Size limits bundles are read under.
    pub limits: BundleLimits,
}

/// Session ids being sealed in this process right now.
static IN_FLIGHT: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(Default::default);

struct InFlight(String);

impl InFlight {
    async fn acquire(id: &str) -> InFlight {
        loop {
            if IN_FLIGHT
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id.to_string())
            {
                return InFlight(id.to_string());
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.0);
    }
}

/// Sessions committed per log entry by [`SealedStore::seal_all`].
const COMMIT_BATCH: usize = 2000;
/// ... or after this long, whichever comes first.
const COMMIT_AFTER: std::time::Duration = std::time::Duration::from_secs(20);

/// A bundle read, written and claimed, waiting for its log entry.
struct Pending {
    entry: CommitEntry,
    summary: SealSummary,
    /// Whether this call wrote the sessions file (else it only repairs a
    /// claim an interrupted earlier seal left uncommitted).
    wrote_claim: bool,
}

/// What preparing one bundle came to.
enum Prepared {
    /// Nothing to commit (already sealed, or refused).
    Done(SealOutcome),
    /// Ready for the next log entry.
    Pending(Box<Pending>),
}

impl SealedStore {
    /// Seals one bundle folder.
    pub async fn seal(&self, bundle_dir: &FsPath, options: &SealOptions) -> Result<SealOutcome> {
        let known = self.snapshot().await?;
        match self.prepare(bundle_dir, options, &known).await? {
            Prepared::Done(outcome) => Ok(outcome),
            Prepared::Pending(p) => {
                let mut done = self.commit_batch(vec![*p]).await;
                done.pop()
                    .map(|(_, r)| r)
                    .unwrap_or_else(|| Err(Error::Internal("empty commit".into())))
            }
        }
    }

    /// Reads one bundle, writes its frames file and claims its session
    /// file, taking `known` (a snapshot from before) plus what this handle
    /// has committed since as the sessions already sealed.
    async fn prepare(
        &self,
        bundle_dir: &FsPath,
        options: &SealOptions,
        known: &Snapshot,
    ) -> Result<Prepared> {
        let dir = bundle_dir.to_path_buf();
        let limits = options.limits;
        let bundle =
            tokio::task::spawn_blocking(move || Bundle::read_with(&dir, &limits)).await??;
        let _guard = InFlight::acquire(&bundle.session.session_id).await;
        let summary = SealSummary {
            session_id: bundle.session.session_id.clone(),
            workflow: bundle.session.workflow.clone(),
            frames: bundle.frames.len(),
            events: bundle.event_count(),
            image_bytes: bundle.image_bytes,
            seal: bundle.seal.clone(),
        };
        let id = &bundle.session.session_id;
        if let Some(seal) = self.committed_seal(id) {
            return self.compare(&seal, summary).map(Prepared::Done);
        }
        if let Some(existing) = known.get(id) {
            return self.compare(&existing.seal, summary).map(Prepared::Done);
        }
        let loc = self.location();
        let paths = SessionPaths::new(
            &loc.prefix,
            &bundle.session.workflow,
            bundle.session.started_at_us,
            &bundle.session.session_id,
            &bundle.seal,
        );
        let frames_file = self.write_frames(&bundle, &paths.frames).await;
        let frames_file = match frames_file {
            Ok(n) => n,
            Err(e) => {
                let _ = loc.store.delete(&paths.frames).await;
                return Err(e);
            }
        };
        let sealed_at = options.sealed_at.unwrap_or_else(Utc::now);
        let sealed_at_us = sealed_at.timestamp_micros();
        let relative = |p: &Path| relative_to(&loc.prefix, p);
        match self
            .claim(&bundle, &paths, &frames_file, sealed_at_us)
            .await
        {
            Ok(session_bytes) => {
                // Later bundles with this id in the same call compare against it.
                self.note_committed(&summary.session_id, &summary.seal);
                Ok(Prepared::Pending(Box::new(Pending {
                    entry: CommitEntry {
                        session_id: summary.session_id.clone(),
                        workflow: summary.workflow.clone(),
                        started_at_us: bundle.session.started_at_us,
                        sealed_at_us,
                        seal: bundle.seal.clone(),
                        frame_count: bundle.frames.len() as i64,
                        session_path: relative(&paths.session),
                        session_bytes,
                        frames_path: relative(&paths.frames),
                        frames_bytes: frames_file.bytes,
                        frames_footer_bytes: frames_file.footer,
                    },
                    summary,
                    wrote_claim: true,
                })))
            }
            Err(Error::ObjectStore(object_store::Error::AlreadyExists { .. })) => {
                // Claimed before: by a seal that committed since `known` was
                // read, one that is committing now, or one interrupted
                // between its claim and its log entry. Same content: commit
                // the claim's files (adding a path again is idempotent).
                let existing = self.read_session(&paths.session).await?;
                if existing.seal != bundle.seal {
                    let _ = loc.store.delete(&paths.frames).await;
                    return self.compare(&existing.seal, summary).map(Prepared::Done);
                }
                // Committed since `known` was read: its frames may have
                // moved into a pack, so the claim's file must not be added
                // again.
                if self.committed_now(id).await? {
                    return self.compare(&existing.seal, summary).map(Prepared::Done);
                }
                Ok(Prepared::Pending(Box::new(Pending {
                    summary: SealSummary {
                        seal: existing.seal.clone(),
                        ..summary
                    },
                    entry: existing,
                    wrote_claim: false,
                })))
            }
            Err(e) => {
                let _ = loc.store.delete(&paths.frames).await;
                Err(e)
            }
        }
    }

    /// Whether the newest `sessions` version holds `id` (no log yet: no;
    /// the claims of racing sealers must not read as a store of the layout
    /// before Delta Lake).
    async fn committed_now(&self, id: &str) -> Result<bool> {
        if !self.catalog().exists(Table::Sessions).await? {
            return Ok(false);
        }
        Ok(self.snapshot_at(None).await?.get(id).is_some())
    }

    /// Commits `batch` as one log entry per table; on failure removes what
    /// this call wrote for it. One result per bundle, in `batch` order.
    async fn commit_batch(&self, batch: Vec<Pending>) -> Vec<(String, Result<SealOutcome>)> {
        let entries: Vec<CommitEntry> = batch.iter().map(|p| p.entry.clone()).collect();
        match self.catalog().commit(&entries, "seal").await {
            Ok(_) => batch
                .into_iter()
                .map(|p| {
                    self.note_committed(&p.summary.session_id, &p.summary.seal);
                    let outcome = if p.wrote_claim {
                        SealOutcome::Sealed(p.summary)
                    } else {
                        SealOutcome::AlreadySealed(p.summary)
                    };
                    (p.entry.session_id, Ok(outcome))
                })
                .collect(),
            Err(failed) => {
                let loc = self.location();
                let message = failed.error.to_string();
                let mut out = Vec::with_capacity(batch.len());
                for p in batch {
                    self.forget_claim(&p.entry.session_id);
                    if p.wrote_claim && !failed.frames_committed {
                        let root = &loc.prefix;
                        let _ = loc.store.delete(&under(root, &p.entry.session_path)).await;
                        let _ = loc.store.delete(&under(root, &p.entry.frames_path)).await;
                    }
                    out.push((
                        p.entry.session_id,
                        Err(Error::Catalog {
                            table: "sessions",
                            message: message.clone(),
                        }),
                    ));
                }
                out
            }
        }
    }

    fn compare(&self, stored: &str, summary: SealSummary) -> Result<SealOutcome> {
        if stored == summary.seal {
            Ok(SealOutcome::AlreadySealed(summary))
        } else {
            Err(Error::SealConflict {
                session_id: summary.session_id,
                stored: stored.to_string(),
                offered: summary.seal,
            })
        }
    }

    /// Seals many bundles, `options.parallelism` at a time; each bundle
    /// stands alone. Bundles are committed in batches of up to 2,000 (one
    /// log entry per table and batch, or sooner when 20 s have passed), so
    /// a result arrives when its batch is committed.
    pub fn seal_all<'a>(
        &'a self,
        bundles: Vec<PathBuf>,
        options: &'a SealOptions,
    ) -> BoxStream<'a, (PathBuf, Result<SealOutcome>)> {
        let parallelism = match options.parallelism {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        // One snapshot for the whole call; ids committed during it are
        // tracked by the handle.
        let known = futures::stream::once(async move { self.snapshot().await });
        let prepared = known
            .flat_map(move |snapshot| {
                let snapshot = Arc::new(snapshot);
                let bundles = bundles.clone();
                futures::stream::iter(bundles)
                    .map(move |dir| {
                        let snapshot = Arc::clone(&snapshot);
                        async move {
                            let res = match snapshot.as_ref() {
                                Ok(known) => self.prepare(&dir, options, known).await,
                                Err(e) => Err(Error::Corrupt {
                                    path: "sessions/_delta_log".into(),
                                    message: format!("cannot read the store: {e}"),
                                }),
                            };
                            (dir, res)
                        }
                    })
                    .buffer_unordered(parallelism)
            })
            .boxed();
        struct State<'a> {
            input: Option<BoxStream<'a, (PathBuf, Result<Prepared>)>>,
            pending: Vec<(PathBuf, Pending)>,
            since: Option<std::time::Instant>,
            ready: std::collections::VecDeque<(PathBuf, Result<SealOutcome>)>,
        }
        let state = State {
            input: Some(prepared),
            pending: Vec::new(),
            since: None,
            ready: Default::default(),
        };
        futures::stream::unfold(state, move |mut st| async move {
            loop {
                if let Some(item) = st.ready.pop_front() {
                    return Some((item, st));
                }
                let next = match st.input.as_mut() {
                    Some(input) => input.next().await,
                    None => None,
                };
                let flush = match next {
                    Some((dir, Ok(Prepared::Done(outcome)))) => {
                        st.ready.push_back((dir, Ok(outcome)));
                        false
                    }
                    Some((dir, Err(e))) => {
                        st.ready.push_back((dir, Err(e)));
                        false
                    }
                    Some((dir, Ok(Prepared::Pending(p)))) => {
                        st.since.get_or_insert_with(std::time::Instant::now);
                        st.pending.push((dir, *p));
                        st.pending.len() >= COMMIT_BATCH
                            || st.since.is_some_and(|t| t.elapsed() >= COMMIT_AFTER)
                    }
                    None => {
                        st.input = None;
                        if st.pending.is_empty() {
                            return None;
                        }
                        true
                    }
                };
                if flush {
                    st.since = None;
                    let (dirs, batch): (Vec<PathBuf>, Vec<Pending>) =
                        std::mem::take(&mut st.pending).into_iter().unzip();
                    let results = self.commit_batch(batch).await;
                    for (dir, (_, res)) in dirs.into_iter().zip(results) {
                        st.ready.push_back((dir, res));
                    }
                }
            }
        })
        .boxed()
    }

    /// Streams the frames file; returns its size and its footer's size.
    async fn write_frames(&self, bundle: &Bundle, path: &Path) -> Result<FramesFile> {
        let store = Arc::clone(&self.location().store);
        let writer = BufWriter::new(Arc::clone(&store), path.clone());
        let mut writer =
            AsyncArrowWriter::try_new(writer, frames_file_schema(), Some(frames_writer_props()))?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<RecordBatch>>(2);
        let producer_bundle = bundle.clone();
        let producer = tokio::task::spawn_blocking(move || {
            for batch in FrameBatches::new(&producer_bundle) {
                let stop = batch.is_err();
                if tx.blocking_send(batch).is_err() || stop {
                    break;
                }
            }
        });
        while let Some(batch) = rx.recv().await {
            writer.write(&batch?).await?;
            if writer.in_progress_size() >= ROW_GROUP_BYTES {
                writer.flush().await?;
            }
        }
        producer.await?;
        // The file's size and the size of what follows its last row group
        // (page indexes, footer), from the writer: no request after the
        // upload. A scan without `image` fetches exactly that tail first.
        writer.flush().await?;
        let data = writer.bytes_written() as u64;
        writer.finish().await?;
        let bytes = writer.bytes_written() as u64;
        let footer = bytes - data;
        Ok(FramesFile { bytes, footer })
    }

    /// Creates the sessions file (the claim on the session id), failing
    /// with `AlreadyExists` if present; returns its size.
    async fn claim(
        &self,
        bundle: &Bundle,
        paths: &SessionPaths,
        frames_file: &FramesFile,
        sealed_at_us: i64,
    ) -> Result<u64> {
        let loc = self.location();
        let relative: Vec<_> = paths
            .frames
            .prefix_match(&loc.prefix)
            .map(|parts| parts.collect())
            .unwrap_or_default();
        let relative = Path::from_iter(relative);
        let batch = session_row(bundle, sealed_at_us)?;
        let props = WriterProperties::builder()
            .set_created_by(CREATED_BY.to_string())
            .set_compression(Compression::SNAPPY)
            .set_key_value_metadata(Some(vec![
                KeyValue::new(META_FRAMES_PATH.to_string(), relative.to_string()),
                KeyValue::new(META_FRAMES_BYTES.to_string(), frames_file.bytes.to_string()),
                KeyValue::new(
                    META_FRAMES_FOOTER.to_string(),
                    frames_file.footer.to_string(),
                ),
            ]))
            .build();
        let mut buf = Vec::new();
        let mut w = ArrowWriter::try_new(&mut buf, sessions_schema(), Some(props))?;
        w.write(&batch)?;
        w.close()?;
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        let bytes = buf.len() as u64;
        loc.store
            .put_opts(&paths.session, PutPayload::from(Bytes::from(buf)), opts)
            .await?;
        Ok(bytes)
    }
}

/// A written frames file.
struct FramesFile {
    /// Size in bytes.
    bytes: u64,
    /// Size of its footer (metadata + length + magic) in bytes.
    footer: u64,
}
