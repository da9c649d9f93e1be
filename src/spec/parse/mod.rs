//! Parsing and validating an export spec: JSON in, [`ExportSpec`] out, or
//! every problem with its field path ([`SpecErrors`]) — never only the first.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::model::{
    check_partitions, check_shard_size, ExportSpec, FrameSampling, OutputFormat, SamplingMode,
    SessionFilter, DEFAULT_SHARD_SIZE_BYTES,
};
use super::time::TimeExpr;
use crate::error::{SpecError, SpecErrors};
use crate::store::json_type_name;

mod destination;
mod extras;
mod filter;
mod names;
mod steps;

pub(crate) use extras::{
    check_fraction, check_fraction_sum, compile_pattern, is_split_name, regex_problem,
};

impl ExportSpec {
    /// Parses a spec from JSON text; `now` is the creation time used as
    /// `as_of` when the spec gives none.
    pub fn from_json(text: &str, now: DateTime<Utc>) -> Result<ExportSpec, SpecErrors> {
        let value: Value = serde_json::from_str(text).map_err(|e| {
            SpecErrors(vec![SpecError {
                field: String::new(),
                message: format!(
                    "malformed JSON at line {} column {}: {e}",
                    e.line(),
                    e.column()
                ),
            }])
        })?;
        Self::parse(&value, now)
    }

    /// Validates a spec value; all problems are reported together.
    ///
    /// ```
    /// use nusomi_export::spec::ExportSpec;
    /// let now = chrono::Utc::now();
    /// let spec = serde_json::json!({"workflow": "a", "format": "parquet", "filter": {"outcom": "x"}});
    /// let err = ExportSpec::parse(&spec, now).unwrap_err();
    /// assert!(err.to_string().contains("filter.outcom: unknown field"));
    /// ```
    pub fn parse(value: &Value, now: DateTime<Utc>) -> Result<ExportSpec, SpecErrors> {
        let mut p = Parser::default();
        let spec = p.spec(value, now);
        match spec {
            Some(spec) if p.errors.is_empty() => Ok(spec),
            _ => Err(SpecErrors(p.errors)),
        }
    }
}

impl crate::spec::Destination {
    /// Parses a `destination` object alone (what [`Destination::to_json`]
    /// gives), with the spec's rules and field paths.
    ///
    /// [`Destination::to_json`]: crate::spec::Destination::to_json
    pub fn from_json(value: &Value) -> Result<Self, SpecErrors> {
        let mut p = Parser::default();
        match p.destination(value) {
            Some(d) if p.errors.is_empty() => Ok(d),
            _ => Err(SpecErrors(p.errors)),
        }
    }
}

/// Most items in a list of workflows, tags or paths.
pub(super) const MAX_LIST: usize = 1_000;
/// Most session ids in `exclude_session_ids`.
pub(super) const MAX_EXCLUDED: usize = 10_000;

/// Collects errors while walking the spec.
#[derive(Default)]
struct Parser {
    errors: Vec<SpecError>,
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

impl Parser {
    fn err(&mut self, field: &str, message: impl Into<String>) {
        self.errors.push(SpecError {
            field: field.to_string(),
            message: message.into(),
        });
    }

