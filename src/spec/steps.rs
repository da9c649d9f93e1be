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
    /// `"coordinates": "smart_resize"`'s budget: factor 28, 56·56 to
    /// 28·28·1280 pixels (the example budget of Qwen2.5-VL's README).
    pub const QWEN25_VL: SmartResize = SmartResize {
        factor: 28,
        min_pixels: 3136,
        max_pixels: 1_003_520,
    };

    /// Preset `qwen2_5_vl` (and `opencua` with `smart_resize`): factor
    /// 28, 4·28² to 16384·28² pixels — qwen-vl-utils 0.0.14
    /// `vision_process.py` lines 26–27 and 131–132 with
    /// `image_patch_size` 14, and Qwen2.5-VL's `preprocessor_config.json`.
    pub const QWEN25_VL_PROCESSOR: SmartResize = SmartResize {
        factor: 28,
        min_pixels: 3136,
        max_pixels: 12_845_056,
    };

    /// Preset `qwen3_vl`: factor 32, 4·32² to 16384·32² pixels —
    /// qwen-vl-utils 0.0.14 `vision_process.py` lines 100 and 131–132 with
    /// `image_patch_size` 16 (Qwen3-VL's README, line 424).
    pub const QWEN3_VL: SmartResize = SmartResize {
        factor: 32,
        min_pixels: 4096,
        max_pixels: 16_777_216,
    };

    /// Preset `ui_tars`: factor 28, 100·28² to 16384·28² pixels — ui-tars
    /// 0.5.1 `ui_tars/action_parser.py` lines 14–16 (UI-TARS-1.5).
    pub const UI_TARS: SmartResize = SmartResize {
        factor: 28,
        min_pixels: 78_400,
        max_pixels: 12_845_056,
    };

    /// The spec's form of it.
    pub fn to_json(self) -> Value {
        json!({"factor": self.factor, "min_pixels": self.min_pixels, "max_pixels": self.max_pixels})
    }
}

impl Coordinates {
    /// The spec's form of it.
    pub fn to_json(self) -> Value {
        match self {
            Coordinates::Pixels => json!("pixels"),
            Coordinates::Normalized => json!("normalized"),
            Coordinates::Normalized1000 => json!("normalized_1000"),
            Coordinates::SmartResize(r) => json!({ "smart_resize": r.to_json() }),
        }
    }

    /// Whether coordinates are relative to the image's size (the same on
    /// the original and on any resize of it).
    pub fn is_relative(self) -> bool {
        matches!(self, Coordinates::Normalized | Coordinates::Normalized1000)
    }

    /// The resize `smart_resize` coordinates refer to.
    pub fn smart_resize(self) -> Option<SmartResize> {
        match self {
            Coordinates::SmartResize(r) => Some(r),
            _ => None,
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
    /// Qwen2.5-VL's computer use: `computer_use` tool calls in pixels of
    /// the `smart_resize`d image (factor 28), the last 4 rounds with
    /// screenshots and older ones as "Previous actions".
    Qwen25Vl,
    /// Qwen3-VL's computer use: tool calls in 0–1000 coordinates on an
    /// image resized with factor 32, `Thought:`/`Action:` lines, the last 4
    /// rounds with screenshots, older ones as "Previous actions".
    Qwen3Vl,
    /// UI-TARS-1.5: `Thought: … Action: click(point='<point>x y</point>')`
    /// turns, the last 5 screenshots, older rounds as text.
    UiTars,
    /// OpenCUA / AgentNet: `## Thought` / `## Action` / `## Code`
    /// (pyautogui, 0–1 coordinates), 3 screenshots, 10 previous steps.
    Opencua,
}

impl ChatPreset {
    /// Every preset.
    pub const ALL: [ChatPreset; 6] = [
        ChatPreset::Sharegpt,
        ChatPreset::QwenVl,
        ChatPreset::Qwen25Vl,
        ChatPreset::Qwen3Vl,
        ChatPreset::UiTars,
        ChatPreset::Opencua,
    ];

    /// The spec's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            ChatPreset::Sharegpt => "sharegpt",
            ChatPreset::QwenVl => "qwen_vl",
            ChatPreset::Qwen25Vl => "qwen2_5_vl",
            ChatPreset::Qwen3Vl => "qwen3_vl",
            ChatPreset::UiTars => "ui_tars",
            ChatPreset::Opencua => "opencua",
        }
    }

