//! [`BundleDraft`]: a recording bundle held as values, written to a folder in
//! the SPEC §2 layout. The generator produces drafts; tests build or damage
//! them by hand to exercise every refusal.

use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};

/// One frame of a draft: its line in `frames.jsonl` and its image bytes.
#[derive(Debug, Clone)]
pub struct DraftFrame {
    /// Milliseconds since `started_at`.
    pub t_ms: i64,
    /// The bundle's `keyframe` flag, if any.
    pub keyframe: Option<bool>,
    /// Encoded image.
    pub image: Vec<u8>,
    /// File extension (`png` / `jpg`).
    pub ext: &'static str,
}

/// A recording bundle in memory.
#[derive(Debug, Clone)]
pub struct BundleDraft {
    /// `session.json`.
    pub session: Value,
    /// Frames in order; image files are named `frames/000000.<ext>`.
    pub frames: Vec<DraftFrame>,
    /// `events.jsonl` lines.
    pub events: Vec<Value>,
}

impl BundleDraft {
    /// The draft's `session_id` (empty if it has none).
    pub fn session_id(&self) -> &str {
        self.session["session_id"].as_str().unwrap_or_default()
    }

    /// Writes the bundle into `dir` (created if missing).
    pub fn write(&self, dir: &Path) -> Result<()> {
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |e| Error::io(p, e)
        };
        let frames_dir = dir.join("frames");
        std::fs::create_dir_all(&frames_dir).map_err(io(&frames_dir))?;
        let session = serde_json::to_string_pretty(&self.session).unwrap_or_default();
        let p = dir.join("session.json");
        std::fs::write(&p, session + "\n").map_err(io(&p))?;
        let mut lines = String::new();
        for (i, f) in self.frames.iter().enumerate() {
            let file = format!("frames/{i:06}.{}", f.ext);
            let p = dir.join(&file);
            std::fs::write(&p, &f.image).map_err(io(&p))?;
            let mut line = serde_json::json!({"t_ms": f.t_ms, "file": file});
            if let Some(k) = f.keyframe {
                line["keyframe"] = Value::Bool(k);
            }
            lines.push_str(&line.to_string());
            lines.push('\n');
        }
        let p = dir.join("frames.jsonl");
        std::fs::write(&p, lines).map_err(io(&p))?;
        let events: String = self.events.iter().map(|e| format!("{e}\n")).collect();
        let p = dir.join("events.jsonl");
        std::fs::write(&p, events).map_err(io(&p))?;
        Ok(())
    }
}
