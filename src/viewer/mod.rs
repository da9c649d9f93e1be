//! `nusomi view`: a local web viewer of a store and its exports, served on
//! loopback behind a token printed with its URL (no port answers a peer
//! without it). Pages: the session list with the export filters
//! (`sessions.rs`), a session's timeline and a frame with its actions
//! drawn (`overlay.rs`), frame images and server-made thumbnails
//! (`images.rs`), an export's manifest, verification and samples
//! (`exports.rs`, decoded by `samples.rs`; a step sample's action drawn on
//! its observation after converting it back from the spec's coordinate
//! convention: `step_sample.rs`). Every page is HTML made here
//! with one inline stylesheet (`page.rs`): nothing is fetched from
//! elsewhere, it works offline, and a page is a few KB before its images.
//! Requests that cannot be answered get a page saying what is wrong
//! ([`page::ViewError`]).

mod exports;
mod images;
mod overlay;
mod page;
mod samples;
mod sessions;
mod step_sample;

use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use datafusion::prelude::SessionContext;

use crate::store::SealedStore;

use page::{Page, ViewError};

/// What a viewer shows: a store, an export, or both.
pub struct Viewer {
    store: Option<Arc<SealedStore>>,
    export: Option<String>,
    token: String,
}

impl Viewer {
    /// A viewer of `store` and/or the export at `export` (a folder, its
    /// manifest.json, or a URL `nusomi export verify` takes), answering
    /// only requests that carry `token` (as `?token=` once, then its
    /// cookie).
    pub fn new(
        store: Option<Arc<SealedStore>>,
        export: Option<String>,
        token: impl Into<String>,
    ) -> Self {
        Viewer {
            store,
            export,
            token: token.into(),
        }
    }

    fn context(&self) -> Result<SessionContext, ViewError> {
        let Some(store) = &self.store else {
            return Err(ViewError::not_found(
                "this viewer was opened on an export, not a store: there are no sessions to show",
            ));
        };
        let ctx = crate::engine::new_context();
        crate::engine::register(&ctx, store)?;
        Ok(ctx)
    }

    fn location<'a>(&'a self, q: &'a LocationQuery) -> Result<&'a str, ViewError> {
        q.location
            .as_deref()
            .filter(|l| !l.is_empty())
            .or(self.export.as_deref())
            .ok_or_else(|| {
                ViewError::not_found(
                    "no export to show: open one with ?location=FOLDER_OR_URL, or start \
                     `nusomi view` on an export (or with --export)",
                )
            })
    }
}

/// A fresh random token for a viewer.
pub fn new_token() -> String {
    use rand::Rng;
    let bytes: [u8; 16] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const COOKIE: &str = "nusomi_view";

/// The viewer's routes.
pub fn router(viewer: Viewer) -> Router {
    let viewer = Arc::new(viewer);
    Router::new()
        .route("/", get(index))
        .route("/sessions", get(sessions_list))
        .route("/sessions/{id}", get(session))
        .route("/sessions/{id}/frames/{idx}", get(frame))
        .route("/images/{id}/{idx}", get(image))
        .route("/thumbs/{id}/{idx}", get(thumb))
        .route("/export", get(export_overview))
        .route("/export/verify", get(export_verify))
        .route("/export/shards/{n}", get(export_shard))
        .route(
            "/export/shards/{n}/samples/{i}/images/{j}",
            get(sample_image),
        )
        .route("/export/files", get(export_file))
        .fallback(|| async { ViewError::not_found("no such page") })
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&viewer),
            authenticate,
        ))
        .with_state(viewer)
}

fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Lets a request through when it carries the token: `?token=` (then
/// remembered in a same-site cookie) or the cookie.
async fn authenticate(State(v): State<Arc<Viewer>>, req: Request, next: Next) -> Response {
    let token = v.token.as_bytes();
    let in_query = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.strip_prefix("token="))
        .any(|t| same(t.as_bytes(), token));
    let in_cookie = req
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(';'))
        .filter_map(|c| {
            c.trim()
                .strip_prefix(COOKIE)
                .and_then(|c| c.strip_prefix('='))
        })
        .any(|t| same(t.as_bytes(), token));
    if !in_query && !in_cookie {
        return ViewError {
            status: StatusCode::UNAUTHORIZED,
            message: "this viewer answers only the URL `nusomi view` printed (it carries a token)"
                .into(),
        }
        .into_response();
    }
    let mut response = next.run(req).await;
    if in_query {
        if let Ok(cookie) = HeaderValue::from_str(&format!(
            "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
            v.token
        )) {
            response.headers_mut().insert(header::SET_COOKIE, cookie);
        }
    }
    response
}

