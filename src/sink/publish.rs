//! [`ExportWriter`]: the one path from an ordered row stream to a finished
//! export, shared by [`crate::export::Export`] (the CLI and the job
//! service), `COPY … STORED AS …` and `DataFrame::write_shards`:
//!
//! 1. a prefix that already holds a manifest (a finished export) is
//!    refused — unless it is this very export (same resolved spec and
//!    `as_of`), which completes at once as a no-op;
//! 2. claim the prefix with a lease (`lease.rs`): a prefix holding objects
//!    this export did not write, or claimed by another export, is refused
//!    and left untouched; under its own lease an interrupted earlier
//!    attempt is resumed: staging files of local uploads a crash cut off
//!    are removed, and its shards are verified instead of uploaded again;
//! 3. stream rows into shards (multipart uploads for large shards);
//! 4. delete stale shard keys past the new last shard, write the dataset card
//!    (Parquet), and `manifest.json` last with a conditional put; release the
//!    lease.
//!
//! On any failure the open upload is aborted, every key this attempt created
//! is deleted (the lease too, if this attempt created it), no manifest is
//! written, and the error names the failing operation and key.
//!
//! One partition's rows go to their shards through `partition_sink.rs`;
//! what earlier attempts left at the prefix is found and removed by
//! `attempts.rs`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use datafusion::execution::SendableRecordBatchStream;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::attempts::{is_attempt_file, objects_under, series_of, sweep_interrupted_uploads};
use super::layout::ExportLayout;
use super::lease::{self, Claim, Lease};
use super::loader_index::{series_index, IndexFile};
use super::manifest::{
    dataset_card, shards_digest, ImageFiles, Manifest, Selection, ShardInfo, SplitSection,
};
use super::partition_sink::{PartitionSink, PartitionWritten, StepsWritten};
use super::row_schema::{output_schema, schema_json};
use super::sharded::{Progress, ShardTotals};
use crate::dest::{ExportTarget, ShardLinks};
use crate::error::{Error, Result};
use crate::spec::{check_shard_size, format_instant, OutputFormat};

/// What the manifest says about where the rows came from.
#[derive(Debug, Clone, Default)]
pub struct ExportMeta {
    /// The spec as given (null for `COPY` and DataFrame writes).
    pub spec: Value,
    /// The resolved spec (null likewise).
    pub resolved: Value,
    /// The snapshot instant, RFC 3339.
    pub as_of: Option<String>,
    /// The store versions read (spec exports).
    pub store_version: Option<crate::store::StoreVersion>,
    /// The sessions the spec selected (spec exports): with the spec as
    /// given, what decides whether a finished export at the prefix is
    /// this one.
    pub selection: Option<Selection>,
    /// The query that produced the rows.
    pub sql: Option<String>,
    /// Title of the Parquet dataset card.
    pub title: String,
    /// The export's id, recorded in the lease on its prefix.
    pub export_id: Option<String>,
}

/// Writes one export: shards of one format under a target's prefix, then
/// the manifest.
#[derive(Debug)]
pub struct ExportWriter<'a> {
    target: &'a ExportTarget,
    layout: ExportLayout,
    shard_size_bytes: u64,
    meta: ExportMeta,
    progress: Arc<Progress>,
    /// Split names, in series order (empty: one series at the prefix).
    splits: Vec<String>,
    /// The rows are step rows (`"unit": "step"`).
    steps: bool,
}

impl<'a> ExportWriter<'a> {
    /// A writer of `format` shards of at most `shard_size_bytes` into
    /// `target`; refuses a size below the minimum (`check_shard_size`).
    pub fn new(
        target: &'a ExportTarget,
        format: OutputFormat,
        shard_size_bytes: u64,
    ) -> Result<Self> {
        let size = i64::try_from(shard_size_bytes).unwrap_or(i64::MAX);
        check_shard_size(size, format).map_err(|message| Error::Config {
            field: "shard_size_bytes".into(),
            message,
        })?;
        Ok(ExportWriter {
            target,
            layout: ExportLayout::new(target.prefix.clone(), format),
            shard_size_bytes,
            meta: ExportMeta::default(),
            progress: Arc::new(Progress::default()),
            splits: Vec::new(),
            steps: false,
        })
    }

