//! The typed export spec of SPEC §4 ([`ExportSpec`] and the values it is
//! made of: formats, sampling, destinations, filters) and its serialised
//! `resolved` form for the manifest. Parsing and validation live in
//! `parse.rs`.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::time::format_instant;
use crate::store::{ActorKind, Outcome};

/// Default shard size: 256 MiB.
pub const DEFAULT_SHARD_SIZE_BYTES: u64 = 268_435_456;
/// Smallest accepted shard size.
pub const MIN_SHARD_SIZE_BYTES: u64 = 4096;

/// Largest shard size cap of an MDS export: MDS sample offsets are 32-bit.
pub const MAX_MDS_SHARD_SIZE_BYTES: u64 = u32::MAX as u64;

/// The one rule for a shard size cap, applied by the spec parser, `COPY …
/// OPTIONS ('shard_size_bytes' …)` and `DataFrame::write_shards` alike: at
/// least [`MIN_SHARD_SIZE_BYTES`], and for `mds` at most
/// [`MAX_MDS_SHARD_SIZE_BYTES`]. The error says what is wrong with `n`.
pub fn check_shard_size(n: i64, format: OutputFormat) -> Result<u64, String> {
    match u64::try_from(n) {
        Ok(n) if n < MIN_SHARD_SIZE_BYTES => {
            Err(format!("{n} is below the minimum {MIN_SHARD_SIZE_BYTES}"))
        }
        Ok(n) if format == OutputFormat::Mds && n > MAX_MDS_SHARD_SIZE_BYTES => Err(format!(
            "{n} is above {MAX_MDS_SHARD_SIZE_BYTES}, the most an MDS shard can hold (its offsets are 32-bit)"
        )),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{n} is below the minimum {MIN_SHARD_SIZE_BYTES}")),
    }
}

/// Output format of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutputFormat {
    /// Parquet shards (Hugging Face–compatible image column).
    Parquet,
    /// WebDataset tar shards.
    Webdataset,
    /// JSON Lines shards (images as data URLs).
    Jsonl,
    /// Arrow IPC file shards.
    Arrow,
    /// MosaicML Streaming MDS shards with an `index.json`.
    Mds,
}

impl OutputFormat {
    /// Every format.
    pub const ALL: [OutputFormat; 5] = [
        OutputFormat::Parquet,
        OutputFormat::Webdataset,
        OutputFormat::Jsonl,
        OutputFormat::Arrow,
        OutputFormat::Mds,
    ];

    /// The spec's name for it.
    pub fn as_str(self) -> &'static str {
        self.names().0
    }

    /// File extension of its shards (`shard-000000.<ext>`).
    pub fn extension(self) -> &'static str {
        self.names().1
    }

    /// The name `COPY … STORED AS` knows it by (DataFusion's own `parquet`,
    /// `arrow` and `json` keep their meaning).
    pub fn sql_name(self) -> &'static str {
        self.names().2
    }

    /// The one table of a format's names: spec, extension, SQL.
    fn names(self) -> (&'static str, &'static str, &'static str) {
        match self {
            OutputFormat::Parquet => ("parquet", "parquet", "nusomi_parquet"),
            OutputFormat::Webdataset => ("webdataset", "tar", "webdataset"),
            OutputFormat::Jsonl => ("jsonl", "jsonl", "nusomi_jsonl"),
            OutputFormat::Arrow => ("arrow", "arrow", "nusomi_arrow"),
            OutputFormat::Mds => ("mds", "mds", "nusomi_mds"),
        }
    }
}

/// Frame sampling mode (SPEC §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SamplingMode {
    /// Frames with at least one event.
    EventOnly,
    /// The first frame of each `interval_ms` window of `t_ms`.
    EveryNMs,
    /// Keyframes.
    KeyframesOnly,
    /// Every frame.
    All,
}

impl SamplingMode {
    /// Every mode.
    pub const ALL: [SamplingMode; 4] = [
        SamplingMode::EventOnly,
        SamplingMode::EveryNMs,
        SamplingMode::KeyframesOnly,
        SamplingMode::All,
    ];