async fn index(State(v): State<Arc<Viewer>>) -> Redirect {
    Redirect::to(if v.store.is_some() {
        "/sessions"
    } else {
        "/export"
    })
}

async fn sessions_list(
    State(v): State<Arc<Viewer>>,
    Query(q): Query<sessions::ListQuery>,
) -> Result<Page, ViewError> {
    sessions::list(&v.context()?, &q).await
}

async fn session(
    State(v): State<Arc<Viewer>>,
    Path(id): Path<String>,
    Query(q): Query<sessions::SamplingQuery>,
) -> Result<Page, ViewError> {
    sessions::session(&v.context()?, &id, &q).await
}

async fn frame(
    State(v): State<Arc<Viewer>>,
    Path((id, idx)): Path<(String, i64)>,
    Query(q): Query<sessions::SamplingQuery>,
) -> Result<Page, ViewError> {
    sessions::frame(&v.context()?, &id, idx, &q).await
}

async fn image(
    State(v): State<Arc<Viewer>>,
    Path((id, idx)): Path<(String, i64)>,
) -> Result<Response, ViewError> {
    let (bytes, mime) = images::frame_image(&v.context()?, &id, idx).await?;
    Ok(images::image_response(bytes, mime))
}

async fn thumb(
    State(v): State<Arc<Viewer>>,
    Path((id, idx)): Path<(String, i64)>,
) -> Result<Response, ViewError> {
    let (bytes, _) = images::frame_image(&v.context()?, &id, idx).await?;
    let small = tokio::task::spawn_blocking(move || images::thumbnail(&bytes, images::THUMB_WIDTH))
        .await
        .map_err(|e| ViewError::from(crate::Error::from(e)))??;
    Ok(images::image_response(small, "image/png"))
}

/// `?location=` of the export pages.
#[derive(Debug, Default, serde::Deserialize)]
struct LocationQuery {
    location: Option<String>,
    #[serde(default)]
    page: usize,
    path: Option<String>,
}

async fn export_file(
    State(v): State<Arc<Viewer>>,
    Query(q): Query<LocationQuery>,
) -> Result<Response, ViewError> {
    let path = q.path.as_deref().unwrap_or("");
    let bytes = exports::file(v.location(&q)?, path).await?;
    let mime = images::sniff(&bytes);
    Ok(images::image_response(bytes, mime))
}

async fn export_overview(
    State(v): State<Arc<Viewer>>,
    Query(q): Query<LocationQuery>,
) -> Result<Page, ViewError> {
    exports::overview(v.location(&q)?).await
}

async fn export_verify(
    State(v): State<Arc<Viewer>>,
    Query(q): Query<LocationQuery>,
) -> Result<Page, ViewError> {
    exports::verify(v.location(&q)?).await
}

async fn export_shard(
    State(v): State<Arc<Viewer>>,
    Path(n): Path<usize>,
    Query(q): Query<LocationQuery>,
) -> Result<Page, ViewError> {
    exports::shard(v.location(&q)?, n, q.page).await
}

async fn sample_image(
    State(v): State<Arc<Viewer>>,
    Path((n, i, j)): Path<(usize, usize, usize)>,
    Query(q): Query<LocationQuery>,
) -> Result<Response, ViewError> {
    let (_, samples) = exports::shard_samples(v.location(&q)?, n).await?;
    let Some((_, bytes)) = samples
        .into_iter()
        .nth(i)
        .and_then(|s| s.images.into_iter().nth(j))
    else {
        return Err(ViewError::not_found(format!(
            "shard {n} has no image {j} in sample {i}"
        )));
    };
    let mime = images::sniff(&bytes);
    Ok(images::image_response(bytes, mime))
}
