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

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use datafusion::execution::SendableRecordBatchStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::layout::ExportLayout;
use super::lease::{self, Claim, Lease};
use super::manifest::{dataset_card, shards_digest, Manifest, ShardInfo};
use super::row_schema::{schema_json, to_output_batch};
use super::sharded::{Progress, ShardTotals, ShardedWriter};
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
        check_shard_size(size).map_err(|message| Error::Config {
            field: "shard_size_bytes".into(),
            message,
        })?;
        Ok(ExportWriter {
            target,
            layout: ExportLayout::new(target.prefix.clone(), format),
            shard_size_bytes,
            meta: ExportMeta::default(),
            progress: Arc::new(Progress::default()),
        })
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
    /// and the manifest; resumes an interrupted earlier attempt.
    pub async fn write(self, rows: SendableRecordBatchStream) -> Result<Manifest> {
        let store = &self.target.store;
        if let Some(done) = self.finished_here().await? {
            return Ok(done);
        }
        let mut existing = objects_under(store, self.layout.prefix()).await?;
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
        let stale_candidates: Vec<String> = existing
            .keys()
            .filter(|n| self.layout.is_shard(n))
            .cloned()
            .collect();
        let writer = ShardedWriter::with_layout(
            Arc::clone(store),
            self.layout.clone(),
            self.shard_size_bytes,
        )
        .with_progress(Arc::clone(&self.progress))
        .with_part_bytes(self.target.part_bytes)
        .with_existing(existing);
        let (shards, totals, created) = match stream_rows(writer, rows).await {
            Ok(w) => w,
            Err(e) => {
                if claim == Claim::Fresh {
                    lease::release(self.target, &self.layout).await;
                }
                return Err(e);
            }
        };
        let manifest = self.manifest(shards, totals).await;
        let published = match manifest {
            Ok(m) => self.publish(&m, &stale_candidates).await.map(|()| m),
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
                for (name, _) in created.iter().filter(|(_, c)| *c) {
                    let _ = store.delete(&self.layout.key(name)).await;
                }
                if claim == Claim::Fresh {
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

    /// The manifest already at the prefix when it is this export's (the
    /// same resolved spec, `as_of` and shard size): re-running a finished
    /// export is a no-op. Any other manifest there refuses the export.
    async fn finished_here(&self) -> Result<Option<Manifest>> {
        let key = self.layout.manifest();
        let got = match self.target.store.get(&key).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(Error::destination("get", &key)(e)),
        };
        let bytes = got.bytes().await.map_err(Error::destination("get", &key))?;
        let same = serde_json::from_slice::<Manifest>(&bytes).ok().filter(|m| {
            !self.meta.resolved.is_null()
                && m.resolved == self.meta.resolved
                && m.as_of == self.meta.as_of
                && m.format == self.layout.format().as_str()
                && m.shard_size_bytes == self.shard_size_bytes
        });
        match same {
            Some(m) => {
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
            None => Err(Error::ExportExists {
                url: self.target.url_of(ExportLayout::MANIFEST),
                message: "the destination already holds a finished export; choose an empty prefix",
            }),
        }
    }

    /// The manifest of the written shards, with download links when the
    /// target makes them.
    async fn manifest(&self, mut shards: Vec<ShardInfo>, totals: ShardTotals) -> Result<Manifest> {
        let mut links_expire_at = None;
        if let Some(links) = &self.target.links {
            let mut earliest: Option<SystemTime> = None;
            for s in &mut shards {
                let (url, exp) = links.link(&s.path).await?;
                s.url = Some(url);
                earliest = Some(earliest.map_or(exp, |e| e.min(exp)));
            }
            links_expire_at = earliest.map(|e| format_instant(chrono::DateTime::from(e)));
        }
        let meta = self.meta.clone();
        Ok(Manifest {
            version: env!("CARGO_PKG_VERSION").to_string(),
            format: self.layout.format().as_str().to_string(),
            rows: totals.rows,
            frames: totals.rows,
            actions: totals.actions,
            sessions: totals.sessions,
            shard_count: shards.len() as u64,
            shard_size_bytes: self.shard_size_bytes,
            digest: shards_digest(&shards),
            shards,
            as_of: meta.as_of,
            spec: meta.spec,
            resolved: meta.resolved,
            sql: meta.sql,
            schema: schema_json(),
            links_expire_at,
        })
    }

    /// Deletes stale shard keys, writes the dataset card (Parquet) and then
    /// the manifest, which must not exist yet unless it is byte-identical (a
    /// racing rerun of the same export).
    async fn publish(&self, manifest: &Manifest, stale_candidates: &[String]) -> Result<()> {
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
                let existing = store
                    .get(&path)
                    .await
                    .map_err(Error::destination("get", &path))?
                    .bytes()
                    .await
                    .map_err(Error::destination("get", &path))?;
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

/// Shards written, the totals, and per shard name whether this attempt
/// created its key (false: an earlier attempt's shard, verified).
type Written = (Vec<ShardInfo>, ShardTotals, Vec<(String, bool)>);

async fn stream_rows(
    mut writer: ShardedWriter,
    mut rows: SendableRecordBatchStream,
) -> Result<Written> {
    let streamed: Result<()> = async {
        while let Some(batch) = rows.next().await {
            writer.write_batch(&to_output_batch(&batch?)?).await?;
        }
        Ok(())
    }
    .await;
    if let Err(e) = streamed {
        writer.abort().await;
        return Err(e);
    }
    let (shards, totals, created) = writer.finish_with_created().await?;
    let created = shards.iter().map(|s| s.path.clone()).zip(created).collect();
    Ok((shards, totals, created))
}

/// Objects directly under `prefix` (not in sub-folders): name → size.
pub(crate) async fn objects_under(
    store: &Arc<dyn ObjectStore>,
    prefix: &Path,
) -> Result<HashMap<String, u64>> {
    let listed: Vec<_> = store
        .list(Some(prefix))
        .try_collect()
        .await
        .map_err(Error::destination("list", prefix))?;
    let depth = prefix.parts().count() + 1;
    Ok(listed
        .into_iter()
        .filter(|m| m.location.parts().count() == depth)
        .filter_map(|m| m.location.filename().map(|n| (n.to_string(), m.size)))
        .collect())
}

/// Deletes what uploads cut off by a crash left in a local folder and
/// returns how many files. object_store writes a local object to
/// `name#<digits>` and renames it when complete; such staging files are
/// hidden from listings, so a resumed export would never see them. Only
/// an export's own names are touched ([`ExportLayout::is_export_file`]). A
/// no-op for object stores.
fn sweep_interrupted_uploads(target: &ExportTarget) -> Result<usize> {
    let Some(dir) = &target.local_dir else {
        return Ok(0);
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((base, suffix)) = name.rsplit_once('#') else {
            continue;
        };
        let staging = !suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_digit());
        if staging && ExportLayout::is_export_file(base) {
            std::fs::remove_file(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Deletes what unfinished attempts of export `export_id` left under its
/// prefix (shards, the dataset card, the lease) — only under a lease that
/// export created, and never once a manifest is there.
pub(crate) async fn purge_unpublished(target: &ExportTarget, export_id: &str) {
    let layout = ExportLayout::new(target.prefix.clone(), crate::spec::OutputFormat::Parquet);
    if target.store.head(&layout.manifest()).await.is_ok() {
        return;
    }
    match lease::read(target, &layout).await {
        Ok(Some(l)) if l.export_id == export_id => {}
        _ => return,
    }
    let Ok(names) = objects_under(&target.store, &target.prefix).await else {
        return;
    };
    for name in names.keys() {
        let ours = ExportLayout::is_export_file(name)
            && name != ExportLayout::MANIFEST
            && name != ExportLayout::LEASE;
        if ours {
            let _ = target.store.delete(&layout.key(name)).await;
        }
    }
    lease::release(target, &layout).await;
}
