//! `nusomi sql --store ROOT "SQL" [--format table|json|csv]`.

use std::process::ExitCode;

use super::output::{write_batches, OutputFormat};
use crate::error::Result;
use crate::store::SealedStore;

/// Arguments of `nusomi sql`.
#[derive(Debug, clap::Args)]
pub(super) struct SqlArgs {
    /// Store root: a path, file://, memory://, s3://, az:// or gs:// URL.
    #[arg(long, env = "NUSOMI_STORE")]
    store: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    format: OutputFormat,
    /// The query; `sessions` and `frames` are registered.
    query: String,
}

pub(super) async fn run(args: SqlArgs) -> Result<ExitCode> {
    let store = SealedStore::open(&args.store).await?;
    let ctx = crate::engine::new_context();
    crate::engine::register(&ctx, &store)?;
    let batches = ctx.sql(&args.query).await?.collect().await?;
    let mut out = std::io::stdout().lock();
    write_batches(&mut out, &batches, args.format)?;
    Ok(ExitCode::SUCCESS)
}
