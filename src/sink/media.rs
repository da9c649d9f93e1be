//! [`MediaWriter`]: image files written beside the shards, one object per
//! frame (`images/{frame_key}.png|jpg`), for JSON Lines step exports whose
//! rows refer to images by path (what LLaMA-Factory and Qwen's scripts
//! read). Each is hashed and listed in the manifest's `images` section.
//! Like shards, a file an interrupted attempt of the same export left is
//! compared and kept; a new one is created with a conditional put, so an
//! object this export did not write is never replaced; on failure the
//! files this attempt created are deleted.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use sha2::{Digest, Sha256};

use super::layout::ExportLayout;
use super::manifest::ShardInfo;
use crate::error::{Error, Result};

/// Writes the image files of one export.
pub(crate) struct MediaWriter {
    store: Arc<dyn ObjectStore>,
    layout: ExportLayout,
    /// Objects under the prefix before this attempt: name → size.
    existing: HashMap<String, u64>,
    files: Vec<ShardInfo>,
    /// Names this attempt created.
    created: Vec<String>,
}

impl std::fmt::Debug for MediaWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaWriter")
            .field("files", &self.files.len())
            .finish_non_exhaustive()
    }
}

impl MediaWriter {
    pub(crate) fn new(
        store: Arc<dyn ObjectStore>,
        layout: ExportLayout,
        existing: HashMap<String, u64>,
    ) -> Self {
        MediaWriter {
            store,
            layout,
            existing,
            files: Vec::new(),
            created: Vec::new(),
        }
    }

    /// Writes `bytes` as `name` (a path relative to the prefix).
    pub(crate) async fn put(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        let key = self.layout.key(name);
        let sha256 = hex::encode(Sha256::digest(bytes));
        let same = match self.existing.get(name) {
            Some(size) if *size == bytes.len() as u64 => {
                let there = super::read::bytes(&self.store, &key, *size).await?;
                there.as_ref() == bytes
            }
            _ => false,
        };
        if !same {
            let payload = PutPayload::from(Bytes::copy_from_slice(bytes));
            if self.existing.contains_key(name) {
                // An earlier attempt of this export wrote it (under its lease).
                self.store
                    .put(&key, payload)
                    .await
                    .map_err(Error::destination("put image", &key))?;
            } else {
                let opts = PutOptions {
                    mode: PutMode::Create,
                    ..Default::default()
                };
                self.store
                    .put_opts(&key, payload, opts)
                    .await
                    .map_err(Error::destination("put image", &key))?;
                self.created.push(name.to_string());
            }
        }
        self.files.push(ShardInfo {
            path: name.to_string(),
            bytes: bytes.len() as u64,
            rows: 0,
            sha256,
            url: None,
        });
        Ok(())
    }

    /// The files written, in order, and the names this attempt created.
    pub(crate) fn finish(self) -> (Vec<ShardInfo>, Vec<String>) {
        (self.files, self.created)
    }

    /// Deletes the files this attempt created.
    pub(crate) async fn abort(self) {
        for name in &self.created {
            let _ = self.store.delete(&self.layout.key(name)).await;
        }
    }
}
