//! Reading and validating recording bundles (SPEC §2): `session.json`,
//! `frames.jsonl`, `events.jsonl` and the frame images. [`Bundle::read`]
//! either returns a fully checked bundle (images decoded, hashed and measured)
//! or a [`BundleError`] naming the file, the 1-based line and the field. It
//! never writes anything; sealing lives in `seal.rs`.

use std::path::{Component, Path, PathBuf};

use chrono::DateTime;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::frame_image::FrameImage;
pub(super) use crate::error::BundleError;

/// Who carried out a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ActorKind {
    /// A person.
    Human,
    /// A computer-use model.
    Model,
    /// A scripted automation.
    Script,
}

impl ActorKind {
    /// Every kind, in the order the SPEC lists them.
    pub const ALL: [ActorKind; 3] = [ActorKind::Human, ActorKind::Model, ActorKind::Script];

    /// The lower-case name used in bundles and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::Human => "human",
            ActorKind::Model => "model",
            ActorKind::Script => "script",
        }
    }

    /// Parses the lower-case name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// The workflow was completed.
    Success,
    /// The workflow failed.
    Error,
    /// The actor gave up.
    Abandoned,
}

impl Outcome {
    /// Every outcome, in the order the SPEC lists them.
    pub const ALL: [Outcome; 3] = [Outcome::Success, Outcome::Error, Outcome::Abandoned];

    /// The lower-case name used in bundles and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Error => "error",
            Outcome::Abandoned => "abandoned",
        }
    }

    /// Parses the lower-case name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// `session.json`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionMeta {
    /// `[A-Za-z0-9_-]{1,128}`.
    pub session_id: String,
    /// `[a-z0-9_-]{1,64}`.
    pub workflow: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Who acted.
    pub actor_kind: ActorKind,
    /// Optional actor id.
    pub actor_id: Option<String>,
    /// Start, microseconds since the Unix epoch (UTC).
    pub started_at_us: i64,
    /// End, microseconds since the Unix epoch (UTC).
    pub ended_at_us: i64,
    /// Tags, in bundle order.
    pub tags: Vec<String>,
    /// Memory-graph subpath ids, in bundle order.
    pub paths: Vec<String>,
}

impl SessionMeta {
    /// `ended_at − started_at` in whole milliseconds.
    pub fn duration_ms(&self) -> i64 {
        (self.ended_at_us - self.started_at_us).div_euclid(1000)
    }
}

/// One event line, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Milliseconds since `started_at`.
    pub t_ms: i64,
    /// Event type (`click`, `type`, `navigate`, …).
    pub kind: String,
    /// Whether the actor did it.
    pub action: bool,
    /// `data` as compact JSON text (`null` when absent).
    pub data: String,
}

/// One frame line, checked, with what sealing learnt from its image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Line number in `frames.jsonl`, from 0.
    pub frame_idx: i64,
    /// Milliseconds since `started_at`.
    pub t_ms: i64,
    /// The image file, relative to the bundle.
    pub file: String,
    /// The bundle's own `keyframe` flag, if it gave one.
    pub keyframe_hint: Option<bool>,
    /// Decoded facts about the image.
    pub image: FrameImage,
    /// SHA-256 of the image file's bytes.
    pub image_sha256: [u8; 32],
    /// Events attached to this frame (SPEC §2), in file order.
    pub events: Vec<Event>,
}

/// A fully validated recording bundle. Image bytes are not kept: sealing
/// re-reads them (and checks their hash) while it streams them out.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The bundle folder.
    pub dir: PathBuf,
    /// `session.json`.
    pub session: SessionMeta,
    /// The frames, in `frame_idx` order.
    pub frames: Vec<Frame>,
    /// Total size of the frame images in bytes.
    pub image_bytes: u64,
    /// SHA-256 over the bundle's canonical content (the session's `seal`).
    pub seal: String,
}

impl Bundle {
    /// Number of events.
    pub fn event_count(&self) -> usize {
        self.frames.iter().map(|f| f.events.len()).sum()
    }

    /// Number of events with `action: true`.
    pub fn action_count(&self) -> usize {
        self.frames
            .iter()
            .flat_map(|f| &f.events)
            .filter(|e| e.action)
            .count()
    }

