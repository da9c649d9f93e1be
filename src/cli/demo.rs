//! `nusomi demo [--dir DIR] [--sessions N]`: the README's first command.
//! Renders realistic recording bundles into `DIR/bundles/`, seals them into
//! `DIR/store/`, prints a per-workflow, per-outcome summary through SQL, and
//! runs two exports: event frames to Parquet, and steps as LLaMA-Factory
//! chat samples in JSON Lines.
//! Re-running it is cheap: the bundles are the same, so sealing is a no-op.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use super::output::{write_batches, OutputFormat};
use super::seal::seal_and_report;
use crate::datagen::{Generator, WORKFLOWS};
use crate::error::{Error, Result};
use crate::spec::ExportSpec;
use crate::store::{SealOptions, SealedStore};

/// Arguments of `nusomi demo`.
#[derive(Debug, clap::Args)]
pub(super) struct DemoArgs {
    /// Folder for the demo's bundles and store.
    #[arg(long, default_value = "nusomi-demo")]
    dir: PathBuf,
    /// Number of sessions to generate.
    #[arg(long, default_value_t = 24)]
    sessions: usize,
    /// Generator seed (same seed, same sessions).
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

/// The summary query the demo prints.
pub(super) const SUMMARY_SQL: &str = "SELECT workflow, outcome, count(*) AS sessions, \
    sum(frame_count) AS frames, sum(action_count) AS actions, \
    min(started_at) AS first_started, max(started_at) AS last_started \
    FROM sessions GROUP BY workflow, outcome ORDER BY workflow, outcome";

pub(super) async fn run(args: DemoArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let bundles_dir = args.dir.join("bundles");
    let store_dir = args.dir.join("store");
    std::fs::create_dir_all(&bundles_dir).map_err(|e| Error::io(&bundles_dir, e))?;
    println!(
        "generating {} sessions into {}",
        args.sessions,
        bundles_dir.display()
    );
    let generator = Generator::new(args.seed);
    let (n, dir) = (args.sessions, bundles_dir.clone());
    let bundles = tokio::task::spawn_blocking(move || generator.write_bundles(&dir, n)).await??;
    let generated = started.elapsed();
    println!("sealing into {}", store_dir.display());
    let store = SealedStore::open(&store_dir.to_string_lossy()).await?;
    let (sealed, skipped, refused) =
        seal_and_report(&store, bundles, &SealOptions::default()).await;
    let sealed_in = started.elapsed() - generated;
    println!("{sealed} sealed, {skipped} already sealed, {refused} refused");
    let ctx = crate::engine::new_context();
    crate::engine::register(&ctx, &store)?;
    println!("\n{SUMMARY_SQL}");
    let batches = ctx.sql(SUMMARY_SQL).await?.collect().await?;
    write_batches(&mut std::io::stdout().lock(), &batches, OutputFormat::Table)?;
    let export_started = Instant::now();
    let export_dir = args.dir.join("exports").join("event-frames");
    let spec_path = args.dir.join("export-spec.json");
    let job = sample_export(&store, &export_dir, &spec_path, frames_spec(&export_dir)).await?;
    println!(
        "\nsample export (spec: {}): {} rows from {} sessions, {} actions, {} Parquet shard(s)\nmanifest: {}",
        spec_path.display(),
        job["rows"],
        job["sessions"],
        job["actions"],
        job["shards"],
        job["manifest_url"].as_str().unwrap_or_default()
    );
    let steps_dir = args.dir.join("exports").join("steps-sharegpt");
    let steps_spec = args.dir.join("steps-spec.json");
    let job = sample_export(&store, &steps_dir, &steps_spec, steps_spec_json(&steps_dir)).await?;
    println!(
        "\nstep export (spec: {}): {} steps from {} sessions, LLaMA-Factory sharegpt samples in {} JSON Lines shard(s), images under images/\nmanifest: {}",
        steps_spec.display(),
        job["rows"],
        job["sessions"],
        job["shards"],
        job["manifest_url"].as_str().unwrap_or_default()
    );
    println!(
        "\ngenerated in {:.1}s, sealed in {:.1}s, exported in {:.1}s, total {:.1}s",
        generated.as_secs_f64(),
        sealed_in.as_secs_f64(),
        export_started.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    println!("bundles: {}", bundles_dir.display());
    println!(
        "export:  {}  (try: nusomi export plan --store {} --explain {})",
        export_dir.display(),
        store_dir.display(),
        spec_path.display()
    );
    println!(
        "steps:   {}  (LLaMA-Factory sharegpt; see docs/steps.md)",
        steps_dir.display()
    );
    println!(
        "store:   {}  (try: nusomi sql --store {} \"SELECT * FROM sessions LIMIT 5\")",
        store_dir.display(),
        store_dir.display()
    );
    Ok(if refused == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Every workflow's event frames (plus action frames) as Parquet into `dir`.
fn frames_spec(dir: &std::path::Path) -> serde_json::Value {
    let workflows: Vec<&str> = WORKFLOWS.iter().map(|w| w.name).collect();
    serde_json::json!({
        "workflow": workflows,
        "format": "parquet",
        "frame_sampling": {"mode": "event_only", "keep_action_frames": true},
        "destination": {"kind": "local", "path": dir.to_string_lossy()},
        "shard_size_bytes": 16 * 1024 * 1024,
        "tag": "demo@v1"
    })
}

/// Every workflow's actions as steps with 0–1000 coordinates, a history of
/// three actions and two screenshots, as LLaMA-Factory sharegpt samples in
/// JSON Lines into `dir` (images as files under `images/`).
fn steps_spec_json(dir: &std::path::Path) -> serde_json::Value {
    let workflows: Vec<&str> = WORKFLOWS.iter().map(|w| w.name).collect();
    serde_json::json!({
        "workflow": workflows,
        "format": "jsonl",
        "unit": "step",
        "coordinates": "normalized_1000",
        "history": {"actions": 3, "frames": 2},
        "messages": {"preset": "sharegpt", "system": "You are a GUI agent. Answer with one pyautogui call.", "action_syntax": "pyautogui"},
        "destination": {"kind": "local", "path": dir.to_string_lossy()},
        "shard_size_bytes": 16 * 1024 * 1024,
        "tag": "demo-steps@v1"
    })
}

/// Runs `spec` into `dir` (replacing an earlier demo export there) and
/// saves the spec at `spec_path`.
async fn sample_export(
    store: &std::sync::Arc<SealedStore>,
    dir: &std::path::Path,
    spec_path: &std::path::Path,
    spec: serde_json::Value,
) -> Result<serde_json::Value> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let text = serde_json::to_string_pretty(&spec)?;
    std::fs::write(spec_path, text.clone() + "\n").map_err(|e| Error::io(spec_path, e))?;
    let now = chrono::Utc::now();
    let spec = ExportSpec::parse(&spec, now)?;
    let dest = crate::dest::DestConfig::default();
    let (job, _) = super::export::run_job(store, &spec, &text, &dest, now, true, None).await?;
    Ok(job)
}
