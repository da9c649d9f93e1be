//! Submission: a posted spec checked against the workspace's rules (its
//! store, destination policy, quotas, the `as_of` window), the jobs it
//! would conflict with at its prefix, and the durable record it becomes.

use std::sync::atomic::Ordering;
use std::sync::PoisonError;

use chrono::{DateTime, Utc};

use super::super::record::{JobRecord, JobStatus};
use crate::error::{Error, Result};
use crate::export::{new_export_id, Export};
use crate::spec::Destination;
use crate::spec::{ExportSpec, SpecError, SpecErrors};
use crate::workspace::Workspace;

use super::{JobService, Prepared, Rejected};

impl JobService {
    /// The spec of `body` as `ws` may run it: validated, with key material
    /// refused and, unless the workspace is trusted, its destination checked
    /// against the workspace's policy (and a `local` path resolved under
    /// its root).
    /// The spec of job `r` as `ws` may run it ([`Self::checked_spec`]),
    /// resolved against the job's creation time, so a rerun selects the
    /// same rows.
    pub(super) fn record_spec(&self, ws: &Workspace, r: &JobRecord) -> Result<ExportSpec> {
        let created = DateTime::parse_from_rfc3339(&r.created_at)
            .map_err(|e| Error::Jobs(format!("job {}: bad created_at: {e}", r.id)))?
            .with_timezone(&Utc);
        Ok(self.checked_spec(ws, &r.spec, created)?)
    }

    fn checked_spec(
        &self,
        ws: &Workspace,
        body: &str,
        created: DateTime<Utc>,
    ) -> std::result::Result<ExportSpec, SpecErrors> {
        let mut spec = ExportSpec::from_json(body, created)?;
        let refuse = |field: &str, message: &str| {
            SpecErrors(vec![SpecError {
                field: field.into(),
                message: message.into(),
            }])
        };
        if let Some(Destination::Gcs {
            service_account: Some(sa),
            ..
        }) = &spec.destination
        {
            if sa.trim_start().starts_with('{') {
                return Err(refuse(
                    "destination.service_account",
                    "key material is not accepted by the service (it would be stored with \
                     the job): name a service-account e-mail",
                ));
            }
        }
        if !ws.trusted {
            if let Some(d) = &spec.destination {
                let resolved = ws.policy.resolve(d).map_err(|e| SpecErrors(vec![e]))?;
                spec.destination = Some(resolved);
            }
        }
        Ok(spec)
    }

    /// Jobs of workspace `ws_id` that are queued or running.
    fn active_jobs(&self, ws_id: &str) -> Result<Vec<JobRecord>> {
        let mut out = Vec::new();
        for status in [JobStatus::Queued, JobStatus::Running] {
            out.extend(
                self.db
                    .with_status(status)?
                    .into_iter()
                    .filter(|r| r.workspace_id() == ws_id),
            );
        }
        Ok(out)
    }

    /// The active jobs of `ws`, or its quota's refusal when they are
    /// `max_active_jobs` already.
    fn within_quota(&self, ws: &Workspace) -> std::result::Result<Vec<JobRecord>, Rejected> {
        let active = self.active_jobs(&ws.id).map_err(Rejected::Internal)?;
        if active.len() >= ws.max_active_jobs {
            return Err(Rejected::Quota {
                limit: ws.max_active_jobs,
            });
        }
        Ok(active)
    }

    /// An active job of `ws` that writes to the destination of `spec` but
    /// exports something else (the same spec would resume or no-op).
    fn conflicting(
        &self,
        ws: &Workspace,
        spec: &ExportSpec,
        active: &[JobRecord],
    ) -> Option<String> {
        let dest = spec.destination.as_ref()?;
        if matches!(dest, Destination::SignedUrl) {
            return None;
        }
        let resolved = spec.resolved_json();
        active.iter().find_map(|r| {
            // The record's resolved spec (with its policy-resolved
            // destination) decides without parsing the spec again: no
            // caller regex is compiled under the submit lock.
            let conflicts = match &r.resolved {
                Some(other) => {
                    other.get("destination") == resolved.get("destination") && *other != resolved
                }
                // Records of older versions: their spec, parsed again.
                None => {
                    let other = self.record_spec(ws, r).ok()?;
                    other.destination.as_ref() == Some(dest) && other.resolved_json() != resolved
                }
            };
            conflicts.then(|| r.id.clone())
        })
    }

