//! `nusomi store migrate|checkpoint|vacuum|optimize|forget ROOT`: maintenance of a store's
//! Delta Lake tables.

use std::process::ExitCode;

use crate::error::Result;
use crate::store::{SealedStore, DEFAULT_PACK_BYTES};

/// Store maintenance.
#[derive(Debug, clap::Subcommand)]
pub(super) enum StoreCommand {
    /// Convert a store sealed before the Delta Lake catalog in place: add
    /// every sessions file (and its frames file) to the Delta logs. Moves and
    /// deletes nothing; safe to run again or after an interruption.
    Migrate(RootArg),
    /// Write a checkpoint of both tables, so readers replay a short log.
    Checkpoint(RootArg),
    /// Delete, past the retention period, the files of forgotten sessions
    /// and frames files failed seals left behind (never a file the newest
    /// version reads); list sessions files waiting for a commit.
    Vacuum(VacuumArgs),
    /// Pack the small frames files (one per session, as sealing writes
    /// them) into files of many sessions, per workflow and month: the
    /// `frames` log then holds few files. Rows and exports are unchanged;
    /// readers of older versions keep the old files until a vacuum. Safe to
    /// run again or after an interruption.
    Optimize(OptimizeArgs),
    /// Remove sessions from the store (retention, erasure). Exports pinned
    /// to earlier versions still read them until a vacuum deletes the files.
    Forget(ForgetArgs),
}

/// Arguments of `nusomi store forget`.
#[derive(Debug, clap::Args)]
pub(super) struct ForgetArgs {
    #[command(flatten)]
    root: RootArg,
    /// Session ids.
    #[arg(required = true)]
    ids: Vec<String>,
}

/// Arguments of `nusomi store optimize`.
#[derive(Debug, clap::Args)]
pub(super) struct OptimizeArgs {
    #[command(flatten)]
    root: RootArg,
    /// Target size of a packed frames file, MiB (files of at least half
    /// of it are left as they are).
    #[arg(long, default_value_t = DEFAULT_PACK_BYTES >> 20, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    target_mib: u64,
}

/// A store root.
#[derive(Debug, clap::Args)]
pub(super) struct RootArg {
    /// Store root: a path, file://, memory://, s3://, az:// or gs:// URL.
    #[arg(env = "NUSOMI_STORE")]
    root: String,
}

/// Arguments of `nusomi store vacuum`.
#[derive(Debug, clap::Args)]
pub(super) struct VacuumArgs {
    #[command(flatten)]
    root: RootArg,
    /// Only files older than this many hours; frames files outside the log
    /// (left by failed seals) also only when older than 24 hours, whatever
    /// this says (a seal in progress writes its frames file before its
    /// commit).
    #[arg(long, default_value_t = 168)]
    retain_hours: u32,
    /// List, delete nothing.
    #[arg(long)]
    dry_run: bool,
}

pub(super) async fn run(cmd: StoreCommand) -> Result<ExitCode> {
    match cmd {
        StoreCommand::Migrate(a) => {
            let store = SealedStore::open(&a.root).await?;
            let s = store.migrate().await?;
            println!(
                "{} sessions files: {} committed now in {} log entries, {} were already committed; \
                 {} claims of interrupted seals committed, {} younger than {} min left to the seal \
                 that may be committing them",
                s.found,
                s.committed,
                s.commits,
                s.already_committed,
                s.claims_committed,
                s.claims_in_flight,
                crate::store::STALE_CLAIM.as_secs() / 60
            );
        }
        StoreCommand::Checkpoint(a) => {
            let store = SealedStore::open(&a.root).await?;
            let (sessions, frames) = store.checkpoint().await?;
            println!(
                "checkpoint written: sessions at version {sessions}, frames at version {frames}"
            );
        }
        StoreCommand::Vacuum(a) => {
            let store = SealedStore::open(&a.root.root).await?;
            let retain = chrono::Duration::hours(i64::from(a.retain_hours));
            let s = store.vacuum(retain, a.dry_run).await?;
            let verb = if a.dry_run { "would delete" } else { "deleted" };
            for f in &s.deleted {
                println!("{verb} {f}");
            }
            for f in &s.uncommitted {
                println!("uncommitted {f} (run `nusomi store migrate` to commit it)");
            }
            println!(
                "{} {} files; {} claims await a commit",
                verb,
                s.deleted.len(),
                s.uncommitted.len()
            );
        }
        StoreCommand::Optimize(a) => {
            let store = SealedStore::open(&a.root.root).await?;
            let s = store.optimize(a.target_mib << 20).await?;
            println!(
                "{} sessions packed into {} files ({} bytes) in {} workflow-months; {} frames \
                 files removed from the log (deleted by a vacuum past the retention); {} \
                 workflow-months changed meanwhile, left for the next run",
                s.sessions, s.packs_written, s.bytes_written, s.groups, s.files_removed, s.skipped
            );
        }
        StoreCommand::Forget(a) => {
            let store = SealedStore::open(&a.root.root).await?;
            let n = store.forget(&a.ids).await?;
            println!("{n} of {} sessions removed from the store", a.ids.len());
        }
    }
    Ok(ExitCode::SUCCESS)
}
