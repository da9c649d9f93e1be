//! The store's pages: the session list (the export filters, compiled to
//! the same SQL an export of them runs, shown on the page, and paged by
//! `session_id` so a page reads one page of rows whatever the store's
//! size), a session's timeline (thumbnails, events, flags, actions drawn,
//! and which frames a chosen `frame_sampling` keeps and why), and one
//! frame at full size with its actions drawn.

use std::collections::BTreeMap;
use std::fmt::Write;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use datafusion::prelude::SessionContext;
use serde_json::{json, Value};

use crate::sample::Action;
use crate::spec::{compile_sessions_sql, ExportSpec};

use super::overlay;
use super::page::{checked_id, esc, url, Page, ViewError};

/// Rows per page of the session list.
pub(crate) const PER_PAGE: usize = 50;

/// The session list's filters, as the query string gives them.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct ListQuery {
    workflow: Option<String>,
    outcome: Option<String>,
    actor_kind: Option<String>,
    since: Option<String>,
    until: Option<String>,
    tag: Option<String>,
    path: Option<String>,
    min_duration_ms: Option<String>,
    max_duration_ms: Option<String>,
    after: Option<String>,
}

fn list_of(v: &Option<String>) -> Vec<String> {
    v.as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

impl ListQuery {
    /// The filters as an export spec's `workflow` and `filter` (the spec
    /// parser checks them, with its field paths).
    fn spec(&self, all_workflows: &[String]) -> Value {
        let mut filter = serde_json::Map::new();
        for (key, v) in [("outcome", &self.outcome), ("actor.kind", &self.actor_kind)] {
            let l = list_of(v);
            if !l.is_empty() {
                filter.insert(key.into(), json!(l));
            }
        }
        for (key, v) in [("since", &self.since), ("until", &self.until)] {
            if let Some(t) = given(v) {
                filter.insert(key.into(), json!(t));
            }
        }
        for (key, v) in [("tag", &self.tag), ("path", &self.path)] {
            let l = list_of(v);
            if !l.is_empty() {
                filter.insert(key.into(), json!(l));
            }
        }
        for (key, v) in [
            ("min_duration_ms", &self.min_duration_ms),
            ("max_duration_ms", &self.max_duration_ms),
        ] {
            if let Some(n) = given(v) {
                filter.insert(
                    key.into(),
                    n.parse::<i64>().map_or_else(|_| json!(n), |n| json!(n)),
                );
            }
        }
        let mut workflows = list_of(&self.workflow);
        if workflows.is_empty() {
            workflows = all_workflows.to_vec();
        }
        json!({"workflow": workflows, "format": "parquet", "filter": filter})
    }

    /// The query string of these filters (without `after`).
    fn params(&self) -> String {
        let mut out = String::new();
        for (key, v) in [
            ("workflow", &self.workflow),
            ("outcome", &self.outcome),
            ("actor_kind", &self.actor_kind),
            ("since", &self.since),
            ("until", &self.until),
            ("tag", &self.tag),
            ("path", &self.path),
            ("min_duration_ms", &self.min_duration_ms),
            ("max_duration_ms", &self.max_duration_ms),
        ] {
            if let Some(v) = given(v) {
                let _ = write!(out, "&{key}={}", url(v));
            }
        }
        out
    }
}

async fn strings(ctx: &SessionContext, sql: &str) -> Result<Vec<String>, ViewError> {
    let mut out = Vec::new();
    for b in ctx.sql(sql).await?.collect().await? {
        let col = b.column(0).as_string::<i32>();
        out.extend((0..col.len()).map(|i| col.value(i).to_string()));
    }
    Ok(out)
}

/// `GET /sessions`.
pub(crate) async fn list(ctx: &SessionContext, q: &ListQuery) -> Result<Page, ViewError> {
    let workflows = strings(ctx, "SELECT DISTINCT workflow FROM sessions ORDER BY 1").await?;
    let mut body = String::from("<h1>Sessions</h1>");
    body.push_str(&filter_form(q, &workflows));
    if workflows.is_empty() {
        body.push_str("<p id=empty>This store holds no sessions yet.</p>");
        return Ok(Page::new("sessions", body));
    }
    let spec = match ExportSpec::from_json(&q.spec(&workflows).to_string(), chrono::Utc::now()) {
        Ok(s) => s,
        Err(errors) => {
            let _ = write!(
                body,
                "<div class=err id=error><b>These filters are not valid:</b><ul>"
            );
            for e in &errors.0 {
                let _ = write!(
                    body,
                    "<li><code>{}</code>: {}</li>",
                    esc(&e.field),
                    esc(&e.message)
                );
            }
            body.push_str("</ul></div>");
            return Ok(Page::new("sessions", body));
        }
    };
    let select = "SELECT s.session_id, s.workflow, s.outcome, s.actor_kind, \
                  CAST(s.started_at AS VARCHAR) AS started_at, s.duration_ms, s.frame_count, \
                  s.action_count, array_to_string(s.tags, ', ') AS tags";
    let sql = compile_sessions_sql(&spec, select)?;
    let after = match given(&q.after) {
        Some(a) => format!(" WHERE session_id > '{}'", checked_id(a)?),
        None => String::new(),
    };
    let paged = format!(
        "SELECT * FROM ({sql}) AS page{after} ORDER BY session_id LIMIT {}",
        PER_PAGE + 1
    );
    let _ = write!(
        body,
        "<details><summary>SQL (the conditions an export of these filters applies)</summary><pre id=sql>{}</pre></details>",
        esc(&sql)
    );
    let batches = ctx.sql(&paged).await?.collect().await?;
    let rows: Vec<Vec<String>> = batches.iter().flat_map(table_rows).collect();
    body.push_str(
        "<table id=sessions><tr><th>session</th><th>workflow</th><th>outcome</th><th>actor</th>\
         <th>started</th><th>duration ms</th><th>frames</th><th>actions</th><th>tags</th></tr>",
    );
    for r in rows.iter().take(PER_PAGE) {
        let _ = write!(
            body,
            "<tr class=session data-session=\"{id}\"><td><a href=\"/sessions/{id}\">{id}</a></td>",
            id = esc(&r[0])
        );
        for cell in &r[1..] {
            let _ = write!(body, "<td>{}</td>", esc(cell));
        }
        body.push_str("</tr>");
    }
    body.push_str("</table>");
    if rows.len() > PER_PAGE {
        let last = &rows[PER_PAGE - 1][0];
        let _ = write!(
            body,
            "<p><a id=next href=\"/sessions?after={}{}\">next page</a></p>",
            url(last),
            esc(&q.params())
        );
    }
    Ok(Page::new("sessions", body))
}

/// Every row of `b` as display strings.
fn table_rows(b: &RecordBatch) -> Vec<Vec<String>> {
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    let options = FormatOptions::default().with_null("");
    let formatters: Vec<ArrayFormatter> = b
        .columns()
        .iter()
        .filter_map(|c| ArrayFormatter::try_new(c.as_ref(), &options).ok())
        .collect();
    (0..b.num_rows())
        .map(|i| formatters.iter().map(|f| f.value(i).to_string()).collect())
        .collect()
}

fn filter_form(q: &ListQuery, workflows: &[String]) -> String {
    let field = |name: &str, label: &str, v: &Option<String>, hint: &str| {
        format!(
            "<label>{label}<input name={name} value=\"{}\" placeholder=\"{hint}\"></label>",
            esc(v.as_deref().unwrap_or(""))
        )
    };
    let mut out = String::from("<form class=filters method=get action=\"/sessions\" id=filters>");
    out.push_str(&field(
        "workflow",
        "workflow",
        &q.workflow,
        &workflows.join(","),
    ));
    out.push_str(&field(
        "outcome",
        "outcome",
        &q.outcome,
        "success,error,abandoned",
    ));
    out.push_str(&field(
        "actor_kind",
        "actor kind",
        &q.actor_kind,
        "human,model,script",
    ));
    out.push_str(&field("since", "since", &q.since, "2026-01-01 or 7d"));
    out.push_str(&field("until", "until", &q.until, "2026-02-01"));
    out.push_str(&field("tag", "tag", &q.tag, "any of, comma-separated"));
    out.push_str(&field("path", "path", &q.path, "any of"));
    out.push_str(&field(
        "min_duration_ms",
        "min duration ms",
        &q.min_duration_ms,
        "",
    ));
    out.push_str(&field(
        "max_duration_ms",
        "max duration ms",
        &q.max_duration_ms,
        "",
    ));
    out.push_str("<label>&nbsp;<button type=submit>filter</button></label></form>");
    out
}

/// The session page's `frame_sampling` choice.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct SamplingQuery {
    sampling: Option<String>,
    interval_ms: Option<i64>,
    keep_action_frames: Option<String>,
}

