//! [`Server`]: a real `nusomi serve` started as a child process on a free
//! loopback port and driven with an HTTP client, plus the helpers the
//! server tests compare exports with.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nusomi_export::store::{SealOptions, SealedStore};
use serde_json::Value;
use tempfile::TempDir;

use super::write_session;

pub const TOKEN: &str = "test-token-0123456789";

/// A running `nusomi serve`.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub data_dir: PathBuf,
    pub store: String,
    pub client: reqwest::Client,
}

/// A response body as JSON (reqwest's `json` feature would rebuild the
/// object-store stack for tests; see DATAFUSION.md).
pub async fn json_of(r: reqwest::Response) -> Value {
    let b = r.bytes().await.unwrap();
    serde_json::from_slice(&b).unwrap_or(Value::Null)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Seconds past now a posted `as_of` may lie in tests: enough for the
/// fixtures' 2030-01-01.
pub const FIXTURE_SKEW_SECS: &str = "400000000";

impl Server {
    pub async fn start(store: &str, data_dir: &Path) -> Server {
        Self::start_on(store, data_dir, free_port(), &[], None).await
    }

    pub async fn start_on(
        store: &str,
        data_dir: &Path,
        port: u16,
        env: &[(&str, &str)],
        log: Option<&Path>,
    ) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_nusomi"));
        cmd.args(["serve", "--store", store, "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--token", TOKEN, "--workers", "2"])
            // The fixtures pin `as_of` at 2030 (sessions are sealed with
            // the wall clock); the refusal itself is tested with the default.
            .env("NUSOMI_MAX_FUTURE_AS_OF_SECS", FIXTURE_SKEW_SECS)
            .stdout(Stdio::null())
            .stderr(match log {
                Some(p) => Stdio::from(std::fs::File::create(p).unwrap()),
                None => Stdio::null(),
            });
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        let s = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            data_dir: data_dir.to_path_buf(),
            store: store.to_string(),
            client: reqwest::Client::new(),
        };
        let t0 = Instant::now();
        loop {
            if let Ok(r) = s.client.get(format!("{}/healthz", s.base)).send().await {
                if r.status() == 200 {
                    break;
                }
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "server did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        s
    }

    pub fn kill(&mut self) {
        // SIGKILL: no cleanup, no graceful shutdown.
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub async fn restart(&mut self) {
        self.restart_with(&[]).await
    }

    /// Restarts on the same port and data with `env` set.
    pub async fn restart_with(&mut self, env: &[(&str, &str)]) {
        let port: u16 = self.base.rsplit(':').next().unwrap().parse().unwrap();
        let fresh = Server::start_on(&self.store, &self.data_dir, port, env, None).await;
        // The old child is dead already; dropping it is harmless.
        drop(std::mem::replace(self, fresh));
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub async fn post(&self, spec: &Value) -> (u16, Value) {
        let r = self
            .client
            .post(format!("{}/v1/exports", self.base))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(spec.to_string())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, json_of(r).await)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, json_of(r).await)
    }

    pub async fn delete(&self, path: &str) -> u16 {
        self.client
            .delete(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// Posts `spec`, which must be accepted (202) and complete within a
    /// minute; returns the finished job.
    pub async fn completed(&self, spec: &Value) -> Value {
        let (s, created) = self.post(spec).await;
        assert_eq!(s, 202, "{created}");
        let id = created["id"].as_str().unwrap().to_string();
        let job = self.wait_final(&id, Duration::from_secs(60)).await;
        assert_eq!(job["status"], "completed", "{job}");
        job
    }

    /// Waits (up to 60 s) until job `id` runs and `ready` says so of it;
    /// it must not complete first (the export is to be interrupted).
    pub async fn wait_running(&self, id: &str, ready: impl Fn(&Value) -> bool) -> Value {
        let t0 = Instant::now();
        loop {
            let (_, job) = self.get(&format!("/v1/exports/{id}")).await;
            assert_ne!(
                job["status"], "completed",
                "the export finished before it could be interrupted: make it slower"
            );
            if job["status"] == "running" && ready(&job) {
                return job;
            }
            assert!(t0.elapsed() < Duration::from_secs(60), "{job}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn wait_final(&self, id: &str, limit: Duration) -> Value {
        let t0 = Instant::now();
        loop {
            let (s, job) = self.get(&format!("/v1/exports/{id}")).await;
            assert_eq!(s, 200, "{job}");
            if job["status"] == "completed" || job["status"] == "failed" {
                return job;
            }
            assert!(t0.elapsed() < limit, "{id} did not finish: {job}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A sealed store folder of `n` small sessions.
pub async fn store_dir(seed: u64, n: usize) -> (TempDir, String) {
    let tmp = TempDir::new().unwrap();
    let root = tmp.path().join("store");
    let store = SealedStore::open(root.to_str().unwrap()).await.unwrap();
    for i in 0..n {
        let (_, dir) = write_session(tmp.path(), seed, i);
        store.seal(&dir, &SealOptions::default()).await.unwrap();
    }
    let root = root.display().to_string();
    (tmp, root)
}

/// Runs `nusomi export create --json` for `spec`; returns the job object.
pub fn export_create(store: &str, spec: &Value, dir: &Path) -> Value {
    let path = dir.join(format!("spec-{}.json", rand_suffix()));
    std::fs::write(&path, spec.to_string()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_nusomi"))
        .args(["export", "create", "--store", store, "--json"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

pub fn rand_suffix() -> u64 {
    rand::random()
}

/// Files in a folder: name → bytes.
pub fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        out.insert(
            e.file_name().to_string_lossy().into_owned(),
            std::fs::read(e.path()).unwrap(),
        );
    }
    out
}

/// Runs the `nusomi` binary: (success, stdout + stderr).
pub fn nusomi(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nusomi"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// Every file below `dir` (recursively), sorted.
pub fn files_below(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_below(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Asserts two folders hold the same files with the same bytes, naming the
/// ones that differ (never printing contents).
pub fn assert_same_files(a: &Path, b: &Path) {
    let (fa, fb) = (files(a), files(b));
    let names_a: Vec<&String> = fa.keys().collect();
    let names_b: Vec<&String> = fb.keys().collect();
    assert_eq!(
        names_a,
        names_b,
        "{} vs {}: file names",
        a.display(),
        b.display()
    );
    let differ: Vec<String> = fa
        .iter()
        .filter(|(k, v)| fb[*k] != **v)
        .map(|(k, v)| format!("{k} ({} vs {} bytes)", v.len(), fb[k].len()))
        .collect();
    assert!(
        differ.is_empty(),
        "{} vs {}: differ: {differ:?}",
        a.display(),
        b.display()
    );
}

/// A manifest without `spec` and `resolved`, the parts that name the
/// destination.
pub fn manifest_sans_spec(bytes: &[u8]) -> Value {
    let mut m: Value = serde_json::from_slice(bytes).unwrap();
    m.as_object_mut().unwrap().remove("spec");
    m.as_object_mut().unwrap().remove("resolved");
    m
}

/// Two exports of the same rows to different folders: identical files, and
/// manifests equal once `spec`/`resolved` (which hold the path) are removed.
pub fn assert_same_export(a: &Path, b: &Path) {
    let strip = |d: &Path| manifest_sans_spec(&std::fs::read(d.join("manifest.json")).unwrap());
    assert_eq!(strip(a), strip(b));
    let (fa, fb) = (files(a), files(b));
    assert_eq!(fa.keys().collect::<Vec<_>>(), fb.keys().collect::<Vec<_>>());
    for (k, v) in &fa {
        if k != "manifest.json" {
            assert!(
                fb[k] == *v,
                "{k} differs between {} and {}",
                a.display(),
                b.display()
            );
        }
    }
}

pub fn file_url_dir(manifest_url: &str) -> PathBuf {
    let p = url::Url::parse(manifest_url)
        .unwrap()
        .to_file_path()
        .unwrap();
    p.parent().unwrap().to_path_buf()
}

/// A child process killed when dropped.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `nusomi serve --listen 127.0.0.1:<free port>` with whatever
/// `configure` adds (flags, environment, where stderr goes) and returns it
/// with its base URL once `/healthz` answers.
pub async fn spawn_serve(configure: impl FnOnce(&mut Command)) -> (KillOnDrop, String) {
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nusomi"));
    cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("NUSOMI_MAX_FUTURE_AS_OF_SECS", FIXTURE_SKEW_SECS)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    configure(&mut cmd);
    let child = KillOnDrop(cmd.spawn().unwrap());
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let t0 = Instant::now();
    while !matches!(client.get(format!("{base}/healthz")).send().await, Ok(r) if r.status() == 200)
    {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "server did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (child, base)
}

/// Serves `app` on a free loopback port (a fake of some HTTP API) for the
/// rest of the test; returns its base URL.
pub async fn serve_loopback(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}
