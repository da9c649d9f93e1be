//! [`Bundle::read`]: reading and validating a recording bundle folder —
//! `session.json`, `frames.jsonl`, `events.jsonl` and the frame images.
//! It either returns a fully checked bundle (images decoded, hashed and
//! measured) or a [`BundleError`] naming the file, the 1-based line and the
//! field path. It never writes anything.

use std::path::Path;

use chrono::DateTime;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::bundle::{
    check_id, check_relative, read_regular, ActorKind, Bundle, BundleLimits, Event, Frame, Outcome,
    SessionMeta, MAX_INSTRUCTION_BYTES,
};
use super::frame_image::FrameImage;
use crate::error::BundleError;

impl Bundle {
    /// Reads and checks the bundle at `dir` under the default
    /// [`BundleLimits`]: every field, every line and every image. This is
    /// CPU and file work; call it from a blocking context.
    pub fn read(dir: &Path) -> Result<Bundle, BundleError> {
        Self::read_with(dir, &BundleLimits::default())
    }

    /// [`Bundle::read`] under `limits`.
    pub fn read_with(dir: &Path, limits: &BundleLimits) -> Result<Bundle, BundleError> {
        let reader = BundleReader { dir, limits };
        let session = reader.session()?;
        let lines = reader.frame_lines()?;
        let events = reader.events()?;
        let mut frames = Vec::with_capacity(lines.len());
        let mut image_bytes = 0u64;
        for (idx, line) in lines.into_iter().enumerate() {
            let (image, sha, len) = reader.frame_image(idx, &line.file)?;
            image_bytes += len;
            frames.push(Frame {
                frame_idx: idx as i64,
                t_ms: line.t_ms,
                file: line.file,
                keyframe_hint: line.keyframe,
                image,
                image_sha256: sha,
                events: Vec::new(),
            });
        }
        attach_events(&mut frames, events);
        let seal = seal_digest(&session, &frames);
        Ok(Bundle {
            dir: dir.to_path_buf(),
            session,
            frames,
            image_bytes,
            seal,
        })
    }
}

/// Attaches each event to the latest frame whose `t_ms` ≤ the event's, or to
/// the first frame when it comes before every frame.
fn attach_events(frames: &mut [Frame], events: Vec<Event>) {
    for event in events {
        let after = frames.partition_point(|f| f.t_ms <= event.t_ms);
        let idx = after.saturating_sub(1);
        frames[idx].events.push(event);
    }
}

/// The content digest: SHA-256 over a canonical text of the session fields,
/// each frame (`t_ms`, keyframe flag, image SHA-256) and each event. Two
/// bundles with the same content have the same seal whatever their file names
/// or JSON formatting.
fn seal_digest(session: &SessionMeta, frames: &[Frame]) -> String {
    let mut h = Sha256::new();
    h.update(b"nusomi-seal-v1\n");
    let canonical = serde_json::json!({
        "session_id": session.session_id,
        "workflow": session.workflow,
        "outcome": session.outcome.as_str(),
        "actor_kind": session.actor_kind.as_str(),
        "actor_id": session.actor_id,
        "started_at_us": session.started_at_us,
        "ended_at_us": session.ended_at_us,
        "tags": session.tags,
        "paths": session.paths,
    });
    // Present only when given: bundles without it keep their seal.
    let mut canonical = canonical;
    if let Some(text) = &session.instruction {
        canonical["instruction"] = serde_json::json!(text);
    }
    h.update(canonical.to_string().as_bytes());
    h.update(b"\n");
    for f in frames {
        let hint = match f.keyframe_hint {
            None => "-",
            Some(true) => "1",
            Some(false) => "0",
        };
        h.update(format!("f {} {} {}\n", f.t_ms, hint, hex::encode(f.image_sha256)).as_bytes());
        for e in &f.events {
            let line = serde_json::json!([e.t_ms, e.kind, e.action, e.data]);
            h.update(format!("e {line}\n").as_bytes());
        }
    }
    hex::encode(h.finalize())
}

struct FrameLine {
    t_ms: i64,
    file: String,
    keyframe: Option<bool>,
}

pub(super) struct BundleReader<'a> {
    dir: &'a Path,
    limits: &'a BundleLimits,
}

