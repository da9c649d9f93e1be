//! The canonical action of a step: one event (`type`, `data`) mapped by a
//! fixed table to `{type, x, y, x2, y2, text, keys, direction, amount}`,
//! put into a coordinate convention (its written forms are
//! `action_text.rs`). Also Qwen2.5-VL's `smart_resize` arithmetic. The SQL
//! functions `step_action(type, data, width, height[, coordinates])` and
//! `smart_resize(width, height[, factor, min_pixels, max_pixels])` expose
//! both, so `sql/steps.slt` pins them.
//!
//! The table (event `type` → canonical `type`; `data` fields read):
//!
//! | event `type` | `data` | canonical |
//! |---|---|---|
//! | `click` | `x`, `y`, `button` (`left` or absent; `right`; any case, or DOM numbers `0`/`2`), `clicks` (2) | `click`, `right_click`, `double_click` |
//! | `double_click`, `dblclick` | `x`, `y` | `double_click` |
//! | `right_click`, `contextmenu` | `x`, `y` | `right_click` |
//! | `drag` | `x`, `y`, `x2`, `y2` or `from`, `to` as `{x, y}` or `[x, y]` | `drag` |
//! | `scroll` | `dy` / `dx` (positive: down / right) or `direction` + `amount` (> 0); rounded half away from zero; optional `x`, `y` | `scroll` |
//! | `type` | `text` | `type` |
//! | `key` | `key` (`"ctrl+c"` is a hotkey) or `keys` | `key` or `hotkey` |
//! | `hotkey` | `keys` or `key` (`"ctrl+c"`) | `hotkey` (even of one key) |
//! | `wait` | — | `wait` |
//! | `finish`, `done` | — | `finish` |
//!
//! Types match in any case. Anything else, or a known type whose required
//! fields are missing, is
//! `{"type": "other", "raw": "{\"data\":…,\"type\":…}"}`. Key names are
//! lower-cased and trimmed (a lone `" "` is the space bar), with `control`→`ctrl`, `return`→`enter`, `escape`→`esc`,
//! `arrowup`→`up` (and the other arrows), `" "`→`space`.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, StringBuilder, StructArray};
use arrow::datatypes::{DataType, Field, Fields, Int64Type};
use datafusion::common::{exec_err, Result as DfResult};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use serde_json::{json, Map, Value};

use crate::spec::{ActionSyntax, Coordinates, SmartResize};

pub use super::action_text::Finish;

/// A canonical action; coordinates in pixels of the original frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    /// `click`, `double_click`, `right_click`, `drag`, `scroll`, `type`,
    /// `key`, `hotkey`, `wait`, `finish` or `other`.
    pub kind: &'static str,
    /// Point (start of a drag; where a scroll happens, if given).
    pub xy: Option<(f64, f64)>,
    /// End of a drag.
    pub xy2: Option<(f64, f64)>,
    /// Typed text.
    pub text: Option<String>,
    /// Keys of `key` (one) and `hotkey` (several), normalised.
    pub keys: Option<Vec<String>>,
    /// `up`, `down`, `left` or `right` (scroll).
    pub direction: Option<&'static str>,
    /// Scroll distance as the event gave it.
    pub amount: Option<i64>,
    /// The event (`{"data", "type"}` JSON) when it maps to nothing.
    pub raw: Option<String>,
}

/// Every canonical type, in the order the manifest counts them.
pub const ACTION_TYPES: [&str; 11] = [
    "click",
    "double_click",
    "right_click",
    "drag",
    "scroll",
    "type",
    "key",
    "hotkey",
    "wait",
    "finish",
    "other",
];

impl Action {
    fn new(kind: &'static str) -> Self {
        Action {
            kind,
            xy: None,
            xy2: None,
            text: None,
            keys: None,
            direction: None,
            amount: None,
            raw: None,
        }
    }

    fn other(kind: &str, data: &Value) -> Self {
        let raw = json!({"data": data, "type": kind});
        Action {
            raw: Some(raw.to_string()),
            ..Action::new("other")
        }
    }

    /// Maps one event by the module's table.
    pub fn from_event(kind: &str, data: &Value) -> Self {
        Self::map(kind, data).unwrap_or_else(|| Self::other(kind, data))
    }

