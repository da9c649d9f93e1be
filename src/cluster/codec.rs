//! The codecs that ship an export to a Ballista cluster: the store's tables
//! (by store URL, pinned version and export partitions — the scheduler
//! reopens the store and plans from the same Delta versions), the sink as a
//! logical node ([`WriteShardsNode`]) and as a plan node
//! ([`WriteShardsExec`]). Our messages are JSON after a tag; anything else
//! goes to Ballista's own codecs. The SQL functions travel by name and are
//! registered in every process ([`crate::sample::udfs`]).

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::common::{DataFusionError, Result as DfResult, TableReference};
use datafusion::datasource::file_format::FileFormatFactory;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Extension, LogicalPlan, ScalarUDF};
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use serde::{Deserialize, Serialize};

use super::grant::{Grant, NusomiOptions};
use super::node::WriteShardsNode;
use crate::engine::{ShardJob, WriteShardsExec};
use crate::store::{FramesTable, SealedStore, SessionsTable, StoreLocation, StoreVersion};

/// What every message of ours starts with.
const TAG: &[u8] = b"nusomi-export/1:";

/// One of our messages.
#[derive(Debug, Serialize, Deserialize)]
enum Message {
    /// The `sessions` or `frames` table of a store.
    Table {
        table: String,
        root: String,
        version: StoreVersion,
        partitions: u32,
    },
    /// The sink.
    Sink(ShardJob),
}

fn encode(m: &Message, buf: &mut Vec<u8>) -> DfResult<()> {
    buf.extend_from_slice(TAG);
    serde_json::to_writer(buf, m).map_err(|e| DataFusionError::Internal(e.to_string()))
}

fn decode(buf: &[u8]) -> Option<DfResult<Message>> {
    let body = buf.strip_prefix(TAG)?;
    Some(serde_json::from_slice(body).map_err(|e| DataFusionError::Internal(e.to_string())))
}

/// The sink's job and its one input, when `buf` is one of our messages
/// (`None`: not ours).
fn decode_sink<I: Clone>(buf: &[u8], inputs: &[I]) -> Option<DfResult<(ShardJob, I)>> {
    let sink = decode(buf)?.and_then(|m| match m {
        Message::Sink(job) => {
            let input = inputs
                .first()
                .cloned()
                .ok_or_else(|| DataFusionError::Internal("the sink has one input".into()))?;
            Ok((job, input))
        }
        other => Err(DataFusionError::Internal(format!(
            "not a plan node: {other:?}"
        ))),
    });
    Some(sink)
}

/// Refuses a store table whose root is not the one the job's grant names
/// (the scheduler opens a store only for a job that says it reads it; the
/// signature is checked by the executors, which hold the job key).
fn granted_root(ctx: &TaskContext, root: &str) -> DfResult<()> {
    let text = NusomiOptions::grant_of(ctx.session_config());
    let granted = serde_json::from_str::<Grant>(text).is_ok_and(|g| g.names_root(root));
    if granted {
        Ok(())
    } else {
        Err(DataFusionError::Plan(format!(
            "the job's grant does not name the store {root} (only exports the service signs \
             run here)"
        )))
    }
}

/// The logical codec: our tables and sink node, else Ballista's.
#[derive(Debug, Default)]
pub struct LogicalCodec {
    inner: ballista_core::serde::BallistaLogicalExtensionCodec,
}

