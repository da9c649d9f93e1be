//! [`Export`]: the one export lifecycle, in the delta-rs operation style.
//! Build it with the store and a validated spec, say where it goes and who
//! watches, and await it:
//!
//! ```no_run
//! # async fn f(store: std::sync::Arc<nusomi_export::store::SealedStore>,
//! #            spec: nusomi_export::spec::ExportSpec) -> nusomi_export::Result<()> {
//! use nusomi_export::Export;
//! let outcome = Export::new(&store, &spec).await?;
//! println!("{} rows, manifest at {}", outcome.manifest.rows, outcome.manifest_url);
//! # Ok(()) }
//! ```
//!
//! Awaiting compiles the spec to SQL, registers the store into the
//! session (a fresh one with [`crate::engine::session_config`] unless
//! [`Export::with_context`] gives one), opens the spec's destination (unless
//! [`Export::with_target`] gives one), claims it ([`ExportWriter::begin`]),
//! runs the query under the sink's plan node
//! ([`crate::engine::WriteShardsExec`]: each of the spec's `partitions`
//! streams its ordered rows into its own shards) in this process or on a
//! Ballista cluster ([`Export::with_cluster`]), and writes the manifest last
//! from what the partitions report ([`ExportWriter::finish`]); nothing is
//! left behind on failure. The CLI, the job service and embedders all run
//! this; `COPY` and `write_shards` share its writer.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use rand::Rng;

use crate::dest::{DestConfig, ExportTarget};
use crate::engine::{InProcess, RowsFn, ShardJob};
use crate::error::{Error, Result};
use crate::error::{SpecError, SpecErrors};
use crate::sample::{PlanBuilder, StepRows};
use crate::sink::{
    Begin, ExportLayout, ExportMeta, ExportWriter, Manifest, Progress, Selection, SelectionBuilder,
};
use crate::spec::{
    compile_redaction_sql, compile_selection_sql, compile_sql, format_instant, Destination,
    ExportSpec, Redaction,
};
use crate::store::SealedStore;

/// What a finished export produced.
#[derive(Debug, Clone)]
pub struct ExportOutcome {
    /// The export id (`exp_<ULID>`).
    pub id: String,
    /// The manifest as written.
    pub manifest: Manifest,
    /// Where users fetch `manifest.json` (a download link for `signed_url`).
    pub manifest_url: String,
    /// Shards an interrupted earlier attempt had written, verified and kept.
    pub shards_reused: u64,
    /// The prefix already held this export, finished: nothing was written
    /// and `manifest` is the one found there (a re-run of the same spec
    /// selecting the same sessions).
    pub already_finished: bool,
}

impl ExportOutcome {
    /// Bytes of all shards.
    pub fn bytes(&self) -> u64 {
        self.manifest.shards.iter().map(|s| s.bytes).sum()
    }
}

/// An export of one spec from one store, run by awaiting it.
pub struct Export {
    store: Arc<SealedStore>,
    spec: ExportSpec,
    id: Option<String>,
    target: Option<ExportTarget>,
    dest: DestConfig,
    progress: Arc<Progress>,
    ctx: Option<SessionContext>,
    cluster: Option<String>,
}

