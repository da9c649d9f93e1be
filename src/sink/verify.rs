//! [`verify`]: checks a published export against its own manifest, without
//! the store: every shard's presence, size and SHA-256 (streamed, never held
//! whole), and the manifest's `digest` over the shard hashes. Each
//! difference is reported by shard name.

use std::sync::Arc;

use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::layout::ExportLayout;
use super::manifest::{shards_digest, Manifest, ShardInfo, SplitSection};
use crate::error::{Error, Result};

/// One difference between an export and its manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Mismatch {
    /// A shard the manifest lists is not there.
    Missing {
        /// The shard.
        path: String,
    },
    /// A shard has another size.
    Size {
        /// The shard.
        path: String,
        /// Bytes the manifest lists.
        expected: u64,
        /// Bytes found.
        found: u64,
    },
    /// A shard's bytes hash differently.
    Sha256 {
        /// The shard.
        path: String,
        /// Hash the manifest lists.
        expected: String,
        /// Hash of the bytes found.
        found: String,
    },
    /// A split's section does not match the shards it lists.
    Split {
        /// The split.
        split: String,
        /// What is wrong.
        message: String,
    },
    /// The manifest's `digest` does not match its own shard hashes.
    Digest {
        /// Digest the manifest lists.
        expected: String,
        /// Digest of the listed shard hashes.
        found: String,
    },
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mismatch::Missing { path } => write!(f, "{path}: missing"),
            Mismatch::Size {
                path,
                expected,
                found,
            } => write!(
                f,
                "{path}: size {found} bytes, the manifest says {expected}"
            ),
            Mismatch::Sha256 {
                path,
                expected,
                found,
            } => write!(f, "{path}: sha256 {found}, the manifest says {expected}"),
            Mismatch::Split { split, message } => {
                write!(f, "manifest.json: split {split}: {message}")
            }
            Mismatch::Digest { expected, found } => write!(
                f,
                "manifest.json: digest {expected} does not match its shard hashes ({found})"
            ),
        }
    }
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verification {
    /// Shards the manifest lists.
    pub shards: u64,
    /// Bytes read and hashed.
    pub bytes: u64,
    /// Every difference (empty: the export is intact).
    pub mismatches: Vec<Mismatch>,
}

impl Verification {
    /// True when nothing differs.
    pub fn is_intact(&self) -> bool {
        self.mismatches.is_empty()
    }
}

/// The manifest of the export under `prefix` in `store`.
pub async fn read_manifest(store: &Arc<dyn ObjectStore>, prefix: &Path) -> Result<Manifest> {
    let key = prefix.clone().join(ExportLayout::MANIFEST);
    let bytes = super::read::bytes(store, &key, super::read::MANIFEST_LIMIT).await?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
        path: key.to_string(),
        message: format!("not an export manifest: {e}"),
    })
}

/// Verifies the export under `prefix` in `store` against its manifest.
pub async fn verify(store: &Arc<dyn ObjectStore>, prefix: &Path) -> Result<Verification> {
    let manifest = read_manifest(store, prefix).await?;
    let mut out = Verification {
        shards: manifest.shards.len() as u64,
        bytes: 0,
        mismatches: Vec::new(),
    };
    for shard in files_of(&manifest) {
        if let Some(m) = check_shard(store, prefix, shard, &mut out.bytes).await? {
            out.mismatches.push(m);
        }
    }
    check_sections(&manifest, &mut out);
    Ok(out)
}

/// Every file the manifest lists: the shards, then the image files.
fn files_of(manifest: &Manifest) -> impl Iterator<Item = &ShardInfo> {
    manifest
        .shards
        .iter()
        .chain(manifest.images.iter().flat_map(|i| i.files.iter()))
        .chain(manifest.index_files.iter())
}

/// The manifest's own consistency: each split section and the digests.
fn check_sections(manifest: &Manifest, out: &mut Verification) {
    if let Some(images) = &manifest.images {
        let digest = shards_digest(&images.files);
        if digest != images.digest {
            out.mismatches.push(Mismatch::Digest {
                expected: images.digest.clone(),
                found: digest,
            });
        }
    }
    for split in manifest.splits.iter().flatten() {
        out.mismatches.extend(check_split(manifest, split));
    }
    let digest = shards_digest(&manifest.shards);
    if digest != manifest.digest {
        out.mismatches.push(Mismatch::Digest {
            expected: manifest.digest.clone(),
            found: digest,
        });
    }
}

