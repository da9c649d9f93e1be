//! Model presets (`messages.preset`: `qwen2_5_vl`, `qwen3_vl`, `ui_tars`,
//! `opencua`) end to end: byte-identical whatever the partitioning, every
//! sample laid out as the module doc of `src/sample/chat.rs` says (one
//! `<image>` per listed image and the images exist, the last turn is the
//! step's own action and the only one that trains under `loss: last`,
//! history rounds within the spec's window), the actor's thought and
//! target carried into the row and into the turn the model expects.

use std::collections::BTreeMap;
use std::path::Path;

use datafusion::prelude::{SessionConfig, SessionContext};
use nusomi_export::dest::ExportTarget;
use nusomi_export::Export;
use serde_json::{json, Value};

use crate::support::{export_to_dir, files_below, sealed_memory_store, spec};

const SEED: u64 = 2525;
const PRESETS: [&str; 4] = ["qwen2_5_vl", "qwen3_vl", "ui_tars", "opencua"];

fn rows(dir: &Path) -> Vec<Value> {
    let mut files: Vec<_> = files_below(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect::<Vec<Value>>()
        })
        .collect()
}

fn all_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    files_below(dir)
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            (rel, std::fs::read(&p).unwrap())
        })
        .collect()
}

#[tokio::test]
async fn model_presets_lay_out_rounds_and_mark_the_trained_turn() {
    let (_b, store) = sealed_memory_store(SEED, 4).await;
    let tmp = tempfile::TempDir::new().unwrap();
    for preset in PRESETS {
        for loss in ["last", "all"] {
            let dir = tmp.path().join(format!("{preset}-{loss}"));
            let fields = json!({"unit": "step", "messages": {"preset": preset, "loss": loss}});
            let m = export_to_dir(&store, "jsonl", fields, &dir).await;
            let rows = rows(&dir);
            assert_eq!(rows.len() as u64, m.rows, "{preset}: every step is a row");
            let (history_actions, history_frames) = match preset {
                "ui_tars" => (50, 4),
                "opencua" => (10, 2),
                _ => (64, 4),
            };
            let step = &m.resolved["step"];
            assert_eq!(step["history"]["actions"], history_actions, "{preset}");
            assert_eq!(step["history"]["frames"], history_frames, "{preset}");
            let (mut thoughts, mut targets) = (0, 0);
            for r in &rows {
                let key = r["key"].as_str().unwrap();
                let turns = r["messages"].as_array().unwrap();
                let images = r["images"].as_array().unwrap();
                let tags: usize = turns
                    .iter()
                    .map(|t| t["content"].as_str().unwrap().matches("<image>").count())
                    .sum();
                assert_eq!(tags, images.len(), "{preset} {key}: one <image> per image");
                assert!(
                    !images.is_empty() && images.len() <= history_frames + 1,
                    "{preset} {key}: {} images",
                    images.len()
                );
                for i in images {
                    assert!(
                        dir.join(i.as_str().unwrap()).is_file(),
                        "{preset} {key}: {i}"
                    );
                }
                let last = turns.last().unwrap();
                assert_eq!(last["role"], "assistant");
                assert_eq!(
                    last["loss"], true,
                    "{preset} {key}: the step's own action trains"
                );
                let text = r["action_text"].as_str().unwrap();
                let content = last["content"].as_str().unwrap();
                assert!(
                    content.contains(text),
                    "{preset} {key}: {content:?} lacks {text:?}"
                );
                assert_eq!(turns[0]["role"], "system");
                for t in &turns[..turns.len() - 1] {
                    let expected = match (t["role"].as_str().unwrap(), loss) {
                        ("assistant", "all") => json!(true),
                        ("assistant", _) => json!(false),
                        _ => Value::Null,
                    };
                    assert_eq!(t["loss"], expected, "{preset} {key}: {t}");
                }
                let assistants = turns.iter().filter(|t| t["role"] == "assistant").count();
                let history = r["history_actions"].as_array().unwrap().len();
                let expected = if preset.starts_with("qwen") {
                    // Older rounds are "Previous actions" lines instead.
                    assistants <= history + 1
                } else {
                    assistants == history + 1
                };
                assert!(
                    expected,
                    "{preset} {key}: {assistants} assistant turns, {history} previous"
                );
                if let Some(t) = r["thought"].as_str() {
                    thoughts += 1;
                    if preset != "qwen2_5_vl" {
                        let slot = match preset {
                            "opencua" => format!("## Thought:\n{t}\n"),
                            _ => format!("Thought: {t}\n"),
                        };
                        assert!(content.starts_with(&slot), "{preset} {key}: {content:?}");
                    } else {
                        assert!(content.starts_with(&format!("{t}\n<tool_call>")));
                    }
                }
                if !r["target_bbox"].is_null() {
                    targets += 1;
                    let b = &r["target_bbox"];
                    let (lo, hi) = (b["x1"].as_f64().unwrap(), b["x2"].as_f64().unwrap());
                    let x = r["action"]["x"].as_f64().unwrap();
                    assert!(
                        lo <= x && x <= hi,
                        "{preset} {key}: the click is in its target {b}"
                    );
                    assert!(r["target_name"].is_string() && r["target_role"].is_string());
                }
            }
            assert!(
                thoughts > 0 && targets > 0,
                "{preset}: {thoughts} thoughts, {targets} targets"
            );
        }
    }
}

