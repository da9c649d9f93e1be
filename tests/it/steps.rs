//! `"unit": "step"` exports end to end: one row per action, each frame's
//! image stored once (WebDataset members, JSON Lines files under
//! `images/`), history keys that resolve inside the export, byte-identical
//! reruns whatever the engine's partitioning, splits and verification,
//! and nothing left behind by a failed export.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use datafusion::prelude::{SessionConfig, SessionContext};
use nusomi_export::dest::ExportTarget;
use nusomi_export::sink::{verify, Manifest, Progress};
use nusomi_export::spec::OutputFormat;
use nusomi_export::store::SealedStore;
use nusomi_export::Export;
use object_store::path::Path as ObjectPath;
use serde_json::{json, Value};

use crate::support::{sealed_memory_store, spec};

const SEED: u64 = 1515;

fn step_fields(extra: Value) -> Value {
    let mut v = json!({
        "unit": "step",
        "frame_sampling": {"mode": "event_only"},
        "history": {"actions": 3, "frames": 2},
        "messages": {"preset": "sharegpt", "system": "You operate a computer."},
        "shard_size_bytes": 96 * 1024,
    });
    for (k, val) in extra.as_object().unwrap() {
        v[k] = val.clone();
    }
    v
}

async fn run(
    store: &Arc<SealedStore>,
    format: OutputFormat,
    fields: Value,
    dir: &Path,
    partitions: usize,
) -> Manifest {
    let s = spec(format.as_str(), fields);
    let t = ExportTarget::local(dir.to_str().unwrap()).unwrap();
    let ctx = SessionContext::new_with_config(
        SessionConfig::new()
            .with_target_partitions(partitions)
            .with_batch_size(8),
    );
    Export::new(store, &s)
        .with_target(t)
        .with_context(ctx)
        .await
        .unwrap()
        .manifest
}

/// Every file under `dir`, relative path → bytes.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in crate::support::files_below(dir) {
        let rel = e.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
        out.insert(rel, std::fs::read(&e).unwrap());
    }
    out
}

/// The members of every tar shard, in order: (name, bytes).
fn tar_members(dir: &Path, m: &Manifest) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for s in &m.shards {
        let mut a = tar::Archive::new(std::fs::File::open(dir.join(&s.path)).unwrap());
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let mut b = Vec::new();
            e.read_to_end(&mut b).unwrap();
            out.push((name, b));
        }
    }
    out
}

#[tokio::test]
async fn step_exports_are_byte_identical_across_runs_and_partition_counts() {
    let (_b, store) = sealed_memory_store(SEED, 3).await;
    let tmp = tempfile::TempDir::new().unwrap();
    for format in OutputFormat::ALL {
        let fields = step_fields(json!({"coordinates": {"smart_resize": {}}}));
        let a = tmp.path().join(format!("{}-a", format.as_str()));
        let b = tmp.path().join(format!("{}-b", format.as_str()));
        let c = tmp.path().join(format!("{}-c", format.as_str()));
        let ma = run(&store, format, fields.clone(), &a, 1).await;
        let mb = run(&store, format, fields.clone(), &b, 4).await;
        let mc = run(&store, format, fields, &c, 2).await;
        assert!(ma.rows > 10, "{format:?}: steps exported ({})", ma.rows);
        assert_eq!(ma.actions, ma.rows, "one row per action");
        let steps = ma.steps.clone().expect("a steps section");
        assert_eq!(steps.types.values().sum::<u64>(), ma.rows);
        assert!(
            steps.observations < ma.rows,
            "some frames carry several actions"
        );
        for (m, dir) in [(&mb, &b), (&mc, &c)] {
            assert_eq!(m.digest, ma.digest, "{format:?}: same digest");
            assert_eq!(m.to_bytes(), ma.to_bytes(), "{format:?}: same manifest");
            assert_eq!(files(dir), files(&a), "{format:?}: same files");
        }
        assert!(
            ma.schema.to_string().contains("\"history_keys\""),
            "the manifest records the step schema"
        );
    }
}

