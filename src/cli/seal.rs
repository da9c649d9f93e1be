//! `nusomi seal --store ROOT BUNDLE…`: seals each bundle, prints one line per
//! bundle, and exits non-zero if any bundle was refused.

use std::path::PathBuf;
use std::process::ExitCode;

use futures::StreamExt;

use crate::error::Result;
use crate::store::{BundleLimits, SealOptions, SealOutcome, SealedStore};

/// Arguments of `nusomi seal`.
#[derive(Debug, clap::Args)]
pub(super) struct SealArgs {
    /// Store root: a path, file://, memory://, s3://, az:// or gs:// URL.
    #[arg(long, env = "NUSOMI_STORE")]
    store: String,
    /// Bundles sealed at once (default: one per core).
    #[arg(long, default_value_t = 0)]
    parallelism: usize,
    /// Largest frame image file in bytes.
    #[arg(long, default_value_t = BundleLimits::default().max_frame_bytes)]
    max_frame_bytes: u64,
    /// Longest JSONL line (and largest session.json) in bytes.
    #[arg(long, default_value_t = BundleLimits::default().max_line_bytes)]
    max_line_bytes: usize,
    /// Largest image width or height in pixels (checked before decoding).
    #[arg(long, default_value_t = BundleLimits::default().max_image_side)]
    max_image_side: u32,
    /// A file listing bundle folders, one per line (`-`: stdin), sealed
    /// with the ones given as arguments: for more bundles than a command
    /// line holds, in one call (one log entry per 2,000 sessions).
    #[arg(long, value_name = "FILE")]
    bundles_from: Option<PathBuf>,
    /// Recording bundle folders.
    #[arg(required_unless_present = "bundles_from")]
    bundles: Vec<PathBuf>,
}

pub(super) async fn run(args: SealArgs) -> Result<ExitCode> {
    let store = SealedStore::open(&args.store).await?;
    let options = SealOptions {
        parallelism: args.parallelism,
        sealed_at: None,
        limits: BundleLimits {
            max_frame_bytes: args.max_frame_bytes,
            max_line_bytes: args.max_line_bytes,
            max_image_side: args.max_image_side,
        },
    };
    let mut bundles = args.bundles;
    if let Some(list) = &args.bundles_from {
        let text = if list.as_os_str() == "-" {
            std::io::read_to_string(std::io::stdin())
                .map_err(|e| crate::error::Error::io(list, e))?
        } else {
            std::fs::read_to_string(list).map_err(|e| crate::error::Error::io(list, e))?
        };
        bundles.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(PathBuf::from),
        );
    }
    let (sealed, skipped, refused) = seal_and_report(&store, bundles, &options).await;
    println!("{sealed} sealed, {skipped} already sealed, {refused} refused");
    Ok(if refused == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Seals bundles, printing a line per bundle; returns (sealed, unchanged, refused).
pub(super) async fn seal_and_report(
    store: &SealedStore,
    bundles: Vec<PathBuf>,
    options: &SealOptions,
) -> (usize, usize, usize) {
    let mut counts = (0, 0, 0);
    let mut results = store.seal_all(bundles, options);
    while let Some((dir, result)) = results.next().await {
        match result {
            Ok(SealOutcome::Sealed(s)) => {
                counts.0 += 1;
                println!(
                    "sealed {} ({}, {} frames, {} events, {:.1} MB) from {}",
                    s.session_id,
                    s.workflow,
                    s.frames,
                    s.events,
                    s.image_bytes as f64 / 1e6,
                    dir.display()
                );
            }
            Ok(SealOutcome::AlreadySealed(s)) => {
                counts.1 += 1;
                println!(
                    "already sealed {} (identical content), nothing written: {}",
                    s.session_id,
                    dir.display()
                );
            }
            Err(e) => {
                counts.2 += 1;
                eprintln!("refused {}: {e}", dir.display());
            }
        }
    }
    counts
}
