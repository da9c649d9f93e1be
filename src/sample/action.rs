//! The canonical action of a step: one event (`type`, `data`) mapped by a
//! fixed table to `{type, x, y, x2, y2, text, keys, direction, amount}`,
//! put into a coordinate convention by `convert.rs` (its written forms are
//! `action_text.rs`). The SQL function `step_action(type, data, width,
//! height[, coordinates])` (`step_udfs.rs`) exposes it, so `sql/steps.slt`
//! pins the table.
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

use serde_json::{json, Map, Value};

use super::convert::{Convert, Coord};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Coordinates;

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
}
