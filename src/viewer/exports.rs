//! The export pages: a published export's manifest (shards, rows, hashes,
//! splits, store version, spec), a verify view (every shard's presence,
//! size and SHA-256, as `nusomi export verify`), and its samples shard by
//! shard, decoded from the shard's own bytes in its format (a step
//! sample's chat rendered as turns).

use std::fmt::Write;

use object_store::ObjectStoreExt;

use crate::sink::{open_export_location, read_manifest, verify_location, Manifest};
use crate::spec::OutputFormat;

use super::page::{esc, url, Page, ViewError};
use super::samples::{decode, Sample};

/// Samples per page.
pub(crate) const SAMPLES_PER_PAGE: usize = 10;

fn format_of(m: &Manifest) -> Result<OutputFormat, ViewError> {
    OutputFormat::ALL
        .into_iter()
        .find(|f| f.as_str() == m.format)
        .ok_or_else(|| ViewError::bad_request(format!("unknown export format {:?}", m.format)))
}

/// The manifest at `location`, or a page saying why there is none.
pub(crate) async fn manifest(location: &str) -> Result<Manifest, ViewError> {
    let (store, prefix) = open_export_location(location)
        .map_err(|e| ViewError::not_found(format!("no export at {location}: {e}")))?;
    read_manifest(&store, &prefix)
        .await
        .map_err(|e| ViewError::not_found(format!("no export at {location}: {e}")))
}

/// `GET /export`.
pub(crate) async fn overview(location: &str) -> Result<Page, ViewError> {
    let m = manifest(location).await?;
    let loc = url(location);
    let mut body = format!(
        "<h1>Export <code>{}</code></h1><p><a id=verify href=\"/export/verify?location={loc}\">verify every shard</a></p><table id=summary>",
        esc(location)
    );
    let store_version = m
        .store_version
        .as_ref()
        .map(|v| serde_json::to_string(v).unwrap_or_default())
        .unwrap_or_default();
    for (k, v) in [
        ("format", m.format.clone()),
        ("rows", m.rows.to_string()),
        ("sessions", m.sessions.to_string()),
        ("actions", m.actions.to_string()),
        ("shards", m.shard_count.to_string()),
        ("digest", m.digest.clone()),
        ("as_of", m.as_of.clone().unwrap_or_default()),
        ("store version", store_version),
        ("written by", m.version.clone()),
    ] {
        let _ = write!(body, "<tr><th>{k}</th><td>{}</td></tr>", esc(&v));
    }
    body.push_str("</table>");
    if let Some(splits) = &m.splits {
        body.push_str("<h2>Splits</h2><table id=splits><tr><th>split</th><th>rows</th><th>sessions</th><th>shards</th></tr>");
        for s in splits {
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&s.name),
                s.rows,
                s.sessions,
                s.shards.len()
            );
        }
        body.push_str("</table>");
    }
    body.push_str("<h2>Shards</h2><table id=shards><tr><th>#</th><th>path</th><th>rows</th><th>bytes</th><th>sha256</th></tr>");
    for (i, s) in m.shards.iter().enumerate() {
        let _ = write!(
            body,
            "<tr><td>{i}</td><td><a href=\"/export/shards/{i}?location={loc}\">{}</a></td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            esc(&s.path),
            s.rows,
            s.bytes,
            esc(&s.sha256)
        );
    }
    body.push_str("</table>");
    let spec = serde_json::to_string_pretty(&m.spec).unwrap_or_default();
    let _ = write!(
        body,
        "<h2>Spec</h2><pre id=spec>{}</pre><h2>SQL</h2><pre>{}</pre>",
        esc(&spec),
        esc(m.sql.as_deref().unwrap_or(""))
    );
    Ok(Page::new("export", body))
}

