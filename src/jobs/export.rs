//! [`run_export`]: compile the spec, stream the ordered rows through a
//! [`ShardedWriter`], then write `README.md` (Parquet) and `manifest.json`
//! last. Any failure aborts the open upload and deletes the shards written,
//! and no manifest is written.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use rand::Rng;

use crate::dest::ExportTarget;
use crate::sink::{
    dataset_card, schema_json, shards_digest, to_output_batch, Manifest, Progress, ShardedWriter,
};
use crate::spec::{compile_sql, format_instant, ExportSpec, OutputFormat};
use crate::store::SealedStore;
use crate::{Error, Result};

/// What a finished export produced.
#[derive(Debug, Clone)]
pub struct ExportOutcome {
    /// The manifest as written.
    pub manifest: Manifest,
    /// URL of `manifest.json`.
    pub manifest_url: String,
}

/// `exp_` + a ULID (48-bit millisecond time, 80 random bits, Crockford base32).
pub fn new_export_id(now: DateTime<Utc>) -> String {
    const A: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let ms = now.timestamp_millis().max(0) as u128;
    let rand: u128 = rand::rng().random::<u128>() & ((1u128 << 80) - 1);
    let v = (ms << 80) | rand;
    let mut s = String::from("exp_");
    for i in (0..26).rev() {
        s.push(A[((v >> (i * 5)) & 31) as usize] as char);
    }
    s
}

/// Runs `spec` against `store` into `target`, in a default `SessionContext`.
pub async fn run_export(
    store: &Arc<SealedStore>,
    spec: &ExportSpec,
    target: &ExportTarget,
    progress: Arc<Progress>,
) -> Result<ExportOutcome> {
    run_export_in(SessionContext::new(), store, spec, target, progress).await
}

/// Runs `spec` in `ctx` (any configuration: partitions, memory limits); the
/// store's tables and functions are registered into it.
pub async fn run_export_in(
    ctx: SessionContext,
    store: &Arc<SealedStore>,
    spec: &ExportSpec,
    target: &ExportTarget,
    progress: Arc<Progress>,
) -> Result<ExportOutcome> {
    let sql = compile_sql(spec)?;
    let manifest_path = target.prefix.clone().join("manifest.json");
    match target.store.head(&manifest_path).await {
        Ok(_) => {
            return Err(Error::Location {
                location: target.url_of("manifest.json"),
                message: "the destination already holds a finished export; choose an empty prefix"
                    .into(),
            })
        }
        Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    crate::register(&ctx, store)?;
    let mut rows = ctx.sql(&sql).await?.execute_stream().await?;
    let mut writer = ShardedWriter::new(
        Arc::clone(&target.store),
        target.prefix.clone(),
        spec.format,
        spec.shard_size_bytes,
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
        format: spec.format.as_str().to_string(),
        rows: totals.rows,
        frames: totals.rows,
        actions: totals.actions,
        sessions: totals.sessions,
        shard_count: shards.len() as u64,
        shard_size_bytes: spec.shard_size_bytes,
        digest: shards_digest(&shards),
        shards,
        as_of: Some(format_instant(spec.as_of)),
        spec: spec.raw.clone(),
        resolved: spec.resolved_json(),
        sql: Some(sql),
        schema: schema_json(),
    };
    if let Err(e) = publish(target, &manifest, spec).await {
        // Nothing of a failed export stays: shards, dataset card.
        delete_shards(target, &manifest).await;
        return Err(e);
    }
    Ok(ExportOutcome {
        manifest_url: target.url_of("manifest.json"),
        manifest,
    })
}

async fn delete_shards(target: &ExportTarget, manifest: &Manifest) {
    let _ = target
        .store
        .delete(&target.prefix.clone().join("README.md"))
        .await;
    for s in &manifest.shards {
        let _ = target
            .store
            .delete(&target.prefix.clone().join(s.path.as_str()))
            .await;
    }
}

/// Writes the dataset card (Parquet) and then the manifest, which must not
/// exist yet unless it is byte-identical (a rerun of the same export).
async fn publish(target: &ExportTarget, manifest: &Manifest, spec: &ExportSpec) -> Result<()> {
    if spec.format == OutputFormat::Parquet {
        let title = spec
            .tag
            .clone()
            .unwrap_or_else(|| format!("{} export", spec.workflows.join(", ")));
        let card = dataset_card(manifest, &title);
        target
            .store
            .put(
                &target.prefix.clone().join("README.md"),
                PutPayload::from(Bytes::from(card)),
            )
            .await?;
    }
    let path = target.prefix.clone().join("manifest.json");
    let bytes = manifest.to_bytes();
    let opts = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    match target
        .store
        .put_opts(&path, PutPayload::from(Bytes::from(bytes.clone())), opts)
        .await
    {
        Ok(_) => Ok(()),
        Err(object_store::Error::AlreadyExists { .. }) => {
            let existing = target.store.get(&path).await?.bytes().await?;
            if existing.as_ref() == bytes.as_slice() {
                Ok(())
            } else {
                Err(Error::Location {
                    location: target.url_of("manifest.json"),
                    message: "the destination already holds a different export's manifest".into(),
                })
            }
        }
        Err(e) => Err(e.into()),
    }
}
