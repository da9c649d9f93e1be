//! Bearer-token authentication: a request to a guarded route needs
//! `Authorization: Bearer <token>` with a token of some workspace (compared
//! as SHA-256 digests, in constant time), else `401` with
//! `WWW-Authenticate: Bearer`. The caller's [`Workspace`] goes into the
//! request's extensions; every handler sees only that workspace's jobs.
//! With no tokens at all the API is open (loopback only) and checks the
//! `Host` header against DNS rebinding.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::routes::error_body;
use super::AppState;
use crate::workspace::Workspace;

/// Whether a `Host` header names this machine's loopback interface.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    matches!(name, "localhost" | "127.0.0.1" | "::1")
}

pub(super) async fn require_token(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let workspaces = state.jobs.workspaces();
    let workspaces = &workspaces;
    if workspaces.is_open() {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !is_loopback_host(host) {
            return error_body(
                StatusCode::FORBIDDEN,
                "an open API (no tokens) answers only requests for localhost, 127.0.0.1 or [::1]",
            );
        }
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match workspaces.authenticate(presented) {
        Some(ws) => {
            req.extensions_mut().insert::<Arc<Workspace>>(ws);
            next.run(req).await
        }
        None => {
            let mut r = error_body(
                StatusCode::UNAUTHORIZED,
                "a valid bearer token is required (Authorization: Bearer <token>)",
            )
            .into_response();
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "localhost:8080",
            "127.0.0.1:1",
            "[::1]:80",
            "[::1]",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "evil.example",
            "evil.example:8080",
            "127.0.0.1.evil.example",
            "",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }
}
