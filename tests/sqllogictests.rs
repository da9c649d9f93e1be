//! Runs every `sql/*.slt` file against a `SessionContext` with the fixture
//! store (see `datagen::fixtures`) registered. A small `AsyncDB` over our own
//! context, rather than `datafusion-sqllogictest`, keeps DataFusion built once.
//!
//! `cargo test --test sqllogictests [-- FILTER]` runs the files whose name
//! contains FILTER.

use std::path::PathBuf;
use std::sync::Arc;

use arrow::util::display::{ArrayFormatter, FormatOptions};
use async_trait::async_trait;
use datafusion::error::DataFusionError;
use datafusion::prelude::{SessionConfig, SessionContext};
use nusomi_export::store::SealedStore;
use sqllogictest::{DBOutput, DefaultColumnType};

struct Db {
    ctx: SessionContext,
}

#[async_trait]
impl sqllogictest::AsyncDB for Db {
    type Error = DataFusionError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, DataFusionError> {
        let df = self.ctx.sql(sql).await?;
        let schema = df.schema().as_arrow().clone();
        let batches = df.collect().await?;
        if schema.fields().is_empty() {
            return Ok(DBOutput::StatementComplete(0));
        }
        let options = FormatOptions::default().with_null("NULL");
        let mut rows = Vec::new();
        for batch in &batches {
            let formatters = batch
                .columns()
                .iter()
                .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
                .collect::<Result<Vec<_>, _>>()?;
            for r in 0..batch.num_rows() {
                rows.push(
                    formatters
                        .iter()
                        .map(|f| {
                            let s = f.value(r).to_string();
                            if s.is_empty() {
                                "(empty)".to_string()
                            } else {
                                s
                            }
                        })
                        .collect(),
                );
            }
        }
        Ok(DBOutput::Rows {
            types: vec![DefaultColumnType::Any; schema.fields().len()],
            rows,
        })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "nusomi"
    }
}

fn main() {
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    // NUSOMI_SLT_STORE=DIR: only build the fixture store in DIR (for writing
    // new .slt files with `nusomi sql --store DIR/store`).
    if let Ok(dir) = std::env::var("NUSOMI_SLT_STORE") {
        rt.block_on(async {
            let dir = std::path::Path::new(&dir);
            let store = SealedStore::open(dir.join("store").to_str().expect("utf-8 path"))
                .await
                .expect("store");
            nusomi_export::datagen::seal_fixtures(&store, &dir.join("bundles"))
                .await
                .expect("fixtures seal");
        });
        println!("fixture store in {dir}/store");
        return;
    }
    let filter = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
    let failed = rt.block_on(run_all(filter));
    if failed > 0 {
        eprintln!("{failed} slt file(s) failed");
        std::process::exit(1);
    }
}

async fn run_all(filter: Option<String>) -> usize {
    let tmp = tempfile::Builder::new()
        .prefix("nusomi-slt")
        .tempdir()
        .expect("temp dir");
    let store = SealedStore::open(tmp.path().join("store").to_str().expect("utf-8 path"))
        .await
        .expect("store");
    nusomi_export::datagen::seal_fixtures(&store, &tmp.path().join("bundles"))
        .await
        .expect("fixtures seal");
    let mut files: Vec<PathBuf> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/sql"))
        .expect("sql/ folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "slt"))
        .filter(|p| {
            filter
                .as_ref()
                .is_none_or(|f| p.to_string_lossy().contains(f.as_str()))
        })
        .collect();
    files.sort();
    let mut failed = 0;
    for file in files {
        let store = Arc::clone(&store);
        let mut runner = sqllogictest::Runner::new(move || {
            let store = Arc::clone(&store);
            async move {
                // Two partitions, so plans and results do not depend on the machine.
                let ctx = SessionContext::new_with_config(
                    SessionConfig::new()
                        .with_target_partitions(2)
                        .with_information_schema(true),
                );
                nusomi_export::register(&ctx, &store).map_err(DataFusionError::from)?;
                Ok::<_, DataFusionError>(Db { ctx })
            }
        });
        match runner.run_file_async(&file).await {
            Ok(()) => println!("ok   {}", file.display()),
            Err(e) => {
                failed += 1;
                println!("FAIL {}\n{e}", file.display());
            }
        }
    }
    failed
}
