//! [`write_export`]: the one path from an ordered row stream to a finished
//! export, shared by `nusomi export create`, `COPY … STORED AS …` and
//! `DataFrame::write_shards`: refuse a prefix that already holds a manifest,
//! stream rows into shards, then write the dataset card (Parquet) and
//! `manifest.json` last. On any failure the open upload is aborted and every
//! object written is deleted, so a failed export leaves nothing.

use std::sync::Arc;

use bytes::Bytes;
use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;
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
}

/// Streams `rows` (export query columns, in export order) into shards and a
/// manifest under `out.prefix`.
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
        Err(e) => return Err(e.into()),
    }
    let mut writer = ShardedWriter::new(
        Arc::clone(&out.store),
        out.prefix.clone(),
        out.format,
        out.shard_size_bytes,
    )
    .with_progress(progress);
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
    let (shards, totals) = writer.finish().await?;
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
    };
    if let Err(e) = publish(out, &manifest, &meta.title).await {
        let _ = out
            .store
            .delete(&out.prefix.clone().join("README.md"))
            .await;
        for s in &manifest.shards {
            let _ = out
                .store
                .delete(&out.prefix.clone().join(s.path.as_str()))
                .await;
        }
        return Err(e);
    }
    Ok(manifest)
}

/// Writes the dataset card (Parquet) and then the manifest, which must not
/// exist yet unless it is byte-identical (a racing rerun of the same export).
async fn publish(out: &ExportOutput, manifest: &Manifest, title: &str) -> Result<()> {
    if out.format == OutputFormat::Parquet {
        let card = dataset_card(manifest, title);
        out.store
            .put(
                &out.prefix.clone().join("README.md"),
                PutPayload::from(Bytes::from(card)),
            )
            .await?;
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
            let existing = out.store.get(&path).await?.bytes().await?;
            if existing.as_ref() == bytes.as_slice() {
                Ok(())
            } else {
                Err(Error::Location {
                    location: path.to_string(),
                    message: "another export wrote a different manifest here meanwhile".into(),
                })
            }
        }
        Err(e) => Err(e.into()),
    }
}
