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

/// One split's section of the manifest: its own shard series.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitSection {
    /// The split's name (and folder).
    pub name: String,
    /// Rows in the split.
    pub rows: u64,
    /// Sessions with rows in the split.
    pub sessions: u64,
    /// Action events in the split's rows.
    pub actions: u64,
    /// Its shards (paths as in `shards`), in order.
    pub shards: Vec<String>,
    /// SHA-256 over its shards' hex digests, each followed by `\n`.
    pub digest: String,
}

/// What the rows of a `"unit": "step"` export hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepSection {
    /// Distinct observation frames (= images stored).
    pub observations: u64,
    /// Steps whose event maps to no canonical action (`"type": "other"`).
    pub unmapped: u64,
    /// Steps per canonical action type.
    pub types: std::collections::BTreeMap<String, u64>,
}

/// Image files beside the shards (JSON Lines step exports).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageFiles {
    /// Number of files.
    pub count: u64,
    /// Their total size.
    pub bytes: u64,
    /// SHA-256 over their hex digests, each followed by `\n`, in order.
    pub digest: String,
    /// The files (`rows` is 0), in order.
    pub files: Vec<ShardInfo>,
}

/// The sessions a spec export selected, as its manifest records them: a
/// re-post of the same body to the same prefix is the same export (a
/// no-op) exactly when its selection is this one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selection {
    /// Sessions the filter selected (with or without rows kept).
    pub sessions: u64,
    /// SHA-256 over `{session_id} {seal}\n` of each, in `session_id` order.
    pub sha256: String,
}

/// Hashes a selection as its sessions stream by.
#[derive(Debug, Default)]
pub struct SelectionBuilder {
    sessions: u64,
    hash: Sha256,
}

impl SelectionBuilder {
    /// Adds the next session (in `session_id` order).
    pub fn push(&mut self, session_id: &str, seal: &str) {
        self.sessions += 1;
        self.hash.update(session_id.as_bytes());
        self.hash.update(b" ");
        self.hash.update(seal.as_bytes());
        self.hash.update(b"\n");
    }

