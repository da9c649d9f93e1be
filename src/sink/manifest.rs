//! `manifest.json` (SPEC §5): the shard list with sizes, row counts and
//! SHA-256, the totals, the spec as given and resolved, `as_of`, the SQL, the
//! output schema, the crate version and a digest over the shard hashes. Its
//! bytes depend only on the spec, `as_of` and the data, so reruns match. Also
//! the Hugging Face dataset card written beside Parquet exports.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// One shard in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInfo {
    /// Path relative to the destination prefix.
    pub path: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Rows in the shard.
    pub rows: u64,
    /// SHA-256 of the shard, lower-case hex.
    pub sha256: String,
    /// Time-limited download link (`signed_url` exports only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// The manifest of a finished export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Crate version that wrote it.
    pub version: String,
    /// Output format.
    pub format: String,
    /// Rows exported.
    pub rows: u64,
    /// Frames exported (= rows).
    pub frames: u64,
    /// Action events in the exported rows.
    pub actions: u64,
    /// Sessions with at least one row.
    pub sessions: u64,
    /// Number of shards.
    pub shard_count: u64,
    /// The shard size cap.
    pub shard_size_bytes: u64,
    /// The shards, in order.
    pub shards: Vec<ShardInfo>,
    /// SHA-256 over each shard's hex digest followed by `\n`, in order.
    pub digest: String,
    /// The snapshot instant.
    pub as_of: Option<String>,
    /// The spec as given (null for `COPY` exports).
    pub spec: Value,
    /// The spec with defaults and absolute times (null for `COPY`).
    pub resolved: Value,
    /// The query that produced the rows.
    pub sql: Option<String>,
    /// Output columns: `[{name, type, nullable}]`.
    pub schema: Value,
    /// When the shards' download links expire, RFC 3339 (`signed_url`
    /// exports only; links are the one part of a manifest that differs
    /// between reruns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub links_expire_at: Option<String>,
}

/// `digest` of a shard list.
pub fn shards_digest(shards: &[ShardInfo]) -> String {
    let mut h = Sha256::new();
    for s in shards {
        h.update(s.sha256.as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

impl Manifest {
    /// Pretty JSON bytes with a final newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }
}

/// Hugging Face dataset card for a Parquet export: YAML `configs` pointing
/// `datasets.load_dataset` at the shards.
pub(super) fn dataset_card(manifest: &Manifest, title: &str) -> String {
    format!(
        "---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n    path: \"shard-*.parquet\"\n---\n\n\
         # {title}\n\nComputer-use frames exported by nusomi-export {version}: {rows} rows from {sessions} sessions \
         in {shards} Parquet shards (`manifest.json` lists them with SHA-256). The `image` column is a Hugging Face \
         `Image`; `events` and `actions` hold each frame's events as `{{t_ms, type, action, data}}` with `data` as JSON \
         text.\n\n```python\nfrom datasets import load_dataset\nds = load_dataset(\"parquet\", data_dir=\".\")\n```\n",
        version = manifest.version,
        rows = manifest.rows,
        sessions = manifest.sessions,
        shards = manifest.shard_count,
    )
}