const SESSION_FILE: &str = "session.json";
const FRAMES_FILE: &str = "frames.jsonl";
pub(super) const EVENTS_FILE: &str = "events.jsonl";

impl BundleReader<'_> {
    fn err(
        &self,
        file: &str,
        line: Option<usize>,
        field: Option<&str>,
        message: impl Into<String>,
    ) -> BundleError {
        BundleError {
            bundle: self.dir.to_path_buf(),
            file: file.to_string(),
            line,
            field: field.map(str::to_string),
            message: message.into(),
        }
    }

    fn read_text(&self, file: &str, cap: u64) -> Result<String, BundleError> {
        let bytes = read_regular(self.dir, file, cap)
            .map_err(|m| self.err(file, None, None, format!("cannot read: the file {m}")))?;
        String::from_utf8(bytes).map_err(|e| self.err(file, None, None, format!("not UTF-8: {e}")))
    }

    fn session(&self) -> Result<SessionMeta, BundleError> {
        let text = self.read_text(SESSION_FILE, self.limits.max_line_bytes as u64)?;
        let value: Value = serde_json::from_str(&text).map_err(|e| {
            self.err(
                SESSION_FILE,
                Some(e.line()),
                None,
                format!("malformed JSON: {e}"),
            )
        })?;
        let obj = Fields::new(self, SESSION_FILE, None, &value, "")?;
        obj.deny_unknown(&[
            "session_id",
            "workflow",
            "outcome",
            "actor",
            "started_at",
            "ended_at",
            "tags",
            "paths",
            "instruction",
        ])?;
        let session_id = obj.required_str("session_id")?;
        check_id(&session_id, 128, |c| {
            c.is_ascii_alphanumeric() || c == '_' || c == '-'
        })
        .map_err(|m| obj.field_err("session_id", m))?;
        let workflow = obj.required_str("workflow")?;
        check_id(&workflow, 64, |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'
        })
        .map_err(|m| obj.field_err("workflow", m))?;
        let outcome_s = obj.required_str("outcome")?;
        let outcome = Outcome::parse(&outcome_s).ok_or_else(|| {
            obj.field_err(
                "outcome",
                format!("unknown outcome {outcome_s:?} (allowed: success, error, abandoned)"),
            )
        })?;
        let actor_v = obj.required("actor")?;
        let actor = Fields::new(self, SESSION_FILE, None, actor_v, "actor")?;
        actor.deny_unknown(&["kind", "id"])?;
        let kind_s = actor.required_str("kind")?;
        let actor_kind = ActorKind::parse(&kind_s).ok_or_else(|| {
            actor.field_err(
                "kind",
                format!("unknown actor kind {kind_s:?} (allowed: human, model, script)"),
            )
        })?;
        let actor_id = actor.optional_str("id")?;
        let started_at_us = obj.required_time("started_at")?;
        let ended_at_us = obj.required_time("ended_at")?;
        if ended_at_us < started_at_us {
            return Err(obj.field_err("ended_at", "is before started_at"));
        }
        let tags = obj.optional_str_list("tags")?;
        let paths = obj.optional_str_list("paths")?;
        let instruction = obj.optional_str("instruction")?;
        if let Some(text) = &instruction {
            if text.len() > MAX_INSTRUCTION_BYTES {
                return Err(obj.field_err(
                    "instruction",
                    format!(
                        "{} bytes; at most {MAX_INSTRUCTION_BYTES} are accepted",
                        text.len()
                    ),
                ));
            }
        }
        Ok(SessionMeta {
            session_id,
            workflow,
            outcome,
            actor_kind,
            actor_id,
            started_at_us,
            ended_at_us,
            tags,
            paths,
            instruction,
        })
    }

    /// Parses each non-blank line of a `.jsonl` file into an object.
    fn jsonl(&self, file: &str) -> Result<Vec<(usize, Value)>, BundleError> {
        // A JSONL file as a whole is bounded by its lines: one per frame or
        // event, each at most `max_line_bytes`.
        let text = self.read_text(file, u64::MAX)?;
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let lineno = i + 1;
            if line.len() > self.limits.max_line_bytes {
                return Err(self.err(
                    file,
                    Some(lineno),
                    None,
                    format!(
                        "line of {} bytes; at most {} are accepted",
                        line.len(),
                        self.limits.max_line_bytes
                    ),
                ));
            }
            if line.trim().is_empty() {
                continue;
            }
            let v: Value = serde_json::from_str(line)
                .map_err(|e| self.err(file, Some(lineno), None, format!("malformed JSON: {e}")))?;
            out.push((lineno, v));
        }
        Ok(out)
    }

    fn frame_lines(&self) -> Result<Vec<FrameLine>, BundleError> {
        let mut out: Vec<FrameLine> = Vec::new();
        for (lineno, v) in self.jsonl(FRAMES_FILE)? {
            let obj = Fields::new(self, FRAMES_FILE, Some(lineno), &v, "")?;
            obj.deny_unknown(&["t_ms", "file", "keyframe"])?;
            let t_ms = obj.required_t_ms()?;
            if let Some(prev) = out.last() {
                if t_ms <= prev.t_ms {
                    return Err(obj.field_err(
                        "t_ms",
                        format!(
                            "{t_ms} is not greater than the previous frame's {} \
                             (frame t_ms must be strictly increasing)",
                            prev.t_ms
                        ),
                    ));
                }
            }
            let file = obj.required_str("file")?;
            check_relative(&file).map_err(|m| obj.field_err("file", m))?;
            let keyframe = obj.optional_bool("keyframe")?;
            out.push(FrameLine {
                t_ms,
                file,
                keyframe,
            });
        }
        if out.is_empty() {
            return Err(self.err(
                FRAMES_FILE,
                None,
                None,
                "a session needs at least one frame",
            ));
        }
        Ok(out)
    }

    fn events(&self) -> Result<Vec<Event>, BundleError> {
        let mut out: Vec<Event> = Vec::new();
        for (lineno, v) in self.jsonl(EVENTS_FILE)? {
            let obj = Fields::new(self, EVENTS_FILE, Some(lineno), &v, "")?;
            obj.deny_unknown(&["t_ms", "type", "action", "data"])?;
            let t_ms = obj.required_t_ms()?;
            if let Some(prev) = out.last() {
                if t_ms < prev.t_ms {
                    return Err(obj.field_err(
                        "t_ms",
                        format!(
                            "{t_ms} is less than the previous event's {} \
                             (event t_ms must not decrease)",
                            prev.t_ms
                        ),
                    ));
                }
            }
            let kind = obj.required_str("type")?;
            if kind.is_empty() {
                return Err(obj.field_err("type", "must not be empty"));
            }
            let action = obj.optional_bool("action")?.unwrap_or(false);
            if let Some(data) = obj.get("data") {
                self.actor_fields(lineno, data)?;
            }
            let data = obj
                .get("data")
                .map(Value::to_string)
                .unwrap_or_else(|| "null".to_string());
            out.push(Event {
                t_ms,
                kind,
                action,
                data,
            });
        }
        Ok(out)
    }

    fn frame_image(
        &self,
        idx: usize,
        file: &str,
    ) -> Result<(FrameImage, [u8; 32], u64), BundleError> {
        let line = Some(idx + 1);
        let bytes = read_regular(self.dir, file, self.limits.max_frame_bytes).map_err(|m| {
            self.err(
                FRAMES_FILE,
                line,
                Some("file"),
                format!("frame file {file:?} {m}"),
            )
        })?;
        let image = FrameImage::probe_within(&bytes, self.limits.max_image_side).map_err(|m| {
            self.err(
                FRAMES_FILE,
                line,
                Some("file"),
                format!("frame file {file:?}: {m}"),
            )
        })?;
        let sha: [u8; 32] = Sha256::digest(&bytes).into();
        Ok((image, sha, bytes.len() as u64))
    }
}