    fn object<'v>(
        &mut self,
        v: &'v Value,
        path: &str,
        known: &[&str],
    ) -> Option<&'v Map<String, Value>> {
        let Some(obj) = v.as_object() else {
            self.err(
                path,
                format!("expected an object, found {}", json_type_name(v)),
            );
            return None;
        };
        for key in obj.keys() {
            if !known.contains(&key.as_str()) {
                self.err(
                    &join(path, key),
                    format!("unknown field (expected one of: {})", known.join(", ")),
                );
            }
        }
        Some(obj)
    }

    fn string(&mut self, v: &Value, path: &str) -> Option<String> {
        match v.as_str() {
            Some(s) => Some(s.to_string()),
            None => {
                self.err(
                    path,
                    format!("expected a string, found {}", json_type_name(v)),
                );
                None
            }
        }
    }

    /// A string or a list of strings; an empty list is an error.
    fn strings(&mut self, v: &Value, path: &str) -> Option<Vec<String>> {
        match v {
            Value::String(s) => Some(vec![s.clone()]),
            Value::Array(items) if items.is_empty() => {
                self.err(path, "must not be an empty list");
                None
            }
            Value::Array(items) if items.len() > MAX_LIST => {
                self.err(
                    path,
                    format!("{} items; at most {MAX_LIST} are accepted", items.len()),
                );
                None
            }
            Value::Array(items) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    out.push(self.string(item, &format!("{path}[{i}]"))?);
                }
                Some(out)
            }
            other => {
                self.err(
                    path,
                    format!(
                        "expected a string or a list of strings, found {}",
                        json_type_name(other)
                    ),
                );
                None
            }
        }
    }

    fn enum_values<T: Copy>(
        &mut self,
        v: &Value,
        path: &str,
        all: &[T],
        name: impl Fn(T) -> &'static str,
    ) -> Option<Vec<T>> {
        let names = self.strings(v, path)?;
        let allowed: Vec<&str> = all.iter().map(|t| name(*t)).collect();
        let mut out = Vec::new();
        for (i, n) in names.iter().enumerate() {
            match all.iter().find(|t| name(**t) == n) {
                Some(t) => out.push(*t),
                None => {
                    let p = if v.is_array() {
                        format!("{path}[{i}]")
                    } else {
                        path.to_string()
                    };
                    self.err(&p, format!("{n:?} is not one of: {}", allowed.join(", ")));
                    return None;
                }
            }
        }
        Some(out)
    }

    fn int(&mut self, v: &Value, path: &str, min: i64) -> Option<i64> {
        match v.as_i64() {
            Some(n) if n >= min => Some(n),
            Some(n) => {
                self.err(path, format!("{n} is below the minimum {min}"));
                None
            }
            None => {
                self.err(
                    path,
                    format!("expected a whole number, found {}", json_type_name(v)),
                );
                None
            }
        }
    }

    fn time(&mut self, v: &Value, path: &str, as_of: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let s = self.string(v, path)?;
        match TimeExpr::parse(&s) {
            Ok(t) => Some(t.resolve(as_of)),
            Err(m) => {
                self.err(path, m);
                None
            }
        }
    }

    fn spec(&mut self, v: &Value, now: DateTime<Utc>) -> Option<ExportSpec> {
        const TOP: [&str; 16] = [
            "workflow",
            "filter",
            "format",
            "frame_sampling",
            "destination",
            "tag",
            "as_of",
            "shard_size_bytes",
            "splits",
            "redact",
            "unit",
            "coordinates",
            "history",
            "resize",
            "messages",
            "partitions",
        ];
        let obj = self.object(v, "", &TOP)?;
        let as_of = match obj.get("as_of") {
            None | Some(Value::Null) => Some(now),
            Some(v) => {
                self.string(v, "as_of")
                    .and_then(|s| match DateTime::parse_from_rfc3339(&s) {
                        Ok(t) => Some(t.with_timezone(&Utc)),
                        Err(e) => {
                            self.err(
                                "as_of",
                                format!("{s:?} is not an RFC 3339 date-time with a zone: {e}"),
                            );
                            None
                        }
                    })
            }
        };
        let workflows = match obj.get("workflow") {
            None | Some(Value::Null) => {
                self.err("workflow", "missing required field");
                None
            }
            Some(v) => self
                .strings(v, "workflow")
                .and_then(|ws| self.workflow_names(ws, v.is_array())),
        };
        let format = match obj.get("format") {
            None | Some(Value::Null) => {
                self.err("format", "missing required field");
                None
            }
            Some(v) => self
                .string(v, "format")
                .and_then(|s| self.one_of(&s, "format", &OutputFormat::ALL, OutputFormat::as_str)),
        };
        let filter = match obj.get("filter") {
            None | Some(Value::Null) => Some(SessionFilter::default()),
            Some(v) => self.filter(v, as_of.unwrap_or(now)),
        };
        let sampling = match obj.get("frame_sampling") {
            None | Some(Value::Null) => Some(FrameSampling {
                mode: SamplingMode::EventOnly,
                interval_ms: None,
                keep_action_frames: true,
            }),
            Some(v) => self.sampling(v),
        };
        let destination = match obj.get("destination") {
            None | Some(Value::Null) => Some(None),
            Some(v) => self.destination(v).map(Some),
        };
        let tag = match obj.get("tag") {
            None | Some(Value::Null) => Some(None),
            Some(v) => self.string(v, "tag").map(Some),
        };
        let shard_size_bytes = match obj.get("shard_size_bytes") {
            None | Some(Value::Null) => Some(DEFAULT_SHARD_SIZE_BYTES),
            Some(v) => self.int(v, "shard_size_bytes", i64::MIN).and_then(|n| {
                check_shard_size(n, format.unwrap_or(OutputFormat::Parquet))
                    .map_err(|m| self.err("shard_size_bytes", m))
                    .ok()
            }),
        };
        let splits = match obj.get("splits") {
            None | Some(Value::Null) => Some(None),
            Some(v) => self.splits(v).map(Some),
        };
        let redact = match obj.get("redact") {
            None | Some(Value::Null) => Some(None),
            Some(v) => self.redaction(v).map(Some),
        };
        let steps = self.step_unit(obj);
        let partitions = match obj.get("partitions") {
            None | Some(Value::Null) => Some(1),
            Some(v) => self.int(v, "partitions", i64::MIN).and_then(|n| {
                check_partitions(n)
                    .map_err(|m| self.err("partitions", m))
                    .ok()
            }),
        };
        if partitions.is_some_and(|n| n > 1) {
            if obj.get("unit").and_then(Value::as_str) == Some("step") {
                self.err(
                    "partitions",
                    "an export of `\"unit\": \"step\"` rows is written as one partition (leave `partitions` out)",
                );
            }
            if obj.get("redact").is_some_and(|r| !r.is_null()) {
                self.err(
                    "partitions",
                    "a redacted export is written as one partition (leave `partitions` out)",
                );
            }
        }
        Some(ExportSpec {
            partitions: partitions?,
            raw: v.clone(),
            steps: steps?,
            splits: splits?,
            redact: redact?,
            workflows: workflows?,
            filter: filter?,
            format: format?,
            sampling: sampling?,
            destination: destination?,
            tag: tag?,
            as_of: as_of?,
            shard_size_bytes: shard_size_bytes?,
        })
    }

    fn one_of<T: Copy>(
        &mut self,
        s: &str,
        path: &str,
        all: &[T],
        name: impl Fn(T) -> &'static str,
    ) -> Option<T> {
        let found = all.iter().copied().find(|t| name(*t) == s);
        if found.is_none() {
            let allowed: Vec<&str> = all.iter().map(|t| name(*t)).collect();
            self.err(path, format!("{s:?} is not one of: {}", allowed.join(", ")));
        }
        found
    }

    fn workflow_names(&mut self, ws: Vec<String>, listed: bool) -> Option<Vec<String>> {
        let mut ok = true;
        for (i, w) in ws.iter().enumerate() {
            let legal = !w.is_empty()
                && w.len() <= 64
                && w.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
            if !legal {
                let p = if listed {
                    format!("workflow[{i}]")
                } else {
                    "workflow".into()
                };
                self.err(
                    &p,
                    format!("{w:?} is not a workflow name (1 to 64 of a-z 0-9 _ -)"),
                );
                ok = false;
            }
        }
        ok.then_some(ws)
    }
}

#[cfg(test)]
mod tests;