#[tokio::test]
async fn webdataset_step_exports_store_each_image_once_and_history_resolves() {
    let (_b, store) = sealed_memory_store(SEED, 4).await;
    let tmp = tempfile::TempDir::new().unwrap();
    let dir = tmp.path().join("wds");
    let m = run(
        &store,
        OutputFormat::Webdataset,
        step_fields(json!({"history": {"actions": 2, "frames": 4}})),
        &dir,
        2,
    )
    .await;
    assert!(m.shards.len() > 1, "shards rolled");
    let members = tar_members(&dir, &m);
    let images: Vec<&String> = members
        .iter()
        .map(|(n, _)| n)
        .filter(|n| n.ends_with(".png") || n.ends_with(".jpg"))
        .collect();
    let distinct: BTreeSet<&String> = images.iter().copied().collect();
    assert_eq!(images.len(), distinct.len(), "no image is stored twice");
    let rows: Vec<Value> = members
        .iter()
        .filter(|(n, _)| n.ends_with(".json"))
        .map(|(_, b)| serde_json::from_slice(b).unwrap())
        .collect();
    assert_eq!(rows.len() as u64, m.rows);
    let observed: BTreeSet<String> = rows
        .iter()
        .map(|r| r["observation_key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        images.len(),
        observed.len(),
        "file count = distinct observations"
    );
    assert_eq!(
        m.steps.as_ref().unwrap().observations,
        observed.len() as u64
    );
    let stored: BTreeSet<String> = images
        .iter()
        .map(|n| n.rsplit_once('.').unwrap().0.to_string())
        .collect();
    assert_eq!(stored, observed);
    let mut history_refs = 0;
    let mut seen_at_session_start = 0;
    for r in &rows {
        let keys = r["history_keys"].as_array().unwrap();
        for k in keys {
            history_refs += 1;
            assert!(
                stored.contains(k.as_str().unwrap()),
                "history key {k} resolves"
            );
        }
        assert!(keys.len() <= 4);
        if r["step"] == 0 {
            seen_at_session_start += 1;
            assert!(keys.is_empty(), "history restarts with the session");
            assert_eq!(r["history_actions"], json!([]));
        }
        // The chat sample: one <image> per listed image, roles alternate.
        let msgs = r["messages"].as_array().unwrap();
        let roles: Vec<&str> = msgs.iter().map(|t| t["role"].as_str().unwrap()).collect();
        assert_eq!(roles, ["system", "user", "assistant"]);
        let user = msgs[1]["content"].as_str().unwrap();
        let images = r["images"].as_array().unwrap();
        assert_eq!(user.matches("<image>").count(), images.len());
        assert_eq!(images.len(), keys.len() + 1);
        assert_eq!(msgs[2]["content"], r["action_text"]);
    }
    assert!(history_refs > 0, "history frames were referenced");
    assert_eq!(seen_at_session_start, m.sessions);
}

#[tokio::test]
async fn jsonl_step_exports_write_image_files_once_verify_them_and_clean_up_on_failure() {
    let (_b, store) = sealed_memory_store(SEED, 3).await;
    let tmp = tempfile::TempDir::new().unwrap();
    let dir = tmp.path().join("jsonl");
    let fields = step_fields(json!({
        "messages": {"preset": "qwen_vl", "system": "You operate a computer."}
    }));
    let m = run(&store, OutputFormat::Jsonl, fields.clone(), &dir, 2).await;
    let images = m.images.clone().expect("an images section");
    let on_disk: Vec<String> = std::fs::read_dir(dir.join("images"))
        .unwrap()
        .map(|e| format!("images/{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    assert_eq!(images.count as usize, on_disk.len());
    assert_eq!(images.count, m.steps.as_ref().unwrap().observations);
    let mut lines = 0;
    for s in &m.shards {
        for line in std::fs::read_to_string(dir.join(&s.path)).unwrap().lines() {
            lines += 1;
            let r: Value = serde_json::from_str(line).unwrap();
            // qwen_vl in JSON Lines: `image` is the list Qwen's scripts read.
            let paths = r["image"].as_array().unwrap();
            let ext = if r["image_format"] == "jpeg" {
                "jpg"
            } else {
                "png"
            };
            let obs = r["observation_key"].as_str().unwrap();
            assert_eq!(
                paths.last().unwrap().as_str().unwrap(),
                format!("images/{obs}.{ext}")
            );
            for p in paths {
                assert!(dir.join(p.as_str().unwrap()).is_file(), "{p} exists");
            }
            let conv = r["conversations"].as_array().unwrap();
            assert_eq!(conv[0]["from"], "human");
            assert_eq!(conv[1]["from"], "gpt");
            let human = conv[0]["value"].as_str().unwrap();
            assert!(human.starts_with("You operate a computer.\n\nTask: "));
            assert_eq!(human.matches("<image>").count(), paths.len());
        }
    }
    assert_eq!(lines, m.rows);
    let root: Arc<dyn object_store::ObjectStore> =
        Arc::new(object_store::local::LocalFileSystem::new_with_prefix(&dir).unwrap());
    let v = verify(&root, &ObjectPath::from("")).await.unwrap();
    assert!(v.is_intact(), "{:?}", v.mismatches);
    // A changed image is reported by its path.
    let victim = &images.files[images.files.len() / 2].path;
    let mut bytes = std::fs::read(dir.join(victim)).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(dir.join(victim), bytes).unwrap();
    let v = verify(&root, &ObjectPath::from("")).await.unwrap();
    let text: Vec<String> = v.mismatches.iter().map(|m| m.to_string()).collect();
    assert_eq!(text.len(), 1, "{text:?}");
    assert!(
        text[0].starts_with(&format!("{victim}: sha256")),
        "{text:?}"
    );

    // A cancelled export leaves nothing: no shard, no image, no manifest.
    let failed = tmp.path().join("failed");
    let progress = Arc::new(Progress::default());
    progress
        .cancel
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let s = spec("jsonl", fields);
    let err = Export::new(&store, &s)
        .with_target(ExportTarget::local(failed.to_str().unwrap()).unwrap())
        .with_progress(progress)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cancel"), "{err}");
    let left: Vec<String> = if failed.exists() {
        files(&failed).into_keys().collect()
    } else {
        Vec::new()
    };
    assert!(left.is_empty(), "a failed step export left {left:?}");
}

#[tokio::test]
async fn step_exports_split_by_session_and_parquet_keeps_the_observation() {
    let (_b, store) = sealed_memory_store(SEED, 6).await;
    let tmp = tempfile::TempDir::new().unwrap();
    let dir = tmp.path().join("parquet");
    let fields = step_fields(json!({
        "splits": {"train": 0.5, "test": 0.5},
        "coordinates": "normalized",
        "messages": null,
    }));
    let m = run(&store, OutputFormat::Parquet, fields, &dir, 2).await;
    let sections = m.splits.clone().unwrap();
    let mut owner: HashMap<String, String> = HashMap::new();
    let mut rows = 0;
    for section in &sections {
        for shard in &section.shards {
            let file = std::fs::File::open(dir.join(shard)).unwrap();
            let reader =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                    .unwrap()
                    .build()
                    .unwrap();
            for batch in reader {
                let batch = batch.unwrap();
                use arrow::array::{Array, AsArray};
                let sids = batch
                    .column_by_name("session_id")
                    .unwrap()
                    .as_string::<i32>()
                    .clone();
                let image = batch.column_by_name("image").unwrap().as_struct().clone();
                let bytes = image.column(0).as_binary::<i32>();
                let paths = image.column(1).as_string::<i32>();
                let obs = batch
                    .column_by_name("observation_key")
                    .unwrap()
                    .as_string::<i32>()
                    .clone();
                let action = batch.column_by_name("action").unwrap().as_struct().clone();
                let x = action.column_by_name("x").unwrap();
                assert_eq!(x.data_type(), &arrow::datatypes::DataType::Float64);
                let x = x.as_primitive::<arrow::datatypes::Float64Type>();
                for i in 0..batch.num_rows() {
                    rows += 1;
                    let fmt = batch.column_by_name("image_format").unwrap();
                    let (magic, ext): (&[u8], &str) = if fmt.as_string::<i32>().value(i) == "jpeg" {
                        (b"\xff\xd8", "jpg")
                    } else {
                        (b"\x89PNG", "png")
                    };
                    assert!(
                        bytes.value(i).starts_with(magic),
                        "every row has its observation"
                    );
                    assert_eq!(paths.value(i), format!("{}.{ext}", obs.value(i)));
                    if x.is_valid(i) {
                        assert!((0.0..=1.0).contains(&x.value(i)));
                    }
                    let sid = sids.value(i).to_string();
                    if let Some(o) = owner.insert(sid.clone(), section.name.clone()) {
                        assert_eq!(o, section.name, "{sid} is in two splits");
                    }
                }
            }
        }
    }
    assert_eq!(rows, m.rows);
    assert!(
        sections.iter().all(|s| s.rows > 0),
        "both splits have steps: {sections:?}"
    );
}

#[tokio::test]
async fn step_exports_reproduce_byte_for_byte_and_name_a_differing_image() {
    let (tmp, store) = crate::support::store_dir(SEED, 2).await;
    for format in ["jsonl", "webdataset"] {
        let original = tmp.path().join(format!("original-{format}"));
        let spec_file = tmp.path().join(format!("spec-{format}.json"));
        let mut v = crate::support::spec_json(format, step_fields(json!({})));
        v["destination"] = json!({"kind": "local", "path": original});
        std::fs::write(&spec_file, v.to_string()).unwrap();
        let (ok, text) = crate::support::nusomi(&[
            "export",
            "create",
            "--store",
            &store,
            spec_file.to_str().unwrap(),
        ]);
        assert!(ok, "{text}");
        let reproduce = |to: &str| {
            let to = tmp.path().join(format!("{to}-{format}"));
            crate::support::nusomi(&[
                "export",
                "create",
                "--store",
                &store,
                "--from-manifest",
                original.to_str().unwrap(),
                "--to",
                to.to_str().unwrap(),
            ])
        };
        let (ok, text) = reproduce("again");
        assert!(ok && text.contains("byte for byte"), "{format}: {text}");
        if format == "jsonl" {
            // The manifest says another image was written: named by path.
            let path = original.join("manifest.json");
            let mut m: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            let name = m["images"]["files"][1]["path"]
                .as_str()
                .unwrap()
                .to_string();
            m["images"]["files"][1]["sha256"] = json!("0".repeat(64));
            std::fs::write(&path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
            let (ok, text) = reproduce("third");
            assert!(!ok, "{text}");
            assert!(text.contains(&format!("{name}: ")), "{text}");
        }
    }
}

/// A bundle of one `w`×`h` frame with a click on it, under `dir`.
fn one_frame_bundle(dir: &Path, id: &str, w: u32, h: u32) -> std::path::PathBuf {
    let b = dir.join(id);
    std::fs::create_dir_all(b.join("frames")).unwrap();
    let session = json!({"session_id": id, "workflow": "process_invoice", "outcome": "success",
        "actor": {"kind": "human"}, "started_at": "2026-05-07T14:08:11Z",
        "ended_at": "2026-05-07T14:08:12Z"});
    std::fs::write(b.join("session.json"), session.to_string()).unwrap();
    std::fs::write(
        b.join("frames.jsonl"),
        "{\"t_ms\": 0, \"file\": \"frames/000000.png\"}\n",
    )
    .unwrap();
    std::fs::write(
        b.join("events.jsonl"),
        "{\"t_ms\": 5, \"type\": \"click\", \"action\": true, \"data\": {\"x\": 1, \"y\": 1}}\n",
    )
    .unwrap();
    image::RgbImage::from_pixel(w, h, image::Rgb([200, 10, 10]))
        .save(b.join("frames/000000.png"))
        .unwrap();
    b
}

#[tokio::test]
async fn smart_resize_refuses_an_aspect_ratio_above_200_naming_the_frame() {
    let tmp = tempfile::TempDir::new().unwrap();
    let store = SealedStore::open(tmp.path().join("store").to_str().unwrap())
        .await
        .unwrap();
    for (id, w) in [("ses_wide603", 603), ("ses_wide600", 600)] {
        let b = one_frame_bundle(tmp.path(), id, w, 3);
        store
            .seal(&b, &nusomi_export::store::SealOptions::default())
            .await
            .unwrap();
    }
    let fields = |id: &str| {
        step_fields(
            json!({"coordinates": "smart_resize", "workflow": "process_invoice",
                           "filter": {"exclude_session_ids": [id]}}),
        )
    };
    // 600×3 (a ratio of exactly 200) is resized, as qwen_vl_utils does.
    let ok = tmp.path().join("ok");
    let m = run(&store, OutputFormat::Jsonl, fields("ses_wide603"), &ok, 1).await;
    assert_eq!(m.rows, 1);
    let rows = std::fs::read_to_string(ok.join("shard-000000.jsonl")).unwrap();
    let row: Value = serde_json::from_str(rows.lines().next().unwrap()).unwrap();
    assert_eq!(
        (row["image_width"].as_i64(), row["image_height"].as_i64()),
        (Some(588), Some(28)),
        "{row}"
    );
    // 603×3 is refused, naming the frame; nothing is left.
    let out = tmp.path().join("refused");
    let s = spec("jsonl", fields("ses_wide600"));
    let t = ExportTarget::local(out.to_str().unwrap()).unwrap();
    let err = Export::new(&store, &s).with_target(t).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("ses_wide603_000000") && text.contains("603×3") && text.contains("above 200"),
        "{text}"
    );
    let left: Vec<_> = std::fs::read_dir(&out)
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn export_create_warns_about_steps_no_action_maps() {
    let tmp = tempfile::TempDir::new().unwrap();
    let b = one_frame_bundle(tmp.path(), "ses_unmapped", 64, 48);
    let click =
        "{\"t_ms\": 5, \"type\": \"click\", \"action\": true, \"data\": {\"x\": 1, \"y\": 1}}\n";
    let navigate = "{\"t_ms\": 6, \"type\": \"navigate\", \"action\": true, \"data\": {\"url\": \"https://x\"}}\n";
    // Seals the bundle with `events` into a store of its own and runs a
    // step export of it through the CLI; returns what it printed.
    let export = |name: &str, events: String| {
        std::fs::write(b.join("events.jsonl"), events).unwrap();
        let store = tmp.path().join(format!("store-{name}"));
        let (ok, text) = crate::support::nusomi(&[
            "seal",
            "--store",
            store.to_str().unwrap(),
            b.to_str().unwrap(),
        ]);
        assert!(ok, "{text}");
        let mut spec =
            crate::support::spec_json("jsonl", step_fields(json!({"workflow": "process_invoice"})));
        spec["destination"] = json!({"kind": "local", "path": tmp.path().join(name)});
        let spec_file = tmp.path().join(format!("spec-{name}.json"));
        std::fs::write(&spec_file, spec.to_string()).unwrap();
        let (ok, text) = crate::support::nusomi(&[
            "export",
            "create",
            "--store",
            store.to_str().unwrap(),
            spec_file.to_str().unwrap(),
        ]);
        assert!(ok, "{text}");
        text
    };
    // A click and a `navigate` action: the second has no canonical action.
    let text = export("mixed", format!("{click}{navigate}"));
    assert!(
        text.contains("warning: 1 of 2 steps map to no canonical action"),
        "{text}"
    );
    // A step export whose actions all map says nothing of the kind.
    let text = export("clicks", click.to_string());
    assert!(!text.contains("warning:"), "{text}");
}
