//! `nusomi serve` over loopback: the real binary is started as a child
//! process and driven with an HTTP client. The whole lifecycle for every
//! format and the `local` and `signed_url` destinations (counts and bytes
//! equal to `nusomi export create`), error statuses, list filters and
//! pagination, cancellation, a `kill -9` in the middle of an export followed
//! by a restart, and a bounded load test. The `s3` lifecycle runs against
//! SeaweedFS (ignored unless `scripts/test.sh` runs it).

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

use crate::support::{
    assert_same_export, assert_same_files, export_create, file_url_dir, files, free_port, json_of,
    manifest_sans_spec, rand_suffix, spawn_serve, spec_json, store_dir, with_param, Server,
    ALL_WORKFLOWS, TOKEN,
};

#[tokio::test]
async fn lifecycle_for_every_format_local_and_signed_url_matches_export_create() {
    let (tmp, store) = store_dir(61, 3).await;
    let server = Server::start(&store, &tmp.path().join("data")).await;
    for format in ["parquet", "arrow", "jsonl", "webdataset"] {
        // local: the same bytes as `nusomi export create`.
        let via_api = tmp.path().join(format!("api-{format}"));
        let via_cli = tmp.path().join(format!("cli-{format}"));
        let (s, created) = server
            .post(&spec_json(format, json!({"shard_size_bytes": 200 * 1024, "destination": json!({"kind": "local", "path": via_api})})))
            .await;
        assert_eq!(s, 202, "{created}");
        assert_eq!(created["status"], "queued");
        assert!(created["manifest_url"].is_null());
        assert!(created["id"].as_str().unwrap().starts_with("exp_"));
        let job = server
            .wait_final(created["id"].as_str().unwrap(), Duration::from_secs(60))
            .await;
        assert_eq!(job["status"], "completed", "{job}");
        let cli = export_create(
            &store,
            &spec_json(
                format,
                json!({"shard_size_bytes": 200 * 1024, "destination": json!({"kind": "local", "path": via_cli})}),
            ),
            tmp.path(),
        );
        for k in [
            "rows",
            "frames",
            "actions",
            "sessions",
            "shards",
            "bytes",
            "shard_size_bytes",
        ] {
            assert_eq!(job[k], cli[k], "{format}: {k}");
        }
        assert!(
            job["shards"].as_u64().unwrap() >= 2,
            "{format}: several shards"
        );
        // Identical shards and card; the manifests differ only in the
        // spec's destination path.
        assert_same_export(&via_api, &via_cli);
        assert_eq!(
            file_url_dir(job["manifest_url"].as_str().unwrap()),
            via_api.canonicalize().unwrap()
        );

        // signed_url: every link downloads and matches the manifest.
        let (s, created) = server
            .post(&spec_json(format, json!({"shard_size_bytes": 200 * 1024, "destination": json!({"kind": "signed_url"}), "tag": "signed"})))
            .await;
        assert_eq!(s, 202);
        let job = server
            .wait_final(created["id"].as_str().unwrap(), Duration::from_secs(60))
            .await;
        assert_eq!(job["status"], "completed", "{job}");
        let murl = job["manifest_url"].as_str().unwrap();
        assert!(murl.starts_with(&format!("{}/v1/exports/", server.base)));
        // Signed downloads need no bearer token.
        let m: Value = json_of(reqwest::get(murl).await.unwrap()).await;
        assert_eq!(m["rows"], cli["rows"]);
        for sh in m["shards"].as_array().unwrap() {
            let body = reqwest::get(sh["url"].as_str().unwrap())
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            assert_eq!(body.len() as u64, sh["bytes"].as_u64().unwrap());
            assert_eq!(
                hex::encode(Sha256::digest(&body)),
                sh["sha256"].as_str().unwrap()
            );
            let cli_bytes = std::fs::read(via_cli.join(sh["path"].as_str().unwrap())).unwrap();
            assert_eq!(
                body.as_ref(),
                cli_bytes.as_slice(),
                "{format}: same shard bytes"
            );
        }
        // Range requests.
        let first = m["shards"][0]["url"].as_str().unwrap();
        let r = server
            .client
            .get(first)
            .header("Range", "bytes=10-19")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 206);
        let total = m["shards"][0]["bytes"].as_u64().unwrap();
        assert_eq!(
            r.headers()["content-range"].to_str().unwrap(),
            format!("bytes 10-19/{total}")
        );
        let part = r.bytes().await.unwrap();
        let whole = std::fs::read(via_cli.join(m["shards"][0]["path"].as_str().unwrap())).unwrap();
        assert_eq!(part.as_ref(), &whole[10..20]);
        // Unsatisfiable or malformed ranges: 416 with the size.
        for bad in [
            "bytes=-0".to_string(),
            format!("bytes=0-{}", u64::MAX),
            "bytes=9-3".into(),
            format!("bytes={total}-"),
        ] {
            let r = server
                .client
                .get(first)
                .header("Range", &bad)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 416, "{bad}");
            assert_eq!(
                r.headers()["content-range"].to_str().unwrap(),
                format!("bytes */{total}"),
                "{bad}"
            );
        }
        // A tampered or expired link: 403.
        let tampered = first.replace("signature=", "signature=0");
        assert_eq!(reqwest::get(&tampered).await.unwrap().status(), 403);
        let stale = with_param(first, "expires", |_| "1000".into());
        assert_eq!(reqwest::get(&stale).await.unwrap().status(), 403);
        // Forgetting the finished export removes its record and its files.
        let id = job["id"].as_str().unwrap();
        let kept = server.data_dir.join("files").join(id);
        assert!(kept.join("manifest.json").exists());
        assert_eq!(server.delete(&format!("/v1/exports/{id}")).await, 204);
        assert_eq!(server.get(&format!("/v1/exports/{id}")).await.0, 404);
        assert!(!kept.exists(), "{} left", kept.display());
        assert_eq!(reqwest::get(first).await.unwrap().status(), 404);
    }
}

