//! `nusomi cluster scheduler` and `nusomi cluster executor`: the Ballista
//! processes an export runs on with `export create --cluster` (a build
//! with the `cluster` feature; see docs/scale-out.md).

use std::process::ExitCode;

use crate::error::Result;

/// `nusomi cluster …`
#[derive(Debug, clap::Subcommand)]
pub(super) enum ClusterCommand {
    /// Run a Ballista scheduler that plans exports (until stopped).
    Scheduler(SchedulerArgs),
    /// Run a Ballista executor that writes export shards (until stopped).
    /// Object-store credentials come from its environment (`AWS_*`, …).
    Executor(ExecutorArgs),
}

/// Arguments of `nusomi cluster scheduler`.
#[derive(Debug, clap::Args)]
pub(super) struct SchedulerArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    bind: String,
    /// gRPC port clients and executors connect to.
    #[arg(long, default_value_t = 50050)]
    port: u16,
    /// Seconds without a heartbeat after which an executor counts as dead
    /// and its tasks run elsewhere (at least 10: a busy executor's poll for
    /// work, its heartbeat, comes every 5 s).
    #[arg(long, default_value_t = 180)]
    executor_timeout_secs: u64,
    /// Attempts of a task before its export fails.
    #[arg(long, default_value_t = 4)]
    task_max_failures: usize,
    /// The cluster's shared secret (a file of at least 32 bytes; every
    /// scheduler, executor and client of the cluster reads the same one):
    /// requests without it are refused.
    #[arg(long, env = "NUSOMI_CLUSTER_SECRET_FILE")]
    secret_file: std::path::PathBuf,
}

/// Arguments of `nusomi cluster executor`.
#[derive(Debug, clap::Args)]
pub(super) struct ExecutorArgs {
    /// The scheduler, HOST:PORT.
    #[arg(long, default_value = "127.0.0.1:50050")]
    scheduler: String,
    /// Address to listen on and advertise to the scheduler.
    #[arg(long, default_value = "127.0.0.1")]
    bind: String,
    /// Arrow Flight port (shuffle data).
    #[arg(long, default_value_t = 50051)]
    port: u16,
    /// gRPC port (tasks).
    #[arg(long, default_value_t = 50052)]
    grpc_port: u16,
    /// Tasks run at once (default: the cores).
    #[arg(long)]
    concurrent_tasks: Option<usize>,
    /// Folder for shuffle files (default: a temporary folder).
    #[arg(long)]
    work_dir: Option<String>,
    /// Seconds between heartbeats to the scheduler under push scheduling;
    /// nusomi schedules by pull, where the poll for work is the heartbeat
    /// (every 50 ms idle, every 5 s busy), so this changes nothing today.
    #[arg(long, default_value_t = 60)]
    heartbeat_secs: u64,
    /// The cluster's shared secret, as the scheduler's `--secret-file`.
    #[arg(long, env = "NUSOMI_CLUSTER_SECRET_FILE")]
    secret_file: std::path::PathBuf,
    /// The key jobs are signed with (a file of at least 32 bytes, the same
    /// the submitting service reads from NUSOMI_JOB_KEY_FILE); default: one
    /// derived from the cluster secret. Keep it off the scheduler.
    #[arg(long, env = "NUSOMI_JOB_KEY_FILE")]
    job_key_file: Option<std::path::PathBuf>,
    /// The service's workspaces file: each job must then name one of its
    /// workspaces, read that workspace's store and write a destination its
    /// policy allows (checked here, whatever the job's signature says).
    #[arg(long)]
    workspaces: Option<std::path::PathBuf>,
}

#[cfg(feature = "cluster")]
pub(super) async fn run(cmd: ClusterCommand) -> Result<ExitCode> {
    use crate::cluster::{
        install_secret, run_executor, run_scheduler, ClusterSecret, ExecutorOptions,
        SchedulerOptions,
    };
    match cmd {
        ClusterCommand::Scheduler(a) => {
            install_secret(ClusterSecret::from_file(&a.secret_file)?);
            run_scheduler(SchedulerOptions {
                bind: a.bind,
                port: a.port,
                executor_timeout_secs: a.executor_timeout_secs,
                task_max_failures: a.task_max_failures,
            })
            .await?
        }
        ClusterCommand::Executor(a) => {
            let mut secret = ClusterSecret::from_file(&a.secret_file)?;
            if let Some(key) = &a.job_key_file {
                secret = secret.with_job_key_file(key)?;
            }
            install_secret(secret);
            let workspaces = match &a.workspaces {
                Some(f) => Some(crate::workspace::Workspaces::from_file(f)?),
                None => None,
            };
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            run_executor(ExecutorOptions {
                scheduler: a.scheduler,
                bind: a.bind,
                port: a.port,
                grpc_port: a.grpc_port,
                concurrent_tasks: a.concurrent_tasks.unwrap_or(cores),
                work_dir: a.work_dir,
                heartbeat_secs: a.heartbeat_secs,
                workspaces,
            })
            .await?
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(not(feature = "cluster"))]
pub(super) async fn run(_cmd: ClusterCommand) -> Result<ExitCode> {
    Err(crate::error::Error::Config {
        field: "cluster".into(),
        message: "this build has no cluster support (it was built with --no-default-features; build with the `cluster` feature)"
            .into(),
    })
}
