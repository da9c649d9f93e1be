//! Scale-out on a Ballista cluster (cargo feature `cluster`): a scheduler
//! and two executors run as separate `nusomi cluster` processes on
//! loopback; exports of every format with `partitions = 4` give the same
//! manifest as a single-node run, into a local folder and into SeaweedFS;
//! an executor killed mid-export changes nothing either. Every channel is
//! authenticated with the cluster's shared secret: a client, an executor
//! or a Flight call without it is refused.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nusomi_export::store::{SealOptions, SealedStore};
use nusomi_export::Export;
use serde_json::{json, Value};

use crate::support::{spec_json, write_session};

/// A scheduler and its executors, stopped when dropped.
struct Cluster {
    url: String,
    scheduler: Child,
    executors: Vec<Child>,
    /// Each executor's Arrow Flight port.
    flight_ports: Vec<u16>,
    _work: tempfile::TempDir,
}

/// The secret every test cluster shares (one per process: the test
/// process is a client of each).
const SECRET: &str = "nusomi-test-cluster-secret-0123456789abcdef";

/// Writes `secret` into `dir/name` and returns the path.
fn secret_file(dir: &Path, name: &str, secret: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, secret).unwrap();
    path
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_port(port: u16, what: &str) {
    let until = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < until, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Cluster {
    /// A scheduler and `executors` executors of `slots` task slots each;
    /// an executor silent for 15 s is dead. Under pull scheduling an
    /// executor's poll for work is its only heartbeat, and a busy one polls
    /// every 5 s: a shorter timeout declares the survivors of a lost
    /// executor dead mid-task on a loaded machine and resets their work
    /// again and again (the export never finished: a livelock, not a slow
    /// run).
    fn start(executors: usize, slots: usize) -> Cluster {
        Self::start_with(executors, slots, &[])
    }

    /// As [`Cluster::start`], each executor given `extra` arguments too.
    fn start_with(executors: usize, slots: usize, extra: &[&std::ffi::OsStr]) -> Cluster {
        let work = tempfile::TempDir::new().unwrap();
        let bin = env!("CARGO_BIN_EXE_nusomi");
        let secret = secret_file(work.path(), "secret", SECRET);
        // This process submits exports: it is a client of the cluster.
        nusomi_export::cluster::install_secret(
            nusomi_export::cluster::ClusterSecret::from_file(&secret).unwrap(),
        );
        let port = free_port();
        let log = |name: &str| std::fs::File::create(work.path().join(name)).unwrap();
        let scheduler = Command::new(bin)
            .env("NUSOMI_LOG", "warn")
            .args(["cluster", "scheduler", "--port", &port.to_string()])
            .args(["--executor-timeout-secs", "15"])
            .arg("--secret-file")
            .arg(&secret)
            .stdout(log("scheduler.out"))
            .stderr(log("scheduler.err"))
            .spawn()
            .unwrap();
        wait_port(port, "the scheduler");
        let mut children = Vec::new();
        let mut flight_ports = Vec::new();
        for i in 0..executors {
            let (flight, grpc) = (free_port(), free_port());
            let dir = work.path().join(format!("executor-{i}"));
            std::fs::create_dir_all(&dir).unwrap();
            let child = Command::new(bin)
                .args(["cluster", "executor"])
                .args(["--scheduler", &format!("127.0.0.1:{port}")])
                .args(["--port", &flight.to_string()])
                .args(["--grpc-port", &grpc.to_string()])
                .args(["--concurrent-tasks", &slots.to_string()])
                .arg("--secret-file")
                .arg(&secret)
                .args(["--work-dir", dir.to_str().unwrap()])
                .args(extra)
                .stdout(log(&format!("executor-{i}.out")))
                .stderr(log(&format!("executor-{i}.err")))
                .spawn()
                .unwrap();
            wait_port(flight, "an executor");
            children.push(child);
            flight_ports.push(flight);
        }
        // Executors register right after they listen.
        std::thread::sleep(Duration::from_millis(500));
        Cluster {
            url: format!("df://127.0.0.1:{port}"),
            scheduler,
            executors: children,
            flight_ports,
            _work: work,
        }
    }

    /// What the scheduler logged (warnings and errors).
    fn scheduler_log(&self) -> String {
        std::fs::read_to_string(self._work.path().join("scheduler.err")).unwrap_or_default()
    }

    fn kill_executor(&mut self, i: usize) {
        self.executors[i].kill().unwrap();
        self.executors[i].wait().unwrap();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in self.executors.iter_mut().chain([&mut self.scheduler]) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A store in a local folder with sessions `0..n` of generator `seed`.
async fn local_store(seed: u64, n: usize) -> (tempfile::TempDir, Arc<SealedStore>) {
    let tmp = tempfile::TempDir::new().unwrap();
    let store = SealedStore::open(tmp.path().join("store").to_str().unwrap())
        .await
        .unwrap();
    let dirs: Vec<PathBuf> = (0..n)
        .map(|i| write_session(&tmp.path().join("bundles"), seed, i).1)
        .collect();
    let opts = SealOptions {
        sealed_at: Some("2029-01-01T00:00:00Z".parse().unwrap()),
        ..SealOptions::default()
    };
    for d in &dirs {
        store.seal(d, &opts).await.unwrap();
    }
    (tmp, store)
}

async fn export(
    store: &Arc<SealedStore>,
    spec: &Value,
    cluster: Option<&str>,
) -> nusomi_export::sink::Manifest {
    let spec = nusomi_export::spec::ExportSpec::parse(spec, chrono::Utc::now()).unwrap();
    let mut e = Export::new(store, &spec);
    if let Some(url) = cluster {
        e = e.with_cluster(url);
    }
    e.await.unwrap().manifest
}

/// Every file under `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

/// Exports `spec` into `out` on one node, moves it aside, exports it again
/// on the cluster into the same folder; returns both manifests' bytes.
async fn both_ways(
    store: &Arc<SealedStore>,
    spec: &Value,
    out: &Path,
    url: &str,
) -> (Vec<u8>, Vec<u8>) {
    export(store, spec, None).await;
    let single = out.with_extension("single");
    std::fs::rename(out, &single).unwrap();
    export(store, spec, Some(url)).await;
    let a = std::fs::read(single.join("manifest.json")).unwrap();
    let b = std::fs::read(out.join("manifest.json")).unwrap();
    // Same files, same bytes.
    assert_eq!(files(&single), files(out));
    for f in files(out) {
        assert_eq!(
            std::fs::read(single.join(&f)).unwrap(),
            std::fs::read(out.join(&f)).unwrap(),
            "{f} differs"
        );
    }
    std::fs::remove_dir_all(&single).unwrap();
    (a, b)
}

#[tokio::test]
async fn every_format_on_two_executors_equals_one_node() {
    let (tmp, store) = local_store(61, 10).await;
    let cluster = Cluster::start(2, 2);
    for format in ["parquet", "arrow", "jsonl", "webdataset", "mds"] {
        let out = tmp.path().join(format!("out-{format}"));
        let spec = spec_json(
            format,
            json!({"partitions": 4, "shard_size_bytes": 65536,
                   "destination": {"kind": "local", "path": out}}),
        );
        let (single, clustered) = both_ways(&store, &spec, &out, &cluster.url).await;
        assert_eq!(single, clustered, "{format}: manifests differ");
        let m: Value = serde_json::from_slice(&clustered).unwrap();
        let shards: Vec<&str> = m["shards"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["path"].as_str().unwrap())
            .collect();
        // Named by partition and sequence; more than one partition wrote.
        assert!(
            shards.iter().all(|s| s.starts_with("shard-p000")),
            "{shards:?}"
        );
        let parts: std::collections::BTreeSet<&str> = shards.iter().map(|s| &s[..11]).collect();
        assert!(parts.len() > 1, "one partition only: {shards:?}");
        assert!(m["rows"].as_u64().unwrap() > 0);
    }
    // A single partition and a split export too.
    for (name, fields) in [
        ("one", json!({"partitions": 1})),
        (
            "splits",
            json!({"partitions": 3, "splits": {"train": 0.7, "val": 0.3}}),
        ),
    ] {
        let out = tmp.path().join(format!("out-{name}"));
        let mut fields = fields;
        fields["destination"] = json!({"kind": "local", "path": out});
        fields["shard_size_bytes"] = json!(65536);
        let spec = spec_json("parquet", fields);
        let (single, clustered) = both_ways(&store, &spec, &out, &cluster.url).await;
        assert_eq!(single, clustered, "{name}: manifests differ");
    }
}

#[tokio::test]
async fn an_executor_killed_mid_export_changes_nothing() {
    let (tmp, store) = local_store(62, 24).await;
    let out = tmp.path().join("out");
    let spec = spec_json(
        "jsonl",
        json!({"partitions": 4, "shard_size_bytes": 4096,
               "destination": {"kind": "local", "path": out}}),
    );
    export(&store, &spec, None).await;
    let single = tmp.path().join("single");
    std::fs::rename(&out, &single).unwrap();

    // One slot each: both executors are busy while the first shards land.
    let mut cluster = Cluster::start(2, 1);
    let url = cluster.url.clone();
    let running = {
        let (store, spec) = (Arc::clone(&store), spec.clone());
        tokio::spawn(async move { export(&store, &spec, Some(&url)).await.digest })
    };
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let started = out.exists() && files(&out).iter().any(|f| f.starts_with("shard-"));
        if started {
            break;
        }
        assert!(Instant::now() < until, "no shard was written");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cluster.kill_executor(0);
    assert!(
        !out.join("manifest.json").exists(),
        "the export finished before an executor could be killed; make it larger"
    );
    // Found dead within ≈ 16 s; its tasks then run on the survivor.
    if tokio::time::timeout(Duration::from_secs(150), running)
        .await
        .is_err()
    {
        panic!(
            "the export did not finish after losing an executor; the scheduler's log:\n{}",
            cluster.scheduler_log()
        );
    }
    assert_eq!(
        std::fs::read(single.join("manifest.json")).unwrap(),
        std::fs::read(out.join("manifest.json")).unwrap()
    );
    // Nothing stray: exactly the files of the single-node export.
    assert_eq!(files(&single), files(&out));
    // The killed executor's work ran again elsewhere: either its running
    // tasks were rerun when it was found dead, or — as it happens first
    // when the survivor fetches the dead one's map output before the 15 s
    // timeout — the stage was resubmitted on the fetch failure.
    let log = cluster.scheduler_log();
    let rerun_lost =
        log.contains("tasks for running job/stage") && log.contains("on lost Executor");
    let resubmitted =
        log.contains("Need to resubmit") && log.contains("due to FetchPartitionError");
    assert!(
        rerun_lost || resubmitted,
        "the scheduler did not rerun the lost work; its log:\n{log}"
    );
    // Only the killed executor was ever taken for dead: a busy survivor
    // taken for dead loses its work (the livelock a short timeout caused).
    // When the stage was resubmitted on a fetch failure, the export can
    // end before the scheduler's 15 s heartbeat timeout finds the killed
    // one dead: wait for that line first (the survivor is idle by then).
    let until = Instant::now() + Duration::from_secs(60);
    let mut log = log;
    while !log.contains("heartbeat timed out") && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(200)).await;
        log = cluster.scheduler_log();
    }
    assert_eq!(
        log.matches("heartbeat timed out").count(),
        1,
        "a live executor was taken for dead; the scheduler's log:\n{log}"
    );
}

#[tokio::test]
#[ignore = "needs SeaweedFS: run scripts/test.sh"]
async fn every_format_on_two_executors_into_seaweedfs_equals_one_node() {
    let endpoint = std::env::var("NUSOMI_TEST_S3_ENDPOINT").expect("scripts/test.sh sets it");
    let (_tmp, store) = local_store(63, 8).await;
    let cluster = Cluster::start(2, 2);
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    for format in ["parquet", "arrow", "jsonl", "webdataset", "mds"] {
        let mut manifests = Vec::new();
        for (how, url) in [("single", None), ("cluster", Some(cluster.url.as_str()))] {
            let prefix = format!("cluster-{nonce}/{format}-{how}");
            let spec = spec_json(
                format,
                json!({"partitions": 4, "shard_size_bytes": 65536,
                       "destination": {"kind": "s3", "bucket": "nusomi-test", "prefix": prefix,
                                       "region": "us-east-1", "endpoint": endpoint}}),
            );
            let manifest = export(&store, &spec, url).await;
            let mut m = serde_json::to_value(&manifest).unwrap();
            // The prefix is the one difference the spec itself makes.
            for key in ["spec", "resolved"] {
                m[key]["destination"]["prefix"] = json!(null);
            }
            manifests.push(m);
        }
        assert_eq!(manifests[0], manifests[1], "{format}: manifests differ");
        assert!(manifests[0]["shard_count"].as_u64().unwrap() > 1);
    }
}

#[tokio::test]
async fn peers_without_the_secret_and_foreign_plans_are_refused() {
    let (tmp, store) = local_store(64, 3).await;
    let cluster = Cluster::start(1, 1);
    let _ = &store;
    let spec = spec_json(
        "jsonl",
        json!({"partitions": 2, "destination": {"kind": "local", "path": tmp.path().join("out")}}),
    );
    let spec_path = tmp.path().join("spec.json");
    std::fs::write(&spec_path, spec.to_string()).unwrap();
    let wrong = secret_file(
        tmp.path(),
        "wrong",
        "a-different-secret-of-at-least-32-bytes",
    );
    let client = |secret: Option<&Path>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_nusomi"));
        let root = tmp.path().join("store");
        c.args([
            "export",
            "create",
            "--store",
            root.to_str().unwrap(),
            "--cluster",
            &cluster.url,
        ])
        .arg(&spec_path)
        .env_remove("NUSOMI_CLUSTER_SECRET_FILE");
        if let Some(s) = secret {
            c.env("NUSOMI_CLUSTER_SECRET_FILE", s);
        }
        let out = c.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // A client without a secret is refused before it connects, by name.
    let (ok, err) = client(None);
    assert!(!ok && err.contains("needs a shared secret"), "{err}");
    // A client with another secret is refused by the scheduler.
    let (ok, err) = client(Some(&wrong));
    assert!(!ok, "{err}");
    assert!(
        err.contains("admits only peers that share its secret"),
        "{err}"
    );
    assert!(!tmp.path().join("out/manifest.json").exists());
    // A rogue executor (another secret) cannot register or pull tasks.
    let rogue_log = tmp.path().join("rogue.err");
    let mut rogue = Command::new(env!("CARGO_BIN_EXE_nusomi"))
        .args([
            "cluster",
            "executor",
            "--scheduler",
            cluster.url.trim_start_matches("df://"),
        ])
        .args([
            "--port",
            &free_port().to_string(),
            "--grpc-port",
            &free_port().to_string(),
        ])
        .arg("--secret-file")
        .arg(&wrong)
        .stderr(std::fs::File::create(&rogue_log).unwrap())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(30);
    let exited = loop {
        if let Some(status) = rogue.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > until {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = rogue.kill();
    let log = std::fs::read_to_string(&rogue_log).unwrap_or_default();
    assert!(
        exited.is_some_and(|s| !s.success()) || log.contains("admits only peers"),
        "the rogue executor was not refused: {exited:?} {log}"
    );
    // An unauthenticated Arrow Flight call to an executor is refused.
    let channel = tonic::transport::Channel::from_shared(format!(
        "http://127.0.0.1:{}",
        cluster.flight_ports[0]
    ))
    .unwrap()
    .connect()
    .await
    .unwrap();
    let mut flight = arrow_flight::flight_service_client::FlightServiceClient::new(channel);
    let ticket = arrow_flight::Ticket::new("anything");
    let refused = flight.do_get(ticket).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused}");
    // A holder of the secret cannot make an executor read its files through
    // DataFusion's own nodes: a CSV scan is refused by the executor.
    let csv = tmp.path().join("server-file.csv");
    std::fs::write(&csv, "secret,value\nSERVER-FILE-MARKER,1\n").unwrap();
    let ctx = nusomi_export::cluster::remote_context(&cluster.url)
        .await
        .unwrap();
    ctx.register_csv("server_file", csv.to_str().unwrap(), Default::default())
        .await
        .unwrap();
    let got = match ctx.sql("SELECT * FROM server_file").await {
        Ok(df) => df.collect().await.map(|b| format!("{b:?}")),
        Err(e) => Err(e),
    };
    let err = got
        .expect_err("the CSV scan ran on the cluster")
        .to_string();
    assert!(err.contains("this executor runs exports only"), "{err}");
    assert!(!err.contains("SERVER-FILE-MARKER"), "{err}");
    // The cluster still serves its own client (this process) as before.
    let out = tmp.path().join("out");
    let m = export(&store, &spec, Some(&cluster.url)).await;
    assert!(m.rows > 0 && out.join("manifest.json").exists());
}

/// A holder of the cluster secret who is not the service cannot stretch a
/// job past what its grant signs, and executors given the service's
/// workspaces file hold every job to its workspace's store and policy.
#[tokio::test]
async fn a_job_outside_its_signed_grant_or_its_workspace_is_refused_by_the_executors() {
    use nusomi_export::cluster::{remote_context, run_granted, Grant};
    use nusomi_export::engine::ShardJob;
    let (tmp, store) = local_store(65, 2).await;
    let (_other_tmp, other) = local_store(66, 2).await;
    let allowed = tmp.path().join("acme-exports");
    std::fs::create_dir_all(&allowed).unwrap();
    let workspaces = tmp.path().join("workspaces.json");
    std::fs::write(
        &workspaces,
        json!({"workspaces": [{
            "id": "acme",
            "tokens_sha256": [hex::encode([0u8; 32])],
            "store": tmp.path().join("store"),
            "destinations": {"local_root": allowed}
        }]})
        .to_string(),
    )
    .unwrap();
    let cluster = Cluster::start_with(
        1,
        1,
        &[std::ffi::OsStr::new("--workspaces"), workspaces.as_os_str()],
    );
    let spec =
        nusomi_export::spec::ExportSpec::parse(&spec_json("jsonl", json!({})), chrono::Utc::now())
            .unwrap();
    let sql = nusomi_export::spec::compile_sql(&spec).unwrap();
    let job = |workspace: Option<&str>, dest: &Path| ShardJob {
        export_id: "exp_granted".into(),
        destination: json!({"kind": "local", "path": dest}).to_string(),
        workspace_id: workspace.map(str::to_string),
        sts_from_destination: false,
        format: "jsonl".into(),
        shard_size_bytes: 1 << 30,
        part_bytes: 8 << 20,
        splits: vec![],
        steps: false,
        partitions: 1,
    };
    let refused = |store: Arc<SealedStore>, grant: Grant, job: ShardJob| {
        let (url, sql) = (cluster.url.clone(), sql.clone());
        async move {
            let ctx = remote_context(&url).await.unwrap();
            let pinned = store.pinned(None).await.unwrap();
            nusomi_export::register(&ctx, &pinned).unwrap();
            match run_granted(&ctx, &grant, &sql, job).await {
                Ok(w) => panic!("the cluster ran a job it should refuse: {w:?}"),
                Err(e) => e.to_string(),
            }
        }
    };
    let root = store.location().root_url();
    let (a, b) = (allowed.join("a"), allowed.join("b"));
    let acme_a = job(Some("acme"), &a);
    let signed = Grant::for_job(&acme_a, &root).unwrap();
    // The sink writes elsewhere than its signed grant says.
    let e = refused(Arc::clone(&store), signed.clone(), job(Some("acme"), &b)).await;
    assert!(
        e.contains("destination is not the one its grant signs"),
        "{e}"
    );
    // The grant itself altered after signing.
    let mut altered = signed.clone();
    altered.destination = job(Some("acme"), &b).destination;
    let e = refused(Arc::clone(&store), altered, job(Some("acme"), &b)).await;
    assert!(e.contains("not signed with this cluster's job key"), "{e}");
    // The plan reads another store than the grant names.
    let e = refused(Arc::clone(&other), signed.clone(), acme_a.clone()).await;
    assert!(e.contains("does not name the store"), "{e}");
    // Signed, but outside the workspace's policy (the executors check it
    // themselves): a folder outside its local_root, another workspace's
    // store, a workspace the service does not have, no workspace at all.
    let outside = job(Some("acme"), &tmp.path().join("server-dir"));
    let e = refused(
        Arc::clone(&store),
        Grant::for_job(&outside, &root).unwrap(),
        outside,
    )
    .await;
    assert!(e.contains("may not export there"), "{e}");
    let other_root = other.location().root_url();
    let e = refused(
        Arc::clone(&other),
        Grant::for_job(&acme_a, &other_root).unwrap(),
        acme_a.clone(),
    )
    .await;
    assert!(e.contains("reads a store that is not workspace"), "{e}");
    for (ws, why) in [
        (Some("ghost"), "is not one of this cluster's"),
        (None, "names no workspace"),
    ] {
        let j = job(ws, &a);
        let e = refused(Arc::clone(&store), Grant::for_job(&j, &root).unwrap(), j).await;
        assert!(e.contains(why), "{e}");
    }
    assert!(!a.exists() && !b.exists() && !tmp.path().join("server-dir").exists());
}

/// With `--job-key-file`, a cluster's executors run only what a holder of
/// that key signed: a client that has the cluster secret (it may connect
/// and submit) but signs with another key gets nothing run and nothing
/// written.
#[tokio::test]
async fn executors_with_their_own_job_key_refuse_jobs_signed_with_another() {
    let (tmp, store) = local_store(67, 2).await;
    let key = secret_file(
        tmp.path(),
        "job-key",
        "a-job-key-only-the-service-holds-0123456789",
    );
    let cluster = Cluster::start_with(
        1,
        1,
        &[std::ffi::OsStr::new("--job-key-file"), key.as_os_str()],
    );
    let out = tmp.path().join("out");
    let spec = nusomi_export::spec::ExportSpec::parse(
        &spec_json(
            "jsonl",
            json!({"destination": {"kind": "local", "path": out}}),
        ),
        chrono::Utc::now(),
    )
    .unwrap();
    // This process signs with the key derived from the cluster secret.
    let e = Export::new(&store, &spec)
        .with_cluster(cluster.url.clone())
        .await
        .map(|o| o.manifest_url)
        .expect_err("an executor ran a job signed with another key")
        .to_string();
    assert!(e.contains("not signed with this cluster's job key"), "{e}");
    assert!(!out.join("manifest.json").exists());
    assert!(
        files(&out).iter().all(|f| !f.ends_with(".jsonl")),
        "{:?}",
        files(&out)
    );
}