#[tokio::test]
async fn every_guarded_route_answers_401_without_the_token() {
    let (tmp, store) = store_dir(62, 2).await;
    let server = Server::start(&store, &tmp.path().join("data")).await;
    let c = &server.client;
    let b = &server.base;
    // 401 without or with a wrong token, on every guarded route.
    for (m, p) in [
        ("GET", "/v1/exports"),
        ("POST", "/v1/exports"),
        ("GET", "/v1/exports/exp_X"),
        ("DELETE", "/v1/exports/exp_X"),
        ("GET", "/v1/openapi.json"),
    ] {
        let req = c.request(m.parse().unwrap(), format!("{b}{p}"));
        assert_eq!(req.send().await.unwrap().status(), 401, "{m} {p}");
        let req = c
            .request(m.parse().unwrap(), format!("{b}{p}"))
            .bearer_auth("nope");
        assert_eq!(req.send().await.unwrap().status(), 401, "{m} {p}");
    }
    assert_eq!(
        c.get(format!("{b}/healthz")).send().await.unwrap().status(),
        200
    );
}

#[tokio::test]
async fn a_bad_spec_answers_400_with_every_field_path() {
    let (tmp, store) = store_dir(62, 2).await;
    let server = Server::start(&store, &tmp.path().join("data")).await;
    let _c = &server.client;
    let _b = &server.base;
    // 400 with every field path.
    let (s, body) = server
        .post(&json!({"workflow": [], "format": "csv", "filter": {"outcom": "success"}, "destination": {"kind": "local", "path": "x"}}))
        .await;
    assert_eq!(s, 400);
    let fields: HashSet<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    for f in ["workflow", "format", "filter.outcom"] {
        assert!(fields.contains(f), "{f} missing in {body}");
    }
    let (s, body) = server
        .post(&json!({"workflow": "x", "format": "jsonl"}))
        .await;
    assert_eq!(s, 400);
    assert_eq!(body["errors"][0]["field"], "destination");
}

