//! Scale-out on Apache DataFusion Ballista (cargo feature `cluster`): the
//! scheduler and executor processes with our codecs (`codec.rs`), the
//! sink's logical node and planner (`node.rs`), SQL functions and object
//! stores registered, and the client side an export submits its plan
//! with ([`write_shards_on_cluster`]). The plan is the one a single node
//! runs: the export query with the frames scan split into the export's
//! partitions, under [`crate::engine::WriteShardsExec`]; each executor
//! writes its partitions' shards straight to the destination, and the
//! process that submitted the export writes the manifest last. Every
//! channel between them is authenticated with the cluster's shared secret
//! (`auth.rs`).

mod auth;
mod codec;
mod grant;
mod guard;
mod node;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use ballista::prelude::{SessionConfigExt, SessionContextExt};
use datafusion::arrow::array::{Array, AsArray};
use datafusion::common::Result as DfResult;
use datafusion::execution::object_store::{DefaultObjectStoreRegistry, ObjectStoreRegistry};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::SessionStateBuilder;
use datafusion::logical_expr::{Extension, LogicalPlan};
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext};
use object_store::ObjectStore;
use url::Url;

pub use auth::{install as install_secret, ClusterSecret, JOB_KEY_FILE_ENV, SECRET_FILE_ENV};
pub use codec::{LogicalCodec, PhysicalCodec};
pub use grant::{Grant, NusomiOptions};
pub use node::{query_planner, WriteShardsNode};

use crate::engine::{merge_reports, read_written, ShardJob};
use crate::error::{Error, Result};
use crate::sink::PartitionWritten;
use crate::store::StoreLocation;

/// Where a scheduler listens and how quickly it gives up on an executor.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// Address to listen on (loopback by default).
    pub bind: String,
    /// gRPC port.
    pub port: u16,
    /// Seconds without a heartbeat after which an executor is dead and its
    /// tasks run elsewhere.
    pub executor_timeout_secs: u64,
    /// Attempts of a task before its job fails.
    pub task_max_failures: usize,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        SchedulerOptions {
            bind: "127.0.0.1".into(),
            port: 50050,
            executor_timeout_secs: 180,
            task_max_failures: 4,
        }
    }
}

/// Where an executor listens and which scheduler it joins.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// The scheduler, `HOST:PORT`.
    pub scheduler: String,
    /// Address to listen on and advertise.
    pub bind: String,
    /// Arrow Flight port (shuffle data).
    pub port: u16,
    /// gRPC port (tasks).
    pub grpc_port: u16,
    /// Task slots.
    pub concurrent_tasks: usize,
    /// Folder for shuffle files.
    pub work_dir: Option<String>,
    /// Seconds between heartbeats.
    pub heartbeat_secs: u64,
    /// The service's workspaces: each job must name one and stay within its
    /// store and destination policy (`None`: the signed grant decides).
    pub workspaces: Option<crate::workspace::Workspaces>,
}

/// Executors pull their tasks. Ballista 55.0.0's default (the scheduler
/// pushes tasks and counts each executor's free slots) loses the slots of
/// tasks still running on a healthy executor when a lost executor's output
/// sends their stage back, and the export then waits forever; with pull
/// scheduling each executor keeps its own slots.
const SCHEDULING: ballista_core::config::TaskSchedulingPolicy =
    ballista_core::config::TaskSchedulingPolicy::PullStaged;

/// A DataFusion session config for a cluster: Ballista's, with our codecs,
/// and this process's cluster token on every channel its tasks open
/// (client → scheduler and executors, executor → executor shuffles).
fn cluster_config() -> SessionConfig {
    let config = SessionConfig::new_with_ballista()
        .with_ballista_logical_extension_codec(Arc::new(LogicalCodec::default()))
        .with_ballista_physical_extension_codec(Arc::new(PhysicalCodec::default()))
        .with_batch_size(crate::engine::IMAGE_BATCH_SIZE)
        .with_ballista_adaptive_query_planner(adaptive_planner())
        .with_option_extension(NusomiOptions::default());
    match auth::current() {
        Ok(secret) => {
            config.with_ballista_override_create_grpc_client_endpoint(secret.endpoint_override())
        }
        // Refused where a channel is made: `remote_context`, and the
        // processes' start.
        Err(_) => config,
    }
}

