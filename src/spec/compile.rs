//! Compiling an [`ExportSpec`] to one SQL query over `sessions` and `frames`
//! that returns the export rows (SPEC §5 columns) in SPEC §5 order.
//!
//! The query text is rendered from a sqlparser AST. Our fixed skeleton is
//! parsed with `$n` placeholders where values go; every value (workflow
//! names, tags, ids, times, numbers) is then put into the tree as a literal
//! node, so a tag such as `'; DROP TABLE sessions; --` is rendered as an
//! escaped string literal and can never become SQL.
//!
//! Session filters are written on `sessions`, and those on `workflow`,
//! `started_at` and `session_id` again on `frames`, whose provider decides
//! them per frame file before opening any (see `store/table.rs`).

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    visit_expressions_mut, DataType, Expr, Statement, TimezoneInfo, TypedString, Value,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;

use super::model::{ExportSpec, SamplingMode, SplitKey};
use super::time::format_instant;
use crate::error::{Error, Result};

const SELECT: &str =
    "SELECT frame_key(f.session_id, f.frame_idx) AS key, f.session_id, s.workflow, \
    s.outcome, s.actor_kind, s.actor_id, s.started_at, s.tags, s.paths, f.frame_idx, f.t_ms, \
    f.image, f.image_format, f.width, f.height, f.is_keyframe, f.events, \
    event_actions(f.events) AS actions";
const STEP_SELECT: &str =
    "SELECT frame_key(f.session_id, f.frame_idx) AS key, f.session_id, s.workflow, \
    s.outcome, s.actor_kind, s.actor_id, s.started_at, s.tags, s.paths, s.instruction, \
    f.frame_idx, f.t_ms, f.image, f.image_format, f.width, f.height, f.is_keyframe, f.events, \
    event_actions(f.events) AS actions";
const FROM: &str = "FROM frames AS f JOIN sessions AS s ON f.session_id = s.session_id";

/// A literal value bound into the query.
#[derive(Debug, Clone)]
enum Lit {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Timestamp(String),
}

impl Lit {
    fn into_expr(self) -> Expr {
        match self {
            Lit::Str(s) => Expr::value(Value::SingleQuotedString(s)),
            Lit::Int(n) => Expr::value(Value::Number(n.to_string(), false)),
            // Display never uses an exponent and round-trips the value.
            Lit::Float(f) => Expr::value(Value::Number(format!("{f}"), false)),
            Lit::Bool(b) => Expr::value(Value::Boolean(b)),
            Lit::Timestamp(s) => Expr::TypedString(TypedString {
                data_type: DataType::Timestamp(None, TimezoneInfo::None),
                value: Value::SingleQuotedString(s).with_empty_span(),
                uses_odbc_syntax: false,
            }),
        }
    }
}

/// Conditions written with `$n` placeholders, and the values they bind.
#[derive(Default)]
struct Where {
    conditions: Vec<String>,
    values: Vec<Lit>,
    /// Conditions on `frames` (`f.…`) are left out by [`Where::push`]:
    /// the query reads `sessions` alone.
    sessions_only: bool,
}

impl Where {
    fn bind(&mut self, v: Lit) -> String {
        self.values.push(v);
        format!("${}", self.values.len())
    }