#[tokio::test]
async fn another_content_type_answers_415_and_a_body_over_1_mib_413() {
    let (tmp, store) = store_dir(62, 2).await;
    let server = Server::start(&store, &tmp.path().join("data")).await;
    let c = &server.client;
    let b = &server.base;
    // 415 for another content type, 413 for a body over 1 MiB.
    let r = c
        .post(format!("{b}/v1/exports"))
        .bearer_auth(TOKEN)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let big = format!("{{\"workflow\": \"{}\"}}", "x".repeat(2 << 20));
    let r = c
        .post(format!("{b}/v1/exports"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(
        r.headers()["connection"],
        "close",
        "a 413 closes the connection"
    );
}

#[tokio::test]
async fn unknown_ids_and_routes_answer_404_and_unsigned_files_403() {
    let (tmp, store) = store_dir(62, 2).await;
    let server = Server::start(&store, &tmp.path().join("data")).await;
    let c = &server.client;
    let b = &server.base;
    // 404s.
    assert_eq!(server.get("/v1/exports/exp_NOPE").await.0, 404);
    assert_eq!(server.delete("/v1/exports/exp_NOPE").await, 404);
    assert_eq!(
        c.get(format!("{b}/v2/nothing"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    // 403 for a file without a signature.
    let r = c
        .get(format!("{b}/v1/exports/exp_X/files/manifest.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn lists_filter_and_page_newest_first_and_finished_jobs_are_forgotten() {
    let (tmp, store) = store_dir(62, 2).await;
    let server = Server::start(&store, &tmp.path().join("data")).await;
    let _c = &server.client;
    let _b = &server.base;
    // Filters and pagination: 7 jobs over two workflows and two tags.
    let mut ids = Vec::new();
    for i in 0..7 {
        let wf = if i % 2 == 0 {
            "process_invoice"
        } else {
            "triage_ticket"
        };
        let tag = if i < 3 { "alpha" } else { "beta" };
        let (s, j) = server
            .post(&json!({"workflow": wf, "format": "jsonl", "tag": tag, "as_of": "2030-01-01T00:00:00Z",
                          "destination": {"kind": "local", "path": tmp.path().join(format!("out{i}"))}}))
            .await;
        assert_eq!(s, 202);
        ids.push(j["id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        assert_eq!(
            server.wait_final(id, Duration::from_secs(60)).await["status"],
            "completed"
        );
    }
    let (_, all) = server.get("/v1/exports?limit=500").await;
    let listed: Vec<&str> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    let mut newest_first = ids.clone();
    newest_first.sort();
    newest_first.reverse();
    assert_eq!(
        listed,
        newest_first.iter().map(String::as_str).collect::<Vec<_>>()
    );
    let (_, inv) = server.get("/v1/exports?workflow=process_invoice").await;
    assert_eq!(inv["data"].as_array().unwrap().len(), 4);
    let (_, alpha) = server.get("/v1/exports?tag=alpha&status=completed").await;
    assert_eq!(alpha["data"].as_array().unwrap().len(), 3);
    let (_, none) = server.get("/v1/exports?status=failed").await;
    assert_eq!(none["data"].as_array().unwrap().len(), 0);
    assert_eq!(server.get("/v1/exports?status=done").await.0, 400);
    assert_eq!(server.get("/v1/exports?limit=0").await.0, 400);
    // Pages of 3: 3 + 3 + 1, then no cursor.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let q = match &cursor {
            Some(c) => format!("/v1/exports?limit=3&cursor={c}"),
            None => "/v1/exports?limit=3".into(),
        };
        let (_, page) = server.get(&q).await;
        pages += 1;
        for j in page["data"].as_array().unwrap() {
            seen.push(j["id"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, newest_first);
    // A finished export cannot be cancelled: DELETE forgets its record
    // (its local files stay: they are the customer's).
    assert_eq!(server.delete(&format!("/v1/exports/{}", ids[0])).await, 204);
    assert_eq!(server.get(&format!("/v1/exports/{}", ids[0])).await.0, 404);
    let (_, rest) = server.get("/v1/exports?limit=500").await;
    assert_eq!(rest["data"].as_array().unwrap().len(), ids.len() - 1);
    assert!(tmp.path().join("out0").join("manifest.json").exists());
    assert_eq!(server.delete(&format!("/v1/exports/{}", ids[0])).await, 404);
}

#[tokio::test]
async fn the_openapi_document_lists_every_route_the_server_routes() {
    let (tmp, store) = store_dir(62, 2).await;
    let server = Server::start(&store, &tmp.path().join("data")).await;
    let c = &server.client;
    let b = &server.base;
    // The OpenAPI document is served and lists every route.
    let (s, doc) = server.get("/v1/openapi.json").await;
    assert_eq!(s, 200);
    for (m, p) in nusomi_export::server::ROUTES {
        assert!(doc["paths"][p][m].is_object(), "{m} {p}");
        // …and the server routes it (not the fallback, not 405).
        let path = p
            .replace("{id}", "exp_X")
            .replace("{name}", "manifest.json");
        let r = c
            .request(m.to_uppercase().parse().unwrap(), format!("{b}{path}"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body = json_of(r).await;
        assert_ne!(status, 405, "{m} {p}");
        assert_ne!(body["error"], "no such route", "{m} {p}");
    }
    let distinct: HashSet<&str> = nusomi_export::server::ROUTES
        .iter()
        .map(|(_, p)| *p)
        .collect();
    assert_eq!(distinct.len(), 6);
    assert_eq!(doc["paths"].as_object().unwrap().len(), distinct.len());
}

/// A store whose parquet export with 4 KiB shards takes a few seconds: one
/// shard per row, hundreds of shards.
async fn slow_store() -> (TempDir, String) {
    store_dir(63, 10).await
}

fn slow_spec(dest: &Path) -> Value {
    spec_json(
        "parquet",
        json!({"destination": {"kind": "local", "path": dest}, "shard_size_bytes": 4096}),
    )
}

#[tokio::test]
async fn kill_9_while_running_then_restart_completes_with_identical_bytes() {
    let (tmp, store) = slow_store().await;
    let dest = tmp.path().join("crash-out");
    // The undisturbed export of the same spec (same destination path, so the
    // manifests can match byte for byte), moved aside.
    let clean = tmp.path().join("clean-out");
    let cli = export_create(&store, &slow_spec(&dest), tmp.path());
    std::fs::rename(&dest, &clean).unwrap();
    let mut server = Server::start(&store, &tmp.path().join("data")).await;
    let (s, created) = server.post(&slow_spec(&dest)).await;
    assert_eq!(s, 202);
    let id = created["id"].as_str().unwrap().to_string();
    // Wait until it is running and has finished a few shards, then kill -9.
    server
        .wait_running(&id, |job| job["shards_done"].as_u64().unwrap_or(0) >= 3)
        .await;
    server.kill();
    assert!(!dest.join("manifest.json").exists());
    let left = files(&dest).len();
    assert!(
        left >= 3,
        "shards of the killed attempt are on disk ({left})"
    );
    server.restart().await;
    let job = server.wait_final(&id, Duration::from_secs(120)).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["attempts"], 2);
    assert!(job["shards_reused"].as_u64().unwrap() >= 3, "{job}");
    // Byte-identical to the undisturbed export, nothing stray.
    assert_eq!(job["rows"], cli["rows"]);
    assert_same_files(&dest, &clean);
}

#[tokio::test]
async fn a_job_running_each_time_the_process_died_twice_is_not_retried_forever() {
    let (tmp, store) = slow_store().await;
    let dest = tmp.path().join("crash-loop");
    let mut server = Server::start(&store, &tmp.path().join("data")).await;
    let (s, created) = server.post(&slow_spec(&dest)).await;
    assert_eq!(s, 202);
    let id = created["id"].as_str().unwrap().to_string();
    for attempt in 1..=2u64 {
        server
            .wait_running(&id, |job| job["attempts"] == attempt)
            .await;
        // As if the job took the process down.
        server.kill();
        server.restart().await;
    }
    let job = server.wait_final(&id, Duration::from_secs(30)).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["attempts"], 2, "{job}");
    let error = job["error"].as_str().unwrap();
    assert!(
        error.contains("stopped while this export ran, 2 times")
            && error.contains("not tried again"),
        "{error}"
    );
    // Its attempt's files are gone; the service takes new work.
    assert!(!dest.join("manifest.json").exists());
    let (s, next) = server.post(&slow_spec(&tmp.path().join("after"))).await;
    assert_eq!(s, 202, "{next}");
    let next = server
        .wait_final(next["id"].as_str().unwrap(), Duration::from_secs(120))
        .await;
    assert_eq!(next["status"], "completed", "{next}");
}

#[tokio::test]
async fn cancel_stops_a_running_export_and_leaves_nothing() {
    let (tmp, store) = slow_store().await;
    let dest = tmp.path().join("cancel-out");
    let server = Server::start(&store, &tmp.path().join("data")).await;
    let (_, created) = server.post(&slow_spec(&dest)).await;
    let id = created["id"].as_str().unwrap().to_string();
    let t0 = Instant::now();
    loop {
        let (_, job) = server.get(&format!("/v1/exports/{id}")).await;
        if job["status"] == "running" && job["shards_done"].as_u64().unwrap_or(0) >= 2 {
            break;
        }
        assert_ne!(job["status"], "completed");
        assert!(t0.elapsed() < Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(server.delete(&format!("/v1/exports/{id}")).await, 202);
    let job = server.wait_final(&id, Duration::from_secs(60)).await;
    assert_eq!(job["status"], "failed");
    assert_eq!(job["error"], "cancelled");
    assert!(files(&dest).is_empty(), "left {:?}", files(&dest).keys());
    // A queued job is cancelled at once.
    let (_, a) = server.post(&slow_spec(&tmp.path().join("q1"))).await;
    let (_, b) = server.post(&slow_spec(&tmp.path().join("q2"))).await;
    let (_, c) = server.post(&slow_spec(&tmp.path().join("q3"))).await;
    let last = c["id"].as_str().unwrap();
    assert_eq!(server.delete(&format!("/v1/exports/{last}")).await, 202);
    let job = server.wait_final(last, Duration::from_secs(60)).await;
    assert_eq!(job["error"], "cancelled");
    for j in [a, b] {
        let id = j["id"].as_str().unwrap().to_string();
        server.delete(&format!("/v1/exports/{id}")).await;
    }
}

fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |k: &str| {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[tokio::test]
async fn load_600_mixed_requests_from_16_clients_while_exports_run() {
    let (tmp, store) = store_dir(64, 4).await;
    let server = Arc::new(Server::start(&store, &tmp.path().join("data")).await);
    let out = Arc::new(tmp.path().join("load-out"));
    let clients = 16;
    let per_client = 38; // 608 requests
    let mut tasks = Vec::new();
    for c in 0..clients {
        let server = Arc::clone(&server);
        let out = Arc::clone(&out);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut posted = Vec::new();
            let mut statuses = Vec::new();
            for i in 0..per_client {
                let t = Instant::now();
                let status = match i % 8 {
                    0 => {
                        let format = ["jsonl", "webdataset", "parquet", "arrow"][(i / 8) % 4];
                        let (s, j) = server
                            .post(&json!({"workflow": ALL_WORKFLOWS[(c + i) % 5], "format": format,
                                          "as_of": "2030-01-01T00:00:00Z", "tag": format!("load-{c}"),
                                          "destination": {"kind": "local", "path": out.join(format!("c{c}-{i}"))}}))
                            .await;
                        if s == 202 {
                            posted.push(j["id"].as_str().unwrap().to_string());
                        }
                        s
                    }
                    1 => server.post(&json!({"workflow": 1, "format": "csv"})).await.0,
                    2 | 5 => match posted.last() {
                        Some(id) => server.get(&format!("/v1/exports/{id}")).await.0,
                        None => server.get("/v1/exports/exp_NONE").await.0,
                    },
                    3 => server.get(&format!("/v1/exports?tag=load-{c}&limit=5")).await.0,
                    4 => server.client.get(format!("{}/healthz", server.base)).send().await.unwrap().status().as_u16(),
                    6 => server.get("/v1/exports?status=running").await.0,
                    _ => server.client.get(format!("{}/v1/exports", server.base)).send().await.unwrap().status().as_u16(),
                };
                lat.push(t.elapsed());
                statuses.push(status);
            }
            (lat, posted, statuses)
        }));
    }
    let mut lat = Vec::new();
    let mut posted = Vec::new();
    let mut statuses = Vec::new();
    let mut peak = 0;
    for t in tasks {
        let (l, p, s) = t.await.unwrap();
        lat.extend(l);
        posted.extend(p);
        statuses.extend(s);
        peak = peak.max(rss_kib(server.pid()).1);
    }
    assert!(statuses.len() >= 500);
    assert!(
        statuses.iter().all(|s| *s < 500),
        "5xx seen: {:?}",
        statuses.iter().filter(|s| **s >= 500).collect::<Vec<_>>()
    );
    assert!(statuses
        .iter()
        .all(|s| [200, 202, 400, 401, 404].contains(s)));
    // Every accepted job exists once and completes.
    let unique: HashSet<&String> = posted.iter().collect();
    assert_eq!(unique.len(), posted.len(), "duplicate ids");
    for id in &posted {
        let job = server.wait_final(id, Duration::from_secs(300)).await;
        assert_eq!(job["status"], "completed", "{job}");
    }
    let (_, all) = server.get("/v1/exports?limit=500").await;
    let listed: Vec<String> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed.len(), posted.len(), "lost or extra jobs");
    assert_eq!(listed.iter().collect::<HashSet<_>>(), unique);
    lat.sort();
    let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    let (rss, hwm) = rss_kib(server.pid());
    eprintln!(
        "load: {} requests from {clients} clients, {} exports; latency p50 {:?} p99 {:?} max {:?}; server RSS {} MiB (peak {} MiB)",
        lat.len(),
        posted.len(),
        p(0.50),
        p(0.99),
        lat[lat.len() - 1],
        rss / 1024,
        hwm.max(peak) / 1024
    );
}

#[tokio::test]
#[ignore = "needs SeaweedFS: run scripts/test.sh"]
async fn lifecycle_with_an_s3_destination_on_seaweedfs() {
    let (tmp, store) = store_dir(65, 2).await;
    // Few retries, so the unreachable destination below fails quickly; a
    // chatty log, checked for secrets at the end.
    let log = tmp.path().join("serve.log");
    let server = Server::start_on(
        &store,
        &tmp.path().join("data"),
        free_port(),
        &[("NUSOMI_MAX_RETRIES", "1"), ("NUSOMI_LOG", "debug")],
        Some(&log),
    )
    .await;
    let endpoint = std::env::var("NUSOMI_TEST_S3_ENDPOINT").expect("scripts/test.sh sets it");
    use object_store::ObjectStoreExt;
    let s3 = object_store::aws::AmazonS3Builder::from_env()
        .with_bucket_name("nusomi-test")
        .build()
        .unwrap();
    for format in ["parquet", "arrow", "jsonl", "webdataset"] {
        let prefix = format!("api-{format}-{}", rand_suffix());
        let d = json!({"kind": "s3", "bucket": "nusomi-test", "prefix": prefix, "region": "us-east-1", "endpoint": endpoint});
        let (s, created) = server
            .post(&spec_json(
                format,
                json!({"shard_size_bytes": 200 * 1024, "destination": d}),
            ))
            .await;
        assert_eq!(s, 202);
        let job = server
            .wait_final(created["id"].as_str().unwrap(), Duration::from_secs(60))
            .await;
        assert_eq!(job["status"], "completed", "{job}");
        assert_eq!(
            job["manifest_url"],
            format!("s3://nusomi-test/{prefix}/manifest.json")
        );
        let local_dir = tmp.path().join(format!("cli-{format}"));
        let cli = export_create(
            &store,
            &spec_json(
                format,
                json!({"shard_size_bytes": 200 * 1024, "destination": json!({"kind": "local", "path": local_dir})}),
            ),
            tmp.path(),
        );
        for k in ["rows", "actions", "shards", "bytes"] {
            assert_eq!(job[k], cli[k], "{format}: {k}");
        }
        // Every object on S3 equals the local export's (manifests differ in
        // the spec's destination only).
        let local = files(&local_dir);
        for (name, bytes) in &local {
            let got = s3
                .get(&object_store::path::Path::from(format!("{prefix}/{name}")))
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            if name == "manifest.json" {
                assert_eq!(
                    manifest_sans_spec(&got),
                    manifest_sans_spec(bytes),
                    "{format}: manifest"
                );
            } else {
                assert_eq!(got.as_ref(), bytes.as_slice(), "{format}: {name}");
            }
        }
    }
    // An unreachable destination is refused at POST (the service lists the
    // prefix before it queues anything), naming the destination.
    let bad = json!({"kind": "s3", "bucket": "nusomi-test", "prefix": "x", "region": "us-east-1", "endpoint": "http://127.0.0.1:1"});
    let (s, refused) = server
        .post(&spec_json(
            "jsonl",
            json!({"shard_size_bytes": 200 * 1024, "destination": bad}),
        ))
        .await;
    assert_eq!(s, 400, "{refused}");
    assert_eq!(refused["errors"][0]["field"], "destination", "{refused}");
    let m = refused["errors"][0]["message"].as_str().unwrap();
    assert!(m.contains("cannot list s3://nusomi-test/x/"), "{m}");
    // The credentials appear nowhere: not in the job records, the log, or
    // any job object.
    let secret = std::env::var("AWS_SECRET_ACCESS_KEY").unwrap();
    let records = std::fs::read(tmp.path().join("data/jobs.redb")).unwrap();
    assert!(!records
        .windows(secret.len())
        .any(|w| w == secret.as_bytes()));
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("listening"), "the log was captured");
    assert!(!logged.contains(&secret), "the log leaks the secret");
    let (_, all) = server.get("/v1/exports?limit=500").await;
    assert!(!all.to_string().contains(&secret));
}

#[tokio::test]
async fn expired_signed_links_are_renewed_through_the_api() {
    let (tmp, store) = store_dir(66, 2).await;
    // Links that live 2 s.
    let server = Server::start_on(
        &store,
        &tmp.path().join("data"),
        free_port(),
        &[("NUSOMI_LINK_TTL_SECS", "2")],
        None,
    )
    .await;
    let job = server
        .completed(&spec_json(
            "jsonl",
            json!({"shard_size_bytes": 200 * 1024, "destination": json!({"kind": "signed_url"})}),
        ))
        .await;
    let id = job["id"].as_str().unwrap().to_string();
    let first = job["manifest_url"].as_str().unwrap().to_string();
    let m: Value = json_of(reqwest::get(&first).await.unwrap()).await;
    let old_shard = m["shards"][0]["url"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(reqwest::get(&first).await.unwrap().status(), 403);
    assert_eq!(reqwest::get(&old_shard).await.unwrap().status(), 403);
    // The API hands out a fresh manifest link; the manifest it serves lists
    // fresh shard links, which download and match.
    let (_, again) = server.get(&format!("/v1/exports/{id}")).await;
    let fresh = again["manifest_url"].as_str().unwrap();
    assert_ne!(fresh, first);
    let m: Value = json_of(reqwest::get(fresh).await.unwrap()).await;
    for sh in m["shards"].as_array().unwrap() {
        let body = reqwest::get(sh["url"].as_str().unwrap())
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(
            hex::encode(Sha256::digest(&body)),
            sh["sha256"].as_str().unwrap()
        );
    }
}

#[tokio::test]
async fn signed_url_files_past_retention_are_swept_and_the_record_stays() {
    let (tmp, store) = store_dir(64, 1).await;
    let mut server = Server::start(&store, &tmp.path().join("data")).await;
    let (s, created) = server
        .post(&spec_json(
            "jsonl",
            json!({"destination": {"kind": "signed_url"}}),
        ))
        .await;
    assert_eq!(s, 202);
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(
        server.wait_final(&id, Duration::from_secs(60)).await["status"],
        "completed"
    );
    let kept = server.data_dir.join("files").join(&id);
    assert!(kept.join("manifest.json").exists());
    // Kept while within retention (default 30 days), across a restart.
    server.kill();
    server.restart().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(kept.join("manifest.json").exists());
    // With 0 days, the sweep at start removes them; the record stays.
    server.kill();
    server.restart_with(&[("NUSOMI_RETENTION_DAYS", "0")]).await;
    let t0 = std::time::Instant::now();
    while kept.join("manifest.json").exists() {
        assert!(t0.elapsed() < Duration::from_secs(10), "not swept");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(server.get(&format!("/v1/exports/{id}")).await.0, 200);
}

#[tokio::test]
async fn a_generated_signing_key_is_private_and_tokens_come_from_a_file() {
    use std::os::unix::fs::PermissionsExt;
    let (tmp, store) = store_dir(65, 1).await;
    let data = tmp.path().join("data");
    let tokens = tmp.path().join("tokens.txt");
    std::fs::write(&tokens, "file-token-0123456789\n").unwrap();
    let (_child, base) = spawn_serve(|c| {
        c.args(["--store", &store])
            .arg("--data-dir")
            .arg(&data)
            .arg("--tokens-file")
            .arg(&tokens);
    })
    .await;
    let client = reqwest::Client::new();
    let list = |token: &'static str| {
        let r = client
            .get(format!("{base}/v1/exports"))
            .bearer_auth(token)
            .send();
        async move { r.await.unwrap().status().as_u16() }
    };
    assert_eq!(list("file-token-0123456789").await, 200);
    assert_eq!(list("another-token").await, 401);
    let mode = std::fs::metadata(data.join("signing.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test]
async fn an_open_api_answers_only_loopback_host_names() {
    let (tmp, store) = store_dir(66, 1).await;
    let data = tmp.path().join("data");
    let (_child, base) = spawn_serve(|c| {
        c.args(["--store", &store])
            .arg("--data-dir")
            .arg(&data)
            .env_remove("NUSOMI_API_TOKENS");
    })
    .await;
    let port = base.rsplit(':').next().unwrap().to_string();
    let client = reqwest::Client::new();
    let with_host = |host: String| {
        let r = client
            .get(format!("{base}/v1/exports"))
            .header("host", host)
            .send();
        async move { r.await.unwrap().status().as_u16() }
    };
    assert_eq!(with_host(format!("127.0.0.1:{port}")).await, 200);
    assert_eq!(with_host(format!("localhost:{port}")).await, 200);
    // A DNS-rebinding page's requests carry its own host name.
    assert_eq!(with_host(format!("attacker.example:{port}")).await, 403);
}

#[tokio::test]
async fn a_400_lists_at_most_100_problems() {
    let (tmp, store) = store_dir(62, 1).await;
    let server = Server::start(&store, &tmp.path().join("data")).await;
    let mut spec = spec_json(
        "jsonl",
        json!({"destination": {"kind": "local", "path": tmp.path().join("o")}}),
    );
    for i in 0..150 {
        spec[format!("unknown_{i:03}")] = json!(1);
    }
    let (s, body) = server.post(&spec).await;
    assert_eq!(s, 400);
    assert_eq!(body["errors"].as_array().unwrap().len(), 100, "{body}");
}

#[tokio::test]
async fn an_as_of_in_the_future_is_refused_and_202_and_get_carry_as_of_and_resolved() {
    let (tmp, store) = store_dir(66, 1).await;
    // The service's default: one minute of clock skew.
    let server = Server::start_on(
        &store,
        &tmp.path().join("data"),
        crate::support::free_port(),
        &[("NUSOMI_MAX_FUTURE_AS_OF_SECS", "60")],
        None,
    )
    .await;
    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let (s, body) = server
        .post(&spec_json(
            "jsonl",
            json!({"as_of": future, "destination": {"kind": "signed_url"}}),
        ))
        .await;
    assert_eq!(s, 400, "{body}");
    assert_eq!(body["errors"][0]["field"], "as_of", "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("is in the future"),
        "{body}"
    );
    // A past as_of is accepted; 202 and GET carry it and the resolved spec.
    let past = (chrono::Utc::now() - chrono::Duration::seconds(5))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (s, created) = server
        .post(&spec_json(
            "jsonl",
            json!({"as_of": past, "filter": {"since": "30d"}, "destination": {"kind": "signed_url"}}),
        ))
        .await;
    assert_eq!(s, 202, "{created}");
    assert_eq!(created["as_of"], past.as_str());
    assert_eq!(created["resolved"]["as_of"], past.as_str());
    assert_eq!(created["resolved"]["frame_sampling"]["mode"], "all");
    // Relative times are absolute in `resolved`: 30 days before as_of.
    let since = chrono::DateTime::parse_from_rfc3339(&past).unwrap() - chrono::Duration::days(30);
    assert_eq!(
        created["resolved"]["filter"]["since"],
        since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    let id = created["id"].as_str().unwrap();
    let done = server.wait_final(id, Duration::from_secs(60)).await;
    assert_eq!(done["resolved"], created["resolved"]);
    assert_eq!(done["as_of"], created["as_of"]);
}
