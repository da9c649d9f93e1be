//! The `unit`, `coordinates`, `history` and `messages` parts of a spec.

use serde_json::{Map, Value};

use super::{join, Parser};
use crate::spec::steps::{
    ActionSyntax, ChatPreset, Coordinates, History, Messages, SmartResize, StepUnit,
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
            for name in ["coordinates", "history", "messages"] {
                if obj.get(name).is_some_and(|v| !v.is_null()) {
                    self.err(name, "applies only to \"unit\": \"step\" exports");
                }
            }
            return (self.errors.len() == before).then_some(None);
        }
        let coordinates = match obj.get("coordinates") {
            None | Some(Value::Null) => Some(Coordinates::Pixels),
            Some(v) => self.coordinates(v),
        };
        let history = match obj.get("history") {
            None | Some(Value::Null) => Some(History::default()),
            Some(v) => self.history(v),
        };
        let (messages, action_syntax) = match obj.get("messages") {
            None | Some(Value::Null) => (Some(None), Some(ActionSyntax::Json)),
            Some(v) => match self.messages(v) {
                Some((m, s)) => (Some(Some(m)), Some(s)),
                None => (None, None),
            },
        };
        Some(Some(StepUnit {
            coordinates: coordinates?,
            history: history?,
            messages: messages?,
            action_syntax: action_syntax?,
        }))
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
                self.smart_resize(r).map(Coordinates::SmartResize)
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

    fn smart_resize(&mut self, v: &Value) -> Option<SmartResize> {
        const PATH: &str = "coordinates.smart_resize";
        let d = SmartResize::QWEN25_VL;
        if v.is_null() {
            return Some(d);
        }
        let obj = self.object(v, PATH, &["factor", "min_pixels", "max_pixels"])?;
        let before = self.errors.len();
        let num = |p: &mut Parser, name: &str, default: i64, max: i64| match obj.get(name) {
            None | Some(Value::Null) => default,
            Some(v) => {
                let path = join(PATH, name);
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
                PATH,
                format!("min_pixels {min_pixels} is above max_pixels {max_pixels}"),
            );
            return None;
        }
        if max_pixels < factor * factor {
            self.err(
                &join(PATH, "max_pixels"),
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

    fn messages(&mut self, v: &Value) -> Option<(Messages, ActionSyntax)> {
        let obj = self.object(v, "messages", &["preset", "system", "action_syntax"])?;
        let before = self.errors.len();
        let preset = match obj.get("preset") {
            None | Some(Value::Null) => {
                self.err(
                    "messages.preset",
                    "missing required field (sharegpt or qwen_vl)",
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
            None | Some(Value::Null) => Some(ActionSyntax::Pyautogui),
            Some(v) => self.string(v, "messages.action_syntax").and_then(|s| {
                self.one_of(
                    &s,
                    "messages.action_syntax",
                    &ActionSyntax::ALL,
                    ActionSyntax::as_str,
                )
            }),
        };
        if self.errors.len() > before {
            return None;
        }
        Some((
            Messages {
                preset: preset?,
                system,
            },
            syntax?,
        ))
    }
}