    fn list(&mut self, items: impl IntoIterator<Item = Lit>) -> String {
        items
            .into_iter()
            .map(|v| self.bind(v))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Adds `cond`, unless it is on `frames` and the query reads
    /// `sessions` alone (the values it bound are then never referenced).
    fn push(&mut self, cond: String) {
        if self.sessions_only && cond.starts_with("f.") {
            return;
        }
        self.conditions.push(cond);
    }

    /// `col IN (…)` on each of `cols`.
    fn any_of(&mut self, cols: &[&str], items: &[String]) {
        if items.is_empty() {
            return;
        }
        for col in cols {
            let list = self.list(items.iter().map(|s| Lit::Str(s.clone())));
            self.push(format!("{col} IN ({list})"));
        }
    }

    /// `(array_has(col, a) OR array_has(col, b) …)`.
    fn has_any(&mut self, col: &str, items: &[String]) {
        if items.is_empty() {
            return;
        }
        let parts: Vec<String> = items
            .iter()
            .map(|s| {
                let p = self.bind(Lit::Str(s.clone()));
                format!("array_has({col}, {p})")
            })
            .collect();
        self.push(format!("({})", parts.join(" OR ")));
    }
}

/// Compiles `spec` to the export query's SQL text.
///
/// ```
/// use nusomi_export::spec::{compile_sql, ExportSpec};
/// let spec = ExportSpec::parse(
///     &serde_json::json!({"workflow": "a", "format": "jsonl", "filter": {"tag": "O'Brien"}}),
///     chrono::Utc::now(),
/// ).unwrap();
/// let sql = compile_sql(&spec).unwrap();
/// assert!(sql.contains("array_has(s.tags, 'O''Brien')"));
/// ```
pub fn compile_sql(spec: &ExportSpec) -> Result<String> {
    Ok(compile_statement(spec)?.to_string())
}

/// Compiles `spec` to the export query as a sqlparser statement. For a
/// `"unit": "step"` spec it is the step query ([`compile_step_sql`]).
pub fn compile_statement(spec: &ExportSpec) -> Result<Statement> {
    if spec.steps.is_some() {
        return statement(spec, STEP_SELECT, Query::Steps);
    }
    statement(spec, SELECT, Query::Export)
}

/// The query a `"unit": "step"` spec reads its steps from: the **action
/// frames** of the selected sessions (every one, sampled or not: each
/// action is a step) with the export columns, the session's
/// `instruction`, and `sampled` — whether the spec's frame sampling keeps
/// the frame, which decides what history may reference — in export order.
pub fn compile_step_sql(spec: &ExportSpec) -> Result<String> {
    Ok(statement(spec, STEP_SELECT, Query::Steps)?.to_string())
}

/// The query that lists the sessions `spec` selects: `session_id` and
/// `seal` of each, in `session_id` order, from `sessions` alone (no frame
/// is read). Its rows decide the export's row set together with the spec,
/// whatever `as_of` says: the manifest's `selection` digest is taken over
/// them, so a re-post of the same body is recognised as the same export.
pub fn compile_selection_sql(spec: &ExportSpec) -> Result<String> {
    let select = "SELECT s.session_id, s.seal";
    Ok(statement(spec, select, Query::Selection)?.to_string())
}

/// The sessions a spec's `workflow`, `filter` and `as_of` select, as
/// `select` (columns of `sessions AS s`) in `session_id` order: the query
/// behind the viewer's session list, the same conditions an export of the
/// spec applies to its sessions.
pub fn compile_sessions_sql(spec: &ExportSpec, select: &str) -> Result<String> {
    Ok(statement(spec, select, Query::Selection)?.to_string())
}

/// What a compiled query returns.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Query {
    /// The selected sessions' ids and seals (no frames).
    Selection,
    /// The export rows: sampled frames.
    Export,
    /// Every frame, sampled or not (the redaction plan).
    Redaction,
    /// Action frames, with `sampled` as a column.
    Steps,
}

/// The query a `redact` spec reads first: `session_id`, `frame_idx` and
/// `events` of every frame of the selected sessions, sampled or not (a
/// typing run or a redaction rectangle may sit on a frame sampling drops),
/// in export order, without images.
pub fn compile_redaction_sql(spec: &ExportSpec) -> Result<String> {
    let select = "SELECT f.session_id, f.frame_idx, f.events";
    Ok(statement(spec, select, Query::Redaction)?.to_string())
}

