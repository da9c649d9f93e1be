//! `nusomi export plan --store ROOT SPEC.json [--explain]`: validates a spec,
//! resolves its times against `as_of` and prints the SQL it compiles to (and,
//! with `--explain`, DataFusion's plan for it).

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::Utc;

use crate::dest::DestConfig;
use crate::error::{Error, Result};
use crate::export::{new_export_id, Export};
use crate::jobs::JobRecord;
use crate::sink::Progress;
use crate::spec::{compile_sql, format_instant, ExportSpec};
use crate::store::SealedStore;

/// `nusomi export …`.
#[derive(Debug, clap::Subcommand)]
pub(super) enum ExportCommand {
    /// Print the SQL an export spec compiles to.
    Plan(PlanArgs),
    /// Run an export: shards and manifest.json into the spec's destination.
    Create(CreateArgs),
    /// Check a published export against its manifest (no store needed):
    /// every shard's presence, size and SHA-256, and the digest.
    Verify(VerifyArgs),
}

/// Arguments of `nusomi export create`.
#[derive(Debug, clap::Args)]
pub(super) struct CreateArgs {
    /// Store root: a path, file://, memory://, s3://, az:// or gs:// URL.
    #[arg(long, env = "NUSOMI_STORE")]
    store: String,
    /// Print the job object (as `GET /v1/exports/{id}` returns it) as JSON.
    #[arg(long)]
    json: bool,
    /// Workspace id: the STS external id when an `s3` destination names a
    /// `role_arn`.
    #[arg(long, env = "NUSOMI_WORKSPACE_ID")]
    workspace_id: Option<String>,
    /// The export spec (JSON, SPEC §4); needs a `destination`.
    #[arg(required_unless_present = "from_manifest")]
    spec: Option<PathBuf>,
    /// Re-run the spec a published manifest records, at its `as_of`, and
    /// compare every shard with the original (a folder, its manifest.json,
    /// or the export's `manifest_url`).
    #[arg(long, requires = "to", conflicts_with = "spec")]
    from_manifest: Option<String>,
    /// With --from-manifest: where the reproduction goes (a folder, or a
    /// destination object as JSON).
    #[arg(long)]
    to: Option<String>,
    /// Run on the Ballista cluster whose scheduler is at this URL
    /// (`df://HOST:PORT`, started with `nusomi cluster scheduler`; a build
    /// with the `cluster` feature). The shards and manifest are the same
    /// bytes as on one node.
    #[arg(long, env = "NUSOMI_CLUSTER")]
    cluster: Option<String>,
}

/// Arguments of `nusomi export verify`.
#[derive(Debug, clap::Args)]
pub(crate) struct VerifyArgs {
    /// The export: a folder, its manifest.json, or a file://, s3://,
    /// az://ACCOUNT/CONTAINER/… or gs:// URL of its prefix or manifest.json
    /// (the `manifest_url` an export reports).
    location: String,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `nusomi export plan`.
#[derive(Debug, clap::Args)]
pub(super) struct PlanArgs {
    /// Store root: a path, file://, memory://, s3://, az:// or gs:// URL.
    #[arg(long, env = "NUSOMI_STORE")]
    store: String,
    /// Also print DataFusion's logical and physical plans.
    #[arg(long)]
    explain: bool,
    /// The export spec (JSON, SPEC §4).
    spec: PathBuf,
}

/// Reads and validates a spec file; relative times resolve against
/// `created_at` unless the spec gives `as_of`.
pub(super) fn read_spec(path: &PathBuf, created_at: chrono::DateTime<Utc>) -> Result<ExportSpec> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    Ok(ExportSpec::from_json(&text, created_at)?)
}

pub(super) async fn run(cmd: ExportCommand) -> Result<ExitCode> {
    match cmd {
        ExportCommand::Plan(args) => plan(args).await,
        ExportCommand::Create(args) => create(args).await,
        ExportCommand::Verify(args) => verify(args).await,
    }
}