/// Typed access to one JSON object's fields, producing located errors.
pub(super) struct Fields<'a> {
    reader: &'a BundleReader<'a>,
    file: &'a str,
    line: Option<usize>,
    obj: &'a Map<String, Value>,
    prefix: &'a str,
}

impl<'a> Fields<'a> {
    pub(super) fn new(
        reader: &'a BundleReader<'a>,
        file: &'a str,
        line: Option<usize>,
        value: &'a Value,
        prefix: &'a str,
    ) -> Result<Self, BundleError> {
        let obj = value.as_object().ok_or_else(|| {
            let field = (!prefix.is_empty()).then_some(prefix);
            reader.err(
                file,
                line,
                field,
                format!("expected a JSON object, found {}", json_type_name(value)),
            )
        })?;
        Ok(Fields {
            reader,
            file,
            line,
            obj,
            prefix,
        })
    }

    fn path(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    pub(super) fn field_err(&self, name: &str, message: impl Into<String>) -> BundleError {
        self.reader
            .err(self.file, self.line, Some(&self.path(name)), message)
    }

    pub(super) fn deny_unknown(&self, known: &[&str]) -> Result<(), BundleError> {
        match self.obj.keys().find(|k| !known.contains(&k.as_str())) {
            Some(k) => Err(self.field_err(
                k,
                format!("unknown field (expected one of: {})", known.join(", ")),
            )),
            None => Ok(()),
        }
    }

    fn get(&self, name: &str) -> Option<&'a Value> {
        self.obj.get(name).filter(|v| !v.is_null())
    }

