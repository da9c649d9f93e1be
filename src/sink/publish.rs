//! [`write_export`]: the one path from an ordered row stream to a finished
//! export, shared by `nusomi export create`, the job service, `COPY … STORED
//! AS …` and `DataFrame::write_shards`:
//!
//! 1. refuse a prefix that already holds a manifest (a finished export);
//! 2. list what an interrupted earlier attempt left there, so its shards are
//!    verified instead of uploaded again (resume);
//! 3. stream rows into shards (multipart uploads for large shards);
//! 4. delete stale shard keys past the new last shard, write the dataset card
//!    (Parquet), and `manifest.json` last with a conditional put.
//!
//! On any failure the open upload is aborted, every key this attempt created
//! is deleted, no manifest is written, and the error names the failing
//! operation and key.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use datafusion::execution::SendableRecordBatchStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde_json::Value;

use super::manifest::{dataset_card, shards_digest, Manifest};
use super::row_schema::{schema_json, to_output_batch};
use super::sharded::{Progress, ShardedWriter};
use crate::spec::OutputFormat;
use crate::{Error, Result};

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
}

/// Makes time-limited download links for files of an export.
#[async_trait]
pub trait ShardLinks: Send + Sync + std::fmt::Debug {
    /// A link to `name` (relative to the export's prefix) and its expiry.
    async fn link(&self, name: &str) -> Result<(String, SystemTime)>;
}

/// Where and how to write.
#[derive(Debug, Clone)]
pub struct ExportOutput {
    /// Object store of the destination.
    pub store: Arc<dyn ObjectStore>,
    /// Prefix inside it.
    pub prefix: Path,
    /// Format of the shards.
    pub format: OutputFormat,
    /// Shard size cap.
    pub shard_size_bytes: u64,
    /// Multipart part size.
    pub part_bytes: usize,
    /// Download links to list in the manifest (`signed_url`).
    pub links: Option<Arc<dyn ShardLinks>>,
}

impl ExportOutput {
    /// An output with the default part size and no links.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        prefix: Path,
        format: OutputFormat,
        shard_size_bytes: u64,
    ) -> Self {
        ExportOutput {
            store,
            prefix,
            format,
            shard_size_bytes,
            part_bytes: crate::dest::DEFAULT_PART_BYTES,
            links: None,
        }
    }
}

/// Objects directly under `prefix` (not in sub-folders): name → size.
pub async fn objects_under(
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

/// Streams `rows` (export query columns, in export order) into shards and a
/// manifest under `out.prefix`; resumes an interrupted earlier attempt.
pub async fn write_export(
    mut rows: SendableRecordBatchStream,
    out: &ExportOutput,
    meta: ExportMeta,
    progress: Arc<Progress>,
) -> Result<Manifest> {
    let manifest_path = out.prefix.clone().join("manifest.json");
    match out.store.head(&manifest_path).await {
        Ok(_) => {
            return Err(Error::Location {
                location: manifest_path.to_string(),
                message: "the destination already holds a finished export; choose an empty prefix"
                    .into(),
            })
        }
        Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => return Err(Error::destination("head", &manifest_path)(e)),
    }
    let existing = objects_under(&out.store, &out.prefix).await?;
    let ext = super::formats::shard_extension(out.format);
    let stale_candidates: Vec<String> = existing
        .keys()
        .filter(|n| n.starts_with("shard-") && n.ends_with(&format!(".{ext}")))
        .cloned()
        .collect();
    let mut writer = ShardedWriter::new(
        Arc::clone(&out.store),
        out.prefix.clone(),
        out.format,
        out.shard_size_bytes,
    )
    .with_progress(progress)
    .with_part_bytes(out.part_bytes)
    .with_existing(existing);
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
    let (mut shards, totals, created) = writer.finish_with_created().await?;
    let mut manifest_links = None;
    let linked: Result<()> = async {
        if let Some(links) = &out.links {
            let mut earliest: Option<SystemTime> = None;
            for s in &mut shards {
                let (url, exp) = links.link(&s.path).await?;
                s.url = Some(url);
                earliest = Some(earliest.map_or(exp, |e| e.min(exp)));
            }
            manifest_links = earliest
                .map(|e| crate::spec::format_instant(chrono::DateTime::<chrono::Utc>::from(e)));
        }
        Ok(())
    }
    .await;
    let manifest = Manifest {
        version: env!("CARGO_PKG_VERSION").to_string(),
        format: out.format.as_str().to_string(),
        rows: totals.rows,
        frames: totals.rows,
        actions: totals.actions,
        sessions: totals.sessions,
        shard_count: shards.len() as u64,
        shard_size_bytes: out.shard_size_bytes,
        digest: shards_digest(&shards),
        shards,
        as_of: meta.as_of,
        spec: meta.spec,
        resolved: meta.resolved,
        sql: meta.sql,
        schema: schema_json(),
        links_expire_at: manifest_links,
    };
    let published = match linked {
        Ok(()) => publish(out, &manifest, &meta.title, &stale_candidates).await,
        Err(e) => Err(e),
    };
    if let Err(e) = published {
        if matches!(e, Error::Location { .. }) {
            // Another export's manifest won the race: its shards are these
            // keys too, so nothing may be deleted.
            return Err(e);
        }
        let _ = out
            .store
            .delete(&out.prefix.clone().join("README.md"))
            .await;
        for (s, _) in manifest.shards.iter().zip(&created).filter(|(_, c)| **c) {
            let _ = out
                .store
                .delete(&out.prefix.clone().join(s.path.as_str()))
                .await;
        }
        return Err(e);
    }
    Ok(manifest)
}

/// Deletes stale shard keys, writes the dataset card (Parquet) and then the
/// manifest, which must not exist yet unless it is byte-identical (a racing
/// rerun of the same export).
async fn publish(
    out: &ExportOutput,
    manifest: &Manifest,
    title: &str,
    stale_candidates: &[String],
) -> Result<()> {
    for name in stale_candidates {
        if !manifest.shards.iter().any(|s| &s.path == name) {
            let key = out.prefix.clone().join(name.as_str());
            match out.store.delete(&key).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(Error::destination("delete stale shard", &key)(e)),
            }
        }
    }
    if out.format == OutputFormat::Parquet {
        let card = dataset_card(manifest, title);
        let key = out.prefix.clone().join("README.md");
        out.store
            .put(&key, PutPayload::from(Bytes::from(card)))
            .await
            .map_err(Error::destination("put", &key))?;
    }
    let path = out.prefix.clone().join("manifest.json");
    let bytes = manifest.to_bytes();
    let opts = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    match out
        .store
        .put_opts(&path, PutPayload::from(Bytes::from(bytes.clone())), opts)
        .await
    {
        Ok(_) => Ok(()),
        Err(object_store::Error::AlreadyExists { .. }) => {
            let existing = out
                .store
                .get(&path)
                .await
                .map_err(Error::destination("get", &path))?
                .bytes()
                .await
                .map_err(Error::destination("get", &path))?;
            if existing.as_ref() == bytes.as_slice() {
                Ok(())
            } else {
                Err(Error::Location {
                    location: path.to_string(),
                    message: "another export wrote a different manifest here meanwhile".into(),
                })
            }
        }
        Err(e) => Err(Error::destination("put manifest", &path)(e)),
    }
}
