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
use super::layout::SessionPaths;
use super::schema::{frames_file_schema, sessions_schema};
use super::sealed_store::{
    SealedStore, Snapshot, META_FRAMES_BYTES, META_FRAMES_FOOTER, META_FRAMES_PATH,
};
use super::writer_props::{frames_writer_props, CREATED_BY};
use crate::error::{Error, Result};

/// A frames row group is closed once it holds this many encoded bytes (or
/// `writer_props::ROW_GROUP_FRAMES` frames).
const ROW_GROUP_BYTES: usize = 64 << 20;

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