/// Verifies an export published behind HTTP(S) links: `url` is its
/// manifest's link (a `signed_url` export's manifest link, or any
/// `…/manifest.json` a web server serves). Each shard is fetched through
/// its own `url` in the manifest (the service re-signs them when it serves
/// the manifest), else next to the manifest (`…/<shard path>`).
pub async fn verify_link(url: &str) -> Result<Verification> {
    let bad = |message: String| Error::Location {
        location: url.to_string(),
        message,
    };
    let base = url::Url::parse(url).map_err(|e| bad(e.to_string()))?;
    // Links are the manifest's: bounded in time (a host that never
    // answers, or answers forever slowly) and the manifest in size.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::limited(3))
        .connect_timeout(std::time::Duration::from_secs(10))
        .read_timeout(std::time::Duration::from_secs(60))
        .build()
        .map_err(|e| bad(e.to_string()))?;
    let got = client
        .get(base.clone())
        .send()
        .await
        .map_err(|e| bad(format!("cannot fetch the manifest: {e}")))?;
    if !got.status().is_success() {
        return Err(bad(format!("the manifest link answers {}", got.status())));
    }
    let reported = got.content_length();
    let bytes = super::read::collect_capped(
        got.bytes_stream(),
        reported,
        super::read::MANIFEST_LIMIT,
        url,
        |e| bad(format!("cannot read the manifest: {e}")),
    )
    .await?;
    let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
        path: url.to_string(),
        message: format!("not an export manifest: {e}"),
    })?;
    let mut out = Verification {
        shards: manifest.shards.len() as u64,
        bytes: 0,
        mismatches: Vec::new(),
    };
    for shard in files_of(&manifest) {
        let link = match &shard.url {
            Some(u) => url::Url::parse(u).map_err(|e| bad(format!("{}: {e}", shard.path)))?,
            None => {
                let mut u = base.join(&shard.path).map_err(|e| bad(e.to_string()))?;
                u.set_query(None);
                u
            }
        };
        let got = client
            .get(link)
            .send()
            .await
            .map_err(|e| bad(format!("{}: {e}", shard.path)))?;
        if got.status() == reqwest::StatusCode::NOT_FOUND {
            out.mismatches.push(Mismatch::Missing {
                path: shard.path.clone(),
            });
            continue;
        }
        if !got.status().is_success() {
            return Err(bad(format!(
                "{}: the link answers {}",
                shard.path,
                got.status()
            )));
        }
        let (size, found) =
            hash_stream(got.bytes_stream(), |e| bad(format!("{}: {e}", shard.path))).await?;
        out.bytes += size;
        out.mismatches.extend(judge(shard, size, found));
    }
    check_sections(&manifest, &mut out);
    Ok(out)
}

/// A split section's shards must be listed in `shards`, and its rows and
/// digest must be theirs.
fn check_split(manifest: &Manifest, split: &SplitSection) -> Vec<Mismatch> {
    let mut listed = Vec::new();
    let mut problems = Vec::new();
    for path in &split.shards {
        match manifest.shards.iter().find(|s| &s.path == path) {
            Some(s) => listed.push(s.clone()),
            None => problems.push(format!("lists {path}, which `shards` does not")),
        }
    }
    let rows: u64 = listed.iter().map(|s| s.rows).sum();
    if problems.is_empty() && rows != split.rows {
        problems.push(format!("{} rows, its shards hold {rows}", split.rows));
    }
    let digest = shards_digest(&listed);
    if problems.is_empty() && digest != split.digest {
        problems.push(format!(
            "digest {} does not match its shard hashes ({digest})",
            split.digest
        ));
    }
    problems
        .into_iter()
        .map(|message| Mismatch::Split {
            split: split.name.clone(),
            message,
        })
        .collect()
}

async fn check_shard(
    store: &Arc<dyn ObjectStore>,
    prefix: &Path,
    shard: &ShardInfo,
    read: &mut u64,
) -> Result<Option<Mismatch>> {
    let key = crate::store::relative_key(prefix, &shard.path);
    let got = match store.get(&key).await {
        Ok(g) => g,
        Err(object_store::Error::NotFound { .. }) => {
            return Ok(Some(Mismatch::Missing {
                path: shard.path.clone(),
            }))
        }
        Err(e) => return Err(Error::destination("get", &key)(e)),
    };
    // A size that differs needs no reading.
    if got.meta.size != shard.bytes {
        return Ok(judge(shard, got.meta.size, String::new()));
    }
    let (size, found) = hash_stream(got.into_stream(), Error::destination("get", &key)).await?;
    *read += size;
    Ok(judge(shard, size, found))
}

/// Bytes read from `stream` and their SHA-256 (lower-case hex), never
/// holding more than one chunk.
async fn hash_stream<S, E>(mut stream: S, fail: impl FnOnce(E) -> Error) -> Result<(u64, String)>
where
    S: futures::Stream<Item = std::result::Result<bytes::Bytes, E>> + Unpin,
{
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => return Err(fail(e)),
        };
        size += chunk.len() as u64;
        hasher.update(&chunk);
    }
    Ok((size, hex::encode(hasher.finalize())))
}

/// What a shard found with `size` bytes hashing to `sha256` says against
/// the manifest: a size difference first, then a hash difference.
fn judge(shard: &ShardInfo, size: u64, sha256: String) -> Option<Mismatch> {
    if size != shard.bytes {
        Some(Mismatch::Size {
            path: shard.path.clone(),
            expected: shard.bytes,
            found: size,
        })
    } else if sha256 != shard.sha256 {
        Some(Mismatch::Sha256 {
            path: shard.path.clone(),
            expected: shard.sha256.clone(),
            found: sha256,
        })
    } else {
        None
    }
}
