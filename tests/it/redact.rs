//! Redaction (`"redact": {…}`): typed text and event data are masked by
//! pattern before anything is written — also when the text was typed in
//! chunks — and redaction rectangles are painted over every frame from the
//! one carrying the event on. The secrets never appear in any output byte
//! of any format; without `redact` they do (so the search could fail).

use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use nusomi_export::dest::ExportTarget;
use nusomi_export::spec::OutputFormat;
use nusomi_export::store::{SealOptions, SealedStore};
use nusomi_export::Export;
use object_store::memory::InMemory;
use serde_json::{json, Value};

use crate::support::{small_generator, spec, store_over};

/// Text that must never be written once redacted (each as typed).
const SECRETS: [&str; 6] = [
    "zoe.q",
    "@zqx-",
    "mail.",
    "4111 1111 1111 1111",
    "415 555 0132",
    "DE89370400440532013000",
];

const RECT: (u32, u32, u32, u32) = (10, 20, 50, 30);

/// A generated session with secrets typed and shown, and a redaction
/// rectangle on frame 2; returns the store and the session's bundle.
async fn store_with_secrets(dir: &Path) -> (Arc<SealedStore>, nusomi_export::datagen::BundleDraft) {
    let mut draft = small_generator(97).session(0);
    assert!(draft.frames.len() > 4 && draft.frames.iter().all(|f| f.ext == "png"));
    let t = draft.frames[2].t_ms;
    let extra = [
        json!({"t_ms": t, "type": "redact", "action": false,
               "data": {"x": RECT.0, "y": RECT.1, "w": RECT.2, "h": RECT.3}}),
        // An e-mail typed in chunks: no chunk alone is an e-mail.
        json!({"t_ms": t, "type": "type", "action": true, "data": {"text": "zoe.q"}}),
        json!({"t_ms": t, "type": "type", "action": true, "data": {"text": "@zqx-"}}),
        json!({"t_ms": t, "type": "type", "action": true, "data": {"text": "mail."}}),
        json!({"t_ms": t, "type": "type", "action": true, "data": {"text": "io"}}),
        json!({"t_ms": t, "type": "key", "action": true, "data": {"key": "Tab"}}),
        json!({"t_ms": t, "type": "type", "action": true,
               "data": {"text": "card 4111 1111 1111 1111 ok"}}),
        json!({"t_ms": t, "type": "screen_text", "action": false,
               "data": {"lines": ["call +1 415 555 0132", "IBAN DE89370400440532013000"]}}),
    ];
    draft.events.extend(extra);
    draft.events.sort_by_key(|e| e["t_ms"].as_i64().unwrap());
    let path = dir.join(draft.session_id());
    draft.write(&path).unwrap();
    let store = store_over(Arc::new(InMemory::new()));
    store.seal(&path, &SealOptions::default()).await.unwrap();
    (store, draft)
}