impl SamplingQuery {
    fn mode(&self) -> &str {
        self.sampling.as_deref().unwrap_or("event_only")
    }

    fn keep(&self) -> bool {
        self.keep_action_frames.as_deref() != Some("false")
    }

    /// The SQL test an export with this sampling applies to each frame.
    fn test(&self) -> Result<String, ViewError> {
        let k = self.keep();
        Ok(match self.mode() {
            "event_only" => format!("sample_event_only(is_event_frame, is_action_frame, {k})"),
            "keyframes_only" => {
                format!("sample_keyframes_only(is_keyframe, is_action_frame, {k})")
            }
            "every_n_ms" => format!(
                "sample_every_n_ms(t_ms, prev_t_ms, {}, is_action_frame, {k})",
                self.interval()?
            ),
            "all" => "true".into(),
            other => {
                return Err(ViewError::bad_request(format!(
                "frame_sampling.mode {other:?}: one of event_only, every_n_ms, keyframes_only, all"
            )))
            }
        })
    }

    fn interval(&self) -> Result<i64, ViewError> {
        match self.interval_ms.unwrap_or(1000) {
            n if n > 0 => Ok(n),
            n => Err(ViewError::bad_request(format!(
                "frame_sampling.interval_ms {n}: must be a positive number of milliseconds"
            ))),
        }
    }

