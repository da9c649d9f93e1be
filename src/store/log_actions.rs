//! How the store's files appear in its Delta logs: which table a file is
//! of ([`Table`]), and the `add` and `remove` actions this crate writes for
//! them — exact statistics (`numRecords`, min / max of the logged columns at
//! microsecond precision) and tags (a frames file's footer size, the index
//! of a file of many sessions) — for one sealed session ([`CommitEntry`]),
//! a frames pack or a sessions file of many sessions; and the path forms
//! the logs use (relative to the table, to the store root).

use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat, Utc};
use deltalake_core::kernel::{Action, Add};
use object_store::path::Path;

use super::layout::{FRAMES_DIR, SESSIONS_DIR};
use super::pack::{encode_members, PackFile, TAG_SESSIONS};
use super::sessions_pack::{encode_members as encode_session_members, SessionMember, SessionsFile};

/// Tag of a frames `add`: the size of the file's Parquet footer.
pub(super) const TAG_FOOTER_BYTES: &str = "nusomi.footer_bytes";

/// Tag of a one-row sessions `add` (stores sealed before claims had their
/// own objects): the session's frames file, relative to the root.
const TAG_FRAMES_PATH: &str = "nusomi.frames_path";

/// Which of the two tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Table {
    /// `ROOT/sessions`.
    Sessions = 0,
    /// `ROOT/frames`.
    Frames = 1,
}

impl Table {
    /// The table's folder under the store root.
    pub(crate) fn dir(self) -> &'static str {
        match self {
            Table::Sessions => SESSIONS_DIR,
            Table::Frames => FRAMES_DIR,
        }
    }

    /// Application transaction id of every commit that moves rows of this
    /// table between files (see `Catalog::commit_layout`).
    pub(super) fn layout_app_id(self) -> &'static str {
        match self {
            Table::Sessions => "nusomi.sessions-layout",
            Table::Frames => "nusomi.frames-layout",
        }
    }

    /// Columns with statistics (Delta's `delta.dataSkippingStatsColumns`).
    pub(super) fn stats_columns(self) -> &'static str {
        match self {
            Table::Sessions => "session_id,workflow,started_at,sealed_at,seal,frame_count",
            Table::Frames => "session_id,workflow,started_at,frame_idx",
        }
    }
}