    /// Validates a posted spec and checks its destination before anything
    /// is queued: the spec (with the workspace's policy), settings the
    /// destination cannot work without, and — for object stores — that the
    /// role (if any) can be assumed and the prefix listed. Returns what
    /// [`JobService::submit`] queues.
    pub async fn prepare(
        &self,
        ws: &Workspace,
        body: &str,
    ) -> std::result::Result<Prepared, Rejected> {
        let created = Utc::now();
        let spec = self
            .checked_spec(ws, body, created)
            .map_err(Rejected::Spec)?;
        let skew = chrono::Duration::seconds(
            i64::try_from(self.max_future_as_of.load(Ordering::Relaxed)).unwrap_or(i64::MAX / 2),
        );
        if spec.as_of > created + skew {
            return Err(Rejected::Spec(SpecErrors(vec![SpecError {
                field: "as_of".into(),
                message: format!(
                    "{} is in the future (now {}): a snapshot must not lie ahead, or sessions \
                     sealed until then would join a rerun; omit as_of to export as of now",
                    crate::spec::format_instant(spec.as_of),
                    crate::spec::format_instant(created)
                ),
            }])));
        }
        // A workspace at its quota is answered before any outbound call
        // (STS, IAM, LIST) is made for it; `submit` checks again under
        // its lock.
        self.within_quota(ws)?;
        if matches!(spec.destination, Some(Destination::SignedUrl)) {
            let used = self.signed_bytes(ws).map_err(Rejected::Internal)?;
            if used >= ws.max_signed_bytes {
                return Err(Rejected::Storage {
                    used,
                    limit: ws.max_signed_bytes,
                });
            }
        }
        self.make_room(ws).await.map_err(Rejected::Internal)?;
        let id = new_export_id(created);
        let as_spec_errors = |e: Error| {
            Rejected::Spec(match e {
                Error::Spec(errors) => errors,
                Error::Config { field, message } => SpecErrors(vec![SpecError { field, message }]),
                other => SpecErrors(vec![SpecError {
                    field: "destination".into(),
                    message: other.to_string(),
                }]),
            })
        };
        // Settings the destination cannot work without are the caller's error.
        let target = Export::open_target(&spec, &id, &self.dest_for(ws))
            .await
            .map_err(as_spec_errors)?;
        let remote = !matches!(
            spec.destination,
            Some(Destination::Local { .. }) | Some(Destination::SignedUrl) | None
        );
        if remote {
            target.check().await.map_err(as_spec_errors)?;
        }
        Ok(Prepared { id, spec, created })
    }

    /// Queues a job `prepare` accepted, unless the workspace's quota is
    /// full or another unfinished job writes to the same destination.
    pub fn submit(
        &self,
        ws: &Workspace,
        body: &str,
        prepared: Prepared,
    ) -> std::result::Result<JobRecord, Rejected> {
        let Prepared { id, spec, created } = prepared;
        // Checks and insert are one step: two posts cannot both pass them.
        let _one_at_a_time = self
            .submitting
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let active = self.within_quota(ws)?;
        if let Some(id) = self.conflicting(ws, &spec, &active) {
            return Err(Rejected::Conflict { id });
        }
        let mut record = JobRecord::queued(id, &spec, body, created);
        record.workspace = Some(ws.id.clone());
        self.db.put(&record).map_err(Rejected::Internal)?;
        self.wake.notify_one();
        Ok(record)
    }
}
