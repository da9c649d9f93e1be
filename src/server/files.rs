//! `GET /v1/exports/{id}/files/{name}?expires=…&signature=…`: serves the
//! files of `signed_url` exports kept by the service, after checking the
//! HMAC link (`403` when it is missing, tampered or expired). Supports one
//! `Range: bytes=…` (`206`, or `416` when unsatisfiable) and streams the
//! object, never loading it whole.

use std::collections::HashMap;
use std::time::SystemTime;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use object_store::{GetOptions, GetRange, ObjectStoreExt};

use super::routes::error_body;
use super::AppState;
use crate::dest::ExportTarget;
use crate::spec::Destination;

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or("") {
        "parquet" => "application/vnd.apache.parquet",
        "arrow" => "application/vnd.apache.arrow.file",
        "jsonl" => "application/jsonl",
        "tar" => "application/x-tar",
        "json" => "application/json",
        "md" => "text/markdown; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Parses one `bytes=` range; None for a header this route ignores
/// (several ranges, other units), Err for a malformed one.
fn parse_range(v: &str) -> Option<Result<GetRange, ()>> {
    let spec = v.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    Some(match (a.is_empty(), b.is_empty()) {
        // `bytes=-0` asks for nothing: unsatisfiable.
        (true, false) => match b.parse::<u64>() {
            Ok(n) if n > 0 => Ok(GetRange::Suffix(n)),
            _ => Err(()),
        },
        (false, true) => a.parse().map(GetRange::Offset).map_err(|_| ()),
        (false, false) => match (a.parse::<u64>(), b.parse::<u64>()) {
            (Ok(a), Ok(b)) if a <= b => b
                .checked_add(1)
                .map(|end| GetRange::Bounded(a..end))
                .ok_or(()),
            _ => Err(()),
        },
        (true, true) => Err(()),
    })
}

pub(super) async fn download(
    State(state): State<AppState>,
    Path((id, name)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let cfg = state.jobs.dest_config();
    let forbidden = |m: String| error_body(StatusCode::FORBIDDEN, m);
    let Some(signer) = cfg.signing_key.as_ref() else {
        return forbidden("this service signs no links".into());
    };
    let (Some(expires), Some(signature)) = (q.get("expires"), q.get("signature")) else {
        return forbidden("a signed link needs expires and signature".into());
    };
    if let Err(e) = signer.verify(&id, &name, expires, signature, SystemTime::now()) {
        return forbidden(format!("link refused: {e}"));
    }
    // A file of the export: a name, or a split folder and a name.
    let parts: Vec<&str> = name.split('/').collect();
    if parts.len() > 2 || parts.iter().any(|p| p.is_empty() || p.starts_with('.')) {
        return error_body(StatusCode::NOT_FOUND, "no such file");
    }
    let target = match ExportTarget::open(&Destination::SignedUrl, &id, cfg) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!("signed storage: {e}");
            return error_body(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
        }
    };
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_range);
    let path = crate::store::relative_key(&target.prefix, &name);
    let range = match range {
        Some(Err(())) => return unsatisfiable(&target, &path, "malformed Range").await,
        Some(Ok(r)) => Some(r),
        None => None,
    };
    if name == crate::sink::ExportLayout::MANIFEST {
        // Served with its shard links signed now, so a manifest fetched
        // through a fresh link never lists expired ones.
        let read = crate::sink::bytes_if_any(&target.store, &path, crate::sink::MANIFEST_LIMIT);
        return match read.await {
            Ok(Some(b)) => resigned_manifest(&b, &id, cfg, signer),
            Ok(None) => error_body(StatusCode::NOT_FOUND, "no such file"),
            Err(e) => {
                tracing::error!("download {path}: {e}");
                error_body(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
            }
        };
    }
    let opts = GetOptions {
        range: range.clone(),
        ..Default::default()
    };
    let got = match target.store.get_opts(&path, opts).await {
        Ok(g) => g,
        Err(object_store::Error::NotFound { .. }) => {
            return error_body(StatusCode::NOT_FOUND, "no such file")
        }
        Err(e) if range.is_some() && e.to_string().to_lowercase().contains("range") => {
            return unsatisfiable(&target, &path, "range not satisfiable").await
        }
        Err(e) => {
            tracing::error!("download {path}: {e}");
            return error_body(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
        }
    };
    let size = got.meta.size;
    let (start, end) = (got.range.start, got.range.end);
    let status = if range.is_some() {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let body = Body::from_stream(got.into_stream().map_err(std::io::Error::other));
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(&name)),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(&(end - start).to_string()) {
        h.insert(header::CONTENT_LENGTH, v);
    }
    if status == StatusCode::PARTIAL_CONTENT {
        if let Ok(v) =
            HeaderValue::from_str(&format!("bytes {start}-{}/{size}", end.saturating_sub(1)))
        {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    r
}

/// `416` with `Content-Range: bytes */SIZE` (RFC 9110 §15.5.17).
async fn unsatisfiable(
    target: &ExportTarget,
    path: &object_store::path::Path,
    why: &str,
) -> Response {
    let size = match target.store.head(path).await {
        Ok(m) => m.size,
        Err(object_store::Error::NotFound { .. }) => {
            return error_body(StatusCode::NOT_FOUND, "no such file")
        }
        Err(e) => {
            tracing::error!("download {path}: {e}");
            return error_body(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
        }
    };
    let mut r = error_body(StatusCode::RANGE_NOT_SATISFIABLE, why);
    if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
        r.headers_mut().insert(header::CONTENT_RANGE, v);
    }
    r
}

/// The stored manifest with every shard (image file, loader index) `url` of this service and
/// `links_expire_at` renewed for the configured lifetime.
fn resigned_manifest(
    stored: &[u8],
    id: &str,
    cfg: &crate::dest::DestConfig,
    signer: &crate::dest::UrlSigner,
) -> Response {
    let Ok(mut m) = serde_json::from_slice::<serde_json::Value>(stored) else {
        return error_body(StatusCode::INTERNAL_SERVER_ERROR, "unreadable manifest");
    };
    let base = &cfg.public_url;
    let expires = SystemTime::now() + cfg.link_ttl;
    let mut renewed = false;
    let mut lists: Vec<&mut Vec<serde_json::Value>> = Vec::new();
    let obj = m.as_object_mut();
    if let Some(o) = obj {
        for (k, v) in o.iter_mut() {
            match (k.as_str(), v) {
                ("shards" | "index_files", serde_json::Value::Array(a)) => lists.push(a),
                // Image files of a JSON Lines step export.
                ("images", serde_json::Value::Object(i)) => {
                    if let Some(serde_json::Value::Array(a)) = i.get_mut("files") {
                        lists.push(a);
                    }
                }
                _ => {}
            }
        }
    }
    for shards in lists {
        for s in shards.iter_mut() {
            let own = s["url"]
                .as_str()
                .is_some_and(|u| crate::dest::UrlSigner::is_own_link(u, base, id));
            if let (true, Some(p)) = (own, s["path"].as_str().map(str::to_string)) {
                s["url"] = serde_json::Value::String(signer.link(base, id, &p, expires));
                renewed = true;
            }
        }
    }
    if renewed {
        m["links_expire_at"] = serde_json::Value::String(crate::spec::format_instant(
            chrono::DateTime::<chrono::Utc>::from(expires),
        ));
    }
    let mut body = serde_json::to_vec_pretty(&m).unwrap_or_default();
    body.push(b'\n');
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9"), Some(Ok(GetRange::Bounded(0..10))));
        assert_eq!(parse_range("bytes=5-"), Some(Ok(GetRange::Offset(5))));
        assert_eq!(parse_range("bytes=-7"), Some(Ok(GetRange::Suffix(7))));
        assert_eq!(parse_range("bytes=9-3"), Some(Err(())));
        assert_eq!(parse_range("bytes=a-b"), Some(Err(())));
        assert_eq!(parse_range("bytes=-0"), Some(Err(())));
        assert_eq!(parse_range(&format!("bytes=0-{}", u64::MAX)), Some(Err(())));
        assert_eq!(parse_range("bytes=0-1,5-6"), None);
        assert_eq!(parse_range("items=0-1"), None);
    }
}
