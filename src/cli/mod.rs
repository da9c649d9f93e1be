//! The `nusomi` command line: argument parsing and one file per subcommand.
//! Each subcommand is a thin layer over the library; exit status 0 on
//! success, non-zero with a message on stderr otherwise (SPEC §7).

mod cluster;
mod demo;
mod export;
mod output;
mod seal;
mod serve;
mod sql;
mod store;
mod view;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use output::OutputFormat;

/// Turn sealed computer-use sessions into training datasets.
#[derive(Debug, Parser)]
#[command(name = "nusomi", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Seal recording bundles into a store (each bundle stands alone).
    Seal(seal::SealArgs),
    /// Run a SQL query against the store's `sessions` and `frames` tables.
    Sql(sql::SqlArgs),
    /// Plan and run exports (`plan`, `create`).
    #[command(subcommand)]
    Export(export::ExportCommand),
    /// Generate realistic sessions, seal them into a demo store and summarise it.
    Demo(demo::DemoArgs),
    /// Serve the HTTP job API (/v1/exports).
    Serve(serve::ServeArgs),
    /// Look at a store's sessions and an export's samples in the browser.
    View(view::ViewArgs),
    /// Store maintenance (`migrate`, `checkpoint`, `vacuum`).
    #[command(subcommand)]
    Store(store::StoreCommand),
    /// Run a Ballista scheduler or executor exports scale out on.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
}

/// Parses the process arguments and runs the subcommand.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Seal(args) => seal::run(args).await,
            Command::Sql(args) => sql::run(args).await,
            Command::Demo(args) => demo::run(args).await,
            Command::Export(cmd) => export::run(cmd).await,
            Command::Serve(args) => serve::run(args).await,
            Command::View(args) => view::run(args).await,
            Command::Store(cmd) => store::run(cmd).await,
            Command::Cluster(cmd) => cluster::run(cmd).await,
        }
    });
    if std::env::var_os(crate::store::COUNT_REQUESTS_ENV).is_some() {
        eprintln!("{}", crate::store::request_counts());
    }
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("NUSOMI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
