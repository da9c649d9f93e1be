//! `nusomi serve`: the HTTP job API over a store. Configuration by flags or
//! the environment variables named in `--help`. Exports run on a runtime of
//! their own, so requests are answered while they use the cores.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use crate::dest::{DestConfig, UrlSigner};
use crate::error::{Error, Result};
use crate::jobs::{JobDb, JobService, DEFAULT_WORKSPACE};
use crate::server::{router, AppState, DEFAULT_MAX_BODY_BYTES};
use crate::workspace::Workspaces;

/// Shortest accepted `NUSOMI_SIGNING_KEY`.
const MIN_SIGNING_KEY_BYTES: usize = 32;
use crate::spec::Destination;
use crate::store::SealedStore;

/// Arguments of `nusomi serve`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Also read from the environment: NUSOMI_SIGNED_STORAGE (where signed_url \
exports are kept: a folder or a destination object as JSON; default DATA_DIR/files), \
NUSOMI_LINK_TTL_SECS (download link lifetime, default 86400), NUSOMI_STS_ENDPOINT, \
NUSOMI_CREDENTIAL_REFRESH_SECS, NUSOMI_PART_BYTES, NUSOMI_LOG (log filter, e.g. info), and the \
object stores' own AWS_*, AZURE_*, GOOGLE_* variables for destination credentials."
)]
pub(super) struct ServeArgs {
    /// Store root: a path, file://, s3://, az:// or gs:// URL.
    #[arg(long, env = "NUSOMI_STORE")]
    store: Option<String>,
    /// Address to listen on.
    #[arg(long, env = "NUSOMI_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Directory for the job database and the signing key.
    #[arg(long, env = "NUSOMI_DATA_DIR", default_value = "nusomi-data")]
    data_dir: PathBuf,
    /// Accepted API bearer tokens, comma-separated. None: the API is open.
    #[arg(
        long = "token",
        env = "NUSOMI_API_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    tokens: Vec<String>,
    /// A file of accepted bearer tokens, one per line (keeps them out of
    /// the process list).
    #[arg(long, env = "NUSOMI_TOKENS_FILE")]
    tokens_file: Option<PathBuf>,
    /// Queued plus running jobs allowed at once for the workspace of
    /// --store (default: no limit; workspaces from a file set their own).
    #[arg(long, env = "NUSOMI_MAX_ACTIVE_JOBS")]
    max_active_jobs: Option<usize>,
    /// Files of signed_url exports are removed this many days after the
    /// export finished (checked hourly).
    #[arg(long, env = "NUSOMI_RETENTION_DAYS", default_value_t = 30)]
    retention_days: u64,
    /// Records of finished jobs are forgotten this many days after the job
    /// finished (checked hourly), with any files the service kept for them.
    /// Each workspace also keeps at most its `max_records` (10,000 unless
    /// its entry says otherwise): posting past it forgets its oldest
    /// finished records.
    #[arg(long, env = "NUSOMI_RECORD_RETENTION_DAYS", default_value_t = 90)]
    record_retention_days: u64,
    /// Posted specs may give an `as_of` at most this many seconds after
    /// now (clock skew); later ones are refused.
    #[arg(long, env = "NUSOMI_MAX_FUTURE_AS_OF_SECS", default_value_t = crate::jobs::MAX_FUTURE_AS_OF_SECS)]
    max_future_as_of_secs: u64,
    /// A workspaces file: several workspaces, each with its own tokens,
    /// store and destination policy (see the README). Replaces --store,
    /// --token and --workspace-id.
    #[arg(long, env = "NUSOMI_WORKSPACES")]
    workspaces: Option<PathBuf>,
    /// Run exports on the Ballista cluster whose scheduler is at this URL
    /// (`df://HOST:PORT`; a build with the `cluster` feature). Redacted
    /// and step exports still run in this process.
    #[arg(long, env = "NUSOMI_CLUSTER")]
    cluster: Option<String>,
    /// Exports running at once (default: half the cores, at least 1).
    #[arg(long, env = "NUSOMI_WORKERS")]
    workers: Option<usize>,
    /// Workspace id, sent as STS external id for `s3` destinations with a `role_arn`.
    #[arg(long, env = "NUSOMI_WORKSPACE_ID")]
    workspace_id: Option<String>,
    /// Base URL of this service in download links (default: http://LISTEN).
    #[arg(long, env = "NUSOMI_PUBLIC_URL")]
    public_url: Option<String>,
    /// Key for signed download links (default: DATA_DIR/signing.key, created once).
    #[arg(long, env = "NUSOMI_SIGNING_KEY", hide_env_values = true)]
    signing_key: Option<String>,
    /// Largest accepted request body in bytes.
    #[arg(long, env = "NUSOMI_MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,
    /// Print the OpenAPI document and exit.
    #[arg(long)]
    print_openapi: bool,
}

