//! [`JobRecord`]: what the service remembers about one export job, and its
//! JSON form for `GET /v1/exports/{id}` (SPEC §6). Records hold the spec as
//! posted and the creation time it resolves against — never credentials.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::sink::Progress;

/// A job's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Accepted, waiting for a worker.
    Queued,
    /// A worker is exporting.
    Running,
    /// The manifest is written.
    Completed,
    /// Failed (or cancelled: `error` is `"cancelled"`).
    Failed,
}

impl JobStatus {
    /// The status as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
        }
    }

    /// Parses an API status.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => JobStatus::Queued,
            "running" => JobStatus::Running,
            "completed" => JobStatus::Completed,
            "failed" => JobStatus::Failed,
            _ => return None,
        })
    }

    /// Completed or failed.
    pub fn is_final(self) -> bool {
        matches!(self, JobStatus::Completed | JobStatus::Failed)
    }
}

/// One export job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// `exp_<ULID>`.
    pub id: String,
    /// Current state.
    pub status: JobStatus,
    /// The spec as posted (JSON text).
    pub spec: String,
    /// Workflows of the spec (for list filters).
    pub workflows: Vec<String>,
    /// The spec's `tag`.
    pub tag: Option<String>,
    /// Output format.
    pub format: String,
    /// Shard size cap.
    pub shard_size_bytes: u64,
    /// RFC 3339 creation time (relative times and `as_of` resolve against it).
    pub created_at: String,
    /// When the current or last attempt started.
    pub started_at: Option<String>,
    /// When it finished.
    pub finished_at: Option<String>,
    /// Attempts started (more than one after a restart).
    pub attempts: u32,
    /// Rows exported (when completed).
    pub rows: Option<u64>,
    /// Frames exported (= rows).
    pub frames: Option<u64>,
    /// Action events exported.
    pub actions: Option<u64>,
    /// Sessions with rows.
    pub sessions: Option<u64>,
    /// Shards written.
    pub shards: Option<u64>,
    /// Bytes of all shards.
    pub bytes: Option<u64>,
    /// Shards an attempt found already written and verified.
    pub shards_reused: Option<u64>,
    /// Where the manifest is.
    pub manifest_url: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
}

impl JobRecord {
    /// The API object; `progress` adds live counters while running.
    pub fn to_api(&self, progress: Option<&Progress>) -> Value {
        use std::sync::atomic::Ordering::Relaxed;
        let mut v = json!({
            "id": self.id,
            "status": self.status.as_str(),
            "format": self.format,
            "workflow": self.workflows,
            "tag": self.tag,
            "rows": self.rows,
            "frames": self.frames,
            "actions": self.actions,
            "sessions": self.sessions,
            "shards": self.shards,
            "bytes": self.bytes,
            "shards_reused": self.shards_reused,
            "shard_size_bytes": self.shard_size_bytes,
            "manifest_url": self.manifest_url,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "attempts": self.attempts,
        });
        if let Some(p) = progress.filter(|_| self.status == JobStatus::Running) {
            v["rows_done"] = json!(p.rows.load(Relaxed));
            v["bytes_done"] = json!(p.bytes.load(Relaxed));
            v["shards_done"] = json!(p.shards.load(Relaxed));
        }
        if let Some(e) = &self.error {
            v["error"] = json!(e);
        }
        v
    }
}
