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
    for preset in PRESETS {
        for format in ["parquet", "jsonl"] {
            let fields = json!({"unit": "step", "messages": {"preset": preset}, "shard_size_bytes": 64 * 1024});
            let mut seen = Vec::new();
            for partitions in [1, 3] {
                let dir = tmp.path().join(format!("{preset}-{format}-{partitions}"));
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