    /// The spec's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            SamplingMode::EventOnly => "event_only",
            SamplingMode::EveryNMs => "every_n_ms",
            SamplingMode::KeyframesOnly => "keyframes_only",
            SamplingMode::All => "all",
        }
    }
}

/// `frame_sampling`, with defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameSampling {
    /// The mode (default `event_only`).
    pub mode: SamplingMode,
    /// Window length for `every_n_ms` (> 0); `None` for other modes.
    pub interval_ms: Option<i64>,
    /// Also keep every action frame (default `true`).
    pub keep_action_frames: bool,
}

/// Where an export goes (SPEC §4 destinations).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// A local folder.
    Local {
        /// Folder path.
        path: String,
    },
    /// Amazon S3 or an S3-compatible store.
    S3 {
        /// Bucket.
        bucket: String,
        /// Key prefix.
        prefix: String,
        /// Region.
        region: Option<String>,
        /// Role assumed with the workspace id as external id.
        role_arn: Option<String>,
        /// Endpoint of an S3-compatible store.
        endpoint: Option<String>,
    },
    /// Google Cloud Storage.
    Gcs {
        /// Bucket.
        bucket: String,
        /// Object prefix.
        prefix: String,
        /// Service account key file or e-mail.
        service_account: Option<String>,
    },
    /// Azure Blob Storage.
    AzureBlob {
        /// Storage account.
        account: String,
        /// Container.
        container: String,
        /// Blob prefix.
        prefix: String,
        /// The customer's Entra ID tenant: the service's multi-tenant app
        /// gets its token there.
        tenant_id: Option<String>,
    },
    /// Kept by the service; the manifest lists time-limited URLs.
    SignedUrl,
}

/// Session filters of a spec, times resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionFilter {
    /// Any of these outcomes (empty = any).
    pub outcomes: Vec<Outcome>,
    /// `started_at` ≥ this.
    pub since: Option<DateTime<Utc>>,
    /// `started_at` < this.
    pub until: Option<DateTime<Utc>>,
    /// Any of these actor kinds (empty = any).
    pub actor_kinds: Vec<ActorKind>,
    /// `duration_ms` ≥ this.
    pub min_duration_ms: Option<i64>,
    /// `duration_ms` ≤ this.
    pub max_duration_ms: Option<i64>,
    /// Sessions carrying any of these tags (empty = any).
    pub tags: Vec<String>,
    /// Sessions whose paths contain any of these ids (empty = any).
    pub paths: Vec<String>,
    /// Sessions left out.
    pub exclude_session_ids: Vec<String>,
}

/// What groups sessions for [`Splits`]: every session of a group goes to
/// the same split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SplitKey {
    /// Each session is its own group (the default).
    SessionId,
    /// All sessions of a workflow.
    Workflow,
    /// Sessions sharing their smallest `paths` id (sessions without paths
    /// are their own group).
    Path,
    /// Sessions of one actor (sessions without `actor_id` are their own group).
    ActorId,
}

impl SplitKey {
    /// Every key.
    pub const ALL: [SplitKey; 4] = [
        SplitKey::SessionId,
        SplitKey::Workflow,
        SplitKey::Path,
        SplitKey::ActorId,
    ];

    /// The spec's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            SplitKey::SessionId => "session_id",
            SplitKey::Workflow => "workflow",
            SplitKey::Path => "path",
            SplitKey::ActorId => "actor_id",
        }
    }
}

/// `splits`: named fractions of the groups, assigned by a stable hash
/// (`split_of`); each split is its own shard series.
#[derive(Debug, Clone, PartialEq)]
pub struct Splits {
    /// `(name, fraction)` in byte order of the names: the order hash
    /// ranges are laid out in, and the order of the shard series.
    pub parts: Vec<(String, f64)>,
    /// What groups sessions.
    pub by: SplitKey,
    /// Mixed into the hash: another salt gives another assignment.
    pub salt: String,
}

/// The pattern names `redact.patterns` knows besides custom regexes.
pub const BUILTIN_PATTERNS: [&str; 4] = ["email", "credit_card", "phone", "iban"];