    /// Why a frame with these flags is kept or dropped.
    fn reason(&self, kept: bool, f: &FrameRow) -> String {
        let keep = self.keep();
        match (self.mode(), kept) {
            ("all", _) => "every frame is kept".into(),
            (_, true) if keep && f.action && !self.passes_alone(f) => {
                "kept: an action frame (keep_action_frames)".into()
            }
            ("event_only", true) => "kept: an event happens on it".into(),
            ("event_only", false) => "dropped: no event on it".into(),
            ("keyframes_only", true) => "kept: a keyframe".into(),
            ("keyframes_only", false) => "dropped: not a keyframe".into(),
            ("every_n_ms", true) => format!(
                "kept: first frame of its {} ms window",
                self.interval_ms.unwrap_or(1000)
            ),
            (_, false) => format!(
                "dropped: another frame of its {} ms window was kept",
                self.interval_ms.unwrap_or(1000)
            ),
            (_, true) => "kept".into(),
        }
    }

    /// Whether the frame is kept by the mode itself, action or not.
    fn passes_alone(&self, f: &FrameRow) -> bool {
        match self.mode() {
            "event_only" => f.event,
            "keyframes_only" => f.keyframe,
            _ => true,
        }
    }

    fn params(&self) -> String {
        format!(
            "sampling={}&interval_ms={}&keep_action_frames={}",
            url(self.mode()),
            self.interval_ms.unwrap_or(1000),
            self.keep()
        )
    }
}

/// One frame of a session, without its image.
struct FrameRow {
    idx: i64,
    t_ms: i64,
    width: u32,
    height: u32,
    keyframe: bool,
    event: bool,
    action: bool,
    kept: bool,
    /// `(type, data, is action)` of each event.
    events: Vec<(String, String, bool)>,
}

impl FrameRow {
    fn actions(&self) -> Vec<Action> {
        self.events
            .iter()
            .filter(|(_, _, is_action)| *is_action)
            .map(|(kind, data, _)| {
                let data: Value = serde_json::from_str(data).unwrap_or(Value::Null);
                Action::from_event(kind, &data)
            })
            .collect()
    }
}

