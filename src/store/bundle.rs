//! A recording bundle (SPEC §2) as typed values: the session's metadata,
//! its frames with their images' facts, and the events attached to them,
//! plus the id rules. Reading and checking a bundle folder is
//! `bundle_reader.rs` ([`Bundle::read`]); sealing is `seal.rs`.

use std::path::{Component, Path, PathBuf};

use super::frame_image::FrameImage;

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
    /// The task text the actor was given (at most
    /// [`MAX_INSTRUCTION_BYTES`] of UTF-8), if the bundle gives one.
    pub instruction: Option<String>,
}

/// Longest accepted `instruction` in `session.json`: 8 KB of UTF-8.
pub const MAX_INSTRUCTION_BYTES: usize = 8192;

/// Longest accepted event `data.thought` (the actor's reasoning): 16 KB.
pub const MAX_THOUGHT_BYTES: usize = 16 * 1024;

/// Longest accepted `data.element.role` or `data.element.name`: 1 KB.
pub const MAX_ELEMENT_TEXT_BYTES: usize = 1024;

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
}

pub(super) fn check_id(s: &str, max: usize, allowed: impl Fn(char) -> bool) -> Result<(), String> {
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

pub(super) fn check_relative(file: &str) -> Result<(), String> {
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

/// Size limits a bundle is read under: what a hosted sealer accepts from
/// strangers' files before it decodes or buffers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BundleLimits {
    /// Largest frame image file (default 64 MiB).
    pub max_frame_bytes: u64,
    /// Longest line of `frames.jsonl` / `events.jsonl`, and largest
    /// `session.json` (default 1 MiB).
    pub max_line_bytes: usize,
    /// Largest image width or height, checked from the header before
    /// decoding (default 16,384).
    pub max_image_side: u32,
}

impl Default for BundleLimits {
    fn default() -> Self {
        BundleLimits {
            max_frame_bytes: 64 << 20,
            max_line_bytes: 1 << 20,
            max_image_side: 16_384,
        }
    }
}

/// The first component of `root/rel` below `root` that is a symbolic link
/// (checked without following), if any; components that do not exist end
/// the walk. The one rule bundles and workspace folders share: nothing
/// under a root may lead elsewhere.
pub(crate) fn symlink_on_path(root: &Path, rel: &Path) -> std::io::Result<Option<PathBuf>> {
    let mut path = root.to_path_buf();
    for c in rel.components() {
        path.push(c);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => return Ok(Some(path)),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// Reads `dir/rel` if it is a regular file inside the bundle — no component
/// a symbolic link, not a FIFO, device or folder — of at most `cap` bytes.
/// The error says which rule refused it.
pub(super) fn read_regular(dir: &Path, rel: &str, cap: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let link = symlink_on_path(dir, Path::new(rel)).map_err(|e| format!("cannot be read: {e}"))?;
    if let Some(link) = link {
        return Err(format!(
            "{:?} is a symbolic link",
            link.strip_prefix(dir).unwrap_or(&link)
        ));
    }
    let path = dir.join(rel);
    let m = std::fs::symlink_metadata(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "is missing".to_string(),
        _ => format!("cannot be read: {e}"),
    })?;
    if !m.is_file() {
        return Err("is not a regular file (a folder, FIFO or device)".into());
    }
    if m.len() > cap {
        return Err(format!("is {} bytes; at most {cap} are accepted", m.len()));
    }
    let mut f = std::fs::File::open(&path).map_err(|e| format!("cannot be read: {e}"))?;
    let mut out = Vec::with_capacity(m.len() as usize);
    // Never more than the cap, even if the file grows meanwhile.
    f.by_ref()
        .take(cap.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| format!("cannot be read: {e}"))?;
    if out.len() as u64 > cap {
        return Err(format!("grew past {cap} bytes while being read"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        assert!(is_valid_session_id("ses_01J-abc"));
        assert!(!is_valid_session_id(""));
        assert!(!is_valid_session_id("a b"));
        assert!(!is_valid_session_id(&"a".repeat(129)));
        assert!(check_id("Invoice", 64, |c| c.is_ascii_lowercase()).is_err());
    }

    #[test]
    fn only_regular_files_inside_the_bundle_are_read() {
        let tmp = tempfile::TempDir::new().unwrap();
        let d = tmp.path();
        std::fs::create_dir(d.join("frames")).unwrap();
        std::fs::write(d.join("frames/0.png"), b"12345").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.join("frames/1.png")).unwrap();
        std::os::unix::fs::symlink(d.join("frames"), d.join("linked")).unwrap();
        assert_eq!(read_regular(d, "frames/0.png", 5).unwrap(), b"12345");
        assert!(read_regular(d, "frames/0.png", 4)
            .unwrap_err()
            .contains("at most 4"));
        assert!(read_regular(d, "frames/1.png", 99)
            .unwrap_err()
            .contains("symbolic link"));
        assert!(read_regular(d, "linked/0.png", 99)
            .unwrap_err()
            .contains("symbolic link"));
        assert!(read_regular(d, "frames", 99)
            .unwrap_err()
            .contains("not a regular file"));
        let fifo = d.join("frames/2.png");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|s| s.success()) {
            assert!(read_regular(d, "frames/2.png", 99)
                .unwrap_err()
                .contains("not a regular file"));
        }
        assert!(read_regular(d, "frames/9.png", 99)
            .unwrap_err()
            .contains("missing"));
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
}