    /// What a model preset sets unless the spec says otherwise; `None` for
    /// the two generic shapes.
    pub fn model(self) -> Option<ModelDefaults> {
        let d = |coordinates, resize, syntax, actions, frames| ModelDefaults {
            coordinates,
            resize,
            action_syntax: syntax,
            history: History { actions, frames },
        };
        Some(match self {
            ChatPreset::Sharegpt | ChatPreset::QwenVl => return None,
            ChatPreset::Qwen25Vl => d(
                Coordinates::SmartResize(SmartResize::QWEN25_VL_PROCESSOR),
                None,
                ActionSyntax::QwenToolCall,
                64,
                4,
            ),
            ChatPreset::Qwen3Vl => d(
                Coordinates::Normalized1000,
                Some(SmartResize::QWEN3_VL),
                ActionSyntax::QwenToolCall,
                64,
                4,
            ),
            ChatPreset::UiTars => d(
                Coordinates::SmartResize(SmartResize::UI_TARS),
                None,
                ActionSyntax::UiTars,
                50,
                4,
            ),
            ChatPreset::Opencua => d(Coordinates::Normalized, None, ActionSyntax::Opencua, 10, 2),
        })
    }
}

/// A model preset's defaults (docs/steps.md pins each to its source).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelDefaults {
    /// The coordinate convention.
    pub coordinates: Coordinates,
    /// The observation's resize, for relative coordinates.
    pub resize: Option<SmartResize>,
    /// How actions are written.
    pub action_syntax: ActionSyntax,
    /// Previous actions and screenshots.
    pub history: History,
}

/// `messages.loss`: which assistant turns train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Loss {
    /// Every assistant turn, history rounds included.
    All,
    /// Only the step's own action (the last assistant turn).
    Last,
}

impl Loss {
    /// Every option.
    pub const ALL: [Loss; 2] = [Loss::All, Loss::Last];

    /// The spec's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Loss::All => "all",
            Loss::Last => "last",
        }
    }
}

/// `messages.task`: what a sample teaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Task {
    /// The next action, from the task, the history and the screenshot.
    Action,
    /// Where an element is, from the screenshot and the element's
    /// description: one sample per click whose event names its target
    /// element (`data.element` with a `role` or `name`).
    Grounding,
}

impl Task {
    /// Every task.
    pub const ALL: [Task; 2] = [Task::Action, Task::Grounding];

    /// The spec's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Task::Action => "action",
            Task::Grounding => "grounding",
        }
    }
}

/// `messages.answer`: what a grounding sample answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Answer {
    /// The point the actor clicked.
    Point,
    /// The target element's box.
    Box,
}

impl Answer {
    /// Every answer.
    pub const ALL: [Answer; 2] = [Answer::Point, Answer::Box];

    /// The spec's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Answer::Point => "point",
            Answer::Box => "box",
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
    /// A Qwen-VL `computer_use` tool call:
    /// `<tool_call>\n{"name": "computer_use", "arguments": {…}}\n</tool_call>`.
    QwenToolCall,
    /// UI-TARS-1.5's action space: `click(point='<point>x y</point>')`.
    UiTars,
    /// AgentNet's pyautogui keyword calls: `pyautogui.write(message='…')`,
    /// `computer.terminate(status='success')`.
    Opencua,
}

impl ActionSyntax {
    /// Every syntax.
    pub const ALL: [ActionSyntax; 5] = [
        ActionSyntax::Json,
        ActionSyntax::Pyautogui,
        ActionSyntax::QwenToolCall,
        ActionSyntax::UiTars,
        ActionSyntax::Opencua,
    ];

    /// The spec's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionSyntax::Json => "json",
            ActionSyntax::Pyautogui => "pyautogui",
            ActionSyntax::QwenToolCall => "qwen_tool_call",
            ActionSyntax::UiTars => "ui_tars",
            ActionSyntax::Opencua => "opencua",
        }
    }
}

/// `messages`: a chat sample per step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Messages {
    /// The shape.
    pub preset: ChatPreset,
    /// The system prompt, if any (a model preset's own when not given).
    pub system: Option<String>,
    /// Whether assistant turns carry a `loss` flag, and which train
    /// (model presets: `last` unless given).
    pub loss: Option<Loss>,
    /// What the sample teaches.
    pub task: Task,
    /// A grounding sample's answer (`Point` for `Task::Action`, unused).
    pub answer: Answer,
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
    /// The resize of the observation image: the `smart_resize` of the
    /// coordinates, or one a relative convention is combined with.
    pub resize: Option<SmartResize>,
}

impl StepUnit {
    /// The resolved form the manifest records.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "coordinates": self.coordinates.to_json(),
            "history": {"actions": self.history.actions, "frames": self.history.frames},
            "action_syntax": self.action_syntax.as_str(),
        });
        if self.resize.is_some() && self.resize != self.coordinates.smart_resize() {
            v["resize"] = self
                .resize
                .map_or(json!(null), |r| json!({"smart_resize": r.to_json()}));
        }
        if let Some(m) = &self.messages {
            v["messages"] = json!({"preset": m.preset.as_str(), "system": m.system});
            if let Some(loss) = m.loss {
                v["messages"]["loss"] = json!(loss.as_str());
            }
            if m.task == Task::Grounding {
                v["messages"]["task"] = json!(m.task.as_str());
                v["messages"]["answer"] = json!(m.answer.as_str());
            }
        }
        v
    }
}
