//! Sealing: adding validated bundles to a [`SealedStore`] atomically.
//!
//! Per bundle: (1) read and check everything (`Bundle::read`, nothing written
//! yet); (2) stream the frames into `frames/…/<id>-<seal16>.parquet` (an
//! object_store upload only becomes visible when it completes); (3) claim
//! the session id by creating `claims/<hh>/<id>.parquet` (its row, and a
//! footer naming its frames file) with a conditional put
//! (`PutMode::Create`): of two sealers of one id, one wins and the other
//! compares seals. (4) Commit, per batch of bundles: one sessions file per
//! workflow and month holding the batch's rows (`sessions_pack.rs`), then
//! the frames files are added to the `frames` and the sessions files to the
//! `sessions` Delta log (`catalog.rs`); only then are they in the store. A
//! failure before (4) deletes what this call wrote; a crash between (3) and
//! (4) leaves a claim that the next seal of that bundle commits once the
//! claim is [`STALE_CLAIM`] old (younger, it is taken for another sealer's
//! commit in flight), or `nusomi store migrate` does.

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
use super::frame_batch::{session_row, FrameBatches};
use super::layout::{month_of, SessionPaths};
use super::log_actions::{relative_to, sessions_file_add, under, CommitEntry, Table};
use super::schema::{frames_file_schema, sessions_schema};
use super::sealed_store::{
    SealedStore, Snapshot, META_FRAMES_BYTES, META_FRAMES_FOOTER, META_FRAMES_PATH,
};
use super::sessions_pack::{sessions_pack_path, write_sessions_file};
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

/// A claim younger than this whose session is not committed is taken for
/// another sealer's commit in flight (a batch commits at most 20 s after
/// its first claim, plus the time its log entries take); an older one for
/// what an interrupted seal left, which a seal of the same bundle commits.
pub const STALE_CLAIM: std::time::Duration = std::time::Duration::from_secs(600);