#[tokio::test]
async fn model_preset_exports_are_byte_identical_across_partition_counts() {
    let (_b, store) = sealed_memory_store(SEED, 3).await;
    let tmp = tempfile::TempDir::new().unwrap();
    // Grounding too: with batches of 8 frames, many batches ground nothing.
    let cases = PRESETS
        .iter()
        .map(|p| json!({"preset": p}))
        .chain([json!({"preset": "qwen2_5_vl", "task": "grounding", "answer": "box"})]);
    for messages in cases {
        let preset = messages["preset"].as_str().unwrap().to_string();
        for format in ["parquet", "jsonl"] {
            let fields =
                json!({"unit": "step", "messages": messages, "shard_size_bytes": 64 * 1024});
            let mut seen = Vec::new();
            for partitions in [1, 3] {
                let dir = tmp.path().join(format!(
                    "{preset}-{}-{format}-{partitions}",
                    messages.get("task").is_some()
                ));
                let ctx = SessionContext::new_with_config(
                    SessionConfig::new()
                        .with_target_partitions(partitions)
                        .with_batch_size(8),
                );
                let t = ExportTarget::local(dir.to_str().unwrap()).unwrap();
                Export::new(&store, &spec(format, fields.clone()))
                    .with_target(t)
                    .with_context(ctx)
                    .await
                    .unwrap();
                seen.push(all_files(&dir));
            }
            assert_eq!(seen[0], seen[1], "{preset} {format}: same bytes");
        }
    }
}

/// The text of `s` between the first `open` and the next `close`.
fn between<'a>(s: &'a str, open: &str, close: &str) -> &'a str {
    let from = s
        .find(open)
        .map(|i| i + open.len())
        .unwrap_or_else(|| panic!("{open:?} in {s:?}"));
    let len = s[from..]
        .find(close)
        .unwrap_or_else(|| panic!("{close:?} in {s:?}"));
    &s[from..from + len]
}

/// A grounding answer's coordinates, read as each family's code reads it.
fn answered(preset: &str, answer: &str, text: &str) -> Vec<f64> {
    let list = |v: &Value| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_f64().unwrap())
            .collect()
    };
    let key = if answer == "box" {
        "bbox_2d"
    } else {
        "point_2d"
    };
    match preset {
        "qwen2_5_vl" if answer == "point" => ["x1=\"", "y1=\""]
            .iter()
            .map(|a| between(text, a, "\"").parse().unwrap())
            .collect(),
        "qwen2_5_vl" | "qwen3_vl" => {
            let v: Value = serde_json::from_str(between(text, "```json", "```")).unwrap();
            list(&v[0][key])
        }
        "ui_tars" => between(text, "<point>", "</point>")
            .split(' ')
            .map(|n| n.parse().unwrap())
            .collect(),
        "opencua" => vec![
            between(text, "x=", ",").parse().unwrap(),
            between(text, "y=", ")").parse().unwrap(),
        ],
        _ => list(&serde_json::from_str::<Value>(text).unwrap()[key]),
    }
}

