//! Sealing: adding validated bundles to a [`SealedStore`] atomically.
//!
//! Per bundle: (1) read and check everything (`Bundle::read`, nothing written
//! yet); (2) stream the frames into `frames/…/<id>-<seal16>.parquet` (an
//! object_store upload only becomes visible when it completes); (3) commit by
//! creating the one-row `sessions/…/<id>.parquet` with a conditional put
//! (`PutMode::Create`). A failure after (2) deletes the frames file; a crash
//! between (2) and (3) leaves an unreferenced frames file that no table reads
//! and the next seal of that bundle overwrites with identical bytes.

use std::collections::HashSet;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Int32Builder, Int64Builder, ListBuilder, RecordBatch,
    StringBuilder, StructBuilder, TimestampMicrosecondBuilder,
};
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
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use sha2::{Digest, Sha256};

use super::bundle::{Bundle, BundleError, Frame};
use super::frame_image::{hash_distance, is_keyframe};
use super::layout::SessionPaths;
use super::schema::{event_fields, frames_file_schema, sessions_schema, UTC};
use super::sealed_store::{
    SealedStore, Snapshot, META_FRAMES_BYTES, META_FRAMES_FOOTER, META_FRAMES_PATH,
};
use crate::{Error, Result};

/// Frames per Arrow batch while streaming a session out.
const BATCH_FRAMES: usize = 32;
/// Image bytes per Arrow batch while streaming a session out.
const BATCH_BYTES: usize = 16 << 20;
/// A frames row group is closed once it holds this many encoded bytes…
const ROW_GROUP_BYTES: usize = 64 << 20;
/// …or this many frames.
const ROW_GROUP_FRAMES: usize = 256;

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

impl SealedStore {
    /// Seals one bundle folder.
    pub async fn seal(&self, bundle_dir: &FsPath, options: &SealOptions) -> Result<SealOutcome> {
        let known = self.snapshot().await?;
        self.seal_against(bundle_dir, options, &known).await
    }