    fn map(kind: &str, data: &Value) -> Option<Self> {
        let point = |v: &Value| Some((v.get("x")?.as_f64()?, v.get("y")?.as_f64()?));
        // A drag's end: `{x, y}` or `[x, y]`.
        let end = |v: &Value| match v {
            Value::Array(a) if a.len() == 2 => Some((a[0].as_f64()?, a[1].as_f64()?)),
            _ => point(v),
        };
        let at = |k: &'static str| {
            Some(Action {
                xy: Some(point(data)?),
                ..Action::new(k)
            })
        };
        match kind.trim().to_ascii_lowercase().as_str() {
            "click" => {
                let double = match data.get("clicks") {
                    None | Some(Value::Null) => false,
                    Some(n) if n.as_f64() == Some(1.0) => false,
                    Some(n) if n.as_f64() == Some(2.0) => true,
                    // A triple click (or a count that is no count) has no
                    // canonical action.
                    _ => return None,
                };
                match button(data.get("button"))? {
                    "left" if double => at("double_click"),
                    "left" => at("click"),
                    _ => at("right_click"),
                }
            }
            "double_click" | "dblclick" => at("double_click"),
            "right_click" | "contextmenu" => at("right_click"),
            "drag" => {
                let (from, to) = match (data.get("from"), data.get("to")) {
                    (Some(f), Some(t)) => (end(f)?, end(t)?),
                    _ => (
                        point(data)?,
                        (data.get("x2")?.as_f64()?, data.get("y2")?.as_f64()?),
                    ),
                };
                Some(Action {
                    xy: Some(from),
                    xy2: Some(to),
                    ..Action::new("drag")
                })
            }
            "scroll" => {
                // Rounded half away from zero, as every conversion is.
                let int = |k: &str| {
                    data.get(k)
                        .and_then(Value::as_f64)
                        .map(|f| f.round() as i64)
                };
                let named = data
                    .get("direction")
                    .and_then(Value::as_str)
                    .map(|d| d.trim().to_ascii_lowercase())
                    .and_then(|d| {
                        ["up", "down", "left", "right"]
                            .into_iter()
                            .find(|x| *x == d)
                    });
                let (direction, amount) = match (named, int("amount")) {
                    (Some(d), Some(a)) if a > 0 => (d, a),
                    _ => match (int("dy").unwrap_or(0), int("dx").unwrap_or(0)) {
                        (dy, _) if dy > 0 => ("down", dy),
                        (dy, _) if dy < 0 => ("up", -dy),
                        (_, dx) if dx > 0 => ("right", dx),
                        (_, dx) if dx < 0 => ("left", -dx),
                        _ => return None,
                    },
                };
                Some(Action {
                    xy: point(data),
                    direction: Some(direction),
                    amount: Some(amount),
                    ..Action::new("scroll")
                })
            }
            "type" => Some(Action {
                text: Some(data.get("text")?.as_str()?.to_string()),
                ..Action::new("type")
            }),
            kind @ ("key" | "hotkey") => {
                let keys: Vec<String> = match (data.get("keys"), data.get("key")) {
                    (Some(Value::Array(ks)), _) => ks
                        .iter()
                        .map(|k| k.as_str().map(combo))
                        .collect::<Option<Vec<_>>>()?
                        .into_iter()
                        .flatten()
                        .collect(),
                    (Some(Value::String(k)), _) | (_, Some(Value::String(k))) => combo(k),
                    _ => return None,
                };
                if keys.is_empty() || keys.iter().any(String::is_empty) {
                    return None;
                }
                let kind = if kind == "hotkey" || keys.len() > 1 {
                    "hotkey"
                } else {
                    "key"
                };
                Some(Action {
                    keys: Some(keys),
                    ..Action::new(kind)
                })
            }
            "wait" => Some(Action::new("wait")),
            "finish" | "done" => Some(Action::new("finish")),
            _ => None,
        }
    }

    /// The action in `coords` on a `width`×`height` frame: a JSON object
    /// with every canonical field (null where it does not apply).
    pub fn to_json(&self, coords: &Convert) -> Value {
        let c = |v: Option<(f64, f64)>, i: usize| {
            v.map(|p| coords.value(if i == 0 { p.0 } else { p.1 }, i))
        };
        let mut m = Map::new();
        // Inserted in key order: the text is the same whatever map type
        // serde_json was built with.
        m.insert("amount".into(), json!(self.amount));
        m.insert("direction".into(), json!(self.direction));
        m.insert("keys".into(), json!(self.keys));
        m.insert("raw".into(), json!(self.raw));
        m.insert("text".into(), json!(self.text));
        m.insert("type".into(), json!(self.kind));
        m.insert("x".into(), c(self.xy, 0).map(Coord::json).into());
        m.insert("x2".into(), c(self.xy2, 0).map(Coord::json).into());
        m.insert("y".into(), c(self.xy, 1).map(Coord::json).into());
        m.insert("y2".into(), c(self.xy2, 1).map(Coord::json).into());
        Value::Object(m)
    }
}

