//! The written forms of a canonical [`Action`]: one per [`ActionSyntax`]
//! (`json`, OSWorld's `pyautogui`, Qwen-VL's `computer_use` tool call,
//! UI-TARS-1.5's action space, AgentNet's pyautogui keyword calls), and
//! the short imperative ([`Action::describe`]) that the model presets put
//! where a model expects an "Action:" line. Each form is what the model's
//! own code writes and parses (docs/steps.md names the file and line).

use serde_json::{json, Value};

use super::action::Action;
use super::actor::{phrase, Target};
use super::convert::Convert;
use crate::spec::ActionSyntax;

/// How a `finish` action ends the task: by the session's `outcome`
/// (`success`, else `failure`), for syntaxes that report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// The session succeeded.
    Success,
    /// It ended in an error or was abandoned.
    Failure,
}

impl Finish {
    fn as_str(self) -> &'static str {
        match self {
            Finish::Success => "success",
            Finish::Failure => "failure",
        }
    }
}

/// `s` as Python's `repr` writes a string: single quotes unless it holds
/// a single quote and no double quote; `\\`, the quote, `\n`, `\r`, `\t`
/// escaped, other control characters as `\xNN`.
pub(crate) fn py_str(s: &str) -> String {
    let q = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(q);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == q => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push(q);
    out
}

/// `v` as Python's `repr` writes a float (`0.5`, `1.0`); values here are
/// in [0, 1000] with at most four decimals, so never in exponent form.
fn py_float(v: f64) -> String {
    let s = format!("{v}");
    if s.contains('.') {
        s
    } else {
        format!("{s}.0")
    }
}

/// An object of `fields`, in their order, as Python's `json.dumps` writes
/// a dict (`{"k": v, …}`).
fn py_object(fields: &[(&str, Value)]) -> String {
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}: {}", Value::String((*k).into()), py_json(v)))
        .collect();
    format!("{{{}}}", body.join(", "))
}