/// `GET /export/verify`.
pub(crate) async fn verify(location: &str) -> Result<Page, ViewError> {
    manifest(location).await?;
    let report = verify_location(location).await?;
    let mut body = format!(
        "<h1>Verify <code>{}</code></h1><p><a href=\"/export?location={}\">← manifest</a></p>",
        esc(location),
        url(location)
    );
    if report.is_intact() {
        let _ = write!(
            body,
            "<div class=ok id=intact>intact: {} shards, {} bytes, every size and SHA-256 as the manifest lists</div>",
            report.shards, report.bytes
        );
    } else {
        body.push_str(
            "<div class=err id=mismatches><b>This export does not match its manifest:</b><ul>",
        );
        for m in &report.mismatches {
            let text = serde_json::to_value(m)
                .map(|v| {
                    format!(
                        "{}: {}",
                        v["path"].as_str().unwrap_or("?"),
                        v.as_object()
                            .map(|o| o
                                .iter()
                                .filter(|(k, _)| *k != "path")
                                .map(|(k, v)| format!("{k} {v}"))
                                .collect::<Vec<_>>()
                                .join(", "))
                            .unwrap_or_default()
                    )
                })
                .unwrap_or_default();
            let _ = write!(body, "<li class=mismatch>{}</li>", esc(&text));
        }
        body.push_str("</ul></div>");
    }
    Ok(Page::new("verify", body))
}

/// The samples of shard `n` of the export at `location`, checked against
/// the size its manifest lists.
pub(crate) async fn shard_samples(
    location: &str,
    n: usize,
) -> Result<(Manifest, Vec<Sample>), ViewError> {
    let m = manifest(location).await?;
    let format = format_of(&m)?;
    let Some(shard) = m.shards.get(n) else {
        return Err(ViewError::not_found(format!(
            "the export has {} shards; there is no shard {n}",
            m.shards.len()
        )));
    };
    let (store, prefix) = open_export_location(location)?;
    let key = crate::store::relative_key(&prefix, &shard.path);
    let got = store
        .get(&key)
        .await
        .map_err(|e| ViewError::not_found(format!("shard {}: {e}", shard.path)))?;
    if got.meta.size != shard.bytes {
        return Err(ViewError::bad_request(format!(
            "shard {} has {} bytes, its manifest lists {}: run verify",
            shard.path, got.meta.size, shard.bytes
        )));
    }
    let bytes = got.bytes().await.map_err(crate::Error::from)?;
    let samples = decode(format, bytes).map_err(|e| ViewError {
        status: axum::http::StatusCode::UNPROCESSABLE_ENTITY,
        message: format!("shard {} does not decode as {}: {e}", shard.path, m.format),
    })?;
    Ok((m, samples))
}

/// Where the page loads a sample's first image from.
fn image_src(n: usize, i: usize, s: &Sample, loc: &str) -> String {
    match s.image_files.first() {
        Some(file) if s.images.is_empty() => {
            format!("/export/files?location={loc}&path={}", url(file))
        }
        _ => format!("/export/shards/{n}/samples/{i}/images/0?location={loc}"),
    }
}

/// `GET /export/files?path=`: an image file of the export, one its
/// manifest lists (and of the size it lists).
pub(crate) async fn file(location: &str, path: &str) -> Result<Vec<u8>, ViewError> {
    let m = manifest(location).await?;
    let Some(listed) = m
        .images
        .as_ref()
        .and_then(|i| i.files.iter().find(|f| f.path == path))
    else {
        return Err(ViewError::not_found(format!(
            "the export's manifest lists no file {path}"
        )));
    };
    let (store, prefix) = open_export_location(location)?;
    let key = crate::store::relative_key(&prefix, &listed.path);
    let got = store
        .get(&key)
        .await
        .map_err(|e| ViewError::not_found(format!("file {path}: {e}")))?;
    if got.meta.size != listed.bytes {
        return Err(ViewError::bad_request(format!(
            "file {path} has {} bytes, its manifest lists {}: run verify",
            got.meta.size, listed.bytes
        )));
    }
    Ok(got.bytes().await.map_err(crate::Error::from)?.to_vec())
}