/// The mouse button of a click: `left` (or absent), `right`, in any case,
/// or the DOM's `MouseEvent.button` numbers `0` (left) and `2` (right);
/// `None` for any other (a middle button has no canonical action).
fn button(b: Option<&Value>) -> Option<&'static str> {
    match b {
        None | Some(Value::Null) => Some("left"),
        Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "left" => Some("left"),
            "right" => Some("right"),
            _ => None,
        },
        Some(n) => match n.as_f64() {
            Some(0.0) => Some("left"),
            Some(2.0) => Some("right"),
            _ => None,
        },
    }
}

/// The keys of a chord as written (`"ctrl+c"`, `"ctrl++"`, `"+"`, `" "`):
/// split at each `+` that follows a key, so a `+` right after a separator
/// (or alone) is the key itself; each named by [`key_name`]. A trailing
/// separator (`"ctrl+"`) leaves an empty name, which maps to nothing.
fn combo(k: &str) -> Vec<String> {
    let (mut out, mut start) = (Vec::new(), 0);
    for (i, c) in k.char_indices() {
        if c == '+' && i > start {
            out.push(key_name(&k[start..i]));
            start = i + 1;
        }
    }
    out.push(key_name(&k[start..]));
    out
}

/// A key name as the canonical action spells it.
fn key_name(k: &str) -> String {
    // The space bar is a space: checked before surrounding blanks go.
    if k == " " {
        return "space".into();
    }
    let k = k.trim();
    let lower = k.to_lowercase();
    match lower.as_str() {
        "control" => "ctrl".into(),
        "return" => "enter".into(),
        "escape" => "esc".into(),
        "arrowup" => "up".into(),
        "arrowdown" => "down".into(),
        "arrowleft" => "left".into(),
        "arrowright" => "right".into(),
        _ => lower,
    }
}

/// A coordinate in a convention: a whole number or a fraction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Coord {
    /// Pixels, 0–1000, resized pixels.
    Int(i64),
    /// 0–1, four decimals.
    Frac(f64),
}

impl Coord {
    pub(super) fn json(self) -> Value {
        match self {
            Coord::Int(n) => json!(n),
            Coord::Frac(f) => json!(f),
        }
    }

    pub(super) fn text(self) -> String {
        match self {
            Coord::Int(n) => n.to_string(),
            Coord::Frac(f) => format!("{f}"),
        }
    }

    /// As a float (for Arrow columns of fractions).
    pub fn as_f64(self) -> f64 {
        match self {
            Coord::Int(n) => n as f64,
            Coord::Frac(f) => f,
        }
    }

    /// As a whole number (for Arrow columns of integers).
    pub fn as_i64(self) -> i64 {
        match self {
            Coord::Int(n) => n,
            Coord::Frac(f) => f.round() as i64,
        }
    }
}

/// Converts pixel coordinates of one frame into a convention.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Convert {
    coords: Coordinates,
    /// The original frame's size.
    size: (u32, u32),
    /// The size the coordinates refer to (the resized image for
    /// `smart_resize`, else the original).
    target: (u32, u32),
}

impl Convert {
    /// The conversion for a `width`×`height` frame; a frame `smart_resize`
    /// refuses (an aspect ratio above 200, an empty side) is refused here
    /// too, with its message, as `qwen_vl_utils.smart_resize` refuses it.
    pub fn new(coords: Coordinates, width: u32, height: u32) -> Result<Self, String> {
        Self::resized(coords, coords.smart_resize(), width, height)
    }

    /// [`Convert::new`] for an observation resized by `resize` (relative
    /// conventions are the same on it; `smart_resize` coordinates are on
    /// their own resize, which `resize` then is).
    pub fn resized(
        coords: Coordinates,
        resize: Option<SmartResize>,
        width: u32,
        height: u32,
    ) -> Result<Self, String> {
        let target = match resize {
            Some(r) => smart_resize(width, height, r)?,
            None => (width, height),
        };
        Ok(Convert {
            coords,
            size: (width.max(1), height.max(1)),
            target,
        })
    }

    /// The size of the image the coordinates refer to.
    pub fn target(&self) -> (u32, u32) {
        self.target
    }

