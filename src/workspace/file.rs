//! The workspaces file of `nusomi serve --workspaces FILE`:
//!
//! ```json
//! {"workspaces": [
//!   {"id": "ws_acme",
//!    "tokens_sha256": ["<hex sha256 of a bearer token>"],
//!    "store": "s3://sessions/acme",
//!    "max_active_jobs": 50,
//!    "max_records": 10000,
//!    "max_signed_bytes": 107374182400,
//!    "destinations": {
//!      "s3": {"buckets": ["acme-training", "acme-*"], "endpoints": [], "server_identity": false},
//!      "gcs": {"service_accounts": ["export@acme.iam.gserviceaccount.com"]},
//!      "azure_blob": {"accounts": ["acmedata"]},
//!      "local_root": null}}
//! ]}
//! ```
//!
//! A malformed file is refused whole, with the JSON path of the problem.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::policy::{DestinationPolicy, S3Policy};
use super::{
    Workspace, Workspaces, DEFAULT_MAX_ACTIVE_JOBS, DEFAULT_MAX_RECORDS, DEFAULT_MAX_SIGNED_BYTES,
};
use crate::error::{Error, Result};

fn bad(path: &str, message: impl Into<String>) -> Error {
    Error::Config {
        field: format!("workspaces file: {path}"),
        message: message.into(),
    }
}

fn object<'v>(v: &'v Value, path: &str, known: &[&str]) -> Result<&'v Map<String, Value>> {
    let obj = v
        .as_object()
        .ok_or_else(|| bad(path, "expected an object"))?;
    for k in obj.keys() {
        if !known.contains(&k.as_str()) {
            return Err(bad(
                &format!("{path}.{k}"),
                format!("unknown field (expected one of: {})", known.join(", ")),
            ));
        }
    }
    Ok(obj)
}

fn strings(v: Option<&Value>, path: &str) -> Result<Vec<String>> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, s)| {
                s.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| bad(&format!("{path}[{i}]"), "expected a string"))
            })
            .collect(),
        Some(_) => Err(bad(path, "expected a list of strings")),
    }
}

/// A whole number ≥ 1 at `o[key]`, or `default` when absent.
fn count(o: &Map<String, Value>, key: &str, default: u64, p: &str) -> Result<u64> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(n) => n
            .as_u64()
            .filter(|n| *n >= 1)
            .ok_or_else(|| bad(&format!("{p}.{key}"), "expected a whole number ≥ 1")),
    }
}

fn string(v: Option<&Value>, path: &str) -> Result<String> {
    match v.and_then(Value::as_str) {
        Some(s) if !s.trim().is_empty() => Ok(s.to_string()),
        _ => Err(bad(path, "required: a non-empty string")),
    }
}

fn digest(hex_text: &str, path: &str) -> Result<[u8; 32]> {
    let bytes = hex::decode(hex_text.trim()).map_err(|_| {
        bad(
            path,
            "not hex: list the SHA-256 of each token, never the token",
        )
    })?;
    bytes
        .try_into()
        .map_err(|_| bad(path, "not a SHA-256 digest (64 hex digits)"))
}

impl Workspaces {
    /// Reads the workspaces file at `path`.
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_json(&text)
    }

    /// Parses a workspaces file.
    pub fn from_json(text: &str) -> Result<Self> {
        let v: Value = serde_json::from_str(text).map_err(|e| {
            bad(
                "",
                format!(
                    "malformed JSON at line {} column {}: {e}",
                    e.line(),
                    e.column()
                ),
            )
        })?;
        let top = object(&v, "$", &["workspaces"])?;
        let list = top
            .get("workspaces")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("$.workspaces", "required: a list of workspaces"))?;
        if list.is_empty() {
            return Err(bad("$.workspaces", "lists no workspace"));
        }
        let mut ids = HashSet::new();
        let mut tokens = HashSet::new();
        let mut all = Vec::new();
        for (i, w) in list.iter().enumerate() {
            let p = format!("$.workspaces[{i}]");
            let ws = workspace(w, &p)?;
            if !ids.insert(ws.id.clone()) {
                return Err(bad(
                    &format!("{p}.id"),
                    format!("{:?} is listed twice", ws.id),
                ));
            }
            for (j, t) in ws.token_digests.iter().enumerate() {
                if !tokens.insert(*t) {
                    return Err(bad(
                        &format!("{p}.tokens_sha256[{j}]"),
                        "a token belongs to exactly one workspace; this one is listed before",
                    ));
                }
            }
            all.push(Arc::new(ws));
        }
        Ok(Workspaces { all })
    }
}