/// One sealed session, as both log entries describe it.
#[derive(Debug, Clone)]
pub(crate) struct CommitEntry {
    /// Session id.
    pub session_id: String,
    /// Workflow.
    pub workflow: String,
    /// `started_at`, µs.
    pub started_at_us: i64,
    /// `sealed_at`, µs.
    pub sealed_at_us: i64,
    /// Content digest.
    pub seal: String,
    /// Rows of the frames file.
    pub frame_count: i64,
    /// The sessions file, relative to the store root.
    pub session_path: String,
    /// Its size.
    pub session_bytes: u64,
    /// The frames file, relative to the store root.
    pub frames_path: String,
    /// Its size.
    pub frames_bytes: u64,
    /// Bytes after its last row group (page indexes, footer; 0: unknown).
    pub frames_footer_bytes: u64,
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ`, the form Delta statistics hold timestamps in.
pub(super) fn stats_timestamp(us: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(us)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// An `add` with exact statistics (`data_change`: false for a file that
/// holds rows already in the table, as a pack does).
pub(super) fn add(
    path: &str,
    bytes: u64,
    written_at_us: i64,
    stats: serde_json::Value,
    tags: HashMap<String, Option<String>>,
    data_change: bool,
) -> Action {
    Action::Add(Add {
        path: path.to_string(),
        partition_values: HashMap::new(),
        size: bytes as i64,
        modification_time: written_at_us.div_euclid(1000),
        data_change,
        stats: Some(stats.to_string()),
        tags: Some(tags),
        deletion_vector: None,
        base_row_id: None,
        default_row_commit_version: None,
        clustering_provider: None,
    })
}

/// A `remove` of a file this crate added (`data_change`: false when its
/// rows stay in the table in another file).
pub(super) fn remove(path: &str, bytes: u64, data_change: bool) -> Action {
    Action::Remove(deltalake_core::kernel::Remove {
        path: path.to_string(),
        data_change,
        deletion_timestamp: Some(Utc::now().timestamp_millis()),
        extended_file_metadata: Some(true),
        partition_values: Some(HashMap::new()),
        size: Some(bytes as i64),
        tags: None,
        deletion_vector: None,
        base_row_id: None,
        default_row_commit_version: None,
    })
}

pub(super) fn within(table: Table, path: &str) -> &str {
    path.strip_prefix(table.dir())
        .and_then(|p| p.strip_prefix('/'))
        .unwrap_or(path)
}

/// The `add` of a one-row sessions file (`migrate` of a store sealed before
/// claims had their own objects).
pub(crate) fn one_row_sessions_add(e: &CommitEntry) -> Action {
    let values = serde_json::json!({
        "session_id": e.session_id,
        "workflow": e.workflow,
        "started_at": stats_timestamp(e.started_at_us),
        "sealed_at": stats_timestamp(e.sealed_at_us),
        "seal": e.seal,
        "frame_count": e.frame_count,
    });
    let nulls = serde_json::json!({
        "session_id": 0, "workflow": 0, "started_at": 0, "sealed_at": 0, "seal": 0, "frame_count": 0,
    });
    let stats = serde_json::json!({
        "numRecords": 1, "minValues": values, "maxValues": values, "nullCount": nulls,
    });
    let tags = HashMap::from([(TAG_FRAMES_PATH.to_string(), Some(e.frames_path.clone()))]);
    add(
        within(Table::Sessions, &e.session_path),
        e.session_bytes,
        e.sealed_at_us,
        stats,
        tags,
        true,
    )
}

pub(super) fn frames_add(e: &CommitEntry) -> Action {
    let last = (e.frame_count - 1).max(0);
    let min = serde_json::json!({
        "session_id": e.session_id, "workflow": e.workflow,
        "started_at": stats_timestamp(e.started_at_us), "frame_idx": 0,
    });
    let max = serde_json::json!({
        "session_id": e.session_id, "workflow": e.workflow,
        "started_at": stats_timestamp(e.started_at_us), "frame_idx": last,
    });
    let nulls =
        serde_json::json!({"session_id": 0, "workflow": 0, "started_at": 0, "frame_idx": 0});
    let stats = serde_json::json!({
        "numRecords": e.frame_count, "minValues": min, "maxValues": max, "nullCount": nulls,
    });
    let tags = HashMap::from([(
        TAG_FOOTER_BYTES.to_string(),
        Some(e.frames_footer_bytes.to_string()),
    )]);
    add(
        within(Table::Frames, &e.frames_path),
        e.frames_bytes,
        e.sealed_at_us,
        stats,
        tags,
        true,
    )
}

/// Whether a path (relative to the root) names a file of many sessions.
pub(crate) fn is_pack(path: &str) -> bool {
    path.rsplit('/')
        .next()
        .is_some_and(|name| name.starts_with("pack."))
}

/// An `add` of a pack of `workflow` (statistics over its sessions, the
/// index in its tags).
pub(crate) fn pack_add(root: &Path, pack: &PackFile, workflow: &str, data_change: bool) -> Action {
    let (first, last) = match (pack.members.first(), pack.members.last()) {
        (Some(a), Some(b)) => (a.session_id.as_str(), b.session_id.as_str()),
        _ => ("", ""),
    };
    let rows: i64 = pack.members.iter().map(|m| m.rows).sum();
    let most = pack.members.iter().map(|m| m.rows).max().unwrap_or(0);
    let min = serde_json::json!({
        "session_id": first, "workflow": workflow,
        "started_at": stats_timestamp(pack.started_at_us.0), "frame_idx": 0,
    });
    let max = serde_json::json!({
        "session_id": last, "workflow": workflow,
        "started_at": stats_timestamp(pack.started_at_us.1), "frame_idx": (most - 1).max(0),
    });
    let nulls =
        serde_json::json!({"session_id": 0, "workflow": 0, "started_at": 0, "frame_idx": 0});
    let stats = serde_json::json!({
        "numRecords": rows, "minValues": min, "maxValues": max, "nullCount": nulls,
    });
    let tags = HashMap::from([
        (TAG_FOOTER_BYTES.to_string(), Some(pack.footer.to_string())),
        (
            TAG_SESSIONS.to_string(),
            Some(encode_members(&pack.members)),
        ),
    ]);
    add(
        within(Table::Frames, &relative_to(root, &pack.path)),
        pack.bytes,
        Utc::now().timestamp_micros(),
        stats,
        tags,
        data_change,
    )
}

/// The `add` of a sessions file of many sessions (statistics over its rows,
/// the index in its tags).
pub(crate) fn sessions_file_add(root: &Path, file: &SessionsFile, data_change: bool) -> Action {
    let m = &file.members;
    let (first, last) = match (m.first(), m.last()) {
        (Some(a), Some(b)) => (a.session_id.as_str(), b.session_id.as_str()),
        _ => ("", ""),
    };
    let span = |f: fn(&SessionMember) -> i64| {
        let min = m.iter().map(f).min().unwrap_or(0);
        let max = m.iter().map(f).max().unwrap_or(0);
        (min, max)
    };
    let (started, sealed, frames) = (
        span(|x| x.started_at_us),
        span(|x| x.sealed_at_us),
        span(|x| x.frame_count),
    );
    let seal_min = m.iter().map(|x| x.seal.as_str()).min().unwrap_or("");
    let seal_max = m.iter().map(|x| x.seal.as_str()).max().unwrap_or("");
    let min = serde_json::json!({
        "session_id": first, "workflow": file.workflow,
        "started_at": stats_timestamp(started.0), "sealed_at": stats_timestamp(sealed.0),
        "seal": seal_min, "frame_count": frames.0,
    });
    let max = serde_json::json!({
        "session_id": last, "workflow": file.workflow,
        "started_at": stats_timestamp(started.1), "sealed_at": stats_timestamp(sealed.1),
        "seal": seal_max, "frame_count": frames.1,
    });
    let nulls = serde_json::json!({
        "session_id": 0, "workflow": 0, "started_at": 0, "sealed_at": 0, "seal": 0, "frame_count": 0,
    });
    let stats = serde_json::json!({
        "numRecords": m.len(), "minValues": min, "maxValues": max, "nullCount": nulls,
    });
    let tags = HashMap::from([(TAG_SESSIONS.to_string(), Some(encode_session_members(m)))]);
    add(
        within(Table::Sessions, &relative_to(root, &file.path)),
        file.bytes,
        Utc::now().timestamp_micros(),
        stats,
        tags,
        data_change,
    )
}

/// A `remove` of a sessions file (relative to the root).
pub(crate) fn sessions_remove(path: &str, bytes: u64, data_change: bool) -> Action {
    remove(within(Table::Sessions, path), bytes, data_change)
}

/// A `remove` of a frames file (relative to the root) by maintenance.
pub(crate) fn frames_remove(path: &str, bytes: u64, data_change: bool) -> Action {
    remove(within(Table::Frames, path), bytes, data_change)
}

/// `p` relative to `root` (`sessions/…`), as logs and footers name files.
pub(crate) fn relative_to(root: &Path, p: &Path) -> String {
    p.prefix_match(root)
        .map(|parts| Path::from_iter(parts).to_string())
        .unwrap_or_else(|| p.to_string())
}

/// A relative path (`sessions/…`) as a path under `root`.
pub(crate) fn under(root: &Path, relative: &str) -> Path {
    Path::from_iter(root.parts().chain(Path::from(relative).parts()))
}