    /// Reads and checks the bundle at `dir`: every field, every line and every
    /// image. This is CPU and file work; call it from a blocking context.
    pub fn read(dir: &Path) -> Result<Bundle, BundleError> {
        let reader = BundleReader { dir };
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

struct BundleReader<'a> {
    dir: &'a Path,
}

const SESSION_FILE: &str = "session.json";
const FRAMES_FILE: &str = "frames.jsonl";
const EVENTS_FILE: &str = "events.jsonl";

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

    fn read_text(&self, file: &str) -> Result<String, BundleError> {
        std::fs::read_to_string(self.dir.join(file))
            .map_err(|e| self.err(file, None, None, format!("cannot read: {e}")))
    }

    fn session(&self) -> Result<SessionMeta, BundleError> {
        let text = self.read_text(SESSION_FILE)?;
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
        })
    }

    /// Parses each non-blank line of a `.jsonl` file into an object.
    fn jsonl(&self, file: &str) -> Result<Vec<(usize, Value)>, BundleError> {
        let text = self.read_text(file)?;
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let lineno = i + 1;
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
        let bytes = std::fs::read(self.dir.join(file)).map_err(|e| {
            let what = if e.kind() == std::io::ErrorKind::NotFound {
                format!("frame file {file:?} is missing")
            } else {
                format!("frame file {file:?} cannot be read: {e}")
            };
            self.err(FRAMES_FILE, line, Some("file"), what)
        })?;
        let image = FrameImage::probe(&bytes).map_err(|m| {
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
struct Fields<'a> {
    reader: &'a BundleReader<'a>,
    file: &'a str,
    line: Option<usize>,
    obj: &'a Map<String, Value>,
    prefix: &'a str,
}

impl<'a> Fields<'a> {
    fn new(
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

    fn field_err(&self, name: &str, message: impl Into<String>) -> BundleError {
        self.reader
            .err(self.file, self.line, Some(&self.path(name)), message)
    }

    fn deny_unknown(&self, known: &[&str]) -> Result<(), BundleError> {
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

    fn required(&self, name: &str) -> Result<&'a Value, BundleError> {
        self.get(name)
            .ok_or_else(|| self.field_err(name, "missing required field"))
    }

    fn mistyped(&self, name: &str, expected: &str, found: &Value) -> BundleError {
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

    fn optional_str(&self, name: &str) -> Result<Option<String>, BundleError> {
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

fn check_id(s: &str, max: usize, allowed: impl Fn(char) -> bool) -> Result<(), String> {
    if s.is_empty() || s.len() > max {
        return Err(format!("{s:?} must be 1 to {max} characters long"));
    }
    if let Some(c) = s.chars().find(|c| !allowed(*c)) {
        return Err(format!("{s:?} contains the illegal character {c:?}"));
    }
    Ok(())
}

/// Whether `s` is a legal session id (`[A-Za-z0-9_-]{1,128}`).
pub fn is_valid_session_id(s: &str) -> bool {
    check_id(s, 128, |c| {
        c.is_ascii_alphanumeric() || c == '_' || c == '-'
    })
    .is_ok()
}

fn check_relative(file: &str) -> Result<(), String> {
    let p = Path::new(file);
    if file.is_empty() {
        return Err("must not be empty".into());
    }
    for c in p.components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => return Err(format!("{file:?} leaves the bundle (`..`)")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!(
                    "{file:?} is absolute; frame files stay inside the bundle"
                ))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ImageFormat;

    #[test]
    fn ids_are_checked() {
        assert!(is_valid_session_id("ses_01J-abc"));
        assert!(!is_valid_session_id(""));
        assert!(!is_valid_session_id("a b"));
        assert!(!is_valid_session_id(&"a".repeat(129)));
        assert!(check_id("Invoice", 64, |c| c.is_ascii_lowercase()).is_err());
    }

    #[test]
    fn frame_paths_stay_inside() {
        assert!(check_relative("frames/0.png").is_ok());
        assert!(check_relative("../x.png")
            .unwrap_err()
            .contains("leaves the bundle"));
        assert!(check_relative("/etc/passwd")
            .unwrap_err()
            .contains("absolute"));
    }

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
