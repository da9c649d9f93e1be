//! The index a loader reads beside each shard series, written before the
//! manifest (which lists it with its SHA-256, so `verify` checks it):
//!
//! * MDS: `index.json` (MosaicML Streaming, version 2): per shard its
//!   config, sample count and `raw_data` (basename, bytes, `sha256`), as
//!   `MDSWriter` writes it, so `StreamingDataset(local=…, split=…)` reads
//!   a split folder and `validate_hash="sha256"` checks each shard;
//! * WebDataset: `wids.json`, the shard list `wids.ShardListDataset` reads
//!   (`wids_version` 1; per shard `url` relative to the index, `nsamples`
//!   as a tar reader groups members by key, and `filesize`).
//!
//! Both come from what the shard writers reported ([`ShardTotals::loader`]),
//! so a resumed export writes the same bytes.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::format::python_json;
use super::layout::ExportLayout;
use super::manifest::ShardInfo;
use super::sharded::ShardTotals;
use crate::error::{Error, Result};
use crate::spec::OutputFormat;

/// A loader index file: its path relative to the export and its bytes.
pub(super) struct IndexFile {
    pub(super) info: ShardInfo,
    pub(super) bytes: Vec<u8>,
}

/// The loader index of one series (`layout`, its `shards` and what their
/// writers reported), or `None` for formats without one.
pub(super) fn series_index(
    layout: &ExportLayout,
    shards: &[ShardInfo],
    totals: &ShardTotals,
) -> Result<Option<IndexFile>> {
    let name = match layout.format() {
        OutputFormat::Mds => ExportLayout::MDS_INDEX,
        OutputFormat::Webdataset => ExportLayout::WIDS_INDEX,
        _ => return Ok(None),
    };
    if totals.loader.len() != shards.len() {
        return Err(Error::Internal(format!(
            "{} shards but {} loader index entries",
            shards.len(),
            totals.loader.len()
        )));
    }
    let basename = |s: &ShardInfo| s.path.rsplit('/').next().unwrap_or(&s.path).to_string();
    let (text, samples) = match layout.format() {
        OutputFormat::Mds => {
            let mut samples = 0;
            let entries: Vec<Value> = shards
                .iter()
                .zip(&totals.loader)
                .map(|(s, entry)| {
                    let mut e = entry.clone();
                    samples += e["samples"].as_u64().unwrap_or(0);
                    e["raw_data"] = json!({
                        "basename": basename(s),
                        "bytes": s.bytes,
                        "hashes": {"sha256": s.sha256},
                    });
                    e
                })
                .collect();
            (
                python_json(&json!({"shards": entries, "version": 2})),
                samples,
            )
        }
        _ => {
            let mut samples = 0;
            let list: Vec<Value> = shards
                .iter()
                .zip(&totals.loader)
                .map(|(s, entry)| {
                    let n = entry["nsamples"].as_u64().unwrap_or(0);
                    samples += n;
                    json!({"url": basename(s), "nsamples": n, "filesize": s.bytes})
                })
                .collect();
            let desc = json!({
                "__kind__": "wids-shard-index-v1",
                "wids_version": 1,
                "shardlist": list,
            });
            (python_json(&desc), samples)
        }
    };
    let mut bytes = text.into_bytes();
    bytes.push(b'\n');
    let path = layout.index_name(name);
    Ok(Some(IndexFile {
        info: ShardInfo {
            path,
            bytes: bytes.len() as u64,
            rows: samples,
            sha256: hex::encode(Sha256::digest(&bytes)),
            url: None,
        },
        bytes,
    }))
}