    /// Writes one shard series per split (`name/shard-000000.<ext>`), in
    /// this order, routing each row by its `split` column (`split_of`);
    /// the manifest gets a section per split.
    pub fn with_splits(mut self, names: Vec<String>) -> Self {
        self.splits = names;
        self
    }

    /// Takes step rows ([`crate::sample::StepRows`]) rather than frame rows:
    /// images are stored once per frame (`step_output.rs`), JSON Lines
    /// exports get their image files under `images/`, and the manifest a
    /// `steps` section.
    pub fn with_steps(mut self, steps: bool) -> Self {
        self.steps = steps;
        self
    }

    /// Whether image files go beside the shards.
    fn has_media(&self) -> bool {
        self.steps && self.layout.format() == OutputFormat::Jsonl
    }

    /// The sub-folders of the prefix this export writes: the split
    /// folders, and `images/` for media.
    fn folders(&self) -> Vec<String> {
        let mut f = self.splits.clone();
        if self.has_media() {
            f.push(crate::sample::IMAGES_FOLDER.to_string());
        }
        f
    }

    /// The layout of each shard series.
    fn series(&self) -> Vec<ExportLayout> {
        series_of(&self.layout, &self.splits)
    }

    /// Records where the rows came from in the manifest.
    pub fn with_meta(mut self, meta: ExportMeta) -> Self {
        self.meta = meta;
        self
    }

    /// Reports into `progress` (and stops when it is cancelled).
    pub fn with_progress(mut self, progress: Arc<Progress>) -> Self {
        self.progress = progress;
        self
    }

    /// Streams `rows` (export query columns, in export order) into shards
    /// and the manifest; resumes an interrupted earlier attempt. The same
    /// as [`ExportWriter::begin`], one partition's [`PartitionSink`] and
    /// [`ExportWriter::finish`].
    pub async fn write(self, rows: SendableRecordBatchStream) -> Result<Manifest> {
        let begun = match self.begin().await? {
            Begin::Finished(m) => return Ok(*m),
            Begin::Started(b) => b,
        };
        let written = self.partition_sink(0, 1, Some(&begun)).write(rows).await;
        self.finish(begun, written.map(|w| vec![w])).await
    }

    /// Claims the prefix: refuses a prefix that holds a different finished
    /// export or objects this export did not write, completes at once when
    /// this very export is already finished there, and otherwise takes the
    /// lease (resuming an interrupted attempt under its own lease).
    pub async fn begin(&self) -> Result<Begin> {
        if let Some(done) = self.finished_here().await? {
            return Ok(Begin::Finished(Box::new(done)));
        }
        let mut existing =
            objects_under(&self.target.store, self.layout.prefix(), &self.folders()).await?;
        let claim = lease::claim(self.target, &self.layout, &self.lease(), &existing).await?;
        existing.remove(ExportLayout::LEASE);
        if claim == Claim::Resumed {
            let swept = sweep_interrupted_uploads(self.target)?;
            if swept > 0 {
                tracing::info!(
                    swept,
                    "removed staging files of uploads an earlier run left"
                );
            }
        }
        Ok(Begin::Started(Begun { claim, existing }))
    }

    /// The writer of partition `p` of `partitions`: its shards under the
    /// partition's names ([`ExportLayout::partition`]). `begun` gives the
    /// objects already under the prefix; without it (another process) the
    /// sink lists them itself.
    pub fn partition_sink(&self, p: u32, partitions: u32, begun: Option<&Begun>) -> PartitionSink {
        PartitionSink {
            store: Arc::clone(&self.target.store),
            layout: self.layout.partition(p, partitions),
            partition: p,
            shard_size_bytes: self.shard_size_bytes,
            part_bytes: self.target.part_bytes,
            progress: Arc::clone(&self.progress),
            splits: self.splits.clone(),
            steps: self.steps,
            media: self.has_media(),
            folders: self.folders(),
            existing: begun.map(|b| b.existing.clone()),
        }
    }