fn statement(spec: &ExportSpec, select: &str, query: Query) -> Result<Statement> {
    let mut w = Where {
        sessions_only: query == Query::Selection,
        ..Where::default()
    };
    let p = w.bind(Lit::Timestamp(format_instant(spec.as_of)));
    w.push(format!("s.sealed_at <= {p}"));
    w.any_of(&["s.workflow", "f.workflow"], &spec.workflows);
    let f = &spec.filter;
    let outcomes: Vec<String> = f.outcomes.iter().map(|o| o.as_str().to_string()).collect();
    w.any_of(&["s.outcome"], &outcomes);
    for (col, op, t) in [("started_at", ">=", f.since), ("started_at", "<", f.until)] {
        if let Some(t) = t {
            for table in ["s", "f"] {
                let p = w.bind(Lit::Timestamp(format_instant(t)));
                w.push(format!("{table}.{col} {op} {p}"));
            }
        }
    }
    let kinds: Vec<String> = f
        .actor_kinds
        .iter()
        .map(|k| k.as_str().to_string())
        .collect();
    w.any_of(&["s.actor_kind"], &kinds);
    for (op, bound) in [(">=", f.min_duration_ms), ("<=", f.max_duration_ms)] {
        if let Some(n) = bound {
            let p = w.bind(Lit::Int(n));
            w.push(format!("s.duration_ms {op} {p}"));
        }
    }
    w.has_any("s.tags", &f.tags);
    w.has_any("s.paths", &f.paths);
    if !f.exclude_session_ids.is_empty() {
        for col in ["s.session_id", "f.session_id"] {
            let list = w.list(f.exclude_session_ids.iter().map(|s| Lit::Str(s.clone())));
            w.push(format!("{col} NOT IN ({list})"));
        }
    }
    let s = &spec.sampling;
    let keep = s.keep_action_frames;
    let test = match s.mode {
        SamplingMode::All => None,
        SamplingMode::EventOnly => {
            let k = w.bind(Lit::Bool(keep));
            Some(format!(
                "sample_event_only(f.is_event_frame, f.is_action_frame, {k})"
            ))
        }
        SamplingMode::KeyframesOnly => {
            let k = w.bind(Lit::Bool(keep));
            Some(format!(
                "sample_keyframes_only(f.is_keyframe, f.is_action_frame, {k})"
            ))
        }
        SamplingMode::EveryNMs => {
            let n = w.bind(Lit::Int(s.interval_ms.unwrap_or(1)));
            let k = w.bind(Lit::Bool(keep));
            Some(format!(
                "sample_every_n_ms(f.t_ms, f.prev_t_ms, {n}, f.is_action_frame, {k})"
            ))
        }
    };
    let mut sampled_column = String::new();
    match query {
        Query::Export => {
            if let Some(t) = test {
                w.push(t);
            }
        }
        Query::Redaction | Query::Selection => {}
        Query::Steps => {
            w.push("f.is_action_frame".into());
            let t = test.unwrap_or_else(|| "true".into());
            sampled_column = format!(", {t} AS sampled");
        }
    }
    let sampled = !matches!(query, Query::Redaction | Query::Selection);
    let split = match &spec.splits {
        Some(sp) if sampled => {
            let key = match sp.by {
                SplitKey::SessionId => "s.session_id",
                SplitKey::Workflow => "s.workflow",
                SplitKey::ActorId => "coalesce(s.actor_id, s.session_id)",
                SplitKey::Path => "coalesce(array_min(s.paths), s.session_id)",
            };
            let salt = w.bind(Lit::Str(sp.salt.clone()));
            let pairs: Vec<String> = sp
                .parts
                .iter()
                .map(|(n, f)| {
                    let n = w.bind(Lit::Str(n.clone()));
                    let f = w.bind(Lit::Float(*f));
                    format!("{n}, {f}")
                })
                .collect();
            format!(", split_of({key}, {salt}, {}) AS split", pairs.join(", "))
        }
        _ => String::new(),
    };
    // A partitioned export is ordered within each partition (the frames
    // scan's order), not as a whole.
    let (from, order) = match query {
        Query::Selection => ("FROM sessions AS s", " ORDER BY s.session_id"),
        _ if spec.partitions > 1 => (FROM, ""),
        _ => (FROM, " ORDER BY f.session_id, f.frame_idx"),
    };
    let template = format!(
        "{select}{sampled_column}{split} {from} WHERE {}{order}",
        w.conditions.join(" AND "),
    );
    let mut statements = Parser::parse_sql(&GenericDialect {}, &template)
        .map_err(|e| Error::Internal(format!("the export query skeleton does not parse: {e}")))?;
    let mut statement = statements
        .pop()
        .ok_or_else(|| Error::Internal("the export query skeleton is empty".into()))?;
    let values = w.values;
    let _ = visit_expressions_mut(&mut statement, |expr| {
        if let Expr::Value(v) = expr {
            if let Value::Placeholder(name) = &v.value {
                let idx: Option<usize> = name.trim_start_matches('$').parse().ok();
                if let Some(lit) = idx.and_then(|i| values.get(i.wrapping_sub(1))) {
                    *expr = lit.clone().into_expr();
                }
            }
        }
        ControlFlow::<()>::Continue(())
    });
    Ok(statement)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_selection_reads_sessions_alone_with_every_session_filter() {
        let spec = ExportSpec::parse(
            &serde_json::json!({"workflow": "a", "format": "jsonl",
                "filter": {"since": "2026-01-01", "until": "2026-02-01", "outcome": "success",
                           "exclude_session_ids": ["ses_x"]}}),
            chrono::Utc::now(),
        )
        .unwrap();
        let sql = compile_selection_sql(&spec).unwrap();
        assert!(
            sql.starts_with("SELECT s.session_id, s.seal FROM sessions AS s WHERE"),
            "{sql}"
        );
        assert!(!sql.contains("f."), "{sql}");
        for part in [
            "s.sealed_at <=",
            "s.workflow IN ('a')",
            "s.outcome IN ('success')",
            "s.started_at >= ",
            "s.started_at < ",
            "s.session_id NOT IN ('ses_x')",
            "ORDER BY s.session_id",
        ] {
            assert!(sql.contains(part), "{part} missing: {sql}");
        }
        // The export query still filters both tables.
        let export = compile_sql(&spec).unwrap();
        assert!(
            export.contains("f.workflow IN ('a')") && export.contains("f.session_id NOT IN"),
            "{export}"
        );
    }
}
