//! [`DestinationPolicy`]: where a workspace of a hosted service may export.
//! Checked when a job is posted (a refusal is a `400` naming the field and
//! the rule) and again when it runs, which also resolves a `local` path
//! under the workspace's root.
//!
//! | kind | allowed when |
//! |---|---|
//! | `s3` | the bucket matches one of `buckets` (globs with `*`, which never matches `/`); without `role_arn` only if `server_identity`; an `endpoint` only if listed in `endpoints` exactly (`scheme://host:port`), so loopback, link-local and private hosts are out unless the operator lists them |
//! | `gcs` | `service_account` is an e-mail listed in `service_accounts` (key material or a file path is refused) |
//! | `azure_blob` | the account is listed in `accounts` |
//! | `local` | `local_root` is set; the path is relative, has no `..`, and no component under the root is a symlink |
//! | `signed_url` | always (the service's own storage, under the export id) |

use std::path::{Component, Path, PathBuf};

use crate::error::SpecError;
use crate::spec::Destination;
use crate::store::symlink_on_path;

/// Where a workspace may export.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DestinationPolicy {
    /// S3 rules; `None` refuses every `s3` destination.
    pub s3: Option<S3Policy>,
    /// GCS service accounts (e-mails) the workspace may export as.
    pub gcs_service_accounts: Vec<String>,
    /// Azure storage accounts it may export to.
    pub azure_accounts: Vec<String>,
    /// Folder its `local` destinations live under; `None` refuses them.
    pub local_root: Option<PathBuf>,
}

/// S3 rules of a workspace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct S3Policy {
    /// Bucket names or globs (`acme-*`).
    pub buckets: Vec<String>,
    /// S3-compatible endpoints allowed, exactly as `scheme://host:port`.
    pub endpoints: Vec<String>,
    /// Whether exports may use the service's own identity (no `role_arn`).
    pub server_identity: bool,
}

fn refuse(field: &str, message: impl Into<String>) -> SpecError {
    SpecError {
        field: format!("destination.{field}"),
        message: message.into(),
    }
}

/// `*` matches any run of characters but `/`; everything else itself.
/// (Bucket names are checked by AWS's rules when the spec is parsed and
/// cannot hold a `/`; the glob refuses one anyway.)
fn glob_match(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, rest)) => {
            let Some(tail) = name.strip_prefix(head) else {
                return false;
            };
            let run = tail.find('/').unwrap_or(tail.len());
            (0..=run)
                .filter(|i| tail.is_char_boundary(*i))
                .any(|i| glob_match(rest, &tail[i..]))
        }
    }
}

/// `scheme://host:port` of an endpoint URL, the default port filled in.
fn origin(endpoint: &str) -> Option<String> {
    let u = url::Url::parse(endpoint).ok()?;
    Some(format!(
        "{}://{}:{}",
        u.scheme(),
        u.host_str()?,
        u.port_or_known_default()?
    ))
}

