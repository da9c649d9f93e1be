//! The JSON routes: create, get, list and cancel exports, the OpenAPI
//! document and the health check. Errors are `{"error": message}` (plus
//! `errors: [{field, message}]` for a refused spec).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::AppState;
use crate::jobs::{JobFilter, JobStatus, Rejected};
use crate::workspace::Workspace;

/// Largest page of `GET /v1/exports`.
pub(super) const MAX_PAGE: usize = 500;
/// Default page size.
pub(super) const DEFAULT_PAGE: usize = 50;

pub(super) fn error_body(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!("internal error: {e}");
    error_body(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
}

pub(super) async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

pub(super) async fn not_found() -> Response {
    error_body(StatusCode::NOT_FOUND, "no such route")
}

pub(super) async fn openapi_doc() -> Json<Value> {
    Json(super::openapi())
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .is_some_and(|m| {
            m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
        })
}

/// How much of an oversized body is read and discarded before answering
/// `413`, so the client sees the answer rather than a reset connection.
const DRAIN_LIMIT: usize = 64 << 20;

/// Reads a body of at most `max` bytes; None when it is larger (the excess
/// is drained up to [`DRAIN_LIMIT`]).
async fn read_limited(body: Body, declared: Option<usize>, max: usize) -> Option<Vec<u8>> {
    use futures::StreamExt;
    if declared.is_some_and(|n| n > DRAIN_LIMIT) {
        return None;
    }
    let mut out = Vec::new();
    let mut seen = 0usize;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else { return None };
        seen += chunk.len();
        if seen <= max {
            out.extend_from_slice(&chunk);
        } else if seen > DRAIN_LIMIT {
            return None;
        }
    }
    (seen <= max).then_some(out)
}

/// Field errors listed in one `400` at most.
const MAX_ERRORS: usize = 100;

pub(super) async fn create_export(
    State(state): State<AppState>,
    Extension(ws): Extension<Arc<Workspace>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let Some(body) = read_limited(body, declared, state.max_body_bytes).await else {
        return error_body(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {} bytes", state.max_body_bytes),
        );
    };
    if !is_json(&headers) {
        return error_body(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be an export spec with Content-Type: application/json",
        );
    }
    let Ok(text) = std::str::from_utf8(&body) else {
        return error_body(StatusCode::BAD_REQUEST, "the body is not UTF-8");
    };
    let jobs = Arc::clone(&state.jobs);
    let text = text.to_string();
    let submitted = match jobs.prepare(&ws, &text).await {
        // The database commit is blocking I/O (fsync).
        Ok(prepared) => {
            tokio::task::spawn_blocking(move || jobs.submit(&ws, &text, prepared)).await
        }
        Err(rejected) => Ok(Err(rejected)),
    };
    match submitted {
        Ok(Ok(record)) => {
            let mut r = (StatusCode::ACCEPTED, Json(record.to_api(None))).into_response();
            if let Ok(v) = header::HeaderValue::from_str(&format!("/v1/exports/{}", record.id)) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            r
        }
        Ok(Err(Rejected::Spec(errors))) => (
            StatusCode::BAD_REQUEST,
            Json(json!({
                "error": "invalid export spec",
                "errors": errors.0.iter().take(MAX_ERRORS).map(|e| json!({"field": e.field, "message": e.message})).collect::<Vec<_>>(),
            })),
        )
            .into_response(),
        Ok(Err(Rejected::Conflict { id })) => error_body(
            StatusCode::CONFLICT,
            format!("export {id} is writing another export to this destination; choose another prefix or wait for it"),
        ),
        Ok(Err(Rejected::Storage { used, limit })) => error_body(
            StatusCode::INSUFFICIENT_STORAGE,
            format!(
                "this workspace's signed_url exports kept by the service hold {used} bytes, its quota is {limit}: forget finished ones (DELETE /v1/exports/{{id}}) or export to a destination of its own"
            ),
        ),
        Ok(Err(Rejected::Quota { limit })) => {
            let mut r = error_body(
                StatusCode::TOO_MANY_REQUESTS,
                format!("this workspace has {limit} exports queued or running; retry when one finishes"),
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("30"));
            r
        }
        Ok(Err(Rejected::Internal(e))) => internal(e),
        Err(e) => internal(e),
    }
}

