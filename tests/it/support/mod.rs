//! Shared helpers: the one test spec, small bundles and sealed stores;
//! [`InstrumentedStore`] (`store.rs`), the one wrapper that counts, logs,
//! fails or parks operations of a real store; and [`Server`] (`server.rs`),
//! a `nusomi serve` child process driven over loopback.

mod server;
mod store;

pub use server::*;
pub use store::{Counted, InstrumentedStore};

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use datafusion::execution::object_store::ObjectStoreUrl;
use futures::TryStreamExt;
use nusomi_export::datagen::{BundleDraft, Generator};
use nusomi_export::spec::ExportSpec;
use nusomi_export::store::{SealedStore, StoreLocation};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::ObjectStore;
use serde_json::{json, Value};

/// The batches of SQL query `q` on `ctx`.
pub async fn sql(
    ctx: &datafusion::prelude::SessionContext,
    q: &str,
) -> Vec<arrow::array::RecordBatch> {
    ctx.sql(q).await.unwrap().collect().await.unwrap()
}

/// The first column of the first row, an `Int64`.
pub fn one_i64(b: &[arrow::array::RecordBatch]) -> i64 {
    use arrow::array::AsArray;
    b[0].column(0)
        .as_primitive::<arrow::datatypes::Int64Type>()
        .value(0)
}

/// Every workflow the generator renders.
pub const ALL_WORKFLOWS: [&str; 5] = [
    "process_invoice",
    "triage_ticket",
    "update_crm_record",
    "book_travel",
    "reconcile_payments",
];

/// The one spec the tests start from: every workflow, every frame, `as_of`
/// 2030-01-01T00:00:00Z; `fields` (an object) are set over it.
pub fn spec_json(format: &str, fields: Value) -> Value {
    let mut v = json!({
        "workflow": ALL_WORKFLOWS,
        "format": format,
        "as_of": "2030-01-01T00:00:00Z",
        "frame_sampling": {"mode": "all"},
    });
    for (k, val) in fields.as_object().expect("spec fields are an object") {
        v[k] = val.clone();
    }
    v
}

/// [`spec_json`], parsed.
pub fn spec(format: &str, fields: Value) -> ExportSpec {
    let now = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
    ExportSpec::parse(&spec_json(format, fields), now).unwrap()
}

/// Exports `store` as `format` with [`spec`]`(format, fields)` into the
/// local folder `dir`; returns the manifest.
pub async fn export_to_dir(
    store: &Arc<SealedStore>,
    format: &str,
    fields: Value,
    dir: &FsPath,
) -> nusomi_export::sink::Manifest {
    let t = nusomi_export::dest::ExportTarget::local(dir.to_str().unwrap()).unwrap();
    nusomi_export::Export::new(store, &spec(format, fields))
        .with_target(t)
        .await
        .unwrap()
        .manifest
}

/// A small, fast generator (640×400, short sessions).
pub fn small_generator(seed: u64) -> Generator {
    Generator::new(seed).with_size(640, 400).with_scale(0.15)
}

/// Writes session `i` of `seed` under `dir` and returns (draft, path).
pub fn write_session(dir: &FsPath, seed: u64, i: usize) -> (BundleDraft, PathBuf) {
    let draft = small_generator(seed).session(i);
    let path = dir.join(draft.session_id());
    draft.write(&path).unwrap();
    (draft, path)
}

/// `url` with query parameter `param` passed through `f`.
pub fn with_param(url: &str, param: &str, f: impl Fn(&str) -> String) -> String {
    let mut u = url::Url::parse(url).unwrap();
    let pairs: Vec<(String, String)> = u
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == param { f(&v) } else { v.into_owned() };
            (k.into_owned(), v)
        })
        .collect();
    u.query_pairs_mut().clear().extend_pairs(pairs);
    u.to_string()
}

/// Every object path under the store.
pub async fn all_objects(store: &Arc<dyn ObjectStore>) -> Vec<String> {
    let mut v: Vec<String> = store
        .list(None)
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    v.sort();
    v
}

/// A sealed store over `inner` at `memory://`.
pub fn store_over(inner: Arc<dyn ObjectStore>) -> Arc<SealedStore> {
    SealedStore::new(StoreLocation::new(
        inner,
        ObjectStoreUrl::parse("memory://").unwrap(),
        Path::from(""),
    ))
}

/// A sealed in-memory store of sessions `0..n` of generator `seed` (the
/// bundles stay in the returned folder).
pub async fn sealed_memory_store(seed: u64, n: usize) -> (tempfile::TempDir, Arc<SealedStore>) {
    let tmp = tempfile::TempDir::new().unwrap();
    let store = store_over(Arc::new(InMemory::new()));
    for i in 0..n {
        let (_, dir) = write_session(tmp.path(), seed, i);
        store
            .seal(&dir, &nusomi_export::store::SealOptions::default())
            .await
            .unwrap();
    }
    (tmp, store)
}