fn is_email(s: &str) -> bool {
    let Some((user, domain)) = s.split_once('@') else {
        return false;
    };
    !user.is_empty()
        && domain.contains('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "@.-_+".contains(c))
}

impl DestinationPolicy {
    /// Checks `d` and returns the destination to use (a `local` path made
    /// absolute under the root), or the rule that refuses it.
    pub fn resolve(&self, d: &Destination) -> Result<Destination, SpecError> {
        match d {
            Destination::S3 {
                bucket,
                role_arn,
                endpoint,
                ..
            } => {
                let Some(p) = &self.s3 else {
                    return Err(refuse(
                        "kind",
                        "s3 destinations are not enabled for this workspace",
                    ));
                };
                if !p.buckets.iter().any(|g| glob_match(g, bucket)) {
                    return Err(refuse(
                        "bucket",
                        format!("{bucket:?} is not one of this workspace's buckets"),
                    ));
                }
                if role_arn.is_none() && !p.server_identity {
                    return Err(refuse(
                        "role_arn",
                        "required: this workspace exports through its own role \
                         (the service's identity is not allowed)",
                    ));
                }
                if let Some(e) = endpoint {
                    let allowed = origin(e).is_some_and(|o| {
                        p.endpoints.iter().any(|l| origin(l).as_deref() == Some(&o))
                    });
                    if !allowed {
                        return Err(refuse(
                            "endpoint",
                            "not an endpoint this workspace may use (the operator lists them)",
                        ));
                    }
                }
                Ok(d.clone())
            }
            Destination::Gcs {
                service_account, ..
            } => match service_account {
                Some(sa) if is_email(sa) && self.gcs_service_accounts.contains(sa) => Ok(d.clone()),
                Some(sa) if is_email(sa) => Err(refuse(
                    "service_account",
                    format!("{sa:?} is not one of this workspace's service accounts"),
                )),
                // Never echo it: it may be key material.
                Some(_) => Err(refuse(
                    "service_account",
                    "must be a service-account e-mail; key material and file paths are refused",
                )),
                None => Err(refuse(
                    "service_account",
                    "required: the service account (an e-mail) this workspace exports as",
                )),
            },
            Destination::AzureBlob { account, .. } => {
                if self.azure_accounts.contains(account) {
                    Ok(d.clone())
                } else {
                    Err(refuse(
                        "account",
                        format!("{account:?} is not one of this workspace's storage accounts"),
                    ))
                }
            }
            Destination::Local { path } => {
                let Some(root) = &self.local_root else {
                    return Err(refuse(
                        "kind",
                        "local destinations are not enabled for this workspace",
                    ));
                };
                let resolved = under_root(root, path).map_err(|m| refuse("path", m))?;
                Ok(Destination::Local {
                    path: resolved.display().to_string(),
                })
            }
            Destination::SignedUrl => Ok(Destination::SignedUrl),
        }
    }
}

impl DestinationPolicy {
    /// Whether `d`, a destination as [`Self::resolve`] returned it (a
    /// `local` path absolute under the root), is one this policy allows:
    /// how a cluster's executors re-check the jobs they are given.
    /// `signed_url` passes (the service's own storage, which executors open
    /// from their own `NUSOMI_SIGNED_STORAGE`).
    pub fn admits_resolved(&self, d: &Destination) -> Result<(), SpecError> {
        match d {
            Destination::Local { path } => {
                let Some(root) = &self.local_root else {
                    return Err(refuse(
                        "kind",
                        "local destinations are not enabled for this workspace",
                    ));
                };
                let rel = Path::new(path)
                    .strip_prefix(root)
                    .map_err(|_| refuse("path", "is not under the workspace's folder"))?;
                under_root(root, &rel.to_string_lossy())
                    .map(|_| ())
                    .map_err(|m| refuse("path", m))
            }
            other => self.resolve(other).map(|_| ()),
        }
    }
}

/// `root/rel` for a relative path without `..`, refusing any existing
/// component under the root that is a symlink (checked without following).
fn under_root(root: &Path, rel: &str) -> Result<PathBuf, String> {
    let rel = Path::new(rel);
    let mut out = root.to_path_buf();
    for c in rel.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err("must not contain '..'".into()),
            Component::RootDir | Component::Prefix(_) => {
                return Err("must be relative to the workspace's folder".into())
            }
        }
    }
    if out == root {
        return Err("must name a folder under the workspace's folder".into());
    }
    match symlink_on_path(root, rel) {
        Ok(Some(_)) => Err("goes through a symbolic link".into()),
        _ => Ok(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3(bucket: &str, role: bool, endpoint: Option<&str>) -> Destination {
        Destination::S3 {
            bucket: bucket.into(),
            prefix: "p".into(),
            region: None,
            role_arn: role.then(|| "arn:aws:iam::1:role/x".into()),
            endpoint: endpoint.map(Into::into),
        }
    }

    #[test]
    fn s3_rules() {
        let p = DestinationPolicy {
            s3: Some(S3Policy {
                buckets: vec!["acme-*".into(), "exact".into()],
                endpoints: vec!["http://127.0.0.1:8333".into()],
                server_identity: false,
            }),
            ..Default::default()
        };
        assert!(p.resolve(&s3("acme-train", true, None)).is_ok());
        assert!(p.resolve(&s3("exact", true, None)).is_ok());
        assert_eq!(
            p.resolve(&s3("other", true, None)).unwrap_err().field,
            "destination.bucket"
        );
        assert_eq!(
            p.resolve(&s3("acme-x", false, None)).unwrap_err().field,
            "destination.role_arn"
        );
        assert!(p
            .resolve(&s3("acme-x", true, Some("http://127.0.0.1:8333/")))
            .is_ok());
        for bad in [
            "http://169.254.169.254",
            "http://127.0.0.1:8334",
            "https://127.0.0.1:8333",
        ] {
            assert_eq!(
                p.resolve(&s3("acme-x", true, Some(bad))).unwrap_err().field,
                "destination.endpoint",
                "{bad}"
            );
        }
        assert!(DestinationPolicy::default()
            .resolve(&s3("acme-x", true, None))
            .is_err());
    }

    #[test]
    fn globs() {
        assert!(glob_match("a*c", "abbc") && glob_match("*", "") && !glob_match("a*", "ba"));
        // A `*` never matches a `/`.
        assert!(!glob_match("acme-*", "acme-x/../other") && !glob_match("*", "a/b"));
        assert!(glob_match("a*/b", "ax/b") && !glob_match("a*b", "a/b"));
    }

    #[test]
    fn gcs_takes_listed_emails_only_and_never_echoes_keys() {
        let p = DestinationPolicy {
            gcs_service_accounts: vec!["x@p.iam.gserviceaccount.com".into()],
            ..Default::default()
        };
        let gcs = |sa: &str| Destination::Gcs {
            bucket: "b".into(),
            prefix: "".into(),
            service_account: Some(sa.into()),
        };
        assert!(p.resolve(&gcs("x@p.iam.gserviceaccount.com")).is_ok());
        let key = r#"{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----abc"}"#;
        let e = p.resolve(&gcs(key)).unwrap_err();
        assert!(!e.message.contains("PRIVATE") && !e.message.contains("abc"));
        assert!(p.resolve(&gcs("/etc/key.json")).is_err());
    }

    #[test]
    fn local_paths_stay_under_the_root_without_symlinks() {
        let tmp = tempfile::TempDir::new().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("ok")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("link")).unwrap();
        let p = DestinationPolicy {
            local_root: Some(root.clone()),
            ..Default::default()
        };
        let local = |s: &str| Destination::Local { path: s.into() };
        assert_eq!(
            p.resolve(&local("ok/exp")).unwrap(),
            local(&root.join("ok/exp").display().to_string())
        );
        for bad in ["../x", "/srv/app", "link/x", "ok/../../x", ""] {
            assert!(p.resolve(&local(bad)).is_err(), "{bad}");
        }
        assert!(DestinationPolicy::default().resolve(&local("x")).is_err());
    }
}
