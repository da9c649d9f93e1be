//! A small hand-made store whose every value is known: five sessions built to
//! sit on the edges of the export filters (start times on `since`/`until`,
//! durations on the bounds, events before the first frame, several events on
//! one frame, a session without events, tags that look like SQL injection).
//! `sql/*.slt` and the property tests pin behaviour against it.

use chrono::{DateTime, Utc};
use image::{ImageBuffer, Rgb};
use serde_json::{json, Value};

use super::draft::{BundleDraft, DraftFrame};

/// The instant every fixture session is sealed at, except the late one.
pub const FIXTURE_SEALED_AT: &str = "2026-11-01T00:00:00Z";
/// When [`fixture_bundles`]' last session (`ses_e5`) is sealed.
pub const FIXTURE_LATE_SEALED_AT: &str = "2026-11-20T00:00:00Z";

/// A 32×24 image: `rising` brightness left to right, or falling. The two
/// differ in every dHash bit, so switching between them makes a keyframe.
pub fn pattern_image(rising: bool, tint: u8, jpeg: bool) -> (Vec<u8>, &'static str) {
    let img = ImageBuffer::from_fn(32, 24, |x, _| {
        let v = (x * 8) as u8;
        let v = if rising { v } else { 255 - v };
        Rgb([v, v / 2 + tint / 2, tint])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    let format = if jpeg {
        image::ImageFormat::Jpeg
    } else {
        image::ImageFormat::Png
    };
    img.write_to(&mut out, format)
        .expect("in-memory image encoding cannot fail");
    (out.into_inner(), if jpeg { "jpg" } else { "png" })
}

fn frame(t_ms: i64, rising: bool, tint: u8, keyframe: Option<bool>) -> DraftFrame {
    let (image, ext) = pattern_image(rising, tint, false);
    DraftFrame {
        t_ms,
        keyframe,
        image,
        ext,
    }
}

fn ev(t_ms: i64, kind: &str, action: bool, data: Value) -> Value {
    json!({"t_ms": t_ms, "type": kind, "action": action, "data": data})
}

/// The fixture bundles with the `sealed_at` each is sealed at.
pub fn fixture_bundles() -> Vec<(BundleDraft, DateTime<Utc>)> {
    let sealed = parse(FIXTURE_SEALED_AT);
    let late = parse(FIXTURE_LATE_SEALED_AT);
    let mut jpeg_frame = frame(60, false, 40, Some(true));
    (jpeg_frame.image, jpeg_frame.ext) = pattern_image(false, 40, true);
    vec![
        (
            BundleDraft {
                session: json!({
                    "session_id": "ses_a1", "workflow": "process_invoice", "outcome": "success",
                    "actor": {"kind": "model", "id": "agent-7"},
                    "started_at": "2026-01-01T00:00:00Z", "ended_at": "2026-01-01T00:00:05Z",
                    "tags": ["eu", "batch-a"], "paths": ["p_approve_invoice"],
                    "instruction": "Approve invoice INV-7 from ACME — «net 30»"
                }),
                frames: vec![
                    frame(0, true, 0, None),
                    frame(100, true, 1, None),
                    frame(200, false, 0, None),
                    frame(300, false, 1, None),
                    frame(450, false, 2, None),
                    frame(1000, true, 0, None),
                ],
                events: vec![
                    ev(
                        0,
                        "click",
                        true,
                        json!({"x": 10, "y": 20, "button": "left"}),
                    ),
                    ev(150, "type", true, json!({"text": "ACME"})),
                    ev(
                        160,
                        "navigate",
                        false,
                        json!({"url": "https://apps.example.com/inv"}),
                    ),
                    ev(460, "scroll", true, json!({"dy": 120})),
                ],
            },
            sealed,
        ),
        (
            BundleDraft {
                session: json!({
                    "session_id": "ses_b2", "workflow": "process_invoice", "outcome": "error",
                    "actor": {"kind": "human", "id": "h-1"},
                    "started_at": "2026-03-15T12:00:00Z", "ended_at": "2026-03-15T12:00:01Z",
                    "tags": ["us"]
                }),
                frames: vec![
                    frame(50, true, 40, None),
                    jpeg_frame,
                    frame(70, false, 41, None),
                ],
                events: vec![ev(10, "focus", false, json!({"window": "erp"}))],
            },
            sealed,
        ),
        (
            BundleDraft {
                session: json!({
                    "session_id": "ses_c3", "workflow": "triage_ticket", "outcome": "abandoned",
                    "actor": {"kind": "script"},
                    "started_at": "2026-06-01T00:00:00Z", "ended_at": "2026-06-01T00:10:00Z",
                    "tags": ["'; DROP TABLE sessions; --", "O'Brien"], "paths": ["p_x"]
                }),
                frames: vec![
                    frame(0, true, 80, Some(false)),
                    frame(250, true, 81, None),
                    frame(500, false, 80, None),
                ],
                events: vec![],
            },
            sealed,
        ),
        (
            BundleDraft {
                session: json!({
                    "session_id": "ses_d4", "workflow": "triage_ticket", "outcome": "success",
                    "actor": {"kind": "human", "id": "h-2"},
                    "started_at": "2025-12-31T23:59:59.999Z", "ended_at": "2026-01-01T00:00:00.998Z",
                    "tags": ["eu"], "paths": ["p_approve_invoice", "p_x"]
                }),
                frames: vec![frame(0, true, 120, None), frame(99, true, 121, None)],
                events: vec![ev(99, "key", true, json!({"key": "Enter"}))],
            },
            sealed,
        ),
        (
            BundleDraft {
                session: json!({
                    "session_id": "ses_e5", "workflow": "process_invoice", "outcome": "success",
                    "actor": {"kind": "model", "id": "agent-9"},
                    "started_at": "2026-05-31T23:59:59Z", "ended_at": "2026-06-01T00:00:09Z",
                    "tags": ["eu"]
                }),
                frames: vec![frame(0, true, 160, None), frame(5000, false, 160, None)],
                events: vec![ev(
                    4000,
                    "click",
                    true,
                    json!({"x": 1, "y": 2, "button": "right"}),
                )],
            },
            late,
        ),
    ]
}

fn parse(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
}

/// Writes the fixture bundles under `dir` and seals them into `store`, each
/// at its fixed `sealed_at`.
pub async fn seal_fixtures(
    store: &crate::store::SealedStore,
    dir: &std::path::Path,
) -> crate::error::Result<()> {
    for (draft, sealed_at) in fixture_bundles() {
        let path = dir.join(draft.session_id());
        draft.write(&path)?;
        let options = crate::store::SealOptions {
            parallelism: 1,
            sealed_at: Some(sealed_at),
            ..Default::default()
        };
        store.seal(&path, &options).await?;
    }
    Ok(())
}
