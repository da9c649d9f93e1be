//! `nusomi view STORE_OR_EXPORT [--export LOCATION] [--listen 127.0.0.1:PORT]
//! [--no-open]`: the viewer ([`crate::viewer`]) on loopback; prints its URL
//! (with the token the pages need) and opens the browser when it can.

use std::net::SocketAddr;
use std::process::ExitCode;

use crate::error::{Error, Result};
use crate::store::SealedStore;
use crate::viewer::{new_token, router, Viewer};

/// Arguments of `nusomi view`.
#[derive(Debug, clap::Args)]
pub(super) struct ViewArgs {
    /// A store root (path or URL), or an export (its folder, manifest.json,
    /// or a URL `nusomi export verify` takes).
    source: String,
    /// An export to show beside the store.
    #[arg(long)]
    export: Option<String>,
    /// Where to listen: a loopback address (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Do not open a browser.
    #[arg(long)]
    no_open: bool,
}

/// Whether `source` names an export rather than a store.
fn is_export(source: &str) -> bool {
    let trimmed = source.trim_end_matches('/');
    trimmed.ends_with("manifest.json")
        || (!source.contains("://")
            && std::path::Path::new(trimmed)
                .join("manifest.json")
                .is_file())
}

pub(super) async fn run(args: ViewArgs) -> Result<ExitCode> {
    if !args.listen.ip().is_loopback() {
        return Err(Error::Config {
            field: "--listen".into(),
            message: format!(
                "{}: the viewer listens on loopback only (127.0.0.1 or [::1]); under `nusomi serve` \
                 a workspace's pages are behind its token",
                args.listen
            ),
        });
    }
    let (store, export) = if is_export(&args.source) {
        (None, Some(args.source.clone()))
    } else {
        (
            Some(SealedStore::open(&args.source).await?),
            args.export.clone(),
        )
    };
    let token = new_token();
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| Error::io(args.listen.to_string(), e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io(args.listen.to_string(), e))?;
    let url = format!("http://{addr}/?token={token}");
    println!("nusomi view: {url}");
    use std::io::Write;
    let _ = std::io::stdout().flush();
    if !args.no_open {
        // Best effort: a machine without a desktop keeps the printed URL.
        let _ = std::process::Command::new("xdg-open")
            .arg(&url)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
    }
    let app = router(Viewer::new(store, export, token));
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| Error::io(addr.to_string(), e))?;
    Ok(ExitCode::SUCCESS)
}