/// `GET /export/shards/{n}`.
pub(crate) async fn shard(location: &str, n: usize, page: usize) -> Result<Page, ViewError> {
    let (m, samples) = shard_samples(location, n).await?;
    let loc = url(location);
    let first = page * SAMPLES_PER_PAGE;
    let mut body = format!(
        "<p><a href=\"/export?location={loc}\">← manifest</a></p><h1>Shard {n} <small>{}</small></h1><p>{} samples; {}–{} shown</p>",
        esc(&m.shards[n].path),
        samples.len(),
        first,
        (first + SAMPLES_PER_PAGE).min(samples.len())
    );
    for (i, s) in samples
        .iter()
        .enumerate()
        .skip(first)
        .take(SAMPLES_PER_PAGE)
    {
        let _ = write!(
            body,
            "<section class=sample data-row=\"{i}\"><h3>sample {i}</h3>"
        );
        for (j, (name, _)) in s.images.iter().enumerate() {
            let _ = write!(
                body,
                "<figure><img loading=lazy class=sample-image src=\"/export/shards/{n}/samples/{i}/images/{j}?location={loc}\" alt=\"{}\" style=\"max-width:640px\"><figcaption>{}</figcaption></figure>",
                esc(name),
                esc(name)
            );
        }
        for file in &s.image_files {
            let _ = write!(
                body,
                "<figure><img loading=lazy class=sample-image src=\"/export/files?location={loc}&path={}\" alt=\"{}\" style=\"max-width:640px\"><figcaption>{}</figcaption></figure>",
                url(file),
                esc(file),
                esc(file)
            );
        }
        if let Some(chat) = s.chat.as_ref().and_then(|c| c.as_array()) {
            body.push_str("<div class=chat>");
            for turn in chat {
                let role = turn["role"]
                    .as_str()
                    .or(turn["from"].as_str())
                    .unwrap_or("?");
                let content = turn
                    .get("content")
                    .or(turn.get("value"))
                    .map(|c| match c {
                        serde_json::Value::String(s) => s.clone(),
                        other => serde_json::to_string_pretty(other).unwrap_or_default(),
                    })
                    .unwrap_or_default();
                let _ = write!(
                    body,
                    "<div class=turn><div class=role>{}</div>{}</div>",
                    esc(role),
                    esc(&content)
                );
            }
            body.push_str("</div>");
        }
        if let Some(drawn) = super::step_sample::drawn(s, &m.resolved) {
            let _ = write!(
                body,
                "<figure class=step-action data-convention=\"{}\" data-x=\"{}\" data-y=\"{}\">\
                 <div class=stage><img class=observation src=\"{}\" width={} height={} alt=observation>{}</div>\
                 <figcaption>the action, converted back from <code>{}</code> to the observation's pixels ({:.1}, {:.1})</figcaption></figure>",
                esc(&drawn.convention),
                drawn.x,
                drawn.y,
                image_src(n, i, s, &loc),
                drawn.width,
                drawn.height,
                super::overlay::svg(std::slice::from_ref(&drawn.action), drawn.width, drawn.height, drawn.width),
                esc(&drawn.convention),
                drawn.x,
                drawn.y,
            );
        }
        body.push_str("<table>");
        for (k, v) in &s.values {
            let v = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let shown: String = v.chars().take(2000).collect();
            let _ = write!(
                body,
                "<tr><th>{}</th><td><code>{}</code></td></tr>",
                esc(k),
                esc(&shown)
            );
        }
        body.push_str("</table></section>");
    }
    if first + SAMPLES_PER_PAGE < samples.len() {
        let _ = write!(
            body,
            "<p><a id=next href=\"/export/shards/{n}?location={loc}&page={}\">next samples</a></p>",
            page + 1
        );
    }
    Ok(Page::new(format!("shard {n}"), body))
}
