//! The `unit`, `coordinates`, `history`, `resize` and `messages` parts of
//! a spec, with a model preset's defaults for the fields it leaves out.

use serde_json::{Map, Value};

use super::{join, Parser};
use crate::spec::steps::{
    ActionSyntax, Answer, ChatPreset, Coordinates, History, Loss, Messages, SmartResize, StepUnit,
    Task,
};
use crate::store::json_type_name;

/// Most previous actions a row may carry.
const MAX_HISTORY_ACTIONS: i64 = 64;
/// Most previous frames a row may reference.
const MAX_HISTORY_FRAMES: i64 = 16;
/// Longest system prompt.
const MAX_SYSTEM_BYTES: usize = 16 * 1024;
/// Largest `smart_resize` factor and pixel budget.
const MAX_FACTOR: i64 = 1024;
const MAX_PIXELS: i64 = 100_000_000;

impl Parser {
    /// `unit` and, with `"unit": "step"`, its options; the options without
    /// it are errors.
    pub(super) fn step_unit(&mut self, obj: &Map<String, Value>) -> Option<Option<StepUnit>> {
        let before = self.errors.len();
        let step = match obj.get("unit") {
            None | Some(Value::Null) => false,
            Some(v) => match self.string(v, "unit")?.as_str() {
                "frame" => false,
                "step" => true,
                other => {
                    self.err("unit", format!("{other:?} is not one of: frame, step"));
                    return None;
                }
            },
        };
        if !step {
            for name in ["coordinates", "history", "resize", "messages"] {
                if obj.get(name).is_some_and(|v| !v.is_null()) {
                    self.err(name, "applies only to \"unit\": \"step\" exports");
                }
            }
            return (self.errors.len() == before).then_some(None);
        }
        // A model preset's defaults (read ahead of `messages`, which is
        // checked after the fields it defaults, in the spec's order);
        // explicit fields override them.
        let ahead = |name: &str| {
            obj.get("messages")
                .and_then(|m| m.get(name))
                .and_then(Value::as_str)
        };
        let model = ahead("preset")
            .and_then(|name| ChatPreset::ALL.into_iter().find(|p| p.as_str() == name))
            .and_then(ChatPreset::model);
        // A grounding sample is one screenshot: no history unless asked.
        let grounding = ahead("task") == Some(Task::Grounding.as_str());
        let given = |name: &str| obj.get(name).filter(|v| !v.is_null());
        let coordinates = match given("coordinates") {
            None => Some(model.map_or(Coordinates::Pixels, |d| d.coordinates)),
            Some(v) => self.coordinates(v),
        };
        let history = match given("history") {
            None if grounding => Some(History::default()),
            None => Some(model.map_or(History::default(), |d| d.history)),
            Some(v) => self.history(v),
        };
        let (messages, syntax) = match obj.get("messages") {
            None | Some(Value::Null) => (Some(None), Some(None)),
            Some(v) => match self.messages(v) {
                Some((m, s)) => (Some(Some(m)), Some(s)),
                None => (None, None),
            },
        };
        let action_syntax = syntax.map(|s| {
            s.or(model.map(|d| d.action_syntax)).unwrap_or(
                if messages.as_ref().is_some_and(Option::is_some) {
                    ActionSyntax::Pyautogui
                } else {
                    ActionSyntax::Json
                },
            )
        });
        let resize = match (given("resize"), coordinates) {
            (_, None) => None,
            (None, Some(c)) => Some(
                c.smart_resize()
                    .or_else(|| model.and_then(|d| d.resize).filter(|_| c.is_relative())),
            ),
            (Some(v), Some(c)) => self.resize(v, c),
        };
        Some(Some(StepUnit {
            coordinates: coordinates?,
            history: history?,
            messages: messages?,
            action_syntax: action_syntax?,
            resize: resize?,
        }))
    }