    pub(super) fn required(&self, name: &str) -> Result<&'a Value, BundleError> {
        self.get(name)
            .ok_or_else(|| self.field_err(name, "missing required field"))
    }

    pub(super) fn mistyped(&self, name: &str, expected: &str, found: &Value) -> BundleError {
        self.field_err(
            name,
            format!("expected {expected}, found {}", json_type_name(found)),
        )
    }

    fn required_str(&self, name: &str) -> Result<String, BundleError> {
        let v = self.required(name)?;
        v.as_str()
            .map(str::to_string)
            .ok_or_else(|| self.mistyped(name, "a string", v))
    }

    pub(super) fn optional_str(&self, name: &str) -> Result<Option<String>, BundleError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(|s| Some(s.to_string()))
                .ok_or_else(|| self.mistyped(name, "a string", v)),
        }
    }

    fn optional_bool(&self, name: &str) -> Result<Option<bool>, BundleError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| self.mistyped(name, "true or false", v)),
        }
    }

    fn optional_str_list(&self, name: &str) -> Result<Vec<String>, BundleError> {
        let Some(v) = self.get(name) else {
            return Ok(Vec::new());
        };
        let arr = v
            .as_array()
            .ok_or_else(|| self.mistyped(name, "a list of strings", v))?;
        arr.iter()
            .enumerate()
            .map(|(i, item)| {
                item.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| self.mistyped(&format!("{name}[{i}]"), "a string", item))
            })
            .collect()
    }

    fn required_t_ms(&self) -> Result<i64, BundleError> {
        let v = self.required("t_ms")?;
        let t = v
            .as_i64()
            .ok_or_else(|| self.mistyped("t_ms", "a whole number of milliseconds", v))?;
        if t < 0 {
            return Err(self.field_err("t_ms", format!("{t} is negative")));
        }
        Ok(t)
    }

    fn required_time(&self, name: &str) -> Result<i64, BundleError> {
        let s = self.required_str(name)?;
        let t = DateTime::parse_from_rfc3339(&s).map_err(|e| {
            self.field_err(
                name,
                format!("{s:?} is not an RFC 3339 date-time with a zone: {e}"),
            )
        })?;
        Ok(t.timestamp_micros())
    }
}

/// How a JSON value's type reads in error messages (`a string`, `a list`).
pub(crate) fn json_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ImageFormat;

    #[test]
    fn events_attach_to_latest_frame_at_or_before() {
        let img = FrameImage {
            format: ImageFormat::Png,
            width: 1,
            height: 1,
            dhash: 0,
        };
        let frame = |t| Frame {
            frame_idx: 0,
            t_ms: t,
            file: String::new(),
            keyframe_hint: None,
            image: img.clone(),
            image_sha256: [0; 32],
            events: vec![],
        };
        let mut frames = vec![frame(100), frame(200), frame(300)];
        let ev = |t| Event {
            t_ms: t,
            kind: "click".into(),
            action: true,
            data: "null".into(),
        };
        attach_events(&mut frames, vec![ev(0), ev(100), ev(199), ev(200), ev(900)]);
        let counts: Vec<usize> = frames.iter().map(|f| f.events.len()).collect();
        assert_eq!(counts, vec![3, 1, 1]);
    }
}