/// Ballista's adaptive planner, off unless `NUSOMI_CLUSTER_AQE=1`: with it
/// (Ballista 55.0.0) a job whose executor was lost mid-stage never gets its
/// task slots back and hangs; the static planner reruns the lost tasks.
fn adaptive_planner() -> bool {
    std::env::var("NUSOMI_CLUSTER_AQE").is_ok_and(|v| v == "1")
}

/// The runtime of a scheduler or executor: object stores made on first
/// use from their URL and this process's environment ([`LazyStores`]).
fn runtime() -> DfResult<Arc<RuntimeEnv>> {
    Ok(Arc::new(
        RuntimeEnvBuilder::new()
            .with_object_store_registry(Arc::new(LazyStores::default()))
            .build()?,
    ))
}

/// A session state with our functions and sink planner.
fn session_state(config: SessionConfig) -> DfResult<datafusion::execution::SessionState> {
    let mut udfs = ballista_core::extension::ballista_scalar_functions();
    udfs.extend(crate::sample::udfs().into_iter().map(Arc::new));
    Ok(SessionStateBuilder::new()
        .with_default_features()
        .with_config(config)
        .with_runtime_env(runtime()?)
        .with_optimizer_rules(ballista_core::optimizer::ballista_default_optimizer_rules())
        .with_scalar_functions(udfs)
        .with_aggregate_functions(ballista_core::extension::ballista_aggregate_functions())
        .with_window_functions(ballista_core::extension::ballista_window_functions())
        .with_query_planner(query_planner())
        .build())
}

/// The shortest executor timeout the scheduler takes: twice Ballista's
/// 5 s busy-poll interval (`HEARTBEAT_POLL_INTERVAL` in
/// ballista-executor's `execution_loop.rs`), which is private.
const MIN_EXECUTOR_TIMEOUT_SECS: u64 = 10;

/// Runs a Ballista scheduler that plans exports, until the process ends.
pub async fn run_scheduler(opts: SchedulerOptions) -> Result<()> {
    use ballista_scheduler::cluster::BallistaCluster;
    use ballista_scheduler::config::SchedulerConfig;
    let secret = auth::current()?;
    if opts.executor_timeout_secs < MIN_EXECUTOR_TIMEOUT_SECS {
        return Err(Error::Config {
            field: "executor_timeout_secs".into(),
            message: format!(
                "{} s is too short: at least {MIN_EXECUTOR_TIMEOUT_SECS} s (a busy executor's poll \
                 for work, its only heartbeat under pull scheduling, comes every 5 s; a shorter \
                 timeout takes busy executors for dead and reruns their tasks without end)",
                opts.executor_timeout_secs
            ),
        });
    }
    let addr = format!("{}:{}", opts.bind, opts.port)
        .parse()
        .map_err(|e| Error::Config {
            field: "bind".into(),
            message: format!("{e}"),
        })?;
    let mut config = SchedulerConfig {
        bind_host: opts.bind.clone(),
        external_host: opts.bind.clone(),
        bind_port: opts.port,
        executor_timeout_seconds: opts.executor_timeout_secs,
        expire_dead_executor_interval_seconds: (opts.executor_timeout_secs / 3).max(1),
        no_executors_grace_period_seconds: opts.executor_timeout_secs,
        task_max_failures: opts.task_max_failures,
        scheduling_policy: SCHEDULING,
        ..SchedulerConfig::default()
    }
    .with_override_config_producer(Arc::new(cluster_config))
    .with_override_session_builder(Arc::new(session_state));
    config.override_logical_codec = Some(Arc::new(LogicalCodec::default()));
    config.override_physical_codec = Some(Arc::new(PhysicalCodec::default()));
    // The scheduler's own calls to executors carry the token too.
    config.override_create_grpc_client_endpoint = Some(secret.endpoint_override());
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(ballista_error)?;
    serve_scheduler(cluster, addr, Arc::new(config), &secret).await
}