/// `redact`: what is masked before anything is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redaction {
    /// Match the patterns also across a typing run (consecutive `type`
    /// actions of a session, joined), so text typed in chunks is found.
    pub typed_text: bool,
    /// Built-in pattern names ([`BUILTIN_PATTERNS`]) and custom regexes,
    /// matched in every string of every event's `data`.
    pub patterns: Vec<String>,
    /// Paint `{"type": "redact", "data": {x, y, w, h}}` rectangles over
    /// frames from the frame carrying the event on (default true).
    pub rectangles: bool,
}

/// A validated export spec.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportSpec {
    /// The spec as given.
    pub raw: Value,
    /// Workflows to export (at least one).
    pub workflows: Vec<String>,
    /// Session filters.
    pub filter: SessionFilter,
    /// Output format.
    pub format: OutputFormat,
    /// Frame sampling.
    pub sampling: FrameSampling,
    /// Destination, if given.
    pub destination: Option<Destination>,
    /// The export's label (`tag`).
    pub tag: Option<String>,
    /// Snapshot instant: only sessions sealed at or before it are exported.
    pub as_of: DateTime<Utc>,
    /// Shard size cap in bytes.
    pub shard_size_bytes: u64,
    /// Splits, if asked for.
    pub splits: Option<Splits>,
    /// Redaction, if asked for.
    pub redact: Option<Redaction>,
    /// `"unit": "step"`: one row per action instead of one per frame.
    pub steps: Option<super::steps::StepUnit>,
    /// Independent partitions the export is split into (1: one shard
    /// series, as before). A session's rows all go to partition
    /// [`crate::spec::partition_of`]`(session_id, partitions)`; each
    /// partition is sharded and ordered on its own.
    pub partitions: u32,
}

/// The most partitions an export may be split into.
pub const MAX_PARTITIONS: i64 = 4096;

/// `Ok` when `n` is a valid partition count (1 to [`MAX_PARTITIONS`]).
pub fn check_partitions(n: i64) -> Result<u32, String> {
    if (1..=MAX_PARTITIONS).contains(&n) {
        Ok(n as u32)
    } else {
        Err(format!("{n} is not between 1 and {MAX_PARTITIONS}"))
    }
}

/// The partition (of `partitions`) a session's rows are written in: the
/// first 8 bytes of SHA-256 of its id, big-endian, modulo `partitions`.
/// Defined here, not by an engine's hash, so the bytes of an export never
/// depend on which engine ran it.
pub fn partition_of(session_id: &str, partitions: u32) -> u32 {
    use sha2::{Digest, Sha256};
    if partitions <= 1 {
        return 0;
    }
    let d = Sha256::digest(session_id.as_bytes());
    let mut head = [0u8; 8];
    head.copy_from_slice(&d[..8]);
    (u64::from_be_bytes(head) % u64::from(partitions)) as u32
}

/// What stands in a written spec for key material given inline.
pub(crate) const REDACTED: &str = "<redacted key material>";

/// Replaces key material in a spec's `destination` (a GCS
/// `service_account` given as key JSON) with [`REDACTED`].
fn redact_keys(mut v: Value) -> Value {
    if let Some(sa) = v.pointer_mut("/destination/service_account") {
        if sa.as_str().is_some_and(|s| s.trim_start().starts_with('{')) {
            *sa = Value::String(REDACTED.into());
        }
    }
    v
}

impl ExportSpec {
    /// The split names in series order (their folders); empty without
    /// `splits`.
    pub fn split_names(&self) -> Vec<String> {
        self.splits
            .iter()
            .flat_map(|s| s.parts.iter().map(|(n, _)| n.clone()))
            .collect()
    }

    /// The spec as given, with key material redacted: what a manifest
    /// records (credentials are never written anywhere).
    pub fn raw_redacted(&self) -> Value {
        redact_keys(self.raw.clone())
    }

    /// The spec with defaults filled in and times absolute, as the manifest's
    /// `resolved` records it (key material redacted).
    pub fn resolved_json(&self) -> Value {
        redact_keys(self.resolved_unredacted())
    }