async fn frames(
    ctx: &SessionContext,
    id: &str,
    test: &str,
    only: Option<i64>,
) -> Result<Vec<FrameRow>, ViewError> {
    let one = only.map_or(String::new(), |i| format!(" AND frame_idx = {i}"));
    let sql = format!(
        "SELECT frame_idx, t_ms, width, height, is_keyframe, is_event_frame, is_action_frame, \
         events, {test} AS kept FROM frames WHERE session_id = '{id}'{one} ORDER BY frame_idx"
    );
    let mut out = Vec::new();
    for b in ctx.sql(&sql).await?.collect().await? {
        let int = |c: usize| b.column(c).as_primitive::<Int64Type>().clone();
        let (idx, t) = (int(0), int(1));
        let (w, h) = (
            b.column(2).as_primitive::<arrow::datatypes::Int32Type>(),
            b.column(3).as_primitive::<arrow::datatypes::Int32Type>(),
        );
        let flag = |c: usize| b.column(c).as_boolean().clone();
        let (k, e, a, kept) = (flag(4), flag(5), flag(6), flag(8));
        let events = b.column(7).as_list::<i32>();
        for i in 0..b.num_rows() {
            let list = events.value(i);
            let s = list.as_struct();
            let col = |name: &str| s.column_by_name(name).cloned();
            let (types, data, action) = (col("type"), col("data"), col("action"));
            let mut evs = Vec::new();
            if let (Some(types), Some(data), Some(action)) = (types, data, action) {
                let (types, data, action) = (
                    types.as_string::<i32>(),
                    data.as_string::<i32>(),
                    action.as_boolean(),
                );
                for j in 0..s.len() {
                    evs.push((
                        types.value(j).to_string(),
                        if data.is_null(j) {
                            "{}".into()
                        } else {
                            data.value(j).to_string()
                        },
                        action.value(j),
                    ));
                }
            }
            out.push(FrameRow {
                idx: idx.value(i),
                t_ms: t.value(i),
                width: w.value(i).max(0) as u32,
                height: h.value(i).max(0) as u32,
                keyframe: k.value(i),
                event: e.value(i),
                action: a.value(i),
                kept: kept.value(i),
                events: evs,
            });
        }
    }
    Ok(out)
}

/// The session's row as (column, value) pairs, or a 404 page.
async fn session_row(
    ctx: &SessionContext,
    id: &str,
) -> Result<BTreeMap<String, String>, ViewError> {
    let sql = format!(
        "SELECT workflow, outcome, actor_kind, actor_id, CAST(started_at AS VARCHAR) AS started_at, \
         CAST(ended_at AS VARCHAR) AS ended_at, duration_ms, array_to_string(tags, ', ') AS tags, \
         array_to_string(paths, ', ') AS paths, frame_count, event_count, action_count, \
         instruction, seal FROM sessions WHERE session_id = '{id}'"
    );
    let batches = ctx.sql(&sql).await?.collect().await?;
    let Some(b) = batches.iter().find(|b| b.num_rows() > 0) else {
        return Err(ViewError::not_found(format!(
            "no session {id} in this store"
        )));
    };
    let row = table_rows(b).swap_remove(0);
    Ok(b.schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .zip(row)
        .collect())
}

fn flags(f: &FrameRow) -> String {
    let mut out = String::new();
    if f.keyframe {
        out.push_str("<span class=\"flag k\" title=keyframe>K</span>");
    }
    if f.event {
        out.push_str("<span class=\"flag e\" title=\"event frame\">E</span>");
    }
    if f.action {
        out.push_str("<span class=\"flag a\" title=\"action frame\">A</span>");
    }
    out
}

fn events_html(f: &FrameRow) -> String {
    let mut out = String::from("<ul class=events>");
    for (kind, data, action) in &f.events {
        let _ = write!(
            out,
            "<li{}><b>{}</b> <code>{}</code></li>",
            if *action { " class=action" } else { "" },
            esc(kind),
            esc(data)
        );
    }
    out.push_str("</ul>");
    out
}