impl LogicalExtensionCodec for LogicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        ctx: &TaskContext,
    ) -> DfResult<Extension> {
        match decode_sink(buf, inputs) {
            Some(sink) => {
                let (job, input) = sink?;
                Ok(Extension {
                    node: Arc::new(WriteShardsNode::new(input, job)),
                })
            }
            None => self.inner.try_decode(buf, inputs, ctx),
        }
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> DfResult<()> {
        match node.node.as_any().downcast_ref::<WriteShardsNode>() {
            Some(n) => encode(&Message::Sink(n.job().clone()), buf),
            None => self.inner.try_encode(node, buf),
        }
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> DfResult<Arc<dyn TableProvider>> {
        let Some(m) = decode(buf) else {
            return self
                .inner
                .try_decode_table_provider(buf, table_ref, schema, ctx);
        };
        let Message::Table {
            table,
            root,
            version,
            partitions,
        } = m?
        else {
            return Err(DataFusionError::Internal("not a table".into()));
        };
        granted_root(ctx, &root)?;
        let location = StoreLocation::parse(&root)?;
        let store = SealedStore::at_version(location, version)?;
        match table.as_str() {
            "sessions" if partitions == 1 => {
                Ok(Arc::new(SessionsTable::new(store).single_partition()))
            }
            "sessions" => Ok(Arc::new(SessionsTable::new(store))),
            "frames" => Ok(Arc::new(
                FramesTable::new(store).with_partitions(partitions),
            )),
            other => Err(DataFusionError::Internal(format!("no table {other:?}"))),
        }
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> DfResult<()> {
        let (table, store, partitions) =
            if let Some(t) = node.as_ref().downcast_ref::<SessionsTable>() {
                ("sessions", t.store(), u32::from(t.is_single_partition()))
            } else if let Some(t) = node.as_ref().downcast_ref::<FramesTable>() {
                ("frames", t.store(), t.partitions())
            } else {
                return self.inner.try_encode_table_provider(table_ref, node, buf);
            };
        let version = store.pinned_version().ok_or_else(|| {
            DataFusionError::Plan(
                "a cluster reads a pinned store version: register a pinned store".into(),
            )
        })?;
        let location = store.location();
        if location.url.as_str().starts_with("memory:") {
            return Err(DataFusionError::Plan(
                "an in-memory store cannot be read by a cluster's executors".into(),
            ));
        }
        encode(
            &Message::Table {
                table: table.into(),
                root: location.root_url(),
                version,
                partitions,
            },
            buf,
        )
    }

    fn try_decode_file_format(
        &self,
        buf: &[u8],
        ctx: &TaskContext,
    ) -> DfResult<Arc<dyn FileFormatFactory>> {
        self.inner.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(
        &self,
        buf: &mut Vec<u8>,
        node: Arc<dyn FileFormatFactory>,
    ) -> DfResult<()> {
        self.inner.try_encode_file_format(buf, node)
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> DfResult<Arc<ScalarUDF>> {
        self.inner.try_decode_udf(name, buf)
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> DfResult<()> {
        self.inner.try_encode_udf(node, buf)
    }
}

/// The physical codec: the sink, else Ballista's.
#[derive(Debug, Default)]
pub struct PhysicalCodec {
    inner: ballista_core::serde::BallistaPhysicalExtensionCodec,
}

impl PhysicalExtensionCodec for PhysicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        match decode_sink(buf, inputs) {
            Some(sink) => {
                let (job, input) = sink?;
                let exec = WriteShardsExec::new(input, job);
                // An executor seals what its sink reports with its job key.
                Ok(Arc::new(match super::auth::current() {
                    Ok(secret) => {
                        let key = secret.job_key().clone();
                        let id = exec.job().export_id.clone();
                        exec.with_report_seal(Arc::new(move |json: &str| {
                            super::grant::seal_report(&key, &id, json)
                        }))
                    }
                    Err(_) => exec,
                }))
            }
            None => self.inner.try_decode(buf, inputs, ctx, proto_converter),
        }
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<()> {
        match node.as_ref().downcast_ref::<WriteShardsExec>() {
            Some(exec) => encode(&Message::Sink(exec.job().clone()), buf),
            None => self.inner.try_encode(node, buf, proto_converter),
        }
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> DfResult<Arc<ScalarUDF>> {
        self.inner.try_decode_udf(name, buf)
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> DfResult<()> {
        self.inner.try_encode_udf(node, buf)
    }
}