async fn create(args: CreateArgs) -> Result<ExitCode> {
    if let Some(location) = args.from_manifest.clone() {
        return reproduce(args, &location).await;
    }
    let created_at = Utc::now();
    let spec_path = args.spec.clone().unwrap_or_default();
    let spec = read_spec(&spec_path, created_at)?;
    let store = SealedStore::open(&args.store).await?;
    let mut cfg = DestConfig::from_env()?;
    if args.workspace_id.is_some() {
        cfg.workspace_id = args.workspace_id;
    }
    let body = std::fs::read_to_string(&spec_path).map_err(|e| Error::io(&spec_path, e))?;
    let (job, outcome) = run_job(
        &store,
        &spec,
        &body,
        &cfg,
        created_at,
        !args.json,
        args.cluster.as_deref(),
    )
    .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&job)?);
    } else if outcome.already_finished {
        println!(
            "export already finished at this prefix (as of {}, the same {} sessions): nothing written\nmanifest: {}",
            outcome.manifest.as_of.as_deref().unwrap_or("?"),
            outcome.manifest.selection.as_ref().map_or(0, |s| s.sessions),
            outcome.manifest_url
        );
    } else {
        let reused = job["shards_reused"].as_u64().unwrap_or(0);
        println!(
            "export {} completed: {} rows from {} sessions, {} actions, {} shard(s), {:.1} MB{}\nmanifest: {}",
            job["id"].as_str().unwrap_or_default(),
            job["rows"],
            job["sessions"],
            job["actions"],
            job["shards"],
            job["bytes"].as_u64().unwrap_or(0) as f64 / 1e6,
            if reused > 0 {
                format!(" ({reused} shard(s) kept from an interrupted earlier run, verified)")
            } else {
                String::new()
            },
            job["manifest_url"].as_str().unwrap_or_default()
        );
    }
    warn_unmapped(&outcome.manifest);
    Ok(ExitCode::SUCCESS)
}

/// Warns on stderr when a step export turned events into `"type": "other"`
/// steps: events whose type or fields match no canonical action.
pub(super) fn warn_unmapped(manifest: &crate::sink::Manifest) {
    if let Some(steps) = manifest.steps.as_ref().filter(|s| s.unmapped > 0) {
        eprintln!(
            "warning: {} of {} steps map to no canonical action and were exported as \"type\": \"other\" (their event's type or fields are not in the mapping table, docs/steps.md); see the manifest's steps.types",
            steps.unmapped, manifest.rows
        );
    }
}

