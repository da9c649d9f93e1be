//! `DataFrame::write_shards`: any DataFrame with the export columns
//! (SPEC §5) written as shards plus a manifest through the export's own
//! [`ExportWriter`], sorted into export order first.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::prelude::{col, DataFrame};
use object_store::path::Path;
use object_store::ObjectStore;

use crate::dest::ExportTarget;
use crate::sink::{ExportMeta, ExportWriter, Manifest};
use crate::spec::OutputFormat;

/// Writes any DataFrame with the export columns as shards plus a manifest.
///
/// ```no_run
/// # async fn f(df: datafusion::prelude::DataFrame, store: std::sync::Arc<dyn object_store::ObjectStore>) -> nusomi_export::Result<()> {
/// use nusomi_export::engine::WriteShards;
/// use nusomi_export::spec::OutputFormat;
/// let manifest = df.write_shards(OutputFormat::Webdataset, store, "exports/v1".into(), 256 << 20).await?;
/// println!("{} rows in {} shards", manifest.rows, manifest.shard_count);
/// # Ok(()) }
/// ```
#[async_trait]
pub trait WriteShards {
    /// Sorts by (`session_id`, `frame_idx`) and writes `format` shards of at
    /// most `shard_size_bytes` and `manifest.json` under `prefix` in `store`.
    /// A size below the minimum is refused, as in a spec or `COPY`.
    async fn write_shards(
        self,
        format: OutputFormat,
        store: Arc<dyn ObjectStore>,
        prefix: Path,
        shard_size_bytes: u64,
    ) -> crate::error::Result<Manifest>;
}

#[async_trait]
impl WriteShards for DataFrame {
    async fn write_shards(
        self,
        format: OutputFormat,
        store: Arc<dyn ObjectStore>,
        prefix: Path,
        shard_size_bytes: u64,
    ) -> crate::error::Result<Manifest> {
        let df = self.sort(vec![
            col("session_id").sort(true, false),
            col("frame_idx").sort(true, false),
        ])?;
        let target = ExportTarget::new(store, prefix.clone(), format!("{prefix}/"));
        let writer = ExportWriter::new(&target, format, shard_size_bytes)?.with_meta(ExportMeta {
            title: "DataFrame export".into(),
            ..Default::default()
        });
        writer.write(df.execute_stream().await?).await
    }
}