    /// The selection of the sessions pushed.
    pub fn finish(self) -> Selection {
        Selection {
            sessions: self.sessions,
            sha256: hex::encode(self.hash.finalize()),
        }
    }
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
    /// Per split, its shard series (exports with `splits` only; the
    /// splits' series follow each other in `shards`, in this order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub splits: Option<Vec<SplitSection>>,
    /// `"unit": "step"` exports: observations and action types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<StepSection>,
    /// Image files beside the shards (JSON Lines step exports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<ImageFiles>,
    /// The loader index of each shard series (MDS `index.json`, WebDataset
    /// `wids.json`); `rows` is the samples it lists.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub index_files: Vec<ShardInfo>,
    /// The snapshot instant.
    pub as_of: Option<String>,
    /// The versions of the store's Delta tables the export read (spec
    /// exports only); `--from-manifest` reads these versions again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_version: Option<crate::store::StoreVersion>,
    /// The sessions the spec selected (spec exports only): a re-post of
    /// the same body is a no-op while they are the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selection: Option<Selection>,
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

/// The dataset card (`README.md`) written beside every export: a Hugging
/// Face card whose YAML `configs` point `datasets.load_dataset` at the
/// shards (Parquet, WebDataset, JSON Lines; Arrow IPC files are read with
/// pyarrow), then what the export holds, how to load it with the reader
/// that matches its format, the columns, the spec and `as_of`. Everything
/// in it comes from the manifest, so reruns write the same bytes.
pub(super) fn dataset_card(manifest: &Manifest, title: &str) -> String {
    let (builder, ext, what, load) = match manifest.format.as_str() {
        "parquet" => (
            Some("parquet"),
            "parquet",
            "Parquet shards. The `image` column is a Hugging Face `Image`",
            "from datasets import load_dataset\nds = load_dataset(\"parquet\", data_dir=\".\")",
        ),
        "webdataset" => (
            Some("webdataset"),
            "tar",
            "WebDataset tar shards: per frame `{key}.png|jpg` and `{key}.json` (every other column)",
            "import webdataset as wds\nds = wds.WebDataset(\"shard-{000000..NNNNNN}.tar\", shardshuffle=False)\\\n    .decode(\"pil\").to_tuple(\"__key__\", \"png;jpg\", \"json\")\n\n# or: datasets.load_dataset(\"webdataset\", data_dir=\".\")\n# random access: import wids; ds = wids.ShardListDataset(\"wids.json\")  (a split's: \"train/wids.json\")",
        ),
        "jsonl" => (
            Some("json"),
            "jsonl",
            "JSON Lines shards, one object per frame; `image` is a `data:` URL (base64)",
            "from datasets import load_dataset\nds = load_dataset(\"json\", data_dir=\".\")",
        ),
        "mds" => (
            None,
            "mds",
            "MosaicML Streaming MDS shards (`index.json` per split folder; `image` decodes to a PIL image, `json` columns to Python values)",
            "from streaming import StreamingDataset\nds = StreamingDataset(local=\".\", split=None, shuffle=False, validate_hash=\"sha256\", batch_size=1)\n# with splits: split=\"train\"; shuffled with resume: shuffle=True, shuffle_seed=…, ds.state_dict()",
        ),
        _ => (
            None,
            "arrow",
            "Arrow IPC file shards (the schema of the Parquet export)",
            "import pyarrow as pa, glob\ntable = pa.concat_tables(pa.ipc.open_file(f).read_all() for f in sorted(glob.glob(\"shard-*.arrow\")))",
        ),
    };
    let data_files = match &manifest.splits {
        None => format!("  - split: train\n    path: \"shard-*.{ext}\"\n"),
        // Splits without rows have no shards, and a pattern matching no
        // file fails `load_dataset`: they are left out.
        Some(splits) => splits
            .iter()
            .filter(|s| !s.shards.is_empty())
            .map(|s| {
                format!(
                    "  - split: {}\n    path: \"{}/shard-*.{ext}\"\n",
                    s.name, s.name
                )
            })
            .collect(),
    };
    // Step WebDatasets hold image-only and JSON-only samples (an image is
    // stored once, steps refer to it by key): `datasets`' webdataset
    // builder cannot type those, so the card sends readers to `webdataset`.
    let builder = builder.filter(|b| manifest.steps.is_none() || *b != "webdataset");
    let configs = builder.map_or(String::new(), |_| {
        format!("---\nconfigs:\n- config_name: default\n  data_files:\n{data_files}---\n\n")
    });
    let split_lines = match &manifest.splits {
        None => String::new(),
        Some(splits) => {
            let lines: Vec<String> = splits
                .iter()
                .map(|s| {
                    format!(
                        "- `{}`: {} rows from {} sessions in {} shard(s) under `{}/`",
                        s.name,
                        s.rows,
                        s.sessions,
                        s.shards.len(),
                        s.name
                    )
                })
                .collect();
            format!(
                "## Splits\n\nWhole sessions (grouped by the spec's `splits.by`) go to one split by a \
                 stable hash, so no group is in two splits. `datasets.load_dataset(\"path/to/this/folder\")` \
                 reads the `configs` above and returns a `DatasetDict`.\n\n{}\n\n",
                lines.join("\n")
            )
        }
    };
    let columns = manifest
        .schema
        .as_array()
        .map(|cols| {
            cols.iter()
                .map(|c| {
                    format!(
                        "- `{}`: {}",
                        c["name"].as_str().unwrap_or(""),
                        c["type"].as_str().unwrap_or("")
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default();
    // What was exported, not where to: the card reads the same wherever
    // the folder is copied.
    let spec = match &manifest.spec {
        Value::Null => "(written by `COPY` or `write_shards`: no spec)".to_string(),
        v => {
            let mut v = v.clone();
            if let Some(o) = v.as_object_mut() {
                o.remove("destination");
            }
            format!(
                "```json\n{}\n```",
                serde_json::to_string_pretty(&v).unwrap_or_default()
            )
        }
    };
    let redaction = match manifest.resolved.get("redact") {
        Some(r) if r.is_object() => format!(
            "## Redaction\n\nBefore anything was written, matches of {} were replaced by \
             `[REDACTED:<pattern>]` in every string of every event's `data`{}{}.\n\n",
            r["patterns"]
                .as_array()
                .map(|p| p
                    .iter()
                    .map(|x| format!("`{}`", x.as_str().unwrap_or("")))
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default(),
            if r["typed_text"] == true {
                ", also across typing runs (consecutive `type` actions joined)"
            } else {
                ""
            },
            if r["rectangles"] == true {
                ", and `redact` event rectangles were painted black on every frame from theirs on"
            } else {
                ""
            },
        ),
        _ => String::new(),
    };
    let steps = match &manifest.steps {
        None => String::new(),
        Some(st) => {
            let types: Vec<String> = st.types.iter().map(|(t, n)| format!("`{t}` {n}")).collect();
            let images = match manifest.format.as_str() {
                "webdataset" => "each observed frame's image is the member `{observation_key}.png|jpg`, stored once with the first step that observes it; every step is `{key}.json`",
                "jsonl" => "each observed frame's image is the file `images/{observation_key}.png|jpg`, stored once (listed under `images` in the manifest); `image` is its path",
                _ => "`image` is the step's observation (Hugging Face `Image`)",
            };
            format!(
                "## Steps\n\nOne row per action (`\"unit\": \"step\"`): {rows} steps on {obs} observed frames; {images}. \
                 `history_keys` name earlier observation frames of the same export. Action types: {types}; \
                 {unmapped} step(s) map to no canonical action (`other`, the event in `raw`).\n\n",
                rows = manifest.rows,
                obs = st.observations,
                types = types.join(", "),
                unmapped = st.unmapped,
            )
        }
    };
    format!(
        "{configs}# {title}\n\nComputer-use frames exported by nusomi-export {version}: {rows} rows from {sessions} sessions \
         in {shards} {what}; `events` and `actions` hold each frame's events as `{{t_ms, type, action, data}}` with `data` as \
         JSON text. `manifest.json` lists every shard with its SHA-256 (`nusomi export verify .` checks them).\n\n\
         ```python\n{load}\n```\n\n{steps}{split_lines}{redaction}## Columns\n\n{columns}\n\n## Spec\n\nSnapshot `as_of`: {as_of}\n\n{spec}\n",
        version = manifest.version,
        rows = manifest.rows,
        sessions = manifest.sessions,
        shards = manifest.shard_count,
        as_of = manifest.as_of.as_deref().unwrap_or("(not recorded)"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(format: &str) -> Manifest {
        Manifest {
            version: "0".into(),
            format: format.into(),
            rows: 3,
            frames: 3,
            actions: 1,
            sessions: 1,
            shard_count: 1,
            shard_size_bytes: 4096,
            shards: Vec::new(),
            digest: String::new(),
            steps: None,
            images: None,
            index_files: Vec::new(),
            as_of: Some("2030-01-01T00:00:00Z".into()),
            store_version: None,
            selection: None,
            spec: serde_json::json!({"workflow": "a", "tag": "demo@v1",
                                      "destination": {"kind": "local", "path": "/x"}}),
            resolved: Value::Null,
            sql: None,
            schema: serde_json::json!([{"name": "key", "type": "Utf8", "nullable": false}]),
            links_expire_at: None,
            splits: None,
        }
    }

    #[test]
    fn every_format_gets_a_card_with_its_reader_columns_spec_and_as_of() {
        for (format, needle, config) in [
            (
                "parquet",
                "load_dataset(\"parquet\"",
                Some("shard-*.parquet"),
            ),
            ("webdataset", "wds.WebDataset", Some("shard-*.tar")),
            ("jsonl", "load_dataset(\"json\"", Some("shard-*.jsonl")),
            ("arrow", "pa.ipc.open_file", None),
            ("mds", "StreamingDataset(local=", None),
        ] {
            let card = dataset_card(&manifest(format), "t");
            assert!(card.contains(needle), "{format}: {card}");
            assert_eq!(
                card.starts_with("---\nconfigs:"),
                config.is_some(),
                "{format}"
            );
            if let Some(c) = config {
                assert!(card.contains(c), "{format}");
            }
            assert!(card.contains("- `key`: Utf8") && card.contains("2030-01-01T00:00:00Z"));
            assert!(card.contains("\"tag\": \"demo@v1\""), "{card}");
            assert!(!card.contains("destination"), "{card}");
        }
    }
}