/// Every byte of every file under `dir`, and for Parquet shards their
/// decoded rows too (compressed pages would hide text from a byte search).
fn all_text(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in crate::support::files_below(dir) {
        let bytes = std::fs::read(&entry).unwrap();
        if entry.extension().is_some_and(|e| e == "parquet") {
            let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                bytes::Bytes::from(bytes.clone()),
            )
            .unwrap()
            .build()
            .unwrap();
            for batch in reader {
                let batch = batch.unwrap();
                let mut w = arrow::json::LineDelimitedWriter::new(Vec::new());
                w.write(&batch.project(&[16, 17]).unwrap()).unwrap();
                w.finish().unwrap();
                out.extend(w.into_inner());
            }
        }
        out.extend(bytes);
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

async fn export(store: &Arc<SealedStore>, format: &str, fields: Value, dir: &Path) {
    let mut fields = fields;
    fields["frame_sampling"] = json!({"mode": "all"});
    let s = spec(format, fields);
    let t = ExportTarget::local(dir.to_str().unwrap()).unwrap();
    Export::new(store, &s).with_target(t).await.unwrap();
}

#[tokio::test]
async fn redacted_text_never_reaches_any_output_byte_of_any_format() {
    let tmp = tempfile::TempDir::new().unwrap();
    let (store, _) = store_with_secrets(tmp.path()).await;
    for format in OutputFormat::ALL {
        let f = format.as_str();
        let plain = tmp.path().join(format!("plain-{f}"));
        export(&store, f, json!({}), &plain).await;
        let text = all_text(&plain);
        for s in ["zoe.q", "4111 1111 1111 1111", "415 555 0132"] {
            assert!(contains(&text, s), "{f}: without redact, {s:?} is exported");
        }
        let dir = tmp.path().join(format!("redacted-{f}"));
        export(&store, f, json!({"redact": {"typed_text": true}}), &dir).await;
        let text = all_text(&dir);
        for s in SECRETS {
            assert!(!contains(&text, s), "{f}: {s:?} leaked");
        }
        for label in ["email", "credit_card", "phone", "iban"] {
            assert!(
                contains(&text, &format!("[REDACTED:{label}]")),
                "{f}: no {label} mask"
            );
        }
        let m: Value =
            serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
        assert_eq!(
            m["resolved"]["redact"]["patterns"],
            json!(["email", "credit_card", "phone", "iban"]),
            "{f}: the manifest records which patterns ran"
        );
    }
}

#[tokio::test]
async fn a_redaction_rectangle_changes_exactly_the_painted_pixels_from_its_frame_on() {
    let tmp = tempfile::TempDir::new().unwrap();
    let (store, draft) = store_with_secrets(tmp.path()).await;
    let dir = tmp.path().join("out");
    export(
        &store,
        "jsonl",
        json!({"redact": {"patterns": ["email"]}}),
        &dir,
    )
    .await;
    let mut seen = 0;
    for shard in crate::support::files_below(&dir)
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
    {
        for line in std::fs::read_to_string(shard).unwrap().lines() {
            let row: Value = serde_json::from_str(line).unwrap();
            let idx = row["frame_idx"].as_u64().unwrap() as usize;
            let b64 = row["image"].as_str().unwrap().split_once(',').unwrap().1;
            let got = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap();
            let original = &draft.frames[idx].image;
            if idx < 2 {
                assert_eq!(
                    &got, original,
                    "frame {idx} precedes the rectangle: same bytes"
                );
                continue;
            }
            let before = image::load_from_memory(original).unwrap().to_rgba8();
            let after = image::load_from_memory(&got).unwrap().to_rgba8();
            assert_eq!(before.dimensions(), after.dimensions());
            let (x0, y0, w, h) = RECT;
            for (x, y, p) in after.enumerate_pixels() {
                let inside = (x0..x0 + w).contains(&x) && (y0..y0 + h).contains(&y);
                if inside {
                    assert_eq!(p.0, [0, 0, 0, 255], "frame {idx} ({x},{y}) is painted");
                } else {
                    assert_eq!(
                        p,
                        before.get_pixel(x, y),
                        "frame {idx} ({x},{y}) is untouched"
                    );
                }
            }
            seen += 1;
        }
    }
    assert_eq!(
        seen,
        draft.frames.len() - 2,
        "every frame from the rectangle's on"
    );
    // Painting is deterministic: the same export again is byte-identical.
    let again = tmp.path().join("again");
    export(
        &store,
        "jsonl",
        json!({"redact": {"patterns": ["email"]}}),
        &again,
    )
    .await;
    assert_eq!(
        std::fs::read(dir.join("manifest.json")).unwrap(),
        std::fs::read(again.join("manifest.json")).unwrap()
    );
    // `rectangles: false` keeps every frame's bytes.
    let off = tmp.path().join("off");
    export(
        &store,
        "jsonl",
        json!({"redact": {"patterns": ["email"], "rectangles": false}}),
        &off,
    )
    .await;
    let text = all_text(&off);
    let first = base64::engine::general_purpose::STANDARD.encode(&draft.frames[3].image);
    assert!(contains(&text, &first), "frame 3 unpainted");
}

#[tokio::test]
async fn redaction_applies_before_steps_are_built() {
    let tmp = tempfile::TempDir::new().unwrap();
    let (store, _) = store_with_secrets(tmp.path()).await;
    let steps = json!({
        "unit": "step",
        "history": {"actions": 8},
        "messages": {"preset": "sharegpt", "action_syntax": "pyautogui"},
    });
    for f in ["jsonl", "webdataset"] {
        let plain = tmp.path().join(format!("steps-plain-{f}"));
        export(&store, f, steps.clone(), &plain).await;
        let text = all_text(&plain);
        for s in ["zoe.q", "4111 1111 1111 1111"] {
            assert!(
                contains(&text, s),
                "{f}: without redact, {s:?} is in the steps"
            );
        }
        let mut fields = steps.clone();
        fields["redact"] = json!({"typed_text": true});
        let dir = tmp.path().join(format!("steps-redacted-{f}"));
        export(&store, f, fields, &dir).await;
        let text = all_text(&dir);
        for s in SECRETS {
            assert!(!contains(&text, s), "{f}: {s:?} leaked into a step");
        }
        for label in ["email", "credit_card"] {
            assert!(
                contains(&text, &format!("[REDACTED:{label}]")),
                "{f}: no {label} mask in the steps"
            );
        }
    }
}
