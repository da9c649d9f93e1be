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
use nusomi_export::spec::{compile_sql, ExportSpec};
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
        let sql = match expand_export_directive(sql)? {
            Directive::Sql(sql) => sql,
            Directive::Rows { sql, counts } => return export_rows(&self.ctx, &sql, counts).await,
            Directive::Steps(spec) => return step_rows(&self.ctx, &spec).await,
        };
        let df = self.ctx.sql(&sql).await?;
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

/// The instant specs without `as_of` are created at in `.slt` files.
const SLT_NOW: &str = "2026-11-25T00:00:00Z";

/// Harness directives that run an export spec through the real compiler:
///
/// * `EXPORT KEYS <spec json>` → the export rows' `key`s, in export order;
/// * `EXPORT ROWS <spec json>` → `key`, `cardinality(events)`, `cardinality(actions)`;
/// * `EXPORT SQL <spec json>` → the compiled SQL text;
/// * `EXPORT SPLITS <spec json>` → `key`, `split` of a spec with splits;
/// * `EXPORT ERROR <spec json>` → the spec's errors, one row each;
/// * `EXPORT STEPS <spec json>` → the step rows of a `"unit": "step"`
///   spec through the real pipeline (`export_rows`): `key`,
///   `observation_key`, `image_width`×`image_height`, `action_text`,
///   `history_actions` and `history_keys` (joined with ` | `).
///
/// Anything else is plain SQL.
fn expand_export_directive(sql: &str) -> Result<Directive, DataFusionError> {
    let Some(rest) = sql.trim().strip_prefix("EXPORT ") else {
        return Ok(Directive::Sql(sql.to_string()));
    };
    let (kind, json) = rest.trim().split_once(' ').unwrap_or((rest, ""));
    let now = chrono::DateTime::parse_from_rfc3339(SLT_NOW)
        .expect("SLT_NOW")
        .with_timezone(&chrono::Utc);
    let quote = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let spec = match ExportSpec::from_json(json, now) {
        Ok(spec) => spec,
        Err(errors) if kind == "ERROR" => {
            let rows: Vec<String> = errors
                .0
                .iter()
                .map(|e| format!("({})", quote(&e.to_string())))
                .collect();
            return Ok(Directive::Sql(format!(
                "SELECT column1 AS error FROM (VALUES {})",
                rows.join(", ")
            )));
        }
        Err(errors) => return Err(DataFusionError::External(Box::new(errors))),
    };
    if kind == "STEPS" {
        return Ok(Directive::Steps(Box::new(spec)));
    }
    let compiled = compile_sql(&spec).map_err(DataFusionError::from)?;
    Ok(match kind {
        "KEYS" => Directive::Rows {
            sql: compiled,
            counts: false,
        },
        "ROWS" => Directive::Rows {
            sql: compiled,
            counts: true,
        },
        "SQL" => Directive::Sql(format!("SELECT {} AS sql", quote(&compiled))),
        "SPLITS" => Directive::Sql(format!(
            "SELECT key, split FROM ({compiled}) AS e ORDER BY key"
        )),
        "ERROR" => Directive::Sql("SELECT 'spec is valid' AS error".to_string()),
        other => {
            return Err(DataFusionError::Plan(format!(
                "unknown EXPORT directive {other}"
            )))
        }
    })
}

/// Column `name` of a result batch.
fn column(
    b: &arrow::array::RecordBatch,
    name: &str,
) -> Result<arrow::array::ArrayRef, DataFusionError> {
    b.column_by_name(name)
        .cloned()
        .ok_or_else(|| DataFusionError::Plan(format!("no column {name}")))
}

enum Directive {
    Sql(String),
    /// Run the compiled query as is (its own ORDER BY decides the order) and
    /// show `key` (and the events / actions counts).
    Rows {
        sql: String,
        counts: bool,
    },
    /// Run a step spec's whole row pipeline and show its steps.
    Steps(Box<ExportSpec>),
}

async fn step_rows(
    ctx: &SessionContext,
    spec: &ExportSpec,
) -> Result<DBOutput<DefaultColumnType>, DataFusionError> {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::Int32Type;
    use futures::TryStreamExt;
    let (_, stream) = nusomi_export::export_rows(ctx, spec)
        .await
        .map_err(DataFusionError::from)?;
    let batches: Vec<_> = stream.try_collect().await?;
    let mut rows = Vec::new();
    for b in &batches {
        let col = |name: &str| column(b, name);
        let text = |name: &str| -> Result<Vec<String>, DataFusionError> {
            let c = col(name)?;
            let c = c.as_string::<i32>();
            Ok((0..c.len()).map(|i| c.value(i).to_string()).collect())
        };
        let joined = |name: &str| -> Result<Vec<String>, DataFusionError> {
            let c = col(name)?;
            let l = c.as_list::<i32>();
            Ok((0..l.len())
                .map(|i| {
                    let v = l.value(i);
                    let v = v.as_string::<i32>();
                    let items: Vec<&str> = (0..v.len()).map(|j| v.value(j)).collect();
                    if items.is_empty() {
                        "(none)".to_string()
                    } else {
                        items.join(" | ")
                    }
                })
                .collect())
        };
        let (w, h) = (col("image_width")?, col("image_height")?);
        let (w, h) = (w.as_primitive::<Int32Type>(), h.as_primitive::<Int32Type>());
        let (keys, obs, actions) = (text("key")?, text("observation_key")?, text("action_text")?);
        let (hist, frames) = (joined("history_actions")?, joined("history_keys")?);
        for r in 0..b.num_rows() {
            rows.push(vec![
                keys[r].clone(),
                obs[r].clone(),
                format!("{}x{}", w.value(r), h.value(r)),
                actions[r].replace('\n', " ; "),
                hist[r].replace('\n', " ; "),
                frames[r].clone(),
            ]);
        }
    }
    Ok(DBOutput::Rows {
        types: vec![DefaultColumnType::Any; 6],
        rows,
    })
}

async fn export_rows(
    ctx: &SessionContext,
    sql: &str,
    counts: bool,
) -> Result<DBOutput<DefaultColumnType>, DataFusionError> {
    use arrow::array::{Array, AsArray};
    let batches = ctx.sql(sql).await?.collect().await?;
    let mut rows = Vec::new();
    for b in &batches {
        let col = |name: &str| column(b, name);
        let (key, events, actions) = (col("key")?, col("events")?, col("actions")?);
        let (key, events, actions) = (
            key.as_string::<i32>(),
            events.as_list::<i32>(),
            actions.as_list::<i32>(),
        );
        for r in 0..b.num_rows() {
            let mut row = vec![key.value(r).to_string()];
            if counts {
                row.push(events.value(r).len().to_string());
                row.push(actions.value(r).len().to_string());
            }
            rows.push(row);
        }
    }
    let n = if counts { 3 } else { 1 };
    Ok(DBOutput::Rows {
        types: vec![DefaultColumnType::Any; n],
        rows,
    })
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