    /// Assembles the manifest from every partition's result (in partition
    /// order), deletes stale shard keys, writes the dataset card and the
    /// manifest last, and releases the lease. When `written` is an error
    /// (or publishing fails), every export file this attempt created under
    /// the prefix is deleted instead, and no manifest is written.
    pub async fn finish(
        &self,
        begun: Begun,
        written: Result<Vec<PartitionWritten>>,
    ) -> Result<Manifest> {
        let store = &self.target.store;
        let series = self.series();
        let stale_candidates: Vec<String> = begun
            .existing
            .keys()
            .filter(|n| series.iter().any(|l| l.is_shard(n) || l.is_spool(n)))
            .cloned()
            .collect();
        let published = match written {
            Ok(mut parts) => {
                parts.sort_by_key(|p| p.partition);
                // Uploads cut off by a lost executor (whose partition ran
                // again elsewhere) leave local staging files behind.
                let swept = sweep_interrupted_uploads(self.target)?;
                if swept > 0 {
                    tracing::info!(swept, "removed staging files of interrupted uploads");
                }
                match self.manifest(parts).await {
                    Ok((m, indexes)) => self
                        .publish(&m, &indexes, &stale_candidates)
                        .await
                        .map(|()| m),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        };
        match published {
            Ok(m) => {
                lease::release(self.target, &self.layout).await;
                Ok(m)
            }
            // Another export's manifest won the race: its shards are these
            // keys too, so nothing may be deleted.
            Err(e @ Error::ExportExists { .. }) => Err(e),
            Err(e) => {
                let _ = store.delete(&self.layout.card()).await;
                // Whatever any partition created (in this process or
                // another): export files that were not there before.
                if let Ok(now) = objects_under(store, self.layout.prefix(), &self.folders()).await {
                    for name in now.keys() {
                        if is_attempt_file(name) && !begun.existing.contains_key(name) {
                            let _ = store.delete(&self.layout.key(name)).await;
                        }
                    }
                }
                if begun.claim == Claim::Fresh {
                    lease::release(self.target, &self.layout).await;
                }
                Err(e)
            }
        }
    }

    /// The lease this export holds its prefix with.
    fn lease(&self) -> Lease {
        let what = serde_json::json!({
            "resolved": self.meta.resolved,
            "as_of": self.meta.as_of,
            "sql": self.meta.sql,
            "title": self.meta.title,
            "format": self.layout.format().as_str(),
            "shard_size_bytes": self.shard_size_bytes,
        });
        Lease {
            export_id: self
                .meta
                .export_id
                .clone()
                .unwrap_or_else(|| "unnamed".into()),
            spec_sha256: hex::encode(Sha256::digest(what.to_string().as_bytes())),
            created_at: format_instant(chrono::Utc::now()),
        }
    }

    /// The manifest already at the prefix when it is this export's: the
    /// same resolved spec, `as_of` and shard size, or — for a spec export —
    /// the same spec as given (`as_of` aside) selecting the same sessions
    /// with the same seals (`selection`), which exports the same rows.
    /// Re-running a finished export is a no-op. The same body selecting
    /// other sessions now is refused with what to do
    /// ([`Error::ExportSelectionChanged`]); any other manifest there
    /// refuses the export ([`Error::ExportExists`]).
    async fn finished_here(&self) -> Result<Option<Manifest>> {
        let key = self.layout.manifest();
        let Some(bytes) =
            super::read::bytes_if_any(&self.target.store, &key, super::read::MANIFEST_LIMIT)
                .await?
        else {
            return Ok(None);
        };
        let existing = serde_json::from_slice::<Manifest>(&bytes).ok().filter(|m| {
            !self.meta.resolved.is_null()
                && m.format == self.layout.format().as_str()
                && m.shard_size_bytes == self.shard_size_bytes
        });
        let url = || self.target.url_of(ExportLayout::MANIFEST);
        let Some(m) = existing else {
            return Err(Error::ExportExists {
                url: url(),
                message: "the destination already holds a finished export; choose an empty prefix",
            });
        };
        let same_body = without_as_of(&m.spec) == without_as_of(&self.meta.spec);
        let same_run = m.resolved == self.meta.resolved && m.as_of == self.meta.as_of;
        let same = match (&m.selection, &self.meta.selection) {
            (Some(then), Some(now)) if same_body && then != now => {
                return Err(Error::ExportSelectionChanged {
                    url: url(),
                    as_of: m.as_of.clone().unwrap_or_default(),
                    then: then.sessions,
                    now: now.sessions,
                })
            }
            // The same body, or one that resolves the same at the same
            // `as_of` (a default spelled out).
            (Some(_), Some(_)) => same_body || same_run,
            // A manifest of an earlier version records no selection.
            _ => same_run,
        };
        if !same {
            return Err(Error::ExportExists {
                url: url(),
                message: "the destination already holds a finished export of another spec; choose an empty prefix",
            });
        }
        // A lease left by an attempt whose release failed goes now.
        if let Some(l) = lease::read(self.target, &self.layout).await? {
            if l.spec_sha256 == self.lease().spec_sha256 {
                lease::release(self.target, &self.layout).await;
            }
        }
        self.progress
            .shards_reused
            .store(m.shard_count, std::sync::atomic::Ordering::Relaxed);
        Ok(Some(m))
    }

    /// The manifest of the written shards (partitions in order), with
    /// download links when the target makes them, and the loader index of
    /// each series it lists.
    async fn manifest(&self, parts: Vec<PartitionWritten>) -> Result<(Manifest, Vec<IndexFile>)> {
        let n_series = self.series().len();
        let mut by_series: Vec<(Vec<ShardInfo>, ShardTotals)> =
            vec![(Vec::new(), ShardTotals::default()); n_series];
        let mut finished = None;
        for part in parts {
            if part.series.len() != n_series {
                return Err(Error::Internal(format!(
                    "partition {} wrote {} shard series, expected {n_series}",
                    part.partition,
                    part.series.len()
                )));
            }
            for ((shards, t), (all, sum)) in part.series.into_iter().zip(by_series.iter_mut()) {
                all.extend(shards);
                sum.loader.extend(t.loader);
                // A session is in one partition and one split only: the sums are exact.
                sum.rows += t.rows;
                sum.actions += t.actions;
                sum.sessions += t.sessions;
            }
            if part.steps.is_some() {
                finished = part.steps;
            }
        }
        let parts = by_series;
        let mut totals = ShardTotals::default();
        for (_, t) in &parts {
            totals.rows += t.rows;
            totals.actions += t.actions;
            totals.sessions += t.sessions;
        }
        let splits = (!self.splits.is_empty()).then(|| {
            self.splits
                .iter()
                .zip(&parts)
                .map(|(name, (shards, t))| SplitSection {
                    name: name.clone(),
                    rows: t.rows,
                    sessions: t.sessions,
                    actions: t.actions,
                    shards: shards.iter().map(|s| s.path.clone()).collect(),
                    digest: shards_digest(shards),
                })
                .collect()
        });
        let mut indexes = Vec::new();
        for (layout, (shards, t)) in self.series().iter().zip(&parts) {
            indexes.extend(series_index(layout, shards, t)?);
        }
        let mut shards: Vec<ShardInfo> = parts.into_iter().flat_map(|(s, _)| s).collect();
        let meta = self.meta.clone();
        let (schema, steps, mut images) = match finished {
            None if self.steps => {
                // No partition saw a row: the step schema of no rows.
                return Err(Error::Internal(
                    "a step export's partition reported no step section".into(),
                ));
            }
            None => (schema_json(&output_schema()), None, None),
            Some(StepsWritten {
                schema,
                section,
                media,
            }) => {
                let images = media.map(|files| ImageFiles {
                    count: files.len() as u64,
                    bytes: files.iter().map(|f| f.bytes).sum(),
                    digest: shards_digest(&files),
                    files,
                });
                (schema, Some(section), images)
            }
        };
        let mut index_files: Vec<ShardInfo> = indexes.iter().map(|i| i.info.clone()).collect();
        // Every file the manifest lists gets its link: shards, images, indexes.
        let mut links_expire_at = None;
        if let Some(links) = &self.target.links {
            let mut earliest: Option<SystemTime> = None;
            let image_files = images.iter_mut().flat_map(|i| i.files.iter_mut());
            for s in shards
                .iter_mut()
                .chain(image_files)
                .chain(index_files.iter_mut())
            {
                let (url, exp) = links.link(&s.path).await?;
                s.url = Some(url);
                earliest = Some(earliest.map_or(exp, |e| e.min(exp)));
            }
            links_expire_at = earliest.map(|e| format_instant(chrono::DateTime::from(e)));
        }
        // A step row is one action on one observed frame.
        let (frames, actions) = match &steps {
            Some(s) => (s.observations, totals.rows),
            None => (totals.rows, totals.actions),
        };
        let manifest = Manifest {
            version: env!("CARGO_PKG_VERSION").to_string(),
            format: self.layout.format().as_str().to_string(),
            rows: totals.rows,
            frames,
            actions,
            steps,
            images,
            index_files,
            sessions: totals.sessions,
            shard_count: shards.len() as u64,
            shard_size_bytes: self.shard_size_bytes,
            digest: shards_digest(&shards),
            splits,
            shards,
            as_of: meta.as_of,
            store_version: meta.store_version,
            selection: meta.selection,
            spec: meta.spec,
            resolved: meta.resolved,
            sql: meta.sql,
            schema,
            links_expire_at,
        };
        Ok((manifest, indexes))
    }

    /// Deletes stale shard keys, writes the loader indexes, the dataset card
    /// and then the manifest, which must not exist yet unless it is
    /// byte-identical (a racing rerun of the same export).
    async fn publish(
        &self,
        manifest: &Manifest,
        indexes: &[IndexFile],
        stale_candidates: &[String],
    ) -> Result<()> {
        let store = &self.target.store;
        for name in stale_candidates {
            if !manifest.shards.iter().any(|s| &s.path == name) {
                let key = self.layout.key(name);
                match store.delete(&key).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(Error::destination("delete stale shard", &key)(e)),
                }
            }
        }
        for index in indexes {
            let key = self.layout.key(&index.info.path);
            store
                .put(&key, PutPayload::from(Bytes::from(index.bytes.clone())))
                .await
                .map_err(Error::destination("put", &key))?;
        }
        let card = dataset_card(manifest, &self.meta.title);
        let key = self.layout.card();
        store
            .put(&key, PutPayload::from(Bytes::from(card)))
            .await
            .map_err(Error::destination("put", &key))?;
        let path = self.layout.manifest();
        let bytes = manifest.to_bytes();
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match store
            .put_opts(&path, PutPayload::from(Bytes::from(bytes.clone())), opts)
            .await
        {
            Ok(_) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => {
                let existing =
                    super::read::bytes(store, &path, super::read::MANIFEST_LIMIT).await?;
                if existing.as_ref() == bytes.as_slice() {
                    Ok(())
                } else {
                    Err(Error::ExportExists {
                        url: self.target.url_of(ExportLayout::MANIFEST),
                        message: "another export wrote a different manifest here meanwhile",
                    })
                }
            }
            Err(e) => Err(Error::destination("put manifest", &path)(e)),
        }
    }
}

/// A spec as given, without its `as_of` (which a re-post leaves out or
/// moves without changing the rows when the selection is the same).
fn without_as_of(spec: &Value) -> Value {
    let mut spec = spec.clone();
    if let Some(o) = spec.as_object_mut() {
        o.remove("as_of");
    }
    spec
}

/// How [`ExportWriter::begin`] found the prefix.
#[derive(Debug)]
pub enum Begin {
    /// This very export is finished there already: its manifest.
    Finished(Box<Manifest>),
    /// The prefix is claimed; write the partitions, then
    /// [`ExportWriter::finish`].
    Started(Begun),
}

/// A claimed prefix, between [`ExportWriter::begin`] and
/// [`ExportWriter::finish`].
#[derive(Debug, Clone)]
pub struct Begun {
    claim: Claim,
    /// Objects under the prefix before this attempt: name → size.
    existing: HashMap<String, u64>,
}
