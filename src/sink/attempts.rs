//! What export attempts leave at a prefix: the objects under it
//! ([`objects_under`]), the staging files of local uploads a crash cut off,
//! the names an attempt writes ([`is_attempt_file`]), each split's shard
//! series, and the removal of an unpublished attempt's files
//! ([`purge_unpublished`]).

use std::collections::HashMap;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use super::layout::ExportLayout;
use super::lease;
use crate::dest::ExportTarget;
use crate::error::{Error, Result};

/// Objects directly under `prefix`, and directly in its sub-folders named
/// in `series` (the split folders): relative name → size. Other
/// sub-folders are not the export's and are ignored.
pub(crate) async fn objects_under(
    store: &Arc<dyn ObjectStore>,
    prefix: &Path,
    series: &[String],
) -> Result<HashMap<String, u64>> {
    let listed: Vec<_> = store
        .list(Some(prefix))
        .try_collect()
        .await
        .map_err(Error::destination("list", prefix))?;
    let depth = prefix.parts().count();
    Ok(listed
        .into_iter()
        .filter_map(|m| {
            let parts: Vec<String> = m
                .location
                .parts()
                .skip(depth)
                .map(|p| p.as_ref().to_string())
                .collect();
            match parts.as_slice() {
                [name] => Some((name.clone(), m.size)),
                [folder, name] if series.contains(folder) => {
                    Some((format!("{folder}/{name}"), m.size))
                }
                _ => None,
            }
        })
        .collect())
}

/// Deletes what uploads cut off by a crash left in a local folder and
/// returns how many files. object_store writes a local object to
/// `name#<digits>` and renames it when complete; such staging files are
/// hidden from listings, so a resumed export would never see them. Only
/// an export's own names are touched ([`ExportLayout::is_export_file`]). A
/// no-op for object stores.
pub(super) fn sweep_interrupted_uploads(target: &ExportTarget) -> Result<usize> {
    let Some(dir) = &target.local_dir else {
        return Ok(0);
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((base, suffix)) = name.rsplit_once('#') else {
            continue;
        };
        let staging = !suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_digit());
        if staging && ExportLayout::is_export_file(base) {
            std::fs::remove_file(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// The layout of each shard series of `layout`: itself, or one per split.
pub(super) fn series_of(layout: &ExportLayout, splits: &[String]) -> Vec<ExportLayout> {
    if splits.is_empty() {
        vec![layout.clone()]
    } else {
        splits.iter().map(|s| layout.series(s)).collect()
    }
}

/// Whether `name` (relative to an export's prefix) is a file an attempt
/// writes and an unpublished attempt may take back: shards, the card and
/// image files — never the manifest or the lease.
pub(super) fn is_attempt_file(name: &str) -> bool {
    let file = name.rsplit('/').next().unwrap_or(name);
    let media = name
        .strip_prefix(crate::sample::IMAGES_FOLDER)
        .is_some_and(|rest| rest.starts_with('/'));
    (ExportLayout::is_export_file(file) || media)
        && name != ExportLayout::MANIFEST
        && name != ExportLayout::LEASE
}

/// Deletes what unfinished attempts of export `export_id` left under its
/// prefix (shards, the dataset card, the lease) — only under a lease that
/// export created, and never once a manifest is there.
pub(crate) async fn purge_unpublished(target: &ExportTarget, export_id: &str, series: &[String]) {
    let layout = ExportLayout::new(target.prefix.clone(), crate::spec::OutputFormat::Parquet);
    if target.store.head(&layout.manifest()).await.is_ok() {
        return;
    }
    match lease::read(target, &layout).await {
        Ok(Some(l)) if l.export_id == export_id => {}
        _ => return,
    }
    let mut folders = series.to_vec();
    folders.push(crate::sample::IMAGES_FOLDER.to_string());
    let Ok(names) = objects_under(&target.store, &target.prefix, &folders).await else {
        return;
    };
    for name in names.keys() {
        if is_attempt_file(name) {
            let _ = target.store.delete(&layout.key(name)).await;
        }
    }
    lease::release(target, &layout).await;
}