/// What Ballista's `start_server` does for a scheduler built without its
/// optional features (Flight SQL, REST API, KEDA) and without its embedded
/// Flight proxy (off by default) — the scheduler gRPC service alone — with
/// every request refused unless it carries the cluster's token. The
/// health routes (`/healthz`, `/readyz`) are not served: no route answers
/// an unauthenticated peer.
async fn serve_scheduler(
    cluster: ballista_scheduler::cluster::BallistaCluster,
    addr: std::net::SocketAddr,
    config: Arc<ballista_scheduler::config::SchedulerConfig>,
    secret: &ClusterSecret,
) -> Result<()> {
    use ballista_core::serde::protobuf::scheduler_grpc_server::SchedulerGrpcServer;
    use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
    config.validate().map_err(ballista_error)?;
    let scheduler = ballista_scheduler::scheduler_process::create_scheduler::<
        LogicalPlanNode,
        PhysicalPlanNode,
    >(cluster, Arc::clone(&config))
    .await
    .map_err(ballista_error)?;
    let grpc = SchedulerGrpcServer::new(scheduler)
        .max_encoding_message_size(config.grpc_server_max_encoding_message_size as usize)
        .max_decoding_message_size(config.grpc_server_max_decoding_message_size as usize);
    let guarded = tonic::service::interceptor::InterceptedService::new(grpc, secret.interceptor());
    let mut routes = tonic::service::RoutesBuilder::default();
    routes.add_service(guarded);
    let router = routes.routes().into_axum_router().fallback(|| async {
        tonic::Status::unauthenticated("no such service").into_http::<axum::body::Body>()
    });
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::io(addr.to_string(), e))?;
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .await
    .map_err(|e| Error::io(addr.to_string(), e))
}

/// An executor's Arrow Flight server (shuffle and result fetches) as
/// Ballista's built-in one, with every request refused unless it carries
/// the cluster's token.
fn guarded_flight(secret: ClusterSecret) -> Arc<ballista_executor::ArrowFlightServerProvider> {
    use arrow_flight::flight_service_server::FlightServiceServer;
    use ballista_executor::flight_service::BallistaFlightService;
    Arc::new(move |work_dir, addr, mut shutdown, grpc_config| {
        let interceptor = secret.interceptor();
        tokio::spawn(async move {
            // Ballista's default message limits (16 MiB).
            const MAX_MESSAGE: usize = 16 * 1024 * 1024;
            let flight = FlightServiceServer::new(BallistaFlightService::new(work_dir))
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE);
            ballista_core::utils::create_grpc_server(&grpc_config)
                .add_service(tonic::service::interceptor::InterceptedService::new(
                    flight,
                    interceptor,
                ))
                .serve_with_shutdown(addr, shutdown.recv())
                .await
                .map_err(ballista_core::error::BallistaError::TonicError)
        })
    })
}

/// Runs a Ballista executor that writes export shards, until the process
/// ends. Object-store credentials come from its environment.
pub async fn run_executor(opts: ExecutorOptions) -> Result<()> {
    use ballista_executor::executor_process::{start_executor_process, ExecutorProcessConfig};
    let secret = auth::current()?;
    let (host, port) = opts
        .scheduler
        .rsplit_once(':')
        .ok_or_else(|| Error::Config {
            field: "scheduler".into(),
            message: format!("{:?} is not HOST:PORT", opts.scheduler),
        })?;
    let scheduler_port = port.parse().map_err(|_| Error::Config {
        field: "scheduler".into(),
        message: format!("{port:?} is not a port"),
    })?;
    let registry = ballista_core::registry::BallistaFunctionRegistry::from(
        &session_state(cluster_config()).map_err(Error::from)?,
    );
    let config = ExecutorProcessConfig {
        bind_host: opts.bind.clone(),
        external_host: Some(opts.bind.clone()),
        port: opts.port,
        grpc_port: opts.grpc_port,
        scheduler_host: host.to_string(),
        scheduler_port,
        vcores: opts.concurrent_tasks.max(1),
        work_dir: opts.work_dir.clone(),
        executor_heartbeat_interval_seconds: opts.heartbeat_secs.max(1),
        print_thread_info: false,
        task_scheduling_policy: SCHEDULING,
        override_function_registry: Some(Arc::new(registry)),
        override_runtime_producer: Some(Arc::new(|_: &SessionConfig| runtime())),
        override_config_producer: Some(Arc::new(cluster_config)),
        override_logical_codec: Some(Arc::new(LogicalCodec::default())),
        override_physical_codec: Some(Arc::new(PhysicalCodec::default())),
        override_arrow_flight_service: Some(guarded_flight(secret.clone())),
        override_execution_engine: Some(Arc::new(guard::PlanGuard::new(
            secret.job_key().clone(),
            opts.workspaces.clone(),
        ))),
        override_create_grpc_client_endpoint: Some(secret.endpoint_override()),
        ..ExecutorProcessConfig::default()
    };
    start_executor_process(Arc::new(config))
        .await
        .map_err(ballista_error)
}

fn ballista_error(e: ballista_core::error::BallistaError) -> Error {
    Error::Cluster(e.to_string())
}