    /// Pixel `v` on axis `axis` (0: x, 1: y) in the convention: clamped to
    /// the image, rounded half away from zero.
    pub fn value(&self, v: f64, axis: usize) -> Coord {
        let (size, target) = if axis == 0 {
            (self.size.0, self.target.0)
        } else {
            (self.size.1, self.target.1)
        };
        let size = f64::from(size);
        match self.coords {
            Coordinates::Pixels => Coord::Int(v.round().clamp(0.0, size - 1.0) as i64),
            Coordinates::Normalized => {
                Coord::Frac(((v / size).clamp(0.0, 1.0) * 10_000.0).round() / 10_000.0)
            }
            Coordinates::Normalized1000 => {
                Coord::Int((v * 1000.0 / size).round().clamp(0.0, 1000.0) as i64)
            }
            Coordinates::SmartResize(_) => {
                let t = f64::from(target.max(1));
                Coord::Int((v * t / size).round().clamp(0.0, t - 1.0) as i64)
            }
        }
    }

    /// `v` in original pixels, clamped to the frame.
    pub fn pixel(&self, v: f64, axis: usize) -> i64 {
        let size = if axis == 0 { self.size.0 } else { self.size.1 };
        v.round().clamp(0.0, f64::from(size) - 1.0) as i64
    }
}

/// Python's `round()` on a float: half to even.
fn round_half_even(v: f64) -> f64 {
    let r = v.round();
    if (v - v.trunc()).abs() == 0.5 {
        2.0 * (v / 2.0).round()
    } else {
        r
    }
}

/// Qwen2.5-VL's `smart_resize` (`qwen_vl_utils`): the `(width, height)` a
/// `width`×`height` image is resized to — both sides multiples of
/// `factor`, the area within `[min_pixels, max_pixels]`, the aspect ratio
/// kept as well as that allows. Same float arithmetic as the Python
/// (Python's half-to-even `round`), so it gives the same sizes. Refuses
/// an aspect ratio above 200, as the Python does.
pub fn smart_resize(width: u32, height: u32, r: SmartResize) -> Result<(u32, u32), String> {
    let (w, h) = (f64::from(width), f64::from(height));
    if width == 0 || height == 0 {
        return Err(format!("cannot resize a {width}×{height} image"));
    }
    if w.max(h) / w.min(h) > 200.0 {
        return Err(format!(
            "a {width}×{height} image has an aspect ratio above 200"
        ));
    }
    let f = f64::from(r.factor);
    let (min, max) = (r.min_pixels as f64, r.max_pixels as f64);
    let mut h_bar = f.max(round_half_even(h / f) * f);
    let mut w_bar = f.max(round_half_even(w / f) * f);
    if h_bar * w_bar > max {
        let beta = ((h * w) / max).sqrt();
        h_bar = f.max((h / beta / f).floor() * f);
        w_bar = f.max((w / beta / f).floor() * f);
    } else if h_bar * w_bar < min {
        let beta = (min / (h * w)).sqrt();
        h_bar = (h * beta / f).ceil() * f;
        w_bar = (w * beta / f).ceil() * f;
    }
    Ok((w_bar as u32, h_bar as u32))
}

/// Parses a `coordinates` value of the spec (`"pixels"`, …, or
/// `{"smart_resize": {…}}`) through the spec parser's rules.
fn parse_coordinates(text: &str) -> Result<Coordinates, String> {
    let v: Value = serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.into()));
    let spec = json!({"workflow": "x", "format": "jsonl", "unit": "step", "coordinates": v});
    crate::spec::ExportSpec::parse(&spec, chrono::Utc::now())
        .map_err(|e| {
            let parts: Vec<String> = e.0.iter().map(|p| p.to_string()).collect();
            parts.join("; ")
        })
        .and_then(|s| {
            s.steps
                .map(|st| st.coordinates)
                .ok_or_else(|| "not a step spec".to_string())
        })
}

/// `step_action(type, data, width, height[, coordinates])`: the canonical
/// action of an event as JSON text (nulls left out), coordinates in
/// `coordinates` (default `'pixels'`; a name or the spec's JSON).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct StepAction {
    signature: Signature,
}