pub(super) async fn get_export(
    State(state): State<AppState>,
    Extension(ws): Extension<Arc<Workspace>>,
    Path(id): Path<String>,
) -> Response {
    let jobs = Arc::clone(&state.jobs);
    match tokio::task::spawn_blocking(move || jobs.get(&ws, &id).map(|j| (id, j))).await {
        Ok(Ok((_, Some(job)))) => Json(job).into_response(),
        Ok(Ok((id, None))) => error_body(StatusCode::NOT_FOUND, format!("no export {id:?}")),
        Ok(Err(e)) => internal(e),
        Err(e) => internal(e),
    }
}

pub(super) async fn verify_export(
    State(state): State<AppState>,
    Extension(ws): Extension<Arc<Workspace>>,
    Path(id): Path<String>,
) -> Response {
    match state.jobs.verify(&ws, &id).await {
        Ok(Some(report)) => Json(json!({
            "id": id,
            "intact": report.is_intact(),
            "shards": report.shards,
            "bytes": report.bytes,
            "mismatches": report.mismatches,
        }))
        .into_response(),
        Ok(None) => error_body(StatusCode::NOT_FOUND, format!("no completed export {id:?}")),
        Err(e @ crate::error::Error::Busy { .. }) => {
            let mut r = error_body(StatusCode::TOO_MANY_REQUESTS, e.to_string());
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("60"));
            r
        }
        Err(e @ crate::error::Error::TimedOut { .. }) => {
            error_body(StatusCode::GATEWAY_TIMEOUT, e.to_string())
        }
        // The export's folder cannot be verified as it is (a link in it).
        Err(e @ crate::error::Error::Config { .. }) => {
            error_body(StatusCode::CONFLICT, e.to_string())
        }
        Err(e) => internal(e),
    }
}

/// Query of `GET /v1/exports`.
#[derive(Debug, Deserialize)]
pub(super) struct ListQuery {
    workflow: Option<String>,
    status: Option<String>,
    tag: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

pub(super) async fn list_exports(
    State(state): State<AppState>,
    Extension(ws): Extension<Arc<Workspace>>,
    Query(q): Query<ListQuery>,
) -> Response {
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some(s) => match JobStatus::parse(s) {
            Some(st) => Some(st),
            None => {
                return error_body(
                    StatusCode::BAD_REQUEST,
                    format!("status: {s:?} is not one of: queued, running, completed, failed"),
                )
            }
        },
    };
    let limit = match q.limit.as_deref() {
        None | Some("") => DEFAULT_PAGE,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
            _ => {
                return error_body(
                    StatusCode::BAD_REQUEST,
                    format!("limit: {l:?} is not a number from 1 to {MAX_PAGE}"),
                )
            }
        },
    };
    let filter = JobFilter {
        workflow: q.workflow.filter(|s| !s.is_empty()),
        status,
        tag: q.tag.filter(|s| !s.is_empty()),
        workspace: None,
    };
    let jobs = Arc::clone(&state.jobs);
    let cursor = q.cursor.filter(|s| !s.is_empty());
    match tokio::task::spawn_blocking(move || jobs.list(&ws, &filter, limit, cursor.as_deref()))
        .await
    {
        Ok(Ok((data, next))) => Json(json!({"data": data, "next_cursor": next})).into_response(),
        Ok(Err(e)) => internal(e),
        Err(e) => internal(e),
    }
}

pub(super) async fn cancel_export(
    State(state): State<AppState>,
    Extension(ws): Extension<Arc<Workspace>>,
    Path(id): Path<String>,
) -> Response {
    let jobs = Arc::clone(&state.jobs);
    let (jobs2, ws2, id2) = (Arc::clone(&jobs), Arc::clone(&ws), id.clone());
    let looked = tokio::task::spawn_blocking(move || {
        let before = jobs.record(&ws, &id)?;
        match before {
            Some(r) if r.status.is_final() => Ok((id, Some((r, false)))),
            Some(_) => Ok((id.clone(), jobs.cancel(&ws, &id)?.map(|r| (r, true)))),
            None => Ok::<_, crate::error::Error>((id, None)),
        }
    })
    .await;
    match looked {
        Ok(Ok((_, Some((r, true))))) => {
            (StatusCode::ACCEPTED, Json(r.to_api(None))).into_response()
        }
        Ok(Ok((_, Some((_, false))))) => match jobs2.forget(&ws2, &id2).await {
            Ok(true) => StatusCode::NO_CONTENT.into_response(),
            Ok(false) => error_body(StatusCode::NOT_FOUND, format!("no export {id2:?}")),
            Err(e) => internal(e),
        },
        Ok(Ok((id, None))) => error_body(StatusCode::NOT_FOUND, format!("no export {id:?}")),
        Ok(Err(e)) => internal(e),
        Err(e) => internal(e),
    }
}