/// A client session on the scheduler at `url` (`df://HOST:PORT`), with our
/// codecs; register the store's tables and functions into it as usual.
pub async fn remote_context(url: &str) -> Result<SessionContext> {
    // A client without the cluster's secret is refused here, by name.
    auth::current()?;
    let state = SessionStateBuilder::new()
        .with_default_features()
        .with_config(cluster_config())
        .build();
    SessionContext::remote_with_state(url, state)
        .await
        .map_err(|e| Error::Cluster(format!("{url}: {e}")))
}

/// Submits `sql` (the export query, planned in `ctx`, a
/// [`remote_context`] with the store at `store_root` registered) under the
/// sink of `job` to the cluster, with the job's [`Grant`] signed, and
/// returns what every partition wrote.
pub(crate) async fn write_shards_on_cluster(
    ctx: &SessionContext,
    store_root: &str,
    sql: &str,
    job: ShardJob,
) -> Result<Vec<PartitionWritten>> {
    let grant = Grant::for_job(&job, store_root)?;
    run_granted(ctx, &grant, sql, job).await
}

/// Submits `sql` under the sink of `job` with `grant` in the job's
/// settings (the executors run it only if the grant is signed with their
/// job key and covers the plan's scans and sink), and returns what every
/// partition wrote — each report checked against its seal first.
pub async fn run_granted(
    ctx: &SessionContext,
    grant: &Grant,
    sql: &str,
    job: ShardJob,
) -> Result<Vec<PartitionWritten>> {
    let key = auth::current()?.job_key().clone();
    set_grant(ctx, grant)?;
    let partitions = job.partitions;
    let export_id = job.export_id.clone();
    let input = ctx.sql(sql).await?.into_unoptimized_plan();
    let plan = LogicalPlan::Extension(Extension {
        node: Arc::new(WriteShardsNode::new(input, job)),
    });
    let batches = DataFrame::new(ctx.state(), plan)
        .collect()
        .await
        .map_err(Error::from_engine)?;
    for b in &batches {
        let (reports, seals) = (
            b.column_by_name("written").map(|c| c.as_string::<i32>()),
            b.column_by_name("seal").map(|c| c.as_string::<i32>()),
        );
        let (Some(reports), Some(seals)) = (reports, seals) else {
            return Err(Error::Cluster("a partition's report has no seal".into()));
        };
        for i in 0..b.num_rows() {
            let sealed = seals.is_valid(i)
                && grant::report_sealed(&key, &export_id, reports.value(i), seals.value(i));
            if !sealed {
                return Err(Error::Cluster(
                    "a partition's report is not sealed with this cluster's job key: it did not \
                     come from an executor of this cluster for this export"
                        .into(),
                ));
            }
        }
    }
    merge_reports(read_written(&batches)?, partitions)
}

/// Puts `grant` into the settings of `ctx`, which Ballista sends with the
/// job to the scheduler and every task.
fn set_grant(ctx: &SessionContext, grant: &Grant) -> Result<()> {
    let text = serde_json::to_string(grant).map_err(|e| Error::Internal(e.to_string()))?;
    let state = ctx.state_ref();
    let mut state = state.write();
    let options = state.config_mut().options_mut();
    match options.extensions.get_mut::<NusomiOptions>() {
        Some(o) => {
            o.grant = text;
            Ok(())
        }
        None => Err(Error::Internal(
            "not a cluster session (no nusomi settings)".into(),
        )),
    }
}

/// An object-store registry that opens a store the first time a URL of it
/// is asked for, as a store root of that URL would be opened
/// ([`StoreLocation::parse`]: credentials from the environment).
#[derive(Debug, Default)]
struct LazyStores {
    known: DefaultObjectStoreRegistry,
    opened: RwLock<HashMap<String, Arc<dyn ObjectStore>>>,
}

impl ObjectStoreRegistry for LazyStores {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        self.known.register_store(url, store)
    }

    fn get_store(&self, url: &Url) -> DfResult<Arc<dyn ObjectStore>> {
        if let Ok(s) = self.known.get_store(url) {
            return Ok(s);
        }
        let key = format!("{}://{}", url.scheme(), url.authority());
        if let Some(s) = self.opened.read().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(s);
        }
        let loc = StoreLocation::parse(&format!("{key}/"))
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
        if let Ok(mut m) = self.opened.write() {
            m.insert(key, Arc::clone(&loc.store));
        }
        Ok(loc.store)
    }
}