impl StepAction {
    /// The function.
    pub fn new() -> Self {
        Self {
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

impl Default for StepAction {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for StepAction {
    fn name(&self) -> &str {
        "step_action"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let n = args.args.len();
        if !(4..=5).contains(&n) {
            return exec_err!(
                "step_action(type, data, width, height[, coordinates]) takes 4 or 5 arguments; got {n}"
            );
        }
        let rows = args.number_rows;
        let arrays = args
            .args
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<DfResult<Vec<_>>>()?;
        let text = |i: usize| arrow::compute::cast(&arrays[i], &DataType::Utf8);
        let int = |i: usize| arrow::compute::cast(&arrays[i], &DataType::Int64);
        let (kinds, datas, widths, heights) = (text(0)?, text(1)?, int(2)?, int(3)?);
        let coords = if n == 5 { Some(text(4)?) } else { None };
        let (kinds, datas) = (kinds.as_string::<i32>(), datas.as_string::<i32>());
        let (widths, heights) = (
            widths.as_primitive::<Int64Type>(),
            heights.as_primitive::<Int64Type>(),
        );
        let mut out = StringBuilder::new();
        for i in 0..rows {
            if kinds.is_null(i) || widths.is_null(i) || heights.is_null(i) {
                out.append_null();
                continue;
            }
            let c = match &coords {
                Some(c) if c.is_valid(i) => {
                    match parse_coordinates(c.as_string::<i32>().value(i)) {
                        Ok(c) => c,
                        Err(e) => return exec_err!("step_action: {e}"),
                    }
                }
                _ => Coordinates::Pixels,
            };
            let data: Value = if datas.is_null(i) {
                Value::Null
            } else {
                serde_json::from_str(datas.value(i)).unwrap_or(Value::Null)
            };
            let (w, h) = (widths.value(i), heights.value(i));
            let (Ok(w), Ok(h)) = (u32::try_from(w), u32::try_from(h)) else {
                return exec_err!("step_action: size {w}×{h} is not a frame size");
            };
            let convert = match Convert::new(c, w, h) {
                Ok(c) => c,
                Err(e) => return exec_err!("step_action: {e}"),
            };
            let action = Action::from_event(kinds.value(i), &data);
            out.append_value(action.to_text(ActionSyntax::Json, &convert, Finish::Success));
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// `smart_resize(width, height[, factor, min_pixels, max_pixels])` →
/// `{width, height}` of Qwen2.5-VL's resize (defaults 28, 3136, 1003520).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SmartResizeUdf {
    signature: Signature,
}

impl SmartResizeUdf {
    /// The function.
    pub fn new() -> Self {
        Self {
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

impl Default for SmartResizeUdf {
    fn default() -> Self {
        Self::new()
    }
}

fn size_fields() -> Fields {
    Fields::from(vec![
        Field::new("width", DataType::Int64, true),
        Field::new("height", DataType::Int64, true),
    ])
}

impl ScalarUDFImpl for SmartResizeUdf {
    fn name(&self) -> &str {
        "smart_resize"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Struct(size_fields()))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let n = args.args.len();
        if n != 2 && n != 5 {
            return exec_err!(
                "smart_resize(width, height[, factor, min_pixels, max_pixels]) takes 2 or 5 arguments; got {n}"
            );
        }
        let rows = args.number_rows;
        let ints = args
            .args
            .iter()
            .map(|a| arrow::compute::cast(&a.to_array(rows)?, &DataType::Int64).map_err(Into::into))
            .collect::<DfResult<Vec<ArrayRef>>>()?;
        let get = |c: usize, i: usize| {
            let a = ints[c].as_primitive::<Int64Type>();
            a.is_valid(i).then(|| a.value(i))
        };
        let (mut ws, mut hs) = (Vec::with_capacity(rows), Vec::with_capacity(rows));
        for i in 0..rows {
            let d = SmartResize::QWEN25_VL;
            let budget = if n == 5 {
                match (get(2, i), get(3, i), get(4, i)) {
                    (Some(f), Some(lo), Some(hi)) if f > 0 && lo > 0 && hi >= lo => SmartResize {
                        factor: u32::try_from(f).unwrap_or(u32::MAX),
                        min_pixels: lo as u64,
                        max_pixels: hi as u64,
                    },
                    other => return exec_err!("smart_resize: bad budget {other:?}"),
                }
            } else {
                d
            };
            match (get(0, i), get(1, i)) {
                (Some(w), Some(h)) => {
                    let (Ok(w), Ok(h)) = (u32::try_from(w), u32::try_from(h)) else {
                        return exec_err!("smart_resize: {w}×{h} is not an image size");
                    };
                    match smart_resize(w, h, budget) {
                        Ok((w, h)) => {
                            ws.push(Some(i64::from(w)));
                            hs.push(Some(i64::from(h)));
                        }
                        Err(e) => return exec_err!("smart_resize: {e}"),
                    }
                }
                _ => {
                    ws.push(None);
                    hs.push(None);
                }
            }
        }
        let nulls: Vec<bool> = ws.iter().map(Option::is_some).collect();
        let array = StructArray::try_new(
            size_fields(),
            vec![
                Arc::new(Int64Array::from(ws)) as ArrayRef,
                Arc::new(Int64Array::from(hs)) as ArrayRef,
            ],
            Some(nulls.into()),
        )?;
        Ok(ColumnarValue::Array(Arc::new(array)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn act(kind: &str, data: Value) -> Value {
        let a = Action::from_event(kind, &data);
        let mut v = a.to_json(&Convert::new(Coordinates::Pixels, 1000, 500).unwrap());
        v.as_object_mut().unwrap().retain(|_, v| !v.is_null());
        v
    }

    #[test]
    fn the_table_maps_every_documented_type() {
        assert_eq!(
            act("click", json!({"x": 3, "y": 4})),
            json!({"type": "click", "x": 3, "y": 4})
        );
        assert_eq!(
            act("click", json!({"x": 3, "y": 4, "button": "right"}))["type"],
            "right_click"
        );
        assert_eq!(
            act("click", json!({"x": 3, "y": 4, "clicks": 2}))["type"],
            "double_click"
        );
        assert_eq!(
            act("click", json!({"x": 3, "y": 4, "button": "middle"}))["type"],
            "other"
        );
        assert_eq!(act("click", json!({"x": 3}))["type"], "other");
        assert_eq!(
            act("dblclick", json!({"x": 3, "y": 4}))["type"],
            "double_click"
        );
        assert_eq!(
            act(
                "drag",
                json!({"from": {"x": 1, "y": 2}, "to": {"x": 9, "y": 8}})
            ),
            json!({"type": "drag", "x": 1, "y": 2, "x2": 9, "y2": 8})
        );
        assert_eq!(
            act("scroll", json!({"dy": -240})),
            json!({"type": "scroll", "direction": "up", "amount": 240})
        );
        assert_eq!(act("scroll", json!({"dy": 0}))["type"], "other");
        assert_eq!(
            act("key", json!({"key": "Control+C"})),
            json!({"type": "hotkey", "keys": ["ctrl", "c"]})
        );
        assert_eq!(
            act("key", json!({"key": "+"})),
            json!({"type": "key", "keys": ["+"]})
        );
        assert_eq!(
            act("key", json!({"key": "Return"}))["keys"],
            json!(["enter"])
        );
        assert_eq!(act("done", Value::Null), json!({"type": "finish"}));
        assert_eq!(
            act("navigate", json!({"url": "u"})),
            json!({"type": "other", "raw": "{\"data\":{\"url\":\"u\"},\"type\":\"navigate\"}"})
        );
    }

    #[test]
    fn conventions_round_and_clamp() {
        let a = Action::from_event("click", &json!({"x": 999, "y": 250}));
        let n = Convert::new(Coordinates::Normalized, 1000, 500).unwrap();
        assert_eq!(
            a.to_text(ActionSyntax::Json, &n, Finish::Success),
            r#"{"type":"click","x":0.999,"y":0.5}"#
        );
        let k = Convert::new(Coordinates::Normalized1000, 1000, 500).unwrap();
        assert_eq!(
            a.to_text(ActionSyntax::Pyautogui, &k, Finish::Success),
            "pyautogui.click(x=999, y=500)"
        );
        let off = Action::from_event("click", &json!({"x": 5000, "y": -3}));
        let p = Convert::new(Coordinates::Pixels, 1000, 500).unwrap();
        assert_eq!(
            off.to_text(ActionSyntax::Pyautogui, &p, Finish::Success),
            "pyautogui.click(x=999, y=0)"
        );
    }

    #[test]
    fn smart_resize_matches_qwen() {
        // Values from qwen_vl_utils.smart_resize (Python).
        let d = SmartResize::QWEN25_VL;
        assert_eq!(smart_resize(1920, 1080, d), Ok((1316, 728)));
        assert_eq!(smart_resize(1280, 800, d), Ok((1260, 784)));
        assert_eq!(smart_resize(70, 42, d), Ok((56, 56)));
        assert_eq!(smart_resize(10, 10, d), Ok((56, 56)));
        assert!(smart_resize(1, 300, d).is_err());
    }
}
