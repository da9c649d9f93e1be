//! Where things live inside a store root. One session is two Parquet files:
//!
//! ```text
//! ROOT/sessions/<workflow>/<yyyy-mm>/<session_id>.parquet         (1 row, the commit)
//! ROOT/frames/<workflow>/<yyyy-mm>/<session_id>-<seal16>.parquet  (its frames)
//! ```
//!
//! `<yyyy-mm>` is the UTC month of `started_at`. Grouping by workflow, then
//! month, lets a listing for one workflow skip the others' files; the seal
//! prefix in the frames file name keeps a refused or racing bundle from ever
//! overwriting a committed session's frames. The layout uses no `key=value`
//! folders, so readers that guess Hive partitioning add no phantom columns.

use chrono::{DateTime, Utc};
use object_store::path::Path;

/// Folder of the `sessions` table.
pub(super) const SESSIONS_DIR: &str = "sessions";
/// Folder of the `frames` table.
pub(super) const FRAMES_DIR: &str = "frames";

/// `yyyy-mm` of a microsecond UTC timestamp.
pub(super) fn month_of(us: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(us)
        .map(|t| t.format("%Y-%m").to_string())
        .unwrap_or_else(|| "0000-00".to_string())
}

/// Object paths of one session inside a store rooted at `root`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SessionPaths {
    /// The one-row sessions file; its existence is the commit.
    pub session: Path,
    /// The frames file.
    pub frames: Path,
}

impl SessionPaths {
    /// Paths for a session.
    pub(crate) fn new(
        root: &Path,
        workflow: &str,
        started_at_us: i64,
        session_id: &str,
        seal: &str,
    ) -> Self {
        let month = month_of(started_at_us);
        let seal16 = &seal[..seal.len().min(16)];
        SessionPaths {
            session: child(
                root,
                &[
                    SESSIONS_DIR,
                    workflow,
                    &month,
                    &format!("{session_id}.parquet"),
                ],
            ),
            frames: child(
                root,
                &[
                    FRAMES_DIR,
                    workflow,
                    &month,
                    &format!("{session_id}-{seal16}.parquet"),
                ],
            ),
        }
    }
}

/// `root/a/b/c`.
pub(super) fn child(root: &Path, parts: &[&str]) -> Path {
    parts.iter().fold(root.clone(), |p, part| p.join(*part))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_group_by_workflow_and_month() {
        let p = SessionPaths::new(
            &Path::from("root"),
            "inv",
            1_778_162_891_250_000,
            "ses_1",
            "abcdef0123456789ff",
        );
        assert_eq!(
            p.session.as_ref(),
            "root/sessions/inv/2026-05/ses_1.parquet"
        );
        assert_eq!(
            p.frames.as_ref(),
            "root/frames/inv/2026-05/ses_1-abcdef0123456789.parquet"
        );
    }
}