fn workspace(v: &Value, p: &str) -> Result<Workspace> {
    let o = object(
        v,
        p,
        &[
            "id",
            "tokens_sha256",
            "store",
            "destinations",
            "max_active_jobs",
            "max_records",
            "max_signed_bytes",
        ],
    )?;
    let id = string(o.get("id"), &format!("{p}.id"))?;
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        || id.len() > 64
    {
        return Err(bad(
            &format!("{p}.id"),
            format!("{id:?}: use at most 64 letters, digits, '_' or '-'"),
        ));
    }
    let tp = format!("{p}.tokens_sha256");
    let token_digests = strings(o.get("tokens_sha256"), &tp)?
        .iter()
        .enumerate()
        .map(|(i, h)| digest(h, &format!("{tp}[{i}]")))
        .collect::<Result<Vec<_>>>()?;
    if token_digests.is_empty() {
        return Err(bad(&tp, "required: at least one token digest"));
    }
    let store = string(o.get("store"), &format!("{p}.store"))?;
    let max_active_jobs = count(o, "max_active_jobs", DEFAULT_MAX_ACTIVE_JOBS as u64, p)? as usize;
    let max_records = count(o, "max_records", DEFAULT_MAX_RECORDS as u64, p)? as usize;
    let max_signed_bytes = count(o, "max_signed_bytes", DEFAULT_MAX_SIGNED_BYTES, p)?;
    let policy = match o.get("destinations") {
        None | Some(Value::Null) => DestinationPolicy::default(),
        Some(d) => destinations(d, &format!("{p}.destinations"))?,
    };
    Ok(Workspace {
        id,
        token_digests,
        store,
        policy,
        trusted: false,
        max_active_jobs,
        max_records,
        max_signed_bytes,
    })
}

fn destinations(v: &Value, p: &str) -> Result<DestinationPolicy> {
    let o = object(v, p, &["s3", "gcs", "azure_blob", "local_root"])?;
    let mut policy = DestinationPolicy::default();
    if let Some(s3) = o.get("s3").filter(|v| !v.is_null()) {
        let sp = format!("{p}.s3");
        let s = object(s3, &sp, &["buckets", "endpoints", "server_identity"])?;
        let endpoints = strings(s.get("endpoints"), &format!("{sp}.endpoints"))?;
        for (i, e) in endpoints.iter().enumerate() {
            let u = url::Url::parse(e)
                .map_err(|err| bad(&format!("{sp}.endpoints[{i}]"), format!("{e:?}: {err}")))?;
            if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
                return Err(bad(
                    &format!("{sp}.endpoints[{i}]"),
                    format!("{e:?}: expected scheme://host:port"),
                ));
            }
        }
        policy.s3 = Some(S3Policy {
            buckets: strings(s.get("buckets"), &format!("{sp}.buckets"))?,
            endpoints,
            server_identity: match s.get("server_identity") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => {
                    return Err(bad(
                        &format!("{sp}.server_identity"),
                        "expected true or false",
                    ))
                }
            },
        });
    }
    if let Some(g) = o.get("gcs").filter(|v| !v.is_null()) {
        let gp = format!("{p}.gcs");
        let g = object(g, &gp, &["service_accounts"])?;
        policy.gcs_service_accounts =
            strings(g.get("service_accounts"), &format!("{gp}.service_accounts"))?;
    }
    if let Some(a) = o.get("azure_blob").filter(|v| !v.is_null()) {
        let ap = format!("{p}.azure_blob");
        let a = object(a, &ap, &["accounts"])?;
        policy.azure_accounts = strings(a.get("accounts"), &format!("{ap}.accounts"))?;
    }
    match o.get("local_root") {
        None | Some(Value::Null) => {}
        Some(Value::String(r)) => {
            let root = PathBuf::from(r);
            if !root.is_absolute() {
                return Err(bad(&format!("{p}.local_root"), "must be an absolute path"));
            }
            policy.local_root = Some(root);
        }
        Some(_) => return Err(bad(&format!("{p}.local_root"), "expected a path or null")),
    }
    Ok(policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";

    #[test]
    fn a_valid_file_parses() {
        let w = Workspaces::from_json(&format!(
            r#"{{"workspaces": [{{"id": "ws_acme", "tokens_sha256": ["{D}"], "store": "/s",
                "destinations": {{"s3": {{"buckets": ["acme-*"], "endpoints": ["http://127.0.0.1:8333"]}},
                                 "local_root": "/tmp/x"}}}}]}}"#
        ))
        .unwrap();
        let ws = w.get("ws_acme").unwrap();
        assert!(!ws.trusted);
        assert_eq!(ws.max_active_jobs, DEFAULT_MAX_ACTIVE_JOBS);
        assert_eq!(w.authenticate(Some("foo")).unwrap().id, "ws_acme");
    }

    #[test]
    fn problems_are_named_by_json_path() {
        let err = |text: String| Workspaces::from_json(&text).unwrap_err().to_string();
        assert!(err(
            r#"{"workspaces": [{"id": "a", "tokens_sha256": ["foo"], "store": "/s"}]}"#.into()
        )
        .contains("$.workspaces[0].tokens_sha256[0]"));
        let two = format!(
            r#"{{"workspaces": [{{"id": "a", "tokens_sha256": ["{D}"], "store": "/s"}},
                               {{"id": "b", "tokens_sha256": ["{D}"], "store": "/s"}}]}}"#
        );
        assert!(err(two).contains("$.workspaces[1].tokens_sha256[0]"));
        let unknown = format!(
            r#"{{"workspaces": [{{"id": "a", "tokens_sha256": ["{D}"], "store": "/s",
                 "destinations": {{"s3": {{"bucket": []}}}}}}]}}"#
        );
        assert!(err(unknown).contains("$.workspaces[0].destinations.s3.bucket"));
        assert!(err("{".into()).contains("malformed JSON"));
    }
}