#[tokio::test]
async fn grounding_samples_answer_where_each_named_click_target_is() {
    let (_b, store) = sealed_memory_store(SEED, 4).await;
    let tmp = tempfile::TempDir::new().unwrap();
    // The steps that ground: clicks at an element with a name or role.
    let plain = tmp.path().join("plain");
    export_to_dir(&store, "jsonl", json!({"unit": "step"}), &plain).await;
    let named: BTreeMap<String, Value> = rows(&plain)
        .into_iter()
        .filter(|r| {
            ["click", "double_click", "right_click"]
                .contains(&r["action"]["type"].as_str().unwrap())
                && (r["target_name"].is_string() || r["target_role"].is_string())
        })
        .map(|r| (r["key"].as_str().unwrap().to_string(), r))
        .collect();
    assert!(named.len() > 5, "the demo has named click targets");
    let cases = [
        ("qwen2_5_vl", "box"),
        ("qwen2_5_vl", "point"),
        ("qwen3_vl", "box"),
        ("qwen3_vl", "point"),
        ("ui_tars", "point"),
        ("opencua", "point"),
        ("sharegpt", "box"),
        ("qwen_vl", "point"),
    ];
    for (preset, answer) in cases {
        let dir = tmp.path().join(format!("{preset}-{answer}"));
        let fields = json!({"unit": "step", "messages": {"preset": preset, "task": "grounding", "answer": answer, "loss": "last"}});
        let m = export_to_dir(&store, "jsonl", fields, &dir).await;
        let step = &m.resolved["step"];
        assert_eq!(step["messages"]["task"], "grounding");
        assert_eq!(step["messages"]["answer"], answer);
        assert_eq!(
            step["history"],
            json!({"actions": 0, "frames": 0}),
            "{preset}"
        );
        let got = rows(&dir);
        let keys: Vec<&str> = got.iter().map(|r| r["key"].as_str().unwrap()).collect();
        assert_eq!(
            keys,
            named.keys().map(String::as_str).collect::<Vec<_>>(),
            "{preset} {answer}: one sample per named click, keyed by its step"
        );
        for r in &got {
            let key = r["key"].as_str().unwrap();
            let (turns_col, speaker, text) = if preset == "qwen_vl" {
                ("conversations", "from", "value")
            } else {
                ("messages", "role", "content")
            };
            let turns = r[turns_col].as_array().unwrap();
            let images = r[if preset == "qwen_vl" {
                "image"
            } else {
                "images"
            }]
            .as_array()
            .unwrap();
            assert_eq!(images.len(), 1, "{preset} {key}: one screenshot");
            assert!(dir.join(images[0].as_str().unwrap()).is_file());
            let tags: usize = turns
                .iter()
                .map(|t| t[text].as_str().unwrap().matches("<image>").count())
                .sum();
            assert_eq!(tags, 1, "{preset} {key}");
            let last = turns.last().unwrap();
            assert_eq!(last["loss"], true);
            assert!(matches!(last[speaker].as_str(), Some("assistant" | "gpt")));
            let said = answered(preset, answer, last[text].as_str().unwrap());
            let want: Vec<f64> = if answer == "box" {
                ["x1", "y1", "x2", "y2"]
                    .iter()
                    .map(|k| r["target_bbox"][k].as_f64().unwrap())
                    .collect()
            } else {
                vec![
                    r["action"]["x"].as_f64().unwrap(),
                    r["action"]["y"].as_f64().unwrap(),
                ]
            };
            assert_eq!(said, want, "{preset} {answer} {key}: {:?}", last[text]);
            let name = r["target_name"]
                .as_str()
                .or(r["target_role"].as_str())
                .unwrap();
            let asked = turns[turns.len() - 2][text].as_str().unwrap();
            let all: String = turns.iter().map(|t| t[text].as_str().unwrap()).collect();
            assert!(
                all.contains(name),
                "{preset} {key}: {asked:?} names {name:?}"
            );
        }
    }
}

#[test]
fn grounding_spec_errors_name_the_field() {
    let bad = |messages: Value| {
        let mut s = json!({"workflow": "a", "format": "jsonl", "unit": "step"});
        s["messages"] = messages;
        nusomi_export::spec::ExportSpec::parse(&s, chrono::Utc::now())
            .unwrap_err()
            .to_string()
    };
    let e = bad(json!({"preset": "ui_tars", "task": "grounding", "answer": "box"}));
    assert!(
        e.contains("messages.answer: ui_tars grounding answers with a point"),
        "{e}"
    );
    let e = bad(json!({"preset": "sharegpt", "answer": "box"}));
    assert!(
        e.contains("messages.answer: applies only to \"task\": \"grounding\""),
        "{e}"
    );
    let e = bad(json!({"preset": "sharegpt", "task": "ground"}));
    assert!(
        e.contains("messages.task: \"ground\" is not one of: action, grounding"),
        "{e}"
    );
}

#[tokio::test]
async fn target_boxes_are_the_event_box_in_each_convention() {
    let (_b, store) = sealed_memory_store(SEED, 3).await;
    let tmp = tempfile::TempDir::new().unwrap();
    let mut boxes = 0;
    for coords in ["pixels", "normalized", "normalized_1000"] {
        let dir = tmp.path().join(coords);
        export_to_dir(
            &store,
            "jsonl",
            json!({"unit": "step", "coordinates": coords}),
            &dir,
        )
        .await;
        for r in rows(&dir) {
            let data = &r["event"]["data"];
            let data: Value = match data.as_str() {
                Some(s) => serde_json::from_str(s).unwrap(),
                None => data.clone(),
            };
            let Some(raw) = data["element"]["bbox"].as_array() else {
                assert!(r["target_bbox"].is_null());
                continue;
            };
            boxes += 1;
            let (w, h) = (r["width"].as_f64().unwrap(), r["height"].as_f64().unwrap());
            for (i, k) in ["x1", "y1", "x2", "y2"].iter().enumerate() {
                let v = raw[i].as_f64().unwrap();
                let size = if i % 2 == 0 { w } else { h };
                let want = match coords {
                    "pixels" => v.round().clamp(0.0, size - 1.0),
                    "normalized" => ((v / size).clamp(0.0, 1.0) * 10_000.0).round() / 10_000.0,
                    _ => (v * 1000.0 / size).round().clamp(0.0, 1000.0),
                };
                assert_eq!(
                    r["target_bbox"][k].as_f64().unwrap(),
                    want,
                    "{coords} {k}: {r}"
                );
            }
        }
    }
    assert!(boxes > 10, "{boxes} boxes");
}
