//! What a chat or grounding sample is built from and made of: a step as
//! a sample sees it ([`ChatStep`], with [`ChatStep::for_chat`] making its
//! recorded text safe for chat turns), the input of one sample
//! ([`ChatInput`]), its turns and images ([`Chat`]), and the path a sample
//! gives an observation image ([`image_path`]).

use super::action::Action;
use super::actor::Target;
use super::convert::Convert;
use crate::spec::{ChatPreset, Messages, OutputFormat};
use crate::store::ImageFormat;

/// Where JSONL step exports keep the observation images.
pub const IMAGES_FOLDER: &str = "images";

/// How a step export names frame `key`'s image (format `image`): the file
/// `images/{key}.png|jpg` beside a JSON Lines export's shards, else the
/// name `{key}.png|jpg` (a WebDataset member, a Parquet/Arrow image path).
pub fn image_path(format: OutputFormat, key: &str, image: ImageFormat) -> String {
    if format == OutputFormat::Jsonl {
        format!("{IMAGES_FOLDER}/{key}.{}", image.extension())
    } else {
        format!("{key}.{}", image.extension())
    }
}

/// One step as a chat sample sees it: a previous one or the current one.
#[derive(Debug, Clone)]
pub(crate) struct ChatStep {
    /// Its number in the session, from 0.
    pub step: i64,
    /// The canonical action and its conversion.
    pub action: Action,
    pub convert: Convert,
    /// The action in the spec's syntax (`action_text`).
    pub text: String,
    /// What the actor thought, and the element it aimed at.
    pub thought: Option<String>,
    pub target: Option<Target>,
    /// Its observation frame.
    pub key: String,
    pub image: ImageFormat,
}

/// The media placeholders trainers count against a sample's images
/// (LLaMA-Factory's `<image>`, `<video>`, `<audio>`; Qwen-VL's scripts).
const MEDIA_TAGS: [&str; 3] = ["<image>", "<video>", "<audio>"];

/// `s` with the media placeholders a recording happened to contain (an
/// element named `<image>`, typed `<video>`) written as `[image]`,
/// `[video]`, `[audio]`, so a sample's `<image>` count is its image count.
pub(crate) fn defang(s: &str) -> String {
    let mut out = s.to_string();
    for tag in MEDIA_TAGS {
        if out.contains(tag) {
            out = out.replace(tag, &format!("[{}]", &tag[1..tag.len() - 1]));
        }
    }
    out
}

impl ChatStep {
    /// The step as chat text may show it: every recorded string
    /// [`defang`]ed.
    pub(crate) fn for_chat(&self) -> ChatStep {
        let mut s = self.clone();
        s.text = defang(&s.text);
        s.thought = s.thought.as_deref().map(defang);
        if let Some(t) = &mut s.target {
            t.name = t.name.as_deref().map(defang);
            t.role = t.role.as_deref().map(defang);
        }
        s.action.text = s.action.text.as_deref().map(defang);
        if let Some(keys) = &mut s.action.keys {
            for k in keys.iter_mut() {
                *k = defang(k);
            }
        }
        s
    }
}

/// A turn: speaker, text, and (with `loss`) whether it trains.
pub(crate) type Turn = (String, String, Option<bool>);

/// A chat sample: its turns and its image paths, oldest first.
pub(crate) type Chat = (Vec<Turn>, Vec<String>);

/// What a sample is built from.
pub(crate) struct ChatInput<'a> {
    /// The task.
    pub instruction: &'a str,
    /// The previous steps in the history window, oldest first.
    pub history: &'a [ChatStep],
    /// The previous sampled observation frames, oldest first.
    pub frames: &'a [(String, ImageFormat)],
    /// The step itself.
    pub current: &'a ChatStep,
    /// The export's format (image paths).
    pub format: OutputFormat,
}

/// The system prompt of Qwen's chat template when none is given (the model
/// presets without one of their own).
pub(crate) const HELPFUL_ASSISTANT: &str = "You are a helpful assistant.";

/// The turns of a one-round sample in a generic shape: `qwen_vl` puts the
/// system prompt (if any) before the user text in its `human` turn, then
/// `gpt`; `sharegpt` has a `system` turn (if any), `user`, `assistant`.
/// The answer trains when `messages.loss` is set.
pub(crate) fn generic_turns(m: &Messages, user: String, answer: String) -> Vec<Turn> {
    let loss = m.loss.map(|_| true);
    match m.preset {
        ChatPreset::QwenVl => {
            let human = match &m.system {
                Some(s) => format!("{s}\n\n{user}"),
                None => user,
            };
            vec![
                ("human".to_string(), human, None),
                ("gpt".to_string(), answer, loss),
            ]
        }
        _ => {
            let mut t = Vec::new();
            if let Some(s) = &m.system {
                t.push(("system".to_string(), s.clone(), None));
            }
            t.push(("user".to_string(), user, None));
            t.push(("assistant".to_string(), answer, loss));
            t
        }
    }
}
