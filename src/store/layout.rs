//! Where things live inside a store root:
//!
//! ```text
//! ROOT/claims/<hh>/<session_id>.parquet                           (the claim: 1 row)
//! ROOT/sessions/<workflow>/<yyyy-mm>/pack.<hex16>.parquet         (sessions rows)
//! ROOT/frames/<workflow>/<yyyy-mm>/<session_id>-<seal16>.parquet  (a session's frames)
//! ROOT/frames/<workflow>/<yyyy-mm>/pack.<hex16>.parquet           (many sessions' frames)
//! ```
//!
//! `<hh>` is the first byte of the SHA-256 of the id in hex (256 folders,
//! so no folder grows past a few ten thousand claims per million
//! sessions). Stores sealed before claims had their own objects hold one
//! one-row `sessions/<workflow>/<yyyy-mm>/<session_id>.parquet` per
//! session, both claim and row, until `optimize` packs them.
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
/// Folder of the claims.
pub(super) const CLAIMS_DIR: &str = "claims";

/// The claim on `session_id`: `claims/<hh>/<session_id>.parquet`.
pub(crate) fn claim_path(root: &Path, session_id: &str) -> Path {
    use sha2::{Digest, Sha256};
    let hh = hex::encode(&Sha256::digest(session_id.as_bytes())[..1]);
    child(root, &[CLAIMS_DIR, &hh, &format!("{session_id}.parquet")])
}

/// `yyyy-mm` of a microsecond UTC timestamp.
pub(super) fn month_of(us: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(us)
        .map(|t| t.format("%Y-%m").to_string())
        .unwrap_or_else(|| "0000-00".to_string())
}

/// Object paths of one session inside a store rooted at `root`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SessionPaths {
    /// The claim on the id.
    pub claim: Path,
    /// Where a store sealed before claims had their own objects holds the
    /// session's one-row sessions file (its claim then).
    pub legacy_session: Path,
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
            claim: claim_path(root, session_id),
            legacy_session: child(
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
            p.legacy_session.as_ref(),
            "root/sessions/inv/2026-05/ses_1.parquet"
        );
        let hh = &p.claim.as_ref()["root/claims/".len()..][..2];
        assert!(hh.chars().all(|c| c.is_ascii_hexdigit()), "{}", p.claim);
        assert!(p.claim.as_ref().ends_with("/ses_1.parquet"));
        assert_eq!(
            p.frames.as_ref(),
            "root/frames/inv/2026-05/ses_1-abcdef0123456789.parquet"
        );
    }
}
