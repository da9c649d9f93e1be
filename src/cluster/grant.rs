//! [`Grant`]: what the process that submits an export lets that one job do
//! on a cluster — read one store root, write one destination, for one
//! workspace, under one export id — signed with the cluster's job key
//! (HMAC-SHA-256; the key is `--job-key-file`, else derived from the
//! cluster secret). It travels in the job's session settings
//! (`nusomi.grant`), which Ballista hands to every stage of the job, so an
//! executor checks each stage against it before running it (`guard.rs`):
//! every Parquet scan reads under the granted root, every sink writes the
//! granted destination for the granted workspace. Each partition's report
//! comes back sealed with the same key and export id ([`seal_report`]), so
//! a report is bound to its job and no peer without the key can forge one.

use datafusion::config::{ConfigEntry, ConfigExtension, ExtensionOptions};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::auth::JobKey;
use crate::engine::ShardJob;

/// Our session settings (`nusomi.*`), carried by Ballista from the client
/// to the scheduler and every task of the job. (Written out rather than
/// with `extensions_options!`, whose entries leave the prefix off, so
/// Ballista would send `grant` and the scheduler could not place it.)
#[derive(Debug, Clone, Default)]
pub struct NusomiOptions {
    /// The job's signed [`Grant`] (JSON; empty: none).
    pub grant: String,
}

impl ExtensionOptions for NusomiOptions {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }

    fn cloned(&self) -> Box<dyn ExtensionOptions> {
        Box::new(self.clone())
    }

    fn set(&mut self, key: &str, value: &str) -> datafusion::error::Result<()> {
        match key {
            "grant" => {
                self.grant = value.to_string();
                Ok(())
            }
            other => Err(datafusion::error::DataFusionError::Configuration(format!(
                "no setting nusomi.{other}"
            ))),
        }
    }

    fn entries(&self) -> Vec<ConfigEntry> {
        vec![ConfigEntry {
            key: "nusomi.grant".into(),
            value: Some(self.grant.clone()),
            description: "the job's signed grant (set by the submitting process)",
        }]
    }
}

impl ConfigExtension for NusomiOptions {
    const PREFIX: &'static str = "nusomi";
}

impl NusomiOptions {
    /// The grant text `config` carries (empty: none).
    pub(crate) fn grant_of(config: &datafusion::prelude::SessionConfig) -> &str {
        config
            .options()
            .extensions
            .get::<NusomiOptions>()
            .map(|o| o.grant.as_str())
            .unwrap_or_default()
    }
}

fn hmac(key: &JobKey, domain: &str, parts: &[&str]) -> Hmac<Sha256> {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(&key.0).expect("HMAC takes a key of any length");
    mac.update(domain.as_bytes());
    for p in parts {
        // Length-prefixed: no two part lists sign the same bytes.
        mac.update(&(p.len() as u64).to_be_bytes());
        mac.update(p.as_bytes());
    }
    mac
}

/// The MAC of `parts` under `key`, hex.
fn mac(key: &JobKey, domain: &str, parts: &[&str]) -> String {
    hex::encode(hmac(key, domain, parts).finalize().into_bytes())
}

/// Whether `tag` (hex) is the MAC of `parts` under `key` (compared in
/// constant time by the `hmac` crate).
fn checks(key: &JobKey, tag: &str, domain: &str, parts: &[&str]) -> bool {
    hex::decode(tag).is_ok_and(|t| hmac(key, domain, parts).verify_slice(&t).is_ok())
}

/// What one export may do on a cluster, signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The export id.
    pub export_id: String,
    /// The workspace it runs for.
    pub workspace_id: Option<String>,
    /// The store root its scans read under (`scheme://…/`).
    pub store_root: String,
    /// The destination its sink writes (the job's JSON text).
    pub destination: String,
    /// Whether STS may be called at the destination's endpoint.
    pub sts_from_destination: bool,
    /// HMAC-SHA-256 of the fields above, hex.
    pub mac: String,
}

const GRANT: &str = "nusomi-grant/1\n";
const REPORT: &str = "nusomi-report/1\n";

impl Grant {
    fn fields(&self) -> [&str; 5] {
        [
            &self.export_id,
            self.workspace_id.as_deref().unwrap_or("\u{0}"),
            &self.store_root,
            &self.destination,
            if self.sts_from_destination { "1" } else { "0" },
        ]
    }

    /// The grant of `job` reading the store at `store_root`, signed.
    pub(crate) fn sign(job: &ShardJob, store_root: &str, key: &JobKey) -> Grant {
        let mut g = Grant {
            export_id: job.export_id.clone(),
            workspace_id: job.workspace_id.clone(),
            store_root: store_root.to_string(),
            destination: job.destination.clone(),
            sts_from_destination: job.sts_from_destination,
            mac: String::new(),
        };
        g.mac = mac(key, GRANT, &g.fields());
        g
    }

    /// The grant of `job` reading the store at `store_root`, signed with
    /// this process's job key (its cluster secret, or NUSOMI_JOB_KEY_FILE).
    pub fn for_job(job: &ShardJob, store_root: &str) -> crate::error::Result<Grant> {
        Ok(Self::sign(
            job,
            store_root,
            super::auth::current()?.job_key(),
        ))
    }

    /// The grant a session's settings carry, checked against `key`.
    pub(crate) fn from_settings(text: &str, key: &JobKey) -> Result<Grant, String> {
        if text.is_empty() {
            return Err(
                "the job carries no grant (only exports the service signs run here)".into(),
            );
        }
        let g: Grant = serde_json::from_str(text)
            .map_err(|e| format!("the job's grant is unreadable: {e}"))?;
        if !checks(key, &g.mac, GRANT, &g.fields()) {
            return Err(
                "the job's grant is not signed with this cluster's job key (altered, or signed \
                 elsewhere)"
                    .into(),
            );
        }
        Ok(g)
    }

