//! The HTTP job API of SPEC §6 (`nusomi serve`): an axum router over a
//! [`JobService`]. Routes are listed once in [`ROUTES`], which the OpenAPI
//! document and its test are checked against. Bearer-token auth guards
//! every route but `/healthz` and signed downloads (which carry their own
//! signature); with no tokens configured the API is open and says so.

mod auth;
mod files;
mod openapi;
mod routes;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::Router;

pub use openapi::openapi;

use crate::jobs::JobService;

/// Every route: (method, path as OpenAPI writes it).
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/v1/openapi.json"),
    ("post", "/v1/exports"),
    ("get", "/v1/exports"),
    ("get", "/v1/exports/{id}"),
    ("delete", "/v1/exports/{id}"),
    ("get", "/v1/exports/{id}/verify"),
    ("get", "/v1/exports/{id}/files/{name}"),
];

/// Default limit of a request body (a spec): 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The job queue.
    pub jobs: Arc<JobService>,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
}

/// After a `413` the connection is closed: ask the client not to reuse it.
async fn close_after_unread_body(mut r: axum::response::Response) -> axum::response::Response {
    if r.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        r.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    r
}

/// The router: `/v1/…` and `/healthz`.
pub fn router(state: AppState) -> Router {
    let guarded = Router::new()
        .route("/v1/openapi.json", get(routes::openapi_doc))
        .route(
            "/v1/exports",
            get(routes::list_exports).post(routes::create_export),
        )
        .route(
            "/v1/exports/{id}",
            get(routes::get_export).delete(routes::cancel_export),
        )
        .route("/v1/exports/{id}/verify", get(routes::verify_export))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    Router::new()
        .route("/healthz", get(routes::healthz))
        .route("/v1/exports/{id}/files/{*name}", get(files::download))
        .merge(guarded)
        .fallback(routes::not_found)
        .layer(axum::middleware::map_response(close_after_unread_body))
        // `create_export` enforces the limit itself, draining what is over it.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}