/// The key in `dir/signing.key`, created (32 random bytes, hex, mode 0600)
/// on first use.
fn signing_key(dir: &std::path::Path) -> Result<String> {
    use std::io::Write;
    let path = dir.join("signing.key");
    if let Ok(k) = std::fs::read_to_string(&path) {
        if k.trim().len() >= MIN_SIGNING_KEY_BYTES {
            return Ok(k.trim().to_string());
        }
    }
    let key = hex::encode(rand::random::<[u8; 32]>());
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Created with its final mode: never readable by others, not even briefly.
        opts.mode(0o600);
    }
    let tmp = dir.join(format!("signing.key.{}.tmp", std::process::id()));
    let mut f = opts.open(&tmp).map_err(|e| Error::io(&tmp, e))?;
    f.write_all(key.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
    Ok(key)
}

/// Re-reads the workspaces file on every SIGHUP; a file that cannot be
/// used is logged and the workspaces served stay as they were.
/// Writes `line` to stderr in one write: stderr is unbuffered, and
/// `eprintln!` writes each formatted piece separately, so a reader of the
/// log could see half a line.
fn log_line(line: &str) {
    use std::io::Write;
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

fn reload_on_sighup(jobs: Arc<JobService>, file: PathBuf) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            let reloaded = match Workspaces::from_file(&file) {
                Ok(w) => {
                    let n = w.all().len();
                    jobs.reload(w).await.map(|()| n)
                }
                Err(e) => Err(e),
            };
            let line = match reloaded {
                Ok(n) => format!(
                    "nusomi serve: reloaded {} ({n} workspace(s))\n",
                    file.display()
                ),
                Err(e) => format!(
                    "nusomi serve: kept the workspaces served: {} cannot be used: {e}\n",
                    file.display()
                ),
            };
            log_line(&line);
        }
    });
}

/// Ctrl-C or SIGTERM: stop accepting and finish answering; running exports
/// are simply rerun (and resumed) at the next start.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// The workspaces served: from `--workspaces FILE`, else the one trusted
/// workspace of `--store`, `--token`/`--tokens-file` and `--workspace-id`.
fn workspaces(args: &ServeArgs) -> Result<(Workspaces, String)> {
    if let Some(file) = &args.workspaces {
        if args.store.is_some() || !args.tokens.is_empty() || args.tokens_file.is_some() {
            return Err(Error::Config {
                field: "--workspaces".into(),
                message: "each workspace names its own store and tokens: leave out --store, \
                          --token and --tokens-file"
                    .into(),
            });
        }
        let w = Workspaces::from_file(file)?;
        return Ok((w, format!("workspaces from {}", file.display())));
    }
    let root = args.store.clone().ok_or_else(|| Error::Config {
        field: "--store".into(),
        message: "required (or NUSOMI_STORE), unless --workspaces names a workspaces file".into(),
    })?;
    let mut tokens = args.tokens.clone();
    if let Some(f) = &args.tokens_file {
        let text = std::fs::read_to_string(f).map_err(|e| Error::io(f, e))?;
        tokens.extend(text.lines().map(str::to_string));
    }
    let id = args.workspace_id.as_deref().unwrap_or(DEFAULT_WORKSPACE);
    let mut w = Workspaces::single(id, &root, &tokens);
    if let Some(n) = args.max_active_jobs {
        w = w.with_max_active_jobs(n);
    }
    Ok((w, format!("store {root}")))
}