    /// `resize`: `"none"` or `{"smart_resize": {…}}` / `"smart_resize"`;
    /// with `pixels` coordinates (which refer to the original) it is an
    /// error, and with `smart_resize` coordinates it must be theirs.
    fn resize(&mut self, v: &Value, coords: Coordinates) -> Option<Option<SmartResize>> {
        const NAMES: &str = "none, \"smart_resize\", {\"smart_resize\": {…}}";
        let r = match v {
            Value::String(s) if s == "none" => None,
            Value::String(s) if s == "smart_resize" => Some(SmartResize::QWEN25_VL),
            Value::Object(_) => {
                let obj = self.object(v, "resize", &["smart_resize"])?;
                let Some(r) = obj.get("smart_resize") else {
                    self.err("resize", format!("expected one of: {NAMES}"));
                    return None;
                };
                Some(self.smart_resize(r, "resize.smart_resize")?)
            }
            other => {
                self.err(
                    "resize",
                    format!("expected one of: {NAMES}; found {}", json_type_name(other)),
                );
                return None;
            }
        };
        match (coords, r) {
            (Coordinates::Pixels, Some(_)) => {
                self.err(
                    "resize",
                    "\"coordinates\": \"pixels\" refer to the original frame; resize with \"coordinates\": {\"smart_resize\": …} or use a relative convention",
                );
                None
            }
            (Coordinates::SmartResize(c), r) if r != Some(c) => {
                self.err(
                    "resize",
                    "differs from coordinates.smart_resize, which is the resize the coordinates refer to (leave `resize` out)",
                );
                None
            }
            _ => Some(r),
        }
    }

    fn coordinates(&mut self, v: &Value) -> Option<Coordinates> {
        const NAMES: &str = "pixels, normalized, normalized_1000, {\"smart_resize\": {…}}";
        match v {
            Value::String(s) => match s.as_str() {
                "pixels" => Some(Coordinates::Pixels),
                "normalized" => Some(Coordinates::Normalized),
                "normalized_1000" => Some(Coordinates::Normalized1000),
                "smart_resize" => Some(Coordinates::SmartResize(SmartResize::QWEN25_VL)),
                other => {
                    self.err("coordinates", format!("{other:?} is not one of: {NAMES}"));
                    None
                }
            },
            Value::Object(_) => {
                let obj = self.object(v, "coordinates", &["smart_resize"])?;
                let Some(r) = obj.get("smart_resize") else {
                    self.err("coordinates", format!("expected one of: {NAMES}"));
                    return None;
                };
                self.smart_resize(r, "coordinates.smart_resize")
                    .map(Coordinates::SmartResize)
            }
            other => {
                self.err(
                    "coordinates",
                    format!("expected one of: {NAMES}; found {}", json_type_name(other)),
                );
                None
            }
        }
    }

    fn smart_resize(&mut self, v: &Value, path: &str) -> Option<SmartResize> {
        let d = SmartResize::QWEN25_VL;
        if v.is_null() {
            return Some(d);
        }
        let obj = self.object(v, path, &["factor", "min_pixels", "max_pixels"])?;
        let before = self.errors.len();
        let num = |p: &mut Parser, name: &str, default: i64, max: i64| match obj.get(name) {
            None | Some(Value::Null) => default,
            Some(v) => {
                let path = join(path, name);
                match p.int(v, &path, 1) {
                    Some(n) if n > max => {
                        p.err(&path, format!("{n} is above the maximum {max}"));
                        default
                    }
                    Some(n) => n,
                    None => default,
                }
            }
        };
        let factor = num(self, "factor", d.factor.into(), MAX_FACTOR);
        let min_pixels = num(self, "min_pixels", d.min_pixels as i64, MAX_PIXELS);
        let max_pixels = num(self, "max_pixels", d.max_pixels as i64, MAX_PIXELS);
        if self.errors.len() > before {
            return None;
        }
        if min_pixels > max_pixels {
            self.err(
                path,
                format!("min_pixels {min_pixels} is above max_pixels {max_pixels}"),
            );
            return None;
        }
        if max_pixels < factor * factor {
            self.err(
                &join(path, "max_pixels"),
                format!("{max_pixels} is below factor² = {}", factor * factor),
            );
            return None;
        }
        Some(SmartResize {
            factor: factor as u32,
            min_pixels: min_pixels as u64,
            max_pixels: max_pixels as u64,
        })
    }