/// `v` as Python's `json.dumps(…, ensure_ascii=False)` writes it with its
/// default separators (`", "`, `": "`); object keys come sorted (the
/// values written here hold none; [`py_object`] keeps an order).
fn py_json(v: &Value) -> String {
    match v {
        Value::Array(a) => format!("[{}]", a.iter().map(py_json).collect::<Vec<_>>().join(", ")),
        Value::Object(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("{}: {}", Value::String(k.clone()), py_json(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

impl Action {
    /// The action written in `syntax`, coordinates in `coords`; `finish`
    /// reports `finish` where the syntax has a status.
    pub fn to_text(&self, syntax: ActionSyntax, coords: &Convert, finish: Finish) -> String {
        match syntax {
            ActionSyntax::Json => {
                let mut v = self.to_json(coords);
                if let Some(m) = v.as_object_mut() {
                    m.retain(|_, v| !v.is_null());
                }
                v.to_string()
            }
            ActionSyntax::Pyautogui => self.pyautogui(coords),
            ActionSyntax::QwenToolCall => self.qwen_tool_call(coords, finish),
            ActionSyntax::UiTars => self.ui_tars(coords),
            ActionSyntax::Opencua => self.opencua(coords, finish),
        }
    }

    fn point(&self, p: (f64, f64), coords: &Convert) -> (String, String) {
        (coords.value(p.0, 0).text(), coords.value(p.1, 1).text())
    }

    fn pyautogui(&self, coords: &Convert) -> String {
        let q = |s: &str| Value::String(s.to_string()).to_string();
        let pt = |p: (f64, f64)| {
            let (x, y) = self.point(p, coords);
            format!("x={x}, y={y}")
        };
        let at = |f: &str| match self.xy {
            Some(p) => format!("pyautogui.{f}({})", pt(p)),
            None => format!("pyautogui.{f}()"),
        };
        match self.kind {
            "click" => at("click"),
            "double_click" => at("doubleClick"),
            "right_click" => at("rightClick"),
            "drag" => match (self.xy, self.xy2) {
                (Some(a), Some(b)) => format!(
                    "pyautogui.moveTo({})\npyautogui.dragTo({}, button=\"left\")",
                    pt(a),
                    pt(b)
                ),
                _ => "# drag without points".into(),
            },
            "scroll" => {
                let (f, n) = self.scroll_clicks();
                match self.xy {
                    Some(p) => format!("pyautogui.{f}({n}, {})", pt(p)),
                    None => format!("pyautogui.{f}({n})"),
                }
            }
            "type" => format!("pyautogui.write({})", q(self.text.as_deref().unwrap_or(""))),
            "key" | "hotkey" => {
                let keys: Vec<String> = self.keys.iter().flatten().map(|k| q(k)).collect();
                let f = if self.kind == "key" {
                    "press"
                } else {
                    "hotkey"
                };
                format!("pyautogui.{f}({})", keys.join(", "))
            }
            "wait" => "WAIT".into(),
            "finish" => "DONE".into(),
            _ => self.unmapped(),
        }
    }

    /// pyautogui's scroll: `scroll` (positive up) or `hscroll` (positive
    /// right), and the signed amount.
    fn scroll_clicks(&self) -> (&'static str, i64) {
        let n = self.amount.unwrap_or(0);
        match self.direction.unwrap_or("down") {
            "up" => ("scroll", n),
            "down" => ("scroll", -n),
            "left" => ("hscroll", -n),
            _ => ("hscroll", n),
        }
    }

    fn unmapped(&self) -> String {
        format!("# unmapped event: {}", self.raw.as_deref().unwrap_or(""))
    }

    /// Qwen-VL's `computer_use` tool (Qwen3-VL `cookbooks/utils/
    /// agent_function_call.py` lines 146–226), written as qwen-agent
    /// writes a call (`nous_fncall_prompt.py` lines 59–61). A drag is a
    /// `mouse_move` to its start and a `left_click_drag` to its end (the
    /// tool's drag starts where the cursor is); a horizontal scroll is
    /// `hscroll`; `wait` carries no `time` (the recording has none).
    fn qwen_tool_call(&self, coords: &Convert, finish: Finish) -> String {
        let at = |p: (f64, f64)| json!([coords.value(p.0, 0).json(), coords.value(p.1, 1).json()]);
        let call = |action: &str, args: &[(&str, Value)]| {
            let mut a = vec![("action", json!(action))];
            a.extend(args.iter().cloned());
            let args = py_object(&a);
            let call = py_object(&[("name", json!("computer_use")), ("arguments", Value::Null)]);
            let call = call.replace("\"arguments\": null", &format!("\"arguments\": {args}"));
            format!("<tool_call>\n{call}\n</tool_call>")
        };
        let click = |action: &str| match self.xy {
            Some(p) => call(action, &[("coordinate", at(p))]),
            None => call(action, &[]),
        };
        match self.kind {
            "click" => click("left_click"),
            "double_click" => click("double_click"),
            "right_click" => click("right_click"),
            "drag" => match (self.xy, self.xy2) {
                (Some(a), Some(b)) => format!(
                    "{}\n{}",
                    call("mouse_move", &[("coordinate", at(a))]),
                    call("left_click_drag", &[("coordinate", at(b))])
                ),
                _ => self.unmapped(),
            },
            "scroll" => {
                let (f, n) = self.scroll_clicks();
                let mut args = vec![("pixels", json!(n))];
                if let Some(p) = self.xy {
                    args.insert(0, ("coordinate", at(p)));
                }
                call(f, &args)
            }
            "type" => call(
                "type",
                &[("text", json!(self.text.as_deref().unwrap_or("")))],
            ),
            "key" | "hotkey" => call(
                "key",
                &[("keys", json!(self.keys.clone().unwrap_or_default()))],
            ),
            "wait" => call("wait", &[]),
            "finish" => call("terminate", &[("status", json!(finish.as_str()))]),
            _ => self.unmapped(),
        }
    }

    /// UI-TARS-1.5's action space (ui-tars 0.5.1 `ui_tars/prompt.py`
    /// lines 14–22): points as `<point>x y</point>`, keys lower-case and
    /// space-separated, `type` content with `\\`, `'`, `"` and new lines
    /// escaped as the prompt asks.
    fn ui_tars(&self, coords: &Convert) -> String {
        let pt = |p: (f64, f64)| {
            let (x, y) = self.point(p, coords);
            format!("'<point>{x} {y}</point>'")
        };
        let at = |f: &str| match self.xy {
            Some(p) => format!("{f}(point={})", pt(p)),
            None => format!("{f}()"),
        };
        let escape = |s: &str| {
            s.replace('\\', "\\\\")
                .replace('\'', "\\'")
                .replace('"', "\\\"")
                .replace('\n', "\\n")
                .replace('\r', "\\r")
                .replace('\t', "\\t")
        };
        match self.kind {
            "click" => at("click"),
            "double_click" => at("left_double"),
            "right_click" => at("right_single"),
            "drag" => match (self.xy, self.xy2) {
                (Some(a), Some(b)) => {
                    format!("drag(start_point={}, end_point={})", pt(a), pt(b))
                }
                _ => self.unmapped(),
            },
            "scroll" => {
                let d = self.direction.unwrap_or("down");
                match self.xy {
                    Some(p) => format!("scroll(point={}, direction='{d}')", pt(p)),
                    None => format!("scroll(direction='{d}')"),
                }
            }
            "type" => format!(
                "type(content='{}')",
                escape(self.text.as_deref().unwrap_or(""))
            ),
            "key" | "hotkey" => format!(
                "hotkey(key='{}')",
                escape(
                    &self
                        .keys
                        .iter()
                        .flatten()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(" ")
                )
            ),
            "wait" => "wait()".into(),
            "finish" => "finished(content='')".into(),
            _ => self.unmapped(),
        }
    }

    /// AgentNet's actions (OpenCUA `data/data-process/src/schema/
    /// action.py` lines 185–197: keyword arguments in Python `repr`,
    /// floats rounded to 4 decimals; `computer.*` functions of
    /// lines 261–290).
    fn opencua(&self, coords: &Convert, finish: Finish) -> String {
        let num = |v: f64, axis: usize| match coords.value(v, axis) {
            super::convert::Coord::Frac(f) => py_float(f),
            c => c.text(),
        };
        let pt = |p: (f64, f64)| format!("x={}, y={}", num(p.0, 0), num(p.1, 1));
        let at = |f: &str| match self.xy {
            Some(p) => format!("pyautogui.{f}({})", pt(p)),
            None => format!("pyautogui.{f}()"),
        };
        let keys = || {
            let ks: Vec<String> = self.keys.iter().flatten().map(|k| py_str(k)).collect();
            format!("[{}]", ks.join(", "))
        };
        match self.kind {
            "click" => at("click"),
            "double_click" => at("doubleClick"),
            "right_click" => at("rightClick"),
            "drag" => match (self.xy, self.xy2) {
                (Some(a), Some(b)) => format!(
                    "pyautogui.moveTo({})\npyautogui.dragTo({}, button='left')",
                    pt(a),
                    pt(b)
                ),
                _ => self.unmapped(),
            },
            "scroll" => {
                let (f, n) = self.scroll_clicks();
                match self.xy {
                    Some(p) => format!("pyautogui.moveTo({})\npyautogui.{f}({n})", pt(p)),
                    None => format!("pyautogui.{f}({n})"),
                }
            }
            "type" => format!(
                "pyautogui.write(message={})",
                py_str(self.text.as_deref().unwrap_or(""))
            ),
            "key" => format!("pyautogui.press(keys={})", keys()),
            "hotkey" => format!("pyautogui.hotkey(keys={})", keys()),
            "wait" => "computer.wait()".into(),
            "finish" => format!("computer.terminate(status='{}')", finish.as_str()),
            _ => self.unmapped(),
        }
    }

    /// A short imperative for the action, naming its target element when
    /// the event gave one: `Click the button "Search"`, `Type "hello"`,
    /// `Press ctrl+c`, `Scroll down 3`, `Drag`, `Wait`, `Finish the task`.
    pub fn describe(&self, target: Option<&Target>) -> String {
        let on =
            |verb: &str| match target.and_then(|t| phrase(t.role.as_deref(), t.name.as_deref())) {
                Some(element) => format!("{verb} {element}"),
                None => verb.to_string(),
            };
        match self.kind {
            "click" => on("Click"),
            "double_click" => on("Double-click"),
            "right_click" => on("Right-click"),
            "drag" => on("Drag"),
            "scroll" => format!(
                "Scroll {} {}",
                self.direction.unwrap_or("down"),
                self.amount.unwrap_or(0)
            ),
            "type" => format!(
                "Type {}",
                Value::String(self.text.clone().unwrap_or_default())
            ),
            "key" | "hotkey" => format!(
                "Press {}",
                self.keys
                    .iter()
                    .flatten()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("+")
            ),
            "wait" => "Wait".into(),
            "finish" => "Finish the task".into(),
            _ => "Perform an unmapped event".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Coordinates, SmartResize};

    fn act(kind: &str, data: Value) -> Action {
        Action::from_event(kind, &data)
    }

    #[test]
    fn python_literals_match_repr() {
        assert_eq!(py_str("abc"), "'abc'");
        assert_eq!(py_str("it's"), "\"it's\"");
        assert_eq!(py_str("a'b\"c"), "'a\\'b\"c'");
        assert_eq!(py_str("a\\b\n\u{1}"), "'a\\\\b\\n\\x01'");
        assert_eq!(py_float(1.0), "1.0");
        assert_eq!(py_float(0.0), "0.0");
        assert_eq!(py_float(0.4697), "0.4697");
        assert_eq!(
            py_object(&[("b", json!([1, "é\n"])), ("a", json!(0.5))]),
            "{\"b\": [1, \"é\\n\"], \"a\": 0.5}"
        );
    }

    #[test]
    fn model_syntaxes() {
        let px = Convert::new(Coordinates::Pixels, 1000, 800).unwrap();
        let norm = Convert::new(Coordinates::Normalized, 1000, 800).unwrap();
        let k = Convert::new(Coordinates::Normalized1000, 1000, 800).unwrap();
        let sr = Convert::new(Coordinates::SmartResize(SmartResize::UI_TARS), 1000, 800).unwrap();
        let click = act("click", json!({"x": 500, "y": 400}));
        let s = Finish::Success;
        assert_eq!(
            click.to_text(ActionSyntax::QwenToolCall, &k, s),
            "<tool_call>\n{\"name\": \"computer_use\", \"arguments\": {\"action\": \"left_click\", \"coordinate\": [500, 500]}}\n</tool_call>"
        );
        assert_eq!(
            click.to_text(ActionSyntax::UiTars, &sr, s),
            "click(point='<point>504 406</point>')"
        );
        assert_eq!(
            click.to_text(ActionSyntax::Opencua, &norm, s),
            "pyautogui.click(x=0.5, y=0.5)"
        );
        let drag = act("drag", json!({"x": 0, "y": 0, "x2": 1000, "y2": 800}));
        assert_eq!(
            drag.to_text(ActionSyntax::Opencua, &norm, s),
            "pyautogui.moveTo(x=0.0, y=0.0)\npyautogui.dragTo(x=1.0, y=1.0, button='left')"
        );
        assert!(drag
            .to_text(ActionSyntax::QwenToolCall, &px, s)
            .contains("\"mouse_move\", \"coordinate\": [0, 0]}}\n</tool_call>\n<tool_call>\n{\"name\": \"computer_use\", \"arguments\": {\"action\": \"left_click_drag\", \"coordinate\": [999, 799]}}"));
        let hot = act("key", json!({"key": "ctrl+c"}));
        assert_eq!(
            hot.to_text(ActionSyntax::UiTars, &px, s),
            "hotkey(key='ctrl c')"
        );
        assert_eq!(
            hot.to_text(ActionSyntax::Opencua, &px, s),
            "pyautogui.hotkey(keys=['ctrl', 'c'])"
        );
        let typed = act("type", json!({"text": "it's \"x\"\n"}));
        assert_eq!(
            typed.to_text(ActionSyntax::UiTars, &px, s),
            "type(content='it\\'s \\\"x\\\"\\n')"
        );
        assert_eq!(
            typed.to_text(ActionSyntax::Opencua, &px, s),
            "pyautogui.write(message='it\\'s \"x\"\\n')"
        );
        let done = act("finish", json!({}));
        assert_eq!(
            done.to_text(ActionSyntax::Opencua, &px, Finish::Failure),
            "computer.terminate(status='failure')"
        );
        assert!(done
            .to_text(ActionSyntax::QwenToolCall, &px, Finish::Failure)
            .contains("{\"action\": \"terminate\", \"status\": \"failure\"}"));
        let scroll = act("scroll", json!({"dy": 3, "x": 10, "y": 20}));
        assert_eq!(
            scroll.to_text(ActionSyntax::UiTars, &px, s),
            "scroll(point='<point>10 20</point>', direction='down')"
        );
        assert!(scroll
            .to_text(ActionSyntax::QwenToolCall, &px, s)
            .contains("{\"action\": \"scroll\", \"coordinate\": [10, 20], \"pixels\": -3}"));
    }

    #[test]
    fn descriptions_name_the_target() {
        let click = act("click", json!({"x": 5, "y": 5}));
        let t = Target {
            bbox: [0.0, 0.0, 10.0, 10.0],
            role: Some("button".into()),
            name: Some("Search".into()),
        };
        assert_eq!(click.describe(Some(&t)), "Click the button \"Search\"");
        assert_eq!(click.describe(None), "Click");
        assert_eq!(
            act("key", json!({"key": "ctrl+c"})).describe(None),
            "Press ctrl+c"
        );
        assert_eq!(
            act("type", json!({"text": "hi"})).describe(None),
            "Type \"hi\""
        );
    }
}