impl std::fmt::Debug for Export {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Export")
            .field("id", &self.id)
            .field("format", &self.spec.format)
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl Export {
    /// An export of `spec` from `store`, into the spec's destination opened
    /// with the default [`DestConfig`], under a new id.
    pub fn new(store: &Arc<SealedStore>, spec: &ExportSpec) -> Self {
        Export {
            store: Arc::clone(store),
            spec: spec.clone(),
            id: None,
            target: None,
            dest: DestConfig::default(),
            progress: Arc::new(Progress::default()),
            ctx: None,
            cluster: None,
        }
    }

    /// Runs on the Ballista cluster whose scheduler is at `url`
    /// (`df://HOST:PORT`; builds with the `cluster` feature): the same
    /// plan, each partition's shards written by the executor that computed
    /// it, the manifest written here last. The bytes are the same as on
    /// one node. Redacted and step exports run on one node only. The
    /// executors open the spec's destination themselves, with their own
    /// credentials (a target given with [`Export::with_target`] is where
    /// the lease and manifest go: open it from the same destination); a
    /// context given with [`Export::with_context`] is not used.
    pub fn with_cluster(mut self, url: impl Into<String>) -> Self {
        self.cluster = Some(url.into());
        self
    }

    /// Uses `id` as the export id (a job's id) instead of a new one.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Writes into `target` instead of the spec's destination.
    pub fn with_target(mut self, target: ExportTarget) -> Self {
        self.target = Some(target);
        self
    }

    /// Opens the spec's destination under `dest` (workspace id, STS
    /// endpoint, `signed_url` storage, retries, part size).
    pub fn with_dest_config(mut self, dest: DestConfig) -> Self {
        self.dest = dest;
        self
    }

    /// Reports into `progress` while it runs; setting its `cancel` flag
    /// stops the export at the next row ([`Error::Cancelled`]).
    pub fn with_progress(mut self, progress: Arc<Progress>) -> Self {
        self.progress = progress;
        self
    }

    /// Runs the query in `ctx` (any configuration: partitions, memory
    /// limits; keep `batch_size` small, as [`crate::engine::session_config`] does,
    /// or batches of thousands of images build up); the store's tables and
    /// functions are registered into it. The shards do not depend on it.
    pub fn with_context(mut self, ctx: SessionContext) -> Self {
        self.ctx = Some(ctx);
        self
    }

    /// Opens the destination of `spec` for export `id`: the one place a
    /// missing destination is refused (as a spec error on `destination`).
    /// The service calls it when a job is posted, so bad settings answer
    /// 400 before anything is queued.
    pub async fn open_target(
        spec: &ExportSpec,
        id: &str,
        dest: &DestConfig,
    ) -> Result<ExportTarget> {
        let destination = spec.destination.as_ref().ok_or_else(|| {
            Error::Spec(SpecErrors(vec![SpecError {
                field: "destination".into(),
                message: "missing required field (e.g. {\"kind\": \"local\", \"path\": \"out/\"})"
                    .into(),
            }]))
        })?;
        ExportTarget::open_resolving(destination, id, dest).await
    }

    async fn run(self) -> Result<ExportOutcome> {
        let id = self.id.unwrap_or_else(|| new_export_id(Utc::now()));
        let target = match self.target {
            Some(t) => t,
            None => Self::open_target(&self.spec, &id, &self.dest).await?,
        };
        let spec = &self.spec;
        let ctx = match &self.cluster {
            Some(url) => cluster_context(url, spec).await?,
            None => self.ctx.unwrap_or_else(crate::engine::new_context),
        };
        // Every query of the export (rows, redaction plan) reads one snapshot.
        let store = self.store.pinned(None).await?;
        let store_version = store.snapshot().await?.version;
        crate::engine::register(&ctx, &store)?;
        crate::engine::partition_frames(&ctx, &store, spec.partitions)?;
        let sql = compile_sql(spec)?;
        // A cluster session runs queries on the cluster: the selection
        // (sessions only, no images) is read here.
        let selection = match &self.cluster {
            Some(_) => {
                let local = crate::engine::new_context();
                crate::engine::register(&local, &store)?;
                selection(&local, spec).await?
            }
            None => selection(&ctx, spec).await?,
        };
        let meta = ExportMeta {
            spec: spec.raw_redacted(),
            resolved: spec.resolved_json(),
            as_of: Some(format_instant(spec.as_of)),
            store_version,
            selection: Some(selection),
            sql: Some(sql.clone()),
            title: spec
                .tag
                .clone()
                .unwrap_or_else(|| format!("{} export", spec.workflows.join(", "))),
            export_id: Some(id.clone()),
        };
        let writer = ExportWriter::new(&target, spec.format, spec.shard_size_bytes)?
            .with_splits(spec.split_names())
            .with_steps(spec.steps.is_some())
            .with_meta(meta)
            .with_progress(Arc::clone(&self.progress));
        let job = ShardJob {
            export_id: id.clone(),
            destination: job_destination(spec, &target)?,
            workspace_id: self.dest.workspace_id.clone(),
            sts_from_destination: self.dest.sts_from_destination,
            format: spec.format.as_str().to_string(),
            shard_size_bytes: spec.shard_size_bytes,
            part_bytes: target.part_bytes,
            splits: spec.split_names(),
            steps: spec.steps.is_some(),
            partitions: spec.partitions,
        };
        // Read before the prefix is claimed (the redaction plan is a query).
        let rows = match &self.cluster {
            Some(_) => None,
            None => row_transform(&ctx, spec).await?,
        };
        let mut already_finished = false;
        let manifest = match writer.begin().await? {
            Begin::Finished(m) => {
                already_finished = true;
                *m
            }
            Begin::Started(begun) => {
                let written = match &self.cluster {
                    // The executors do not see the cancel flag: a cancelled
                    // cluster export finishes its partitions, then is
                    // removed instead of published.
                    Some(_) => on_cluster(&ctx, &store.location().root_url(), &sql, job)
                        .await
                        .and_then(|w| {
                            if self.progress.cancel.load(Ordering::Relaxed) {
                                Err(Error::Cancelled)
                            } else {
                                Ok(w)
                            }
                        }),
                    None => {
                        let local = InProcess {
                            target: Arc::new(target.clone()),
                            begun: begun.clone(),
                            progress: Arc::clone(&self.progress),
                            rows,
                        };
                        crate::engine::write_shards_in_process(&ctx, &sql, job, local).await
                    }
                };
                writer.finish(begun, written).await?
            }
        };
        Ok(ExportOutcome {
            id,
            manifest_url: target.public_url(ExportLayout::MANIFEST).await?,
            manifest,
            shards_reused: self.progress.shards_reused.load(Ordering::Relaxed),
            already_finished,
        })
    }
}

/// A client session on the cluster at `url` for `spec`, or why not.
async fn cluster_context(url: &str, spec: &ExportSpec) -> Result<SessionContext> {
    let refuse = |message: &str| {
        Err(Error::Config {
            field: "cluster".into(),
            message: message.into(),
        })
    };
    if spec.steps.is_some() {
        return refuse("`\"unit\": \"step\"` exports run on one node (leave out the cluster)");
    }
    if spec.redact.is_some() {
        return refuse("redacted exports run on one node (leave out the cluster)");
    }
    if spec
        .destination
        .as_ref()
        .is_some_and(|d| d.has_inline_key())
    {
        return refuse("a destination with key material inline cannot be sent to executors; give them their own credentials");
    }
    #[cfg(feature = "cluster")]
    {
        crate::cluster::remote_context(url).await
    }
    #[cfg(not(feature = "cluster"))]
    {
        let _ = url;
        refuse("this build has no cluster support (it was built with --no-default-features; build with the `cluster` feature)")
    }
}

/// Runs the export's plan on the cluster `ctx` is a session of.
#[cfg_attr(not(feature = "cluster"), allow(unused_variables))]
async fn on_cluster(
    ctx: &SessionContext,
    store_root: &str,
    sql: &str,
    job: ShardJob,
) -> Result<Vec<crate::sink::PartitionWritten>> {
    if job.destination.is_empty() {
        return Err(Error::Config {
            field: "destination".into(),
            message: "an export on a cluster needs a destination its executors can open".into(),
        });
    }
    #[cfg(feature = "cluster")]
    {
        crate::cluster::write_shards_on_cluster(ctx, store_root, sql, job).await
    }
    #[cfg(not(feature = "cluster"))]
    {
        Err(Error::Internal("no cluster support in this build".into()))
    }
}

/// The destination as an executor opens it: the spec's, with a local
/// folder made absolute (the target's folder).
fn job_destination(spec: &ExportSpec, target: &ExportTarget) -> Result<String> {
    let d = match (&target.local_dir, &spec.destination) {
        (Some(dir), _) => Destination::Local {
            path: dir.to_string_lossy().into_owned(),
        },
        (None, Some(d)) => d.clone(),
        // Nothing an executor could open (an in-process run needs none).
        (None, None) => return Ok(String::new()),
    };
    Ok(d.to_json().to_string())
}

impl IntoFuture for Export {
    type Output = Result<ExportOutcome>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

/// The rows `spec` exports from the store registered in `ctx`, in export
/// order, before the sink: the compiled query's rows, redacted when the
/// spec says so, and for `"unit": "step"` turned into step rows
/// ([`crate::sample::StepRows`]; the observation image in an
/// `observation` column). Returns the query text too.
pub async fn export_rows(
    ctx: &SessionContext,
    spec: &ExportSpec,
) -> Result<(String, SendableRecordBatchStream)> {
    let sql = compile_sql(spec)?;
    let rows = ctx.sql(&sql).await?.execute_stream().await?;
    let rows = match row_transform(ctx, spec).await? {
        Some(f) => f(rows)?,
        None => rows,
    };
    Ok((sql, rows))
}

/// What happens to the query's rows before the sink: the spec's redaction
/// (its plan read now), then step rows. `None` when the rows go as they are.
async fn row_transform(ctx: &SessionContext, spec: &ExportSpec) -> Result<Option<RowsFn>> {
    let redact = match &spec.redact {
        Some(r) => Some(redaction(ctx, spec, r).await?),
        None => None,
    };
    let steps = spec.steps.clone().map(|unit| (unit, spec.format));
    if redact.is_none() && steps.is_none() {
        return Ok(None);
    }
    Ok(Some(Arc::new(move |rows: SendableRecordBatchStream| {
        let rows = match &redact {
            Some(f) => f(rows),
            None => rows,
        };
        let Some((unit, format)) = &steps else {
            return Ok(rows);
        };
        let mut steps = StepRows::new(unit.clone(), *format, rows.schema())?;
        let schema = steps.schema();
        let stream = rows.map(move |batch| {
            batch.and_then(|b| {
                steps
                    .push(&b)
                    .map_err(datafusion::error::DataFusionError::from)
            })
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)) as SendableRecordBatchStream)
    })))
}

/// The sessions `spec` selects in the store registered in `ctx`
/// ([`compile_selection_sql`]), hashed as they stream by.
async fn selection(ctx: &SessionContext, spec: &ExportSpec) -> Result<Selection> {
    use arrow::array::{Array, AsArray};
    use arrow::compute::cast;
    use arrow::datatypes::DataType;
    let mut rows = ctx
        .sql(&compile_selection_sql(spec)?)
        .await?
        .execute_stream()
        .await?;
    let mut b = SelectionBuilder::default();
    while let Some(batch) = rows.next().await {
        let batch = batch?;
        let ids = cast(batch.column(0), &DataType::Utf8)?;
        let seals = cast(batch.column(1), &DataType::Utf8)?;
        let (ids, seals) = (ids.as_string::<i32>(), seals.as_string::<i32>());
        for i in 0..batch.num_rows() {
            b.push(
                ids.value(i),
                if seals.is_null(i) { "" } else { seals.value(i) },
            );
        }
    }
    Ok(b.finish())
}

/// A stream rewrite.
type Rewrite = Arc<dyn Fn(SendableRecordBatchStream) -> SendableRecordBatchStream + Send + Sync>;

/// The spec's redaction ([`crate::sample::RedactionPlan`]): the plan is
/// read first from every frame's events of the selected sessions (no
/// images); the returned rewrite applies it to each batch as it streams.
async fn redaction(ctx: &SessionContext, spec: &ExportSpec, r: &Redaction) -> Result<Rewrite> {
    // Compiled for this export (never cached: the patterns are the
    // caller's, and stay resident only while it runs).
    let redactor = crate::sample::Redactor::new(&r.patterns)
        .map(Arc::new)
        .map_err(|message| Error::Config {
            field: "redact.patterns".into(),
            message,
        })?;
    let mut builder = PlanBuilder::new(Arc::clone(&redactor), r.typed_text, r.rectangles);
    if r.typed_text || r.rectangles {
        let mut events = ctx
            .sql(&compile_redaction_sql(spec)?)
            .await?
            .execute_stream()
            .await?;
        while let Some(batch) = events.next().await {
            builder.add(&batch?)?;
        }
    }
    let plan = Arc::new(builder.finish());
    Ok(Arc::new(move |rows: SendableRecordBatchStream| {
        let schema = rows.schema();
        let plan = Arc::clone(&plan);
        let redactor = Arc::clone(&redactor);
        let stream = rows.map(move |batch| {
            batch.and_then(|b| {
                plan.apply(&redactor, &b)
                    .map_err(datafusion::error::DataFusionError::from)
            })
        });
        Box::pin(RecordBatchStreamAdapter::new(schema, stream)) as SendableRecordBatchStream
    }))
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
