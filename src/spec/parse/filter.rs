//! The `filter` and `frame_sampling` parts of a spec.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{join, Parser, MAX_EXCLUDED};
use crate::spec::model::{FrameSampling, SamplingMode, SessionFilter};
use crate::spec::time::format_instant;
use crate::store::json_type_name;
use crate::store::{is_valid_session_id, ActorKind, Outcome};

impl Parser {
    pub(super) fn filter(&mut self, v: &Value, as_of: DateTime<Utc>) -> Option<SessionFilter> {
        const KNOWN: [&str; 10] = [
            "outcome",
            "since",
            "until",
            "actor.kind",
            "actor",
            "min_duration_ms",
            "max_duration_ms",
            "tag",
            "path",
            "exclude_session_ids",
        ];
        let obj = self.object(v, "filter", &KNOWN)?;
        let before = self.errors.len();
        let mut f = SessionFilter::default();
        for (key, val) in obj {
            if val.is_null() {
                continue;
            }
            let path = join("filter", key);
            match key.as_str() {
                "outcome" => {
                    f.outcomes = self
                        .enum_values(val, &path, &Outcome::ALL, Outcome::as_str)
                        .unwrap_or_default()
                }
                "since" => f.since = self.time(val, &path, as_of),
                "until" => f.until = self.time(val, &path, as_of),
                "actor.kind" => {
                    let kinds = self.enum_values(val, &path, &ActorKind::ALL, ActorKind::as_str);
                    self.set_kinds(&mut f, kinds.unwrap_or_default(), &path);
                }
                "actor" => {
                    if let Some(actor) = self.object(val, &path, &["kind"]) {
                        if let Some(k) = actor.get("kind").filter(|k| !k.is_null()) {
                            let kp = join(&path, "kind");
                            let kinds =
                                self.enum_values(k, &kp, &ActorKind::ALL, ActorKind::as_str);
                            self.set_kinds(&mut f, kinds.unwrap_or_default(), &kp);
                        }
                    }
                }
                "min_duration_ms" => f.min_duration_ms = self.int(val, &path, 0),
                "max_duration_ms" => f.max_duration_ms = self.int(val, &path, 0),
                "tag" => f.tags = self.strings(val, &path).unwrap_or_default(),
                "path" => f.paths = self.strings(val, &path).unwrap_or_default(),
                "exclude_session_ids" => f.exclude_session_ids = self.session_ids(val, &path),
                _ => {}
            }
        }
        if let (Some(lo), Some(hi)) = (f.min_duration_ms, f.max_duration_ms) {
            if lo > hi {
                self.err(
                    "filter.min_duration_ms",
                    format!("{lo} is greater than filter.max_duration_ms {hi}"),
                );
            }
        }
        if let (Some(since), Some(until)) = (f.since, f.until) {
            if since >= until {
                self.err(
                    "filter.since",
                    format!(
                        "resolves to {} which is not before filter.until {} (since is inclusive, until exclusive)",
                        format_instant(since),
                        format_instant(until)
                    ),
                );
            }
        }
        (self.errors.len() == before).then_some(f)
    }

    fn set_kinds(&mut self, f: &mut SessionFilter, kinds: Vec<ActorKind>, path: &str) {
        if !f.actor_kinds.is_empty() && !kinds.is_empty() && f.actor_kinds != kinds {
            self.err(
                path,
                "conflicts with the other spelling of filter.actor.kind",
            );
        }
        if !kinds.is_empty() {
            f.actor_kinds = kinds;
        }
    }

    fn session_ids(&mut self, v: &Value, path: &str) -> Vec<String> {
        let Some(items) = v.as_array() else {
            self.err(
                path,
                format!(
                    "expected a list of session ids, found {}",
                    json_type_name(v)
                ),
            );
            return Vec::new();
        };
        if items.len() > MAX_EXCLUDED {
            self.err(
                path,
                format!(
                    "{} session ids; at most {MAX_EXCLUDED} are accepted",
                    items.len()
                ),
            );
            return Vec::new();
        }
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let p = format!("{path}[{i}]");
            if let Some(s) = self.string(item, &p) {
                if is_valid_session_id(&s) {
                    out.push(s);
                } else {
                    self.err(
                        &p,
                        format!("{s:?} is not a legal session id (1 to 128 of A-Z a-z 0-9 _ -)"),
                    );
                }
            }
        }
        out
    }

    pub(super) fn sampling(&mut self, v: &Value) -> Option<FrameSampling> {
        let path = "frame_sampling";
        let obj = self.object(v, path, &["mode", "interval_ms", "keep_action_frames"])?;
        let before = self.errors.len();
        let mode = match obj.get("mode").filter(|m| !m.is_null()) {
            None => Some(SamplingMode::EventOnly),
            Some(m) => self.string(m, "frame_sampling.mode").and_then(|s| {
                self.one_of(
                    &s,
                    "frame_sampling.mode",
                    &SamplingMode::ALL,
                    SamplingMode::as_str,
                )
            }),
        };
        let interval = match obj.get("interval_ms").filter(|m| !m.is_null()) {
            None => None,
            Some(n) => match n.as_i64() {
                Some(n) if n > 0 => Some(n),
                _ => {
                    if mode == Some(SamplingMode::EveryNMs) {
                        self.err(
                            "frame_sampling.interval_ms",
                            format!("must be a whole number > 0, found {n}"),
                        );
                    } else if !n.is_number() {
                        self.err(
                            "frame_sampling.interval_ms",
                            format!("expected a whole number, found {}", json_type_name(n)),
                        );
                    }
                    None
                }
            },
        };
        if mode == Some(SamplingMode::EveryNMs) && obj.get("interval_ms").is_none_or(Value::is_null)
        {
            self.err(
                "frame_sampling.interval_ms",
                "required (> 0) for mode every_n_ms",
            );
        }
        let keep = match obj.get("keep_action_frames").filter(|m| !m.is_null()) {
            None => Some(true),
            Some(b) => match b.as_bool() {
                Some(b) => Some(b),
                None => {
                    self.err(
                        "frame_sampling.keep_action_frames",
                        format!("expected true or false, found {}", json_type_name(b)),
                    );
                    None
                }
            },
        };
        if self.errors.len() != before {
            return None;
        }
        let mode = mode?;
        Some(FrameSampling {
            mode,
            interval_ms: if mode == SamplingMode::EveryNMs {
                interval
            } else {
                None
            },
            keep_action_frames: keep?,
        })
    }
}
