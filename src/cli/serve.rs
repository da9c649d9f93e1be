//! `nusomi serve`: the HTTP job API over a store. Configuration by flags or
//! the environment variables named in `--help`. Exports run on a runtime of
//! their own, so requests are answered while they use the cores.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use crate::dest::{DestConfig, UrlSigner};
use crate::error::{Error, Result};
use crate::jobs::{JobDb, JobService};
use crate::server::{router, AppState, Tokens, DEFAULT_MAX_BODY_BYTES};
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
    #[arg(long = "token", env = "NUSOMI_API_TOKENS", value_delimiter = ',')]
    tokens: Vec<String>,
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
    let path = dir.join("signing.key");
    if let Ok(k) = std::fs::read_to_string(&path) {
        if !k.trim().is_empty() {
            return Ok(k.trim().to_string());
        }
    }
    let key = hex::encode(rand::random::<[u8; 32]>());
    let tmp = dir.join("signing.key.tmp");
    std::fs::write(&tmp, &key).map_err(|e| Error::io(&tmp, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600));
    }
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
    Ok(key)
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

pub(super) async fn run(args: ServeArgs) -> Result<ExitCode> {
    if args.print_openapi {
        println!(
            "{}",
            serde_json::to_string_pretty(&crate::server::openapi()).unwrap_or_default()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let root = args.store.ok_or_else(|| Error::Config {
        field: "--store".into(),
        message: "required (or NUSOMI_STORE)".into(),
    })?;
    if args.tokens.iter().all(|t| t.trim().is_empty()) && !args.listen.ip().is_loopback() {
        return Err(Error::Config {
            field: "--listen".into(),
            message: format!(
                "{} is not a loopback address and no API token is configured: \
                 set --token / NUSOMI_API_TOKENS, or listen on 127.0.0.1",
                args.listen
            ),
        });
    }
    let store = SealedStore::open(&root).await?;
    std::fs::create_dir_all(&args.data_dir).map_err(|e| Error::io(&args.data_dir, e))?;
    let mut dest = DestConfig::from_env()?;
    if std::env::var("NUSOMI_SIGNED_STORAGE").is_err() {
        dest.signed_storage = Destination::Local {
            path: args.data_dir.join("files").display().to_string(),
        };
    }
    dest.workspace_id = args.workspace_id.or(dest.workspace_id);
    dest.public_url = args
        .public_url
        .unwrap_or_else(|| format!("http://{}", args.listen));
    let key = match args.signing_key {
        Some(k) => k,
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
    let jobs = JobService::new(store, db, dest, workers, exec_handle);
    let requeued = jobs.recover()?;
    jobs.start();
    let tokens = Arc::new(Tokens::new(&args.tokens));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| Error::io(args.listen.to_string(), e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io(args.listen.to_string(), e))?;
    eprintln!(
        "nusomi serve: listening on http://{addr} ({workers} worker(s), data in {}, store {root}{})",
        args.data_dir.display(),
        if requeued > 0 {
            format!(", {requeued} interrupted job(s) queued again")
        } else {
            String::new()
        }
    );
    if tokens.is_open() {
        eprintln!(
            "nusomi serve: WARNING: no API tokens configured (--token / NUSOMI_API_TOKENS): \
             the API is open to anyone who can reach {addr}"
        );
    }
    let app = router(AppState {
        jobs,
        tokens,
        max_body_bytes: args.max_body_bytes,
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| Error::io(addr.to_string(), e))?;
    Ok(ExitCode::SUCCESS)
}
