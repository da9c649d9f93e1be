//! The viewer's HTML: [`esc`] for text and attributes, [`Page`] the shell
//! every page shares (title, navigation, the one stylesheet, inline and
//! small: no page weighs more than a few KB before its images), and
//! [`ViewError`] the page a request that cannot be answered gets (what is
//! wrong, with its status; never a trace or a blank page), and
//! [`checked_id`] the one check of a session id taken from a URL.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// `s` escaped for HTML text and attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `s` escaped for a URL query value.
pub(crate) fn url(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

const STYLE: &str = r#"
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:8px 16px;display:flex;gap:16px;align-items:center}
header a{color:#cfe0ff;text-decoration:none}header b{margin-right:12px}
main{padding:16px}
table{border-collapse:collapse;background:#fff}td,th{border:1px solid #dde1e8;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#eef1f5}
form.filters{display:flex;flex-wrap:wrap;gap:8px;margin-bottom:12px}form.filters label{display:flex;flex-direction:column;font-size:12px}
pre{background:#fff;border:1px solid #dde1e8;padding:8px;overflow:auto;white-space:pre-wrap}
.timeline{display:flex;flex-wrap:wrap;gap:8px}
.frame{background:#fff;border:2px solid #dde1e8;padding:4px;width:200px;font-size:12px}
.frame.kept{border-color:#2f9e44}.frame.dropped{opacity:.55}
.frame img{width:200px;display:block}.frame code{overflow-wrap:anywhere}.events{padding-left:16px;margin:4px 0}
.flag{display:inline-block;padding:0 4px;border-radius:3px;background:#e7ecf3;margin-right:2px}
.flag.k{background:#ffe8a3}.flag.e{background:#cfe0ff}.flag.a{background:#ffc9c9}
.stage{position:relative;display:inline-block;line-height:0}
.stage svg{position:absolute;left:0;top:0}
.err{background:#fff0f0;border:1px solid #f1a5a5;padding:12px}
.ok{background:#ebfbee;border:1px solid #8ce99a;padding:12px}
.chat .turn{background:#fff;border:1px solid #dde1e8;margin:6px 0;padding:8px;white-space:pre-wrap}
.chat .role{font-weight:bold;text-transform:uppercase;font-size:11px;color:#5c677d}
"#;

/// A page: its title and body, in the shared shell.
pub(crate) struct Page {
    pub(crate) title: String,
    pub(crate) body: String,
}

impl Page {
    pub(crate) fn new(title: impl Into<String>, body: impl Into<String>) -> Self {
        Page {
            title: title.into(),
            body: body.into(),
        }
    }
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        let html = format!(
            "<!doctype html><html lang=en><head><meta charset=utf-8>\
             <meta name=viewport content=\"width=device-width\"><title>{} · nusomi view</title>\
             <style>{STYLE}</style></head><body><header><b>nusomi view</b>\
             <a href=\"/sessions\">sessions</a><a href=\"/export\">export</a></header>\
             <main>{}</main></body></html>",
            esc(&self.title),
            self.body
        );
        ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
    }
}

/// A request the viewer cannot answer, as a page saying why.
#[derive(Debug)]
pub(crate) struct ViewError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
}

impl ViewError {
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        ViewError {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        ViewError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
}

impl From<crate::Error> for ViewError {
    fn from(e: crate::Error) -> Self {
        let status = match &e {
            crate::Error::Spec(_) | crate::Error::Location { .. } => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ViewError {
            status,
            message: e.to_string(),
        }
    }
}

impl From<datafusion::error::DataFusionError> for ViewError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        ViewError::from(crate::Error::from(e))
    }
}

impl IntoResponse for ViewError {
    fn into_response(self) -> Response {
        let title = self
            .status
            .canonical_reason()
            .unwrap_or("error")
            .to_string();
        let body = format!(
            "<h1>{}</h1><div class=err id=error>{}</div>",
            esc(&title),
            esc(&self.message)
        );
        (self.status, Page::new(title, body)).into_response()
    }
}

/// `id` when it is a session id (and so safe in a SQL string literal).
pub(crate) fn checked_id(id: &str) -> Result<&str, ViewError> {
    if crate::store::is_valid_session_id(id) {
        Ok(id)
    } else {
        Err(ViewError::not_found(format!(
            "{id:?} is not a session id (letters, digits, `_` and `-`)"
        )))
    }
}
