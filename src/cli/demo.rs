//! `nusomi demo [--dir DIR] [--sessions N]`: the README's first command.
//! Renders realistic recording bundles into `DIR/bundles/`, seals them into
//! `DIR/store/`, and prints a per-workflow, per-outcome summary through SQL.
//! Re-running it is cheap: the bundles are the same, so sealing is a no-op.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use datafusion::prelude::SessionContext;

use super::output::{write_batches, OutputFormat};
use super::seal::seal_and_report;
use crate::datagen::Generator;
use crate::store::{SealOptions, SealedStore};
use crate::{Error, Result};

/// Arguments of `nusomi demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
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
pub const SUMMARY_SQL: &str = "SELECT workflow, outcome, count(*) AS sessions, \
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
    let ctx = SessionContext::new();
    crate::register(&ctx, &store)?;
    println!("\n{SUMMARY_SQL}");
    let batches = ctx.sql(SUMMARY_SQL).await?.collect().await?;
    write_batches(&mut std::io::stdout().lock(), &batches, OutputFormat::Table)?;
    println!(
        "\ngenerated in {:.1}s, sealed in {:.1}s, total {:.1}s",
        generated.as_secs_f64(),
        sealed_in.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    println!("bundles: {}", bundles_dir.display());
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