/// `GET /sessions/{id}`.
pub(crate) async fn session(
    ctx: &SessionContext,
    id: &str,
    q: &SamplingQuery,
) -> Result<Page, ViewError> {
    let id = checked_id(id)?;
    let row = session_row(ctx, id).await?;
    let test = q.test()?;
    let frames = frames(ctx, id, &test, None).await?;
    let mut body = format!(
        "<h1>Session <code id=session>{}</code></h1><table>",
        esc(id)
    );
    for (k, v) in &row {
        let _ = write!(body, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(v));
    }
    body.push_str("</table>");
    let selected = |m: &str| if q.mode() == m { " selected" } else { "" };
    let _ = write!(
        body,
        "<form class=filters method=get id=sampling><label>frame_sampling.mode<select name=sampling>\
         <option{}>event_only</option><option{}>every_n_ms</option><option{}>keyframes_only</option><option{}>all</option></select></label>\
         <label>interval_ms<input name=interval_ms value=\"{}\"></label>\
         <label>keep_action_frames<select name=keep_action_frames><option{}>true</option><option{}>false</option></select></label>\
         <label>&nbsp;<button type=submit>show</button></label></form>",
        selected("event_only"),
        selected("every_n_ms"),
        selected("keyframes_only"),
        selected("all"),
        q.interval_ms.unwrap_or(1000),
        if q.keep() { " selected" } else { "" },
        if q.keep() { "" } else { " selected" },
    );
    let kept = frames.iter().filter(|f| f.kept).count();
    let _ = write!(
        body,
        "<p id=kept-count>{kept} of {} frames kept by <code>{}</code></p><div class=timeline id=timeline>",
        frames.len(),
        esc(&test)
    );
    let params = q.params();
    for f in &frames {
        let overlay = overlay::svg(&f.actions(), f.width, f.height, super::images::THUMB_WIDTH);
        let _ = write!(
            body,
            "<div class=\"frame {cls}\" data-frame=\"{idx}\" data-kept=\"{kept}\">\
             <a href=\"/sessions/{id}/frames/{idx}?{params}\"><span class=stage>\
             <img loading=lazy src=\"/thumbs/{id}/{idx}\" width={tw} alt=\"frame {idx}\">{overlay}</span></a>\
             <div>#{idx} · {t} ms {flags}</div><div class=reason>{reason}</div>{events}</div>",
            cls = if f.kept { "kept" } else { "dropped" },
            idx = f.idx,
            kept = f.kept,
            tw = super::images::THUMB_WIDTH,
            t = f.t_ms,
            flags = flags(f),
            reason = esc(&q.reason(f.kept, f)),
            events = events_html(f),
        );
    }
    body.push_str("</div>");
    Ok(Page::new(format!("session {id}"), body))
}

/// `GET /sessions/{id}/frames/{idx}`: the frame at full size.
pub(crate) async fn frame(
    ctx: &SessionContext,
    id: &str,
    idx: i64,
    q: &SamplingQuery,
) -> Result<Page, ViewError> {
    let id = checked_id(id)?;
    let test = q.test()?;
    let Some(f) = frames(ctx, id, &test, Some(idx)).await?.pop() else {
        session_row(ctx, id).await?;
        return Err(ViewError::not_found(format!(
            "session {id} has no frame {idx}"
        )));
    };
    let params = q.params();
    let overlay = overlay::svg(&f.actions(), f.width, f.height, f.width);
    let body = format!(
        "<p><a href=\"/sessions/{id}?{params}\">← session {id}</a> · \
         <a href=\"/sessions/{id}/frames/{prev}?{params}\">previous</a> · \
         <a href=\"/sessions/{id}/frames/{next}?{params}\">next</a></p>\
         <h1>Frame {idx} <small>{t} ms {flags}</small></h1>\
         <p class=reason>{reason}</p>\
         <div class=stage id=stage data-width={w} data-height={h}><img id=frame src=\"/images/{id}/{idx}\" width={w} height={h} alt=\"frame {idx}\">{overlay}</div>{events}",
        prev = (idx - 1).max(0),
        next = idx + 1,
        t = f.t_ms,
        flags = flags(&f),
        reason = esc(&q.reason(f.kept, &f)),
        w = f.width,
        h = f.height,
        events = events_html(&f),
    );
    Ok(Page::new(format!("{id} frame {idx}"), body))
}