    /// Seals one bundle, taking `known` (a snapshot from before) plus what
    /// this handle has committed since as the sessions already sealed.
    async fn seal_against(
        &self,
        bundle_dir: &FsPath,
        options: &SealOptions,
        known: &Snapshot,
    ) -> Result<SealOutcome> {
        let dir = bundle_dir.to_path_buf();
        let bundle = tokio::task::spawn_blocking(move || Bundle::read(&dir)).await??;
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
            return self.compare(&seal, summary);
        }
        if let Some(existing) = known.get(id) {
            return self.compare(&existing.seal, summary);
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
        match self
            .commit(&bundle, &paths, &frames_file, sealed_at.timestamp_micros())
            .await
        {
            Ok(()) => {
                self.note_committed(&summary.session_id, &summary.seal);
                Ok(SealOutcome::Sealed(summary))
            }
            Err(Error::ObjectStore(object_store::Error::AlreadyExists { .. })) => {
                let existing = self.read_session(&paths.session).await?;
                if existing.seal != bundle.seal {
                    let _ = loc.store.delete(&paths.frames).await;
                }
                self.compare(&existing.seal, summary)
            }
            Err(e) => {
                let _ = loc.store.delete(&paths.frames).await;
                Err(e)
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

    /// Seals many bundles, `options.parallelism` at a time; each bundle stands
    /// alone. Results arrive in completion order.
    pub fn seal_all<'a>(
        &'a self,
        bundles: Vec<PathBuf>,
        options: &'a SealOptions,
    ) -> BoxStream<'a, (PathBuf, Result<SealOutcome>)> {
        let parallelism = match options.parallelism {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        // One listing for the whole call; ids committed during it are
        // tracked by the handle, so the store is not listed per bundle.
        let known = futures::stream::once(async move { self.snapshot().await });
        known
            .flat_map(move |snapshot| {
                let snapshot = Arc::new(snapshot);
                let bundles = bundles.clone();
                futures::stream::iter(bundles)
                    .map(move |dir| {
                        let snapshot = Arc::clone(&snapshot);
                        async move {
                            let res = match snapshot.as_ref() {
                                Ok(known) => self.seal_against(&dir, options, known).await,
                                Err(e) => Err(Error::Corrupt {
                                    path: "sessions/".into(),
                                    message: format!("cannot list the store: {e}"),
                                }),
                            };
                            (dir, res)
                        }
                    })
                    .buffer_unordered(parallelism)
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
        writer.close().await?;
        let bytes = store.head(path).await?.size;
        // Parquet ends with <footer length: u32 LE> "PAR1".
        let tail = store
            .get_range(path, bytes.saturating_sub(8)..bytes)
            .await?;
        let footer = tail
            .get(..4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(|b| u64::from(u32::from_le_bytes(b)) + 8)
            .unwrap_or(0);
        Ok(FramesFile { bytes, footer })
    }

    /// Creates the sessions file, failing with `AlreadyExists` if present.
    async fn commit(
        &self,
        bundle: &Bundle,
        paths: &SessionPaths,
        frames_file: &FramesFile,
        sealed_at_us: i64,
    ) -> Result<()> {
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
        loc.store
            .put_opts(&paths.session, PutPayload::from(Bytes::from(buf)), opts)
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

/// `created_by` written into every Parquet footer (fixed so bytes are stable).
pub const CREATED_BY: &str = "nusomi-export";

/// Parquet writer settings shared by the store's frames files and Parquet
/// export shards: fixed `created_by` (stable bytes), Snappy for the small
/// columns, and the image column (at `image`) stored as is — already
/// compressed, so no compression, dictionary or statistics — with at most
/// `max_rows` rows per row group.
pub(crate) fn image_parquet_props(image: ColumnPath, max_rows: usize) -> WriterProperties {
    WriterProperties::builder()
        .set_created_by(CREATED_BY.to_string())
        .set_compression(Compression::SNAPPY)
        .set_column_compression(image.clone(), Compression::UNCOMPRESSED)
        .set_column_dictionary_enabled(image.clone(), false)
        .set_column_statistics_enabled(image, EnabledStatistics::None)
        .set_max_row_group_row_count(Some(max_rows))
        .build()
}

fn frames_writer_props() -> WriterProperties {
    image_parquet_props(ColumnPath::from("image"), ROW_GROUP_FRAMES)
}

fn session_row(bundle: &Bundle, sealed_at_us: i64) -> Result<RecordBatch> {
    let s = &bundle.session;
    let strs = |v: &str| Arc::new(arrow::array::StringArray::from(vec![v])) as ArrayRef;
    let ints = |v: i64| Arc::new(arrow::array::Int64Array::from(vec![v])) as ArrayRef;
    let ts = |v: i64| {
        Arc::new(arrow::array::TimestampMicrosecondArray::from(vec![v]).with_timezone(UTC))
            as ArrayRef
    };
    let list = |items: &[String]| {
        let mut b = ListBuilder::new(StringBuilder::new());
        for i in items {
            b.values().append_value(i);
        }
        b.append(true);
        Arc::new(b.finish()) as ArrayRef
    };
    let columns = vec![
        strs(&s.session_id),
        strs(&s.workflow),
        strs(s.outcome.as_str()),
        strs(s.actor_kind.as_str()),
        Arc::new(arrow::array::StringArray::from(vec![s.actor_id.clone()])) as ArrayRef,
        ts(s.started_at_us),
        ts(s.ended_at_us),
        ints(s.duration_ms()),
        list(&s.tags),
        list(&s.paths),
        ints(bundle.frames.len() as i64),
        ints(bundle.event_count() as i64),
        ints(bundle.action_count() as i64),
        ts(sealed_at_us),
        strs(&bundle.seal),
    ];
    Ok(RecordBatch::try_new(sessions_schema(), columns)?)
}

/// Iterator of frames batches: re-reads each image, checks it is the file
/// that was validated, and builds rows with the precomputed sampling columns.
struct FrameBatches<'a> {
    bundle: &'a Bundle,
    next: usize,
}

impl<'a> FrameBatches<'a> {
    fn new(bundle: &'a Bundle) -> Self {
        FrameBatches { bundle, next: 0 }
    }

    fn build(&mut self) -> Result<RecordBatch> {
        let b = self.bundle;
        let mut rows = FrameColumns::default();
        let mut bytes_in_batch = 0usize;
        while self.next < b.frames.len()
            && rows.len < BATCH_FRAMES
            && (rows.len == 0 || bytes_in_batch < BATCH_BYTES)
        {
            let idx = self.next;
            let frame = &b.frames[idx];
            let prev = idx.checked_sub(1).map(|p| &b.frames[p]);
            let path = b.dir.join(&frame.file);
            let image = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
            let sha: [u8; 32] = Sha256::digest(&image).into();
            if sha != frame.image_sha256 {
                return Err(BundleError {
                    bundle: b.dir.clone(),
                    file: "frames.jsonl".into(),
                    line: Some(idx + 1),
                    field: Some("file".into()),
                    message: format!(
                        "frame file {:?} changed while it was being sealed",
                        frame.file
                    ),
                }
                .into());
            }
            bytes_in_batch += image.len();
            rows.push(b, frame, prev, &image);
            self.next += 1;
        }
        rows.finish()
    }
}

impl Iterator for FrameBatches<'_> {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        (self.next < self.bundle.frames.len()).then(|| self.build())
    }
}

struct FrameColumns {
    len: usize,
    session_id: StringBuilder,
    frame_idx: Int64Builder,
    t_ms: Int64Builder,
    image: BinaryBuilder,
    image_format: StringBuilder,
    width: Int32Builder,
    height: Int32Builder,
    is_keyframe: BooleanBuilder,
    is_event_frame: BooleanBuilder,
    is_action_frame: BooleanBuilder,
    events: ListBuilder<StructBuilder>,
    prev_t_ms: Int64Builder,
    dhash: Int64Builder,
    hash_distance: Int32Builder,
    workflow: StringBuilder,
    started_at: TimestampMicrosecondBuilder,
}

impl Default for FrameColumns {
    fn default() -> Self {
        FrameColumns {
            len: 0,
            session_id: StringBuilder::new(),
            frame_idx: Int64Builder::new(),
            t_ms: Int64Builder::new(),
            image: BinaryBuilder::new(),
            image_format: StringBuilder::new(),
            width: Int32Builder::new(),
            height: Int32Builder::new(),
            is_keyframe: BooleanBuilder::new(),
            is_event_frame: BooleanBuilder::new(),
            is_action_frame: BooleanBuilder::new(),
            events: ListBuilder::new(StructBuilder::from_fields(event_fields(), 0)),
            prev_t_ms: Int64Builder::new(),
            dhash: Int64Builder::new(),
            hash_distance: Int32Builder::new(),
            workflow: StringBuilder::new(),
            started_at: TimestampMicrosecondBuilder::new().with_timezone(UTC),
        }
    }
}

impl FrameColumns {
    fn push(&mut self, b: &Bundle, f: &Frame, prev: Option<&Frame>, image: &[u8]) {
        let distance = prev.map(|p| hash_distance(p.image.dhash, f.image.dhash));
        self.len += 1;
        self.session_id.append_value(&b.session.session_id);
        self.frame_idx.append_value(f.frame_idx);
        self.t_ms.append_value(f.t_ms);
        self.image.append_value(image);
        self.image_format.append_value(f.image.format.as_str());
        self.width.append_value(f.image.width as i32);
        self.height.append_value(f.image.height as i32);
        self.is_keyframe
            .append_value(is_keyframe(f.keyframe_hint, distance));
        self.is_event_frame.append_value(!f.events.is_empty());
        self.is_action_frame
            .append_value(f.events.iter().any(|e| e.action));
        let structs = self.events.values();
        for e in &f.events {
            append_event(structs, e.t_ms, &e.kind, e.action, &e.data);
        }
        self.events.append(true);
        self.prev_t_ms.append_option(prev.map(|p| p.t_ms));
        self.dhash.append_value(f.image.dhash as i64);
        self.hash_distance.append_option(distance.map(|d| d as i32));
        self.workflow.append_value(&b.session.workflow);
        self.started_at.append_value(b.session.started_at_us);
    }

    fn finish(mut self) -> Result<RecordBatch> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.image.finish()),
            Arc::new(self.session_id.finish()),
            Arc::new(self.frame_idx.finish()),
            Arc::new(self.t_ms.finish()),
            Arc::new(self.image_format.finish()),
            Arc::new(self.width.finish()),
            Arc::new(self.height.finish()),
            Arc::new(self.is_keyframe.finish()),
            Arc::new(self.is_event_frame.finish()),
            Arc::new(self.is_action_frame.finish()),
            Arc::new(self.events.finish()),
            Arc::new(self.prev_t_ms.finish()),
            Arc::new(self.dhash.finish()),
            Arc::new(self.hash_distance.finish()),
            Arc::new(self.workflow.finish()),
            Arc::new(self.started_at.finish()),
        ];
        Ok(RecordBatch::try_new(frames_file_schema(), columns)?)
    }
}

/// Appends one `{t_ms, type, action, data}` struct to an events builder.
pub(crate) fn append_event(s: &mut StructBuilder, t_ms: i64, kind: &str, action: bool, data: &str) {
    s.field_builder::<Int64Builder>(0)
        .expect("t_ms builder")
        .append_value(t_ms);
    s.field_builder::<StringBuilder>(1)
        .expect("type builder")
        .append_value(kind);
    s.field_builder::<BooleanBuilder>(2)
        .expect("action builder")
        .append_value(action);
    s.field_builder::<StringBuilder>(3)
        .expect("data builder")
        .append_value(data);
    s.append(true);
}