/// A bundle read, written and claimed, waiting for its log entry.
pub(crate) struct Pending {
    pub(crate) entry: CommitEntry,
    /// Its row of the `sessions` table.
    pub(crate) row: RecordBatch,
    pub(crate) summary: SealSummary,
    /// Whether this call wrote the claim (else it only repairs a claim an
    /// interrupted earlier seal left uncommitted).
    pub(crate) wrote_claim: bool,
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
        let row = session_row(&bundle, sealed_at_us)?;
        // `Some(path)`: the id was claimed before, by the object at `path`.
        let existing_claim = match self.claim(&row, &paths, &frames_file).await {
            // A store sealed before claims had their own objects keeps a
            // committed session's claim in its one-row sessions file.
            Ok(()) if known.legacy_sessions => match loc.store.head(&paths.legacy_session).await {
                Ok(_) => {
                    let _ = loc.store.delete(&paths.claim).await;
                    Some(paths.legacy_session.clone())
                }
                Err(object_store::Error::NotFound { .. }) => None,
                // Unknown: the frames file may be a committed session's
                // (same id and content), so only the claim goes.
                Err(e) => {
                    let _ = loc.store.delete(&paths.claim).await;
                    return Err(e.into());
                }
            },
            Ok(()) => None,
            Err(Error::ObjectStore(object_store::Error::AlreadyExists { .. })) => {
                Some(paths.claim.clone())
            }
            Err(e) => {
                let _ = loc.store.delete(&paths.frames).await;
                return Err(e);
            }
        };
        match existing_claim {
            None => {
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
                        session_path: relative(&paths.claim),
                        session_bytes: 0,
                        frames_path: relative(&paths.frames),
                        frames_bytes: frames_file.bytes,
                        frames_footer_bytes: frames_file.footer,
                    },
                    row,
                    summary,
                    wrote_claim: true,
                })))
            }
            Some(claim) => {
                // Claimed before: by a seal that committed since `known` was
                // read, one that is committing now, or one interrupted
                // between its claim and its log entry.
                let (existing, row) = self.read_claim(&claim).await?;
                // The same content has the same frames path: that file is
                // the claim's (this call wrote identical bytes over it).
                if existing.frames_path != relative(&paths.frames) {
                    let _ = loc.store.delete(&paths.frames).await;
                }
                if existing.seal != bundle.seal || self.committed_now(id).await? {
                    return self.compare(&existing.seal, summary).map(Prepared::Done);
                }
                // Not committed: a claim young enough to be another sealer's
                // commit in flight is left to it; an older one is what an
                // interrupted seal left, committed here (its frames file).
                let age = loc.store.head(&claim).await?.last_modified;
                let stale = Utc::now()
                    .signed_duration_since(age)
                    .to_std()
                    .unwrap_or_default()
                    >= STALE_CLAIM;
                if !stale || claim == paths.legacy_session {
                    return self.compare(&existing.seal, summary).map(Prepared::Done);
                }
                Ok(Prepared::Pending(Box::new(Pending {
                    summary: SealSummary {
                        seal: existing.seal.clone(),
                        ..summary
                    },
                    entry: existing,
                    row,
                    wrote_claim: false,
                })))
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

    /// Commits `batch` as one log entry per table (its rows in one sessions
    /// file per workflow and month); on failure removes what this call wrote
    /// for it. One result per bundle, in `batch` order.
    pub(crate) async fn commit_batch(
        &self,
        mut batch: Vec<Pending>,
    ) -> Vec<(String, Result<SealOutcome>)> {
        let loc = self.location();
        let root = &loc.prefix;
        let mut written: Vec<Path> = Vec::new();
        let committed = match self.write_batch_rows(&mut batch, &mut written).await {
            Ok(actions) => {
                let entries: Vec<CommitEntry> = batch.iter().map(|p| p.entry.clone()).collect();
                self.catalog()
                    .commit(&entries, actions, "seal")
                    .await
                    .map_err(|e| (e.error, e.frames_committed))
            }
            Err(e) => Err((e, false)),
        };
        match committed {
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
            Err((error, frames_committed)) => {
                for path in &written {
                    let _ = loc.store.delete(path).await;
                }
                let message = error.to_string();
                let mut out = Vec::with_capacity(batch.len());
                for p in batch {
                    self.forget_claim(&p.entry.session_id);
                    if p.wrote_claim && !frames_committed {
                        let claim = super::layout::claim_path(root, &p.entry.session_id);
                        let _ = loc.store.delete(&claim).await;
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

    /// Writes the rows of `batch` as one sessions file per workflow and
    /// month (paths pushed to `written`), points each entry at its file and
    /// returns the files' `add`s.
    async fn write_batch_rows(
        &self,
        batch: &mut [Pending],
        written: &mut Vec<Path>,
    ) -> Result<Vec<deltalake_core::kernel::Action>> {
        let loc = self.location();
        let mut groups: std::collections::BTreeMap<(String, String), Vec<usize>> =
            Default::default();
        for (i, p) in batch.iter().enumerate() {
            let key = (p.entry.workflow.clone(), month_of(p.entry.started_at_us));
            groups.entry(key).or_default().push(i);
        }
        let mut actions = Vec::with_capacity(groups.len());
        for ((workflow, _), members) in groups {
            let first = &batch[members[0]].entry;
            let path = sessions_pack_path(&loc.prefix, &workflow, first.started_at_us);
            let rows: Vec<RecordBatch> = members.iter().map(|&i| batch[i].row.clone()).collect();
            written.push(path.clone());
            let Some(file) = write_sessions_file(&loc.store, &path, &rows).await? else {
                continue;
            };
            for &i in &members {
                batch[i].entry.session_path = relative_to(&loc.prefix, &path);
                batch[i].entry.session_bytes = file.bytes;
            }
            actions.push(sessions_file_add(&loc.prefix, &file, true));
        }
        Ok(actions)
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

    /// Creates the claim on the session id (its row, the footer naming its
    /// frames file), failing with `AlreadyExists` if present.
    async fn claim(
        &self,
        row: &RecordBatch,
        paths: &SessionPaths,
        frames_file: &FramesFile,
    ) -> Result<()> {
        let loc = self.location();
        let relative = relative_to(&loc.prefix, &paths.frames);
        let props = WriterProperties::builder()
            .set_created_by(CREATED_BY.to_string())
            .set_compression(Compression::SNAPPY)
            .set_key_value_metadata(Some(vec![
                KeyValue::new(META_FRAMES_PATH.to_string(), relative),
                KeyValue::new(META_FRAMES_BYTES.to_string(), frames_file.bytes.to_string()),
                KeyValue::new(
                    META_FRAMES_FOOTER.to_string(),
                    frames_file.footer.to_string(),
                ),
            ]))
            .build();
        let mut buf = Vec::new();
        let mut w = ArrowWriter::try_new(&mut buf, sessions_schema(), Some(props))?;
        w.write(row)?;
        w.close()?;
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        loc.store
            .put_opts(&paths.claim, PutPayload::from(Bytes::from(buf)), opts)
            .await?;
        Ok(())
    }
}

/// A written frames file.
struct FramesFile {
    /// Size in bytes.
    bytes: u64,
    /// Size of its footer (metadata + length + magic) in bytes.
    footer: u64,
}
