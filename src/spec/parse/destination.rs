//! The `destination` part of a spec: one object per destination kind.

use serde_json::Value;

use super::{join, names, Parser};
use crate::spec::model::Destination;
use crate::store::json_type_name;

impl Parser {
    pub(super) fn destination(&mut self, v: &Value) -> Option<Destination> {
        let path = "destination";
        let kind = match v.get("kind") {
            Some(k) => self.string(k, "destination.kind")?,
            None => {
                if v.is_object() {
                    self.err("destination.kind", "missing required field");
                } else {
                    self.err(
                        path,
                        format!("expected an object, found {}", json_type_name(v)),
                    );
                }
                return None;
            }
        };
        let fields: &[&str] = match kind.as_str() {
            "local" => &["kind", "path"],
            "s3" => &["kind", "bucket", "prefix", "region", "role_arn", "endpoint"],
            "gcs" => &["kind", "bucket", "prefix", "service_account"],
            "azure_blob" => &["kind", "account", "container", "prefix", "tenant_id"],
            "signed_url" => &["kind"],
            other => {
                self.err(
                    "destination.kind",
                    format!("{other:?} is not one of: s3, gcs, azure_blob, signed_url, local"),
                );
                return None;
            }
        };
        let obj = self.object(v, path, fields)?;
        let before = self.errors.len();
        let req = |p: &mut Parser, name: &str| -> String {
            let fp = join(path, name);
            match obj.get(name).filter(|x| !x.is_null()) {
                Some(x) => p.string(x, &fp).unwrap_or_default(),
                None => {
                    p.err(&fp, "missing required field");
                    String::new()
                }
            }
        };
        let opt = |p: &mut Parser, name: &str| -> Option<String> {
            obj.get(name)
                .filter(|x| !x.is_null())
                .and_then(|x| p.string(x, &join(path, name)))
        };
        let d = match kind.as_str() {
            "local" => Destination::Local {
                path: req(self, "path"),
            },
            "s3" => Destination::S3 {
                bucket: req(self, "bucket"),
                prefix: opt(self, "prefix").unwrap_or_default(),
                region: opt(self, "region"),
                role_arn: opt(self, "role_arn"),
                endpoint: opt(self, "endpoint"),
            },
            "gcs" => Destination::Gcs {
                bucket: req(self, "bucket"),
                prefix: opt(self, "prefix").unwrap_or_default(),
                service_account: opt(self, "service_account"),
            },
            "azure_blob" => Destination::AzureBlob {
                account: req(self, "account"),
                container: req(self, "container"),
                prefix: opt(self, "prefix").unwrap_or_default(),
                tenant_id: opt(self, "tenant_id").filter(|t| {
                    // A GUID or a verified domain: it becomes part of a URL.
                    let ok = !t.is_empty()
                        && t.len() <= 64
                        && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
                    if !ok {
                        self.err(
                            "destination.tenant_id",
                            format!("{t:?} is not a tenant id (a GUID or a domain such as contoso.onmicrosoft.com)"),
                        );
                    }
                    ok
                }),
            },
            _ => Destination::SignedUrl,
        };
        self.check_names(&d);
        (self.errors.len() == before).then_some(d)
    }

    /// The names that go into a host or a URL path, by their providers'
    /// rules (`names.rs`); a name already refused as missing is not
    /// checked again.
    fn check_names(&mut self, d: &Destination) {
        let mut check = |field: &str, value: &str, rule: &dyn Fn(&str) -> Result<(), String>| {
            if !value.is_empty() {
                if let Err(m) = rule(value) {
                    self.err(&format!("destination.{field}"), m);
                }
            }
        };
        match d {
            Destination::S3 {
                bucket,
                region,
                endpoint,
                ..
            } => {
                let custom = endpoint.is_some();
                check("bucket", bucket, &|b| names::s3_bucket(b, custom));
                if let Some(r) = region {
                    // An empty region is refused too: it is no region.
                    if let Err(m) = names::s3_region(r, custom) {
                        self.err("destination.region", m);
                    }
                }
            }
            Destination::Gcs { bucket, .. } => check("bucket", bucket, &names::gcs_bucket),
            Destination::AzureBlob {
                account, container, ..
            } => {
                check("account", account, &names::azure_account);
                check("container", container, &names::azure_container);
            }
            Destination::Local { .. } | Destination::SignedUrl => {}
        }
    }
}
