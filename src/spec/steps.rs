//! The step-unit part of a spec (`"unit": "step"` with `coordinates`,
//! `history` and `messages`): one row per action with its observation, in
//! a coordinate convention a GUI-agent trainer expects.

use serde_json::{json, Value};

/// `coordinates`: the convention of the action's `x`, `y`, `x2`, `y2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coordinates {
    /// Pixels of the original frame (AndroidControl style; the default).
    Pixels,
    /// 0–1 relative, four decimals (Aguvis, OpenCUA/AgentNet, ShowUI).
    Normalized,
    /// 0–1000 relative, whole numbers (Qwen2-VL, OS-Atlas, UI-TARS-1.0).
    Normalized1000,
    /// Pixels of the observation resized by Qwen2.5-VL's `smart_resize`
    /// (Qwen2.5-VL, UI-TARS-1.5); the stored image is the resized one.
    SmartResize(SmartResize),
}

/// The budget of Qwen2.5-VL's `smart_resize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SmartResize {
    /// Both sides become multiples of it (28 for Qwen2.5-VL).
    pub factor: u32,
    /// Fewest pixels of the resized image.
    pub min_pixels: u64,
    /// Most pixels of the resized image.
    pub max_pixels: u64,
}

impl SmartResize {
    /// Qwen2.5-VL's defaults: factor 28, 56·56 to 28·28·1280 pixels.
    pub const QWEN25_VL: SmartResize = SmartResize {
        factor: 28,
        min_pixels: 3136,
        max_pixels: 1_003_520,
    };
}

impl Coordinates {
    /// The spec's form of it.
    pub fn to_json(self) -> Value {
        match self {
            Coordinates::Pixels => json!("pixels"),
            Coordinates::Normalized => json!("normalized"),
            Coordinates::Normalized1000 => json!("normalized_1000"),
            Coordinates::SmartResize(r) => json!({"smart_resize": {
                "factor": r.factor, "min_pixels": r.min_pixels, "max_pixels": r.max_pixels,
            }}),
        }
    }

    /// Whether coordinates are fractions (floating point) rather than
    /// whole numbers.
    pub fn is_fraction(self) -> bool {
        matches!(self, Coordinates::Normalized)
    }
}

/// `messages.preset`: the chat sample shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChatPreset {
    /// LLaMA-Factory's sharegpt with `role`/`content` tags:
    /// `{"messages": [...], "images": [...]}`.
    Sharegpt,
    /// Qwen-VL fine-tuning scripts: `{"image": [...], "conversations":
    /// [{"from": "human"|"gpt", "value"}]}`.
    QwenVl,
}

impl ChatPreset {
    /// Every preset.
    pub const ALL: [ChatPreset; 2] = [ChatPreset::Sharegpt, ChatPreset::QwenVl];

    /// The spec's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            ChatPreset::Sharegpt => "sharegpt",
            ChatPreset::QwenVl => "qwen_vl",
        }
    }
}

/// How an action is written as text (history, the assistant turn,
/// `action_text`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActionSyntax {
    /// The canonical action as compact JSON, keys sorted, nulls left out.
    Json,
    /// A `pyautogui` call (OSWorld's action space: `WAIT`, `DONE`).
    Pyautogui,
}

impl ActionSyntax {
    /// Every syntax.
    pub const ALL: [ActionSyntax; 2] = [ActionSyntax::Json, ActionSyntax::Pyautogui];

    /// The spec's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionSyntax::Json => "json",
            ActionSyntax::Pyautogui => "pyautogui",
        }
    }
}

/// `messages`: a chat sample per step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Messages {
    /// The shape.
    pub preset: ChatPreset,
    /// The system prompt, if any.
    pub system: Option<String>,
}

/// `history`: what of the previous steps each row carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct History {
    /// Previous actions, as text.
    pub actions: u32,
    /// Keys of previous observation frames (only frames the spec's frame
    /// sampling keeps).
    pub frames: u32,
}

/// Everything `"unit": "step"` adds to a spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepUnit {
    /// The coordinate convention.
    pub coordinates: Coordinates,
    /// The history window.
    pub history: History,
    /// Chat samples, if asked for.
    pub messages: Option<Messages>,
    /// How actions are written as text.
    pub action_syntax: ActionSyntax,
}

impl StepUnit {
    /// The resolved form the manifest records.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "coordinates": self.coordinates.to_json(),
            "history": {"actions": self.history.actions, "frames": self.history.frames},
            "action_syntax": self.action_syntax.as_str(),
        });
        if let Some(m) = &self.messages {
            v["messages"] = json!({"preset": m.preset.as_str(), "system": m.system});
        }
        v
    }
}
