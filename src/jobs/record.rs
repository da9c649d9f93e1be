//! [`JobRecord`]: what the service remembers about one export job, and its
//! JSON form for `GET /v1/exports/{id}` (SPEC §6). Records hold the spec as
//! posted and the creation time it resolves against — never credentials.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::export::ExportOutcome;
use crate::sink::Progress;
use crate::spec::{format_instant, ExportSpec};

/// The workspace of records without one, and of the single-user service.
pub const DEFAULT_WORKSPACE: &str = "default";

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
    /// The workspace that posted it (absent in records of older versions:
    /// the single-user workspace's).
    #[serde(default)]
    pub workspace: Option<String>,
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
    /// The snapshot instant the rows are selected at (RFC 3339): the spec's
    /// `as_of`, else `created_at`. Absent in records of older versions.
    #[serde(default)]
    pub as_of: Option<String>,
    /// The spec with defaults filled in and times absolute (what the
    /// manifest's `resolved` records; key material redacted). Absent in
    /// records of older versions.
    #[serde(default)]
    pub resolved: Option<Value>,
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
    /// The files the service kept for it (`signed_url`) were removed by
    /// the retention sweep; the record stays until its own retention.
    #[serde(default)]
    pub files_removed: bool,
}

impl JobRecord {
    /// A queued job `id` for `spec` (posted as `body`), created at `created_at`.
    pub fn queued(id: String, spec: &ExportSpec, body: &str, created_at: DateTime<Utc>) -> Self {
        JobRecord {
            id,
            workspace: None,
            status: JobStatus::Queued,
            spec: body.to_string(),
            workflows: spec.workflows.clone(),
            tag: spec.tag.clone(),
            format: spec.format.as_str().to_string(),
            shard_size_bytes: spec.shard_size_bytes,
            created_at: format_instant(created_at),
            as_of: Some(format_instant(spec.as_of)),
            resolved: Some(spec.resolved_json()),
            started_at: None,
            finished_at: None,
            attempts: 0,
            rows: None,
            frames: None,
            actions: None,
            sessions: None,
            shards: None,
            bytes: None,
            shards_reused: None,
            manifest_url: None,
            error: None,
            files_removed: false,
        }
    }

    /// The id of the workspace it belongs to.
    pub fn workspace_id(&self) -> &str {
        self.workspace.as_deref().unwrap_or(DEFAULT_WORKSPACE)
    }

    /// Marks a new attempt as started now.
    pub fn start(&mut self) {
        self.status = JobStatus::Running;
        self.started_at = Some(format_instant(Utc::now()));
        self.attempts += 1;
    }

    /// Records a finished export: its totals, its manifest and the time.
    pub fn completed(&mut self, outcome: &ExportOutcome) {
        let m = &outcome.manifest;
        self.status = JobStatus::Completed;
        self.rows = Some(m.rows);
        self.frames = Some(m.frames);
        self.actions = Some(m.actions);
        self.sessions = Some(m.sessions);
        self.shards = Some(m.shard_count);
        self.bytes = Some(outcome.bytes());
        self.shards_reused = Some(outcome.shards_reused);
        self.manifest_url = Some(outcome.manifest_url.clone());
        self.error = None;
        self.finished_at = Some(format_instant(Utc::now()));
    }

    /// Records a failure (`"cancelled"` for a cancelled job).
    pub fn failed(&mut self, error: impl Into<String>) {
        self.status = JobStatus::Failed;
        self.error = Some(error.into());
        self.finished_at = Some(format_instant(Utc::now()));
    }

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
            "as_of": self.as_of,
            "resolved": self.resolved,
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