    fn resolved_unredacted(&self) -> Value {
        let mut v = self.resolved_base();
        // Present only when asked for: specs without them resolve as before.
        if let (Some(s), Some(o)) = (&self.splits, v.as_object_mut()) {
            let mut m: serde_json::Map<String, Value> =
                s.parts.iter().map(|(n, f)| (n.clone(), json!(f))).collect();
            m.insert("by".into(), json!(s.by.as_str()));
            m.insert("salt".into(), json!(s.salt));
            o.insert("splits".into(), Value::Object(m));
        }
        if let (Some(r), Some(o)) = (&self.redact, v.as_object_mut()) {
            o.insert(
                "redact".into(),
                json!({"typed_text": r.typed_text, "patterns": r.patterns, "rectangles": r.rectangles}),
            );
        }
        if let (Some(st), Some(o)) = (&self.steps, v.as_object_mut()) {
            o.insert("unit".into(), json!("step"));
            o.insert("step".into(), st.to_json());
        }
        if let (n @ 2.., Some(o)) = (self.partitions, v.as_object_mut()) {
            o.insert("partitions".into(), json!(n));
        }
        v
    }

    fn resolved_base(&self) -> Value {
        let f = &self.filter;
        let strs = |v: &[&str]| v.iter().map(|s| json!(s)).collect::<Vec<_>>();
        let outcomes: Vec<&str> = f.outcomes.iter().map(|o| o.as_str()).collect();
        let kinds: Vec<&str> = f.actor_kinds.iter().map(|k| k.as_str()).collect();
        json!({
            "workflow": self.workflows,
            "filter": {
                "outcome": strs(&outcomes),
                "since": f.since.map(format_instant),
                "until": f.until.map(format_instant),
                "actor.kind": strs(&kinds),
                "min_duration_ms": f.min_duration_ms,
                "max_duration_ms": f.max_duration_ms,
                "tag": f.tags,
                "path": f.paths,
                "exclude_session_ids": f.exclude_session_ids,
            },
            "format": self.format.as_str(),
            "frame_sampling": {
                "mode": self.sampling.mode.as_str(),
                "interval_ms": self.sampling.interval_ms,
                "keep_action_frames": self.sampling.keep_action_frames,
            },
            "destination": self.destination.as_ref().map(destination_json),
            "tag": self.tag,
            "as_of": format_instant(self.as_of),
            "shard_size_bytes": self.shard_size_bytes,
        })
    }
}

impl Destination {
    /// The destination as a spec's `destination` object (key material
    /// given inline included: never write it anywhere).
    pub fn to_json(&self) -> Value {
        destination_json(self)
    }

    /// Whether it holds key material inline (a GCS `service_account` key
    /// as JSON rather than a path to one).
    pub fn has_inline_key(&self) -> bool {
        matches!(self, Destination::Gcs { service_account: Some(sa), .. } if sa.trim_start().starts_with('{'))
    }
}

fn destination_json(d: &Destination) -> Value {
    match d {
        Destination::Local { path } => json!({"kind": "local", "path": path}),
        Destination::S3 {
            bucket,
            prefix,
            region,
            role_arn,
            endpoint,
        } => json!({
            "kind": "s3", "bucket": bucket, "prefix": prefix, "region": region,
            "role_arn": role_arn, "endpoint": endpoint,
        }),
        Destination::Gcs {
            bucket,
            prefix,
            service_account,
        } => json!({
            "kind": "gcs", "bucket": bucket, "prefix": prefix, "service_account": service_account,
        }),
        Destination::AzureBlob {
            account,
            container,
            prefix,
            tenant_id,
        } => {
            let mut v = json!({
                "kind": "azure_blob", "account": account, "container": container, "prefix": prefix,
            });
            // Present only when given: specs without it resolve as before.
            if let Some(t) = tenant_id {
                v["tenant_id"] = json!(t);
            }
            v
        }
        Destination::SignedUrl => json!({"kind": "signed_url"}),
    }
}