/// Runs `spec` (posted as `body`) with a progress bar on stderr (hidden
/// when stderr is not a terminal or `show_progress` is false) and returns
/// the job object, exactly as `GET /v1/exports/{id}` shows a finished job,
/// with the manifest written.
pub(super) async fn run_job(
    store: &std::sync::Arc<SealedStore>,
    spec: &ExportSpec,
    body: &str,
    cfg: &DestConfig,
    created_at: chrono::DateTime<Utc>,
    show_progress: bool,
    cluster: Option<&str>,
) -> Result<(serde_json::Value, crate::export::ExportOutcome)> {
    use std::sync::atomic::Ordering;
    let mut job = JobRecord::queued(new_export_id(created_at), spec, body, created_at);
    let target = Export::open_target(spec, &job.id, cfg).await?;
    let progress = std::sync::Arc::new(Progress::default());
    let bar = if show_progress {
        indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr())
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {elapsed} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    let ticker = {
        let (bar, progress) = (bar.clone(), std::sync::Arc::clone(&progress));
        tokio::spawn(async move {
            loop {
                bar.set_message(format!(
                    "{} rows, {:.1} MB, {} shards",
                    progress.rows.load(Ordering::Relaxed),
                    progress.bytes.load(Ordering::Relaxed) as f64 / 1e6,
                    progress.shards.load(Ordering::Relaxed)
                ));
                bar.tick();
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        })
    };
    job.start();
    let mut export = Export::new(store, spec)
        .with_id(job.id.clone())
        .with_target(target)
        .with_progress(std::sync::Arc::clone(&progress));
    if let Some(url) = cluster {
        export = export.with_cluster(url);
    }
    let outcome = export.await;
    ticker.abort();
    bar.finish_and_clear();
    let outcome = outcome?;
    job.completed(&outcome);
    Ok((job.to_api(None), outcome))
}

/// How the files of a reproduction differ from the original's, in order:
/// one line per file whose path, size or SHA-256 differs, or that only one
/// of them has.
fn compare_files(
    original: &[crate::sink::ShardInfo],
    again: &[crate::sink::ShardInfo],
) -> Vec<String> {
    let mut differences = Vec::new();
    for i in 0..original.len().max(again.len()) {
        match (original.get(i), again.get(i)) {
            (Some(a), Some(b))
                if a.path == b.path && a.sha256 == b.sha256 && a.bytes == b.bytes => {}
            (Some(a), Some(b)) if a.path == b.path => differences.push(format!(
                "{}: {} bytes sha256 {}, the original has {} bytes sha256 {}",
                b.path, b.bytes, b.sha256, a.bytes, a.sha256
            )),
            (Some(a), Some(b)) => differences.push(format!(
                "{}: {} bytes sha256 {}, the original has {} ({} bytes sha256 {})",
                b.path, b.bytes, b.sha256, a.path, a.bytes, a.sha256
            )),
            (Some(a), None) => differences.push(format!("{}: not produced again", a.path)),
            (None, Some(b)) => differences.push(format!("{}: not in the original", b.path)),
            (None, None) => {}
        }
    }
    differences
}

async fn plan(args: PlanArgs) -> Result<ExitCode> {
    let spec = read_spec(&args.spec, Utc::now())?;
    let sql = compile_sql(&spec)?;
    println!("-- as_of: {}", format_instant(spec.as_of));
    println!("-- resolved: {}", spec.resolved_json());
    if spec.steps.is_some() {
        println!(
            "-- unit: step — this query returns the action frames (with `sampled`); \
             one row per action event is built from them (docs/steps.md)"
        );
    }
    println!("{sql};");
    let store = SealedStore::open(&args.store).await?;
    let ctx = crate::engine::new_context();
    crate::engine::register(&ctx, &store)?;
    // Planning checks the SQL against the store's tables even without --explain.
    let df = ctx.sql(&sql).await?;
    if args.explain {
        let batches = df.explain(false, false)?.collect().await?;
        println!();
        write_plan(&batches)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn write_plan(batches: &[arrow::array::RecordBatch]) -> Result<()> {
    use arrow::array::AsArray;
    let mut out = std::io::stdout().lock();
    for b in batches {
        let (kinds, plans) = (
            b.column(0).as_string::<i32>(),
            b.column(1).as_string::<i32>(),
        );
        for i in 0..b.num_rows() {
            use std::io::Write;
            writeln!(out, "== {} ==\n{}\n", kinds.value(i), plans.value(i))
                .map_err(|e| Error::io("<stdout>", e))?;
        }
    }
    Ok(())
}

async fn verify(args: VerifyArgs) -> Result<ExitCode> {
    let report = crate::sink::verify_location(&args.location).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if report.is_intact() {
        println!(
            "{}: intact ({} shard(s), {} bytes hashed, digest matches)",
            args.location, report.shards, report.bytes
        );
    } else {
        for m in &report.mismatches {
            println!("{m}");
        }
        eprintln!(
            "{}: {} difference(s) from its manifest",
            args.location,
            report.mismatches.len()
        );
    }
    Ok(if report.is_intact() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `export create --from-manifest LOCATION --to DEST`: the manifest's spec
/// re-run at its `as_of` into `DEST`, every shard compared with the
/// original's hash.
async fn reproduce(args: CreateArgs, location: &str) -> Result<ExitCode> {
    let to = args.to.as_deref().ok_or_else(|| Error::Config {
        field: "--to".into(),
        message: "required with --from-manifest: a folder or a destination object as JSON \
                  (the original destination already holds the export)"
            .into(),
    })?;
    let (store, prefix) = crate::sink::open_export_location(location)?;
    let original = crate::sink::read_manifest(&store, &prefix).await?;
    let mut raw = original.spec.clone();
    if !raw.is_object() {
        return Err(Error::Config {
            field: "--from-manifest".into(),
            message: "this manifest records no spec (a COPY or write_shards export)".into(),
        });
    }
    raw["as_of"] = serde_json::json!(original.as_of);
    raw["destination"] = if to.trim_start().starts_with('{') {
        serde_json::from_str(to)?
    } else {
        serde_json::json!({"kind": "local", "path": to})
    };
    let created_at = Utc::now();
    let spec = ExportSpec::parse(&raw, created_at)?;
    let mut sealed = SealedStore::open(&args.store).await?;
    // The store versions the original read, while their files exist.
    if let Some(v) = original.store_version {
        match sealed.pinned_if_readable(v).await? {
            Some(pinned) => sealed = pinned,
            None => eprintln!(
                "the store no longer holds every file of sessions version {} (sessions \
                 forgotten and vacuumed since): reproducing at the newest version with the \
                 original as_of",
                v.sessions
            ),
        }
    }
    let cfg = DestConfig::from_env()?;
    let (job, again) = run_job(
        &sealed,
        &spec,
        &raw.to_string(),
        &cfg,
        created_at,
        !args.json,
        args.cluster.as_deref(),
    )
    .await?;
    let again = again.manifest;
    warn_unmapped(&again);
    let mut differences = compare_files(&original.shards, &again.shards);
    // Image files beside the shards (JSON Lines step exports).
    let files = |m: &crate::sink::Manifest| -> Vec<crate::sink::ShardInfo> {
        m.images.iter().flat_map(|i| i.files.clone()).collect()
    };
    differences.extend(compare_files(&files(&original), &files(&again)));
    // Name the sessions behind the differences: the rows of every shard
    // from the first that differs on, in both exports, session by session.
    // (Only image files differing: their names carry the session id.)
    let first_differing = (0..original.shards.len().max(again.shards.len())).find(|&i| {
        original.shards.get(i).map(|s| &s.sha256) != again.shards.get(i).map(|s| &s.sha256)
    });
    let sessions = if let Some(first) = first_differing {
        let id = job["id"].as_str().unwrap_or_default();
        let target = Export::open_target(&spec, id, &cfg).await?;
        let format = spec.format;
        let mut a = Vec::new();
        for s in original.shards.iter().skip(first) {
            a.extend(crate::sink::shard_rows(&store, &prefix, s, format).await?);
        }
        let mut b = Vec::new();
        for s in again.shards.iter().skip(first) {
            b.extend(crate::sink::shard_rows(&target.store, &target.prefix, s, format).await?);
        }
        crate::sink::session_changes(&a, &b)
    } else {
        Vec::new()
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"job": job, "identical": differences.is_empty(),
                                    "differences": differences, "sessions": sessions})
            )?
        );
    } else if differences.is_empty() {
        println!(
            "reproduced {location} byte for byte: {} shard(s), digest {} (into {})",
            again.shard_count,
            again.digest,
            job["manifest_url"].as_str().unwrap_or_default()
        );
    } else {
        for d in &differences {
            println!("{d}");
        }
        for s in &sessions {
            println!("session {s}");
        }
        eprintln!(
            "{location}: {} shard(s) differ from the original (rows {} now, {} then; sessions {} now, {} then)",
            differences.len(),
            again.rows,
            original.rows,
            again.sessions,
            original.sessions
        );
    }
    Ok(if differences.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