    fn history(&mut self, v: &Value) -> Option<History> {
        let obj = self.object(v, "history", &["actions", "frames"])?;
        let before = self.errors.len();
        let count = |p: &mut Parser, name: &str, max: i64| match obj.get(name) {
            None | Some(Value::Null) => 0,
            Some(v) => {
                let path = join("history", name);
                match p.int(v, &path, 0) {
                    Some(n) if n > max => {
                        p.err(&path, format!("{n} is above the maximum {max}"));
                        0
                    }
                    Some(n) => n as u32,
                    None => 0,
                }
            }
        };
        let actions = count(self, "actions", MAX_HISTORY_ACTIONS);
        let frames = count(self, "frames", MAX_HISTORY_FRAMES);
        (self.errors.len() == before).then_some(History { actions, frames })
    }

    /// `messages`: the preset, and the action syntax if given.
    fn messages(&mut self, v: &Value) -> Option<(Messages, Option<ActionSyntax>)> {
        let obj = self.object(
            v,
            "messages",
            &[
                "preset",
                "system",
                "action_syntax",
                "loss",
                "task",
                "answer",
            ],
        )?;
        let before = self.errors.len();
        let names = ChatPreset::ALL.map(ChatPreset::as_str).join(", ");
        let preset = match obj.get("preset") {
            None | Some(Value::Null) => {
                self.err(
                    "messages.preset",
                    format!("missing required field (one of: {names})"),
                );
                None
            }
            Some(v) => self.string(v, "messages.preset").and_then(|s| {
                self.one_of(&s, "messages.preset", &ChatPreset::ALL, ChatPreset::as_str)
            }),
        };
        let system = match obj.get("system") {
            None | Some(Value::Null) => None,
            Some(v) => self.string(v, "messages.system"),
        };
        if system.as_ref().is_some_and(|s| s.len() > MAX_SYSTEM_BYTES) {
            self.err(
                "messages.system",
                format!("longer than {MAX_SYSTEM_BYTES} bytes"),
            );
        }
        let syntax = match obj.get("action_syntax") {
            None | Some(Value::Null) => None,
            Some(v) => self.string(v, "messages.action_syntax").and_then(|s| {
                self.one_of(
                    &s,
                    "messages.action_syntax",
                    &ActionSyntax::ALL,
                    ActionSyntax::as_str,
                )
            }),
        };
        let loss = match obj.get("loss") {
            None | Some(Value::Null) => None,
            Some(v) => self
                .string(v, "messages.loss")
                .and_then(|s| self.one_of(&s, "messages.loss", &Loss::ALL, Loss::as_str)),
        };
        let task = match obj.get("task") {
            None | Some(Value::Null) => Some(Task::Action),
            Some(v) => self
                .string(v, "messages.task")
                .and_then(|s| self.one_of(&s, "messages.task", &Task::ALL, Task::as_str)),
        };
        let answer = match obj.get("answer") {
            None | Some(Value::Null) => Some(Answer::Point),
            Some(_) if task == Some(Task::Action) => {
                self.err("messages.answer", "applies only to \"task\": \"grounding\"");
                None
            }
            Some(v) => self
                .string(v, "messages.answer")
                .and_then(|s| self.one_of(&s, "messages.answer", &Answer::ALL, Answer::as_str)),
        };
        if let (Some(p @ (ChatPreset::UiTars | ChatPreset::Opencua)), Some(Answer::Box)) =
            (preset, answer)
        {
            self.err(
                "messages.answer",
                format!(
                    "{} grounding answers with a point (its model clicks; docs/steps.md)",
                    p.as_str()
                ),
            );
        }
        if self.errors.len() > before {
            return None;
        }
        let preset = preset?;
        let loss = loss.or(preset.model().map(|_| Loss::Last));
        Some((
            Messages {
                preset,
                system,
                loss,
                task: task?,
                answer: answer?,
            },
            syntax,
        ))
    }
}