    /// Why the sink of `job` is not this grant's, if it is not.
    pub(crate) fn refuses_sink(&self, job: &ShardJob) -> Option<String> {
        let differs = [
            ("export id", job.export_id == self.export_id),
            ("workspace", job.workspace_id == self.workspace_id),
            ("destination", job.destination == self.destination),
            (
                "STS endpoint rule",
                job.sts_from_destination == self.sts_from_destination,
            ),
        ]
        .into_iter()
        .find(|(_, same)| !same);
        differs.map(|(what, _)| format!("the sink's {what} is not the one its grant signs"))
    }

    /// Whether `root` is the granted store root (a trailing `/` aside).
    pub(crate) fn names_root(&self, root: &str) -> bool {
        self.store_root.trim_end_matches('/') == root.trim_end_matches('/')
    }

    /// Whether the object at `url` lies under the granted store root.
    pub(crate) fn covers(&self, url: &str) -> bool {
        let root = if self.store_root.ends_with('/') {
            self.store_root.clone()
        } else {
            format!("{}/", self.store_root)
        };
        url.starts_with(&root) && !url[root.len()..].split('/').any(|s| s == ".." || s == ".")
    }
}

/// The seal of one partition's report (`json`) for `export_id`.
pub(crate) fn seal_report(key: &JobKey, export_id: &str, json: &str) -> String {
    mac(key, REPORT, &[export_id, json])
}

/// Whether `seal` is the seal of `json` for `export_id`.
pub(crate) fn report_sealed(key: &JobKey, export_id: &str, json: &str, seal: &str) -> bool {
    checks(key, seal, REPORT, &[export_id, json])
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A job of workspace `acme` into a local folder.
    pub(in crate::cluster) fn job() -> ShardJob {
        ShardJob {
            export_id: "exp_1".into(),
            destination: r#"{"kind":"local","path":"/srv/a"}"#.into(),
            workspace_id: Some("acme".into()),
            sts_from_destination: false,
            format: "jsonl".into(),
            shard_size_bytes: 1 << 20,
            part_bytes: 8 << 20,
            splits: vec![],
            steps: false,
            partitions: 2,
        }
    }

    #[test]
    fn a_grant_checks_with_its_key_only_and_any_change_breaks_it() {
        let key = JobKey([7; 32]);
        let g = Grant::sign(&job(), "file:///srv/store/", &key);
        let text = serde_json::to_string(&g).unwrap();
        assert_eq!(Grant::from_settings(&text, &key).unwrap(), g);
        assert!(Grant::from_settings(&text, &JobKey([8; 32])).is_err());
        assert!(Grant::from_settings("", &key)
            .unwrap_err()
            .contains("no grant"));
        for altered in [
            text.replace("/srv/a", "/srv/b"),
            text.replace("acme", "other"),
            text.replace("file:///srv/store/", "file:///"),
            text.replace(
                "\"sts_from_destination\":false",
                "\"sts_from_destination\":true",
            ),
        ] {
            assert_ne!(altered, text);
            let e = Grant::from_settings(&altered, &key).unwrap_err();
            assert!(e.contains("not signed"), "{e}");
        }
    }

    #[test]
    fn the_sink_and_scans_must_be_the_grants() {
        let key = JobKey([7; 32]);
        let g = Grant::sign(&job(), "file:///srv/store", &key);
        assert_eq!(g.refuses_sink(&job()), None);
        let mut other = job();
        other.destination = r#"{"kind":"local","path":"/srv/b"}"#.into();
        assert!(g.refuses_sink(&other).unwrap().contains("destination"));
        let mut other = job();
        other.workspace_id = None;
        assert!(g.refuses_sink(&other).unwrap().contains("workspace"));
        assert!(g.covers("file:///srv/store/frames/part-0.parquet"));
        assert!(!g.covers("file:///srv/store-other/x.parquet"));
        assert!(!g.covers("file:///srv/store/../etc/x.parquet"));
        assert!(!g.covers("file:///etc/passwd"));
    }

    #[test]
    fn the_grant_setting_round_trips_through_config_entries() {
        use datafusion::prelude::SessionConfig;
        let mut from = SessionConfig::new().with_option_extension(NusomiOptions::default());
        from.options_mut()
            .extensions
            .get_mut::<NusomiOptions>()
            .unwrap()
            .grant = "{\"x\": 1, \"y\": \"a,b\"}".into();
        let mut to = SessionConfig::new().with_option_extension(NusomiOptions::default());
        for e in from.options().entries() {
            if let Some(v) = e.value {
                let _ = to.options_mut().set(&e.key, &v);
            }
        }
        let got = to.options().extensions.get::<NusomiOptions>().unwrap();
        assert_eq!(got.grant, "{\"x\": 1, \"y\": \"a,b\"}");
    }

    #[test]
    fn reports_are_bound_to_their_export() {
        let key = JobKey([7; 32]);
        let seal = seal_report(&key, "exp_1", "{\"partition\":0}");
        assert!(report_sealed(&key, "exp_1", "{\"partition\":0}", &seal));
        assert!(!report_sealed(&key, "exp_2", "{\"partition\":0}", &seal));
        assert!(!report_sealed(&key, "exp_1", "{\"partition\":1}", &seal));
        assert!(!report_sealed(
            &JobKey([1; 32]),
            "exp_1",
            "{\"partition\":0}",
            &seal
        ));
    }
}
