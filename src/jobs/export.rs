//! [`run_export`]: compile the spec, run its query, and hand the ordered rows
//! to [`write_export`] (shards, then the manifest last; nothing left behind
//! on failure).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use datafusion::prelude::SessionContext;
use rand::Rng;

use crate::dest::ExportTarget;
use crate::sink::{write_export, ExportMeta, ExportOutput, Manifest, Progress};
use crate::spec::{compile_sql, format_instant, ExportSpec};
use crate::store::SealedStore;
use crate::Result;

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

/// Runs `spec` against `store` into `target`, in a `SessionContext` with
/// [`crate::session_config`].
pub async fn run_export(
    store: &Arc<SealedStore>,
    spec: &ExportSpec,
    target: &ExportTarget,
    progress: Arc<Progress>,
) -> Result<ExportOutcome> {
    run_export_in(
        SessionContext::new_with_config(crate::session_config()),
        store,
        spec,
        target,
        progress,
    )
    .await
}

/// Runs `spec` in `ctx` (any configuration: partitions, memory limits; keep
/// `batch_size` small, as [`crate::session_config`] does, or batches of
/// thousands of images build up); the store's tables and functions are
/// registered into it.
pub async fn run_export_in(
    ctx: SessionContext,
    store: &Arc<SealedStore>,
    spec: &ExportSpec,
    target: &ExportTarget,
    progress: Arc<Progress>,
) -> Result<ExportOutcome> {
    let sql = compile_sql(spec)?;
    crate::register(&ctx, store)?;
    let swept = target.sweep_interrupted_uploads()?;
    if swept > 0 {
        tracing::info!(
            swept,
            "removed staging files of uploads an earlier run left"
        );
    }
    let rows = ctx.sql(&sql).await?.execute_stream().await?;
    let mut out = ExportOutput::new(
        Arc::clone(&target.store),
        target.prefix.clone(),
        spec.format,
        spec.shard_size_bytes,
    );
    out.part_bytes = target.part_bytes;
    out.links = target
        .links
        .clone()
        .map(|l| Arc::new(l) as Arc<dyn crate::sink::ShardLinks>);
    let meta = ExportMeta {
        spec: spec.raw.clone(),
        resolved: spec.resolved_json(),
        as_of: Some(format_instant(spec.as_of)),
        sql: Some(sql),
        title: spec
            .tag
            .clone()
            .unwrap_or_else(|| format!("{} export", spec.workflows.join(", "))),
    };
    let manifest = write_export(rows, &out, meta, progress).await?;
    Ok(ExportOutcome {
        manifest_url: target.manifest_url().await?,
        manifest,
    })
}