pub(super) async fn run(args: ServeArgs) -> Result<ExitCode> {
    if args.print_openapi {
        println!(
            "{}",
            serde_json::to_string_pretty(&crate::server::openapi())?
        );
        return Ok(ExitCode::SUCCESS);
    }
    let (workspaces, serving) = workspaces(&args)?;
    if workspaces.is_open() && !args.listen.ip().is_loopback() {
        return Err(Error::Config {
            field: "--listen".into(),
            message: format!(
                "{} is not a loopback address and no API token is configured: \
                 set --token / NUSOMI_API_TOKENS, or listen on 127.0.0.1",
                args.listen
            ),
        });
    }
    let mut stores = HashMap::new();
    for ws in workspaces.all() {
        stores.insert(ws.id.clone(), SealedStore::open(&ws.store).await?);
    }
    std::fs::create_dir_all(&args.data_dir).map_err(|e| Error::io(&args.data_dir, e))?;
    let mut dest = DestConfig::from_env()?;
    if std::env::var("NUSOMI_SIGNED_STORAGE").is_err() {
        dest.signed_storage = Destination::Local {
            path: args.data_dir.join("files").display().to_string(),
        };
    }
    dest.public_url = args
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", args.listen));
    let key = match &args.signing_key {
        Some(k) if k.len() < MIN_SIGNING_KEY_BYTES => {
            return Err(Error::Config {
                field: "--signing-key".into(),
                message: format!(
                    "NUSOMI_SIGNING_KEY must be at least {MIN_SIGNING_KEY_BYTES} bytes"
                ),
            })
        }
        Some(k) => k.clone(),
        None => signing_key(&args.data_dir)?,
    };
    dest.signing_key = Some(UrlSigner::new(key.into_bytes()));
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let workers = args.workers.unwrap_or((cores / 2).max(1));
    // Exports get their own threads; the process lives as long as they do.
    let exec = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .thread_name("nusomi-export")
        .enable_all()
        .build()
        .map_err(|e| Error::Jobs(format!("cannot start the export runtime: {e}")))?;
    let exec_handle = exec.handle().clone();
    std::mem::forget(exec);
    let db = JobDb::open(&args.data_dir)?;
    let open = workspaces.is_open();
    let jobs = JobService::new(workspaces, stores, db, dest, workers, exec_handle);
    jobs.set_max_future_as_of(args.max_future_as_of_secs);
    if let Some(url) = args.cluster.clone() {
        jobs.set_cluster(url);
    }
    let requeued = jobs.recover().await?;
    jobs.start();
    if let Some(file) = args.workspaces.clone() {
        reload_on_sighup(Arc::clone(&jobs), file);
    }
    {
        let (jobs, days) = (Arc::clone(&jobs), args.retention_days);
        let record_days = args.record_retention_days;
        tokio::spawn(async move {
            loop {
                match jobs.sweep_records(record_days).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(n, record_days, "forgot job records past retention"),
                    Err(e) => tracing::error!("record retention sweep: {e}"),
                }
                match jobs.sweep_signed_files(days).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(
                        n,
                        days,
                        "removed files of signed_url exports past retention"
                    ),
                    Err(e) => tracing::error!("retention sweep: {e}"),
                }
                tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
            }
        });
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| Error::io(args.listen.to_string(), e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io(args.listen.to_string(), e))?;
    eprintln!(
        "nusomi serve: listening on http://{addr} ({workers} worker(s), data in {}, {serving}{})",
        args.data_dir.display(),
        if requeued > 0 {
            format!(", {requeued} interrupted job(s) queued again")
        } else {
            String::new()
        }
    );
    if open {
        eprintln!(
            "nusomi serve: WARNING: no API tokens configured (--token / NUSOMI_API_TOKENS): \
             the API is open to anyone who can reach {addr}"
        );
    }
    let service = Arc::clone(&jobs);
    let app = router(AppState {
        jobs,
        max_body_bytes: args.max_body_bytes,
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| Error::io(addr.to_string(), e))?;
    // A clean stop is no crash: its running jobs' attempts do not count
    // towards the attempt cap at the next start.
    service.stopped_cleanly()?;
    Ok(ExitCode::SUCCESS)
}
