//! Grounding samples (`"messages": {"task": "grounding"}`): the screenshot
//! and a description of the element a click aimed at, answered with where
//! it is — the clicked point or the element's box — in the spec's
//! coordinate convention, worded as each model family's own grounding
//! prompts and answers are (docs/steps.md pins each to file and line):
//!
//! * `qwen2_5_vl`: the cookbook's "Locate …, output its bbox coordinates
//!   using JSON format." answered by a fenced `[{"bbox_2d": …, "label"}]`;
//!   points in its XML form `<points x1="…" y1="…" alt="…">…</points>`;
//! * `qwen3_vl`: the same box prompt, and "… Output the point coordinates
//!   in JSON format." answered by `[{"point_2d": …, "label"}]`;
//! * `ui_tars`: ui-tars' `GROUNDING_DOUBAO` prompt with the click as the
//!   instruction, answered `Action: click(point='<point>x y</point>')`
//!   (the prompt's action space has `click` only);
//! * `opencua`: its grounding system prompt and the bare instruction,
//!   answered by the `pyautogui` call in a python fence;
//! * `sharegpt`, `qwen_vl`: Qwen's fine-tuning form, `<image>` then
//!   "Locate … in this image and output the bbox (point) coordinates in JSON
//!   format." answered `{"bbox_2d": […]}` (`{"point_2d": […]}`).

use serde_json::Value;

use super::action::Finish;
use super::actor::phrase;
use super::turns::{generic_turns, image_path, Chat, ChatInput, ChatStep, Turn, HELPFUL_ASSISTANT};
use crate::spec::{ActionSyntax, Answer, ChatPreset, Messages};

/// UI-TARS' grounding prompt (ui-tars 0.5.1 `ui_tars/prompt.py` lines
/// 59–60, `GROUNDING_DOUBAO`), `{instruction}` open.
const UI_TARS_GROUNDING: &str = include_str!("prompts/ui_tars_grounding.txt");

/// OpenCUA's grounding system prompt (`model/README.md` lines 171–174,
/// `model/inference/huggingface_inference.py` lines 34–37).
const OPENCUA_GROUNDING_SYSTEM: &str = "You are a GUI agent. You are given a task and a screenshot of the screen. You need to perform a series of pyautogui actions to complete the task.";

/// `s` as XML text and attribute value (Qwen2.5-VL's cookbook reads the
/// points answer with `xml.etree.ElementTree`).
fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\n', "&#10;")
}

/// Whether `step` makes a grounding sample: a click (single, double or
/// right) at a point, aimed at an element the event names or gives a
/// role.
pub(crate) fn grounds(step: &ChatStep) -> bool {
    matches!(step.action.kind, "click" | "double_click" | "right_click")
        && step.action.xy.is_some()
        && step
            .target
            .as_ref()
            .is_some_and(|t| named(t.name.as_deref()) || named(t.role.as_deref()))
}

/// Whether a name or role says something (not empty or blank).
fn named(s: Option<&str>) -> bool {
    s.is_some_and(|s| !s.trim().is_empty())
}

/// The grounding sample of a step [`grounds`] accepts.
pub(crate) fn render(m: &Messages, cx: &ChatInput) -> Chat {
    let step = cx.current;
    let c = &step.convert;
    let image = image_path(cx.format, &step.key, step.image);
    let target = step.target.as_ref();
    let name = target
        .and_then(|t| t.name.as_deref())
        .filter(|s| named(Some(s)));
    let role = target
        .and_then(|t| t.role.as_deref())
        .filter(|s| named(Some(s)));
    let element = phrase(role, name).unwrap_or_else(|| "the element".into());
    let label = Value::String(name.or(role).unwrap_or("element").into()).to_string();
    let (x, y) = step.action.xy.unwrap_or_default();
    let (px, py) = (c.value(x, 0).text(), c.value(y, 1).text());
    // JSON numbers as Python's json.dumps writes them (0–1: `1.0`).
    let point = [c.value(x, 0).json(), c.value(y, 1).json()]
        .map(|v| v.to_string())
        .join(", ");
    let bbox = target.map_or([0.0; 4], |t| t.bbox);
    let bbox = (0..4)
        .map(|i| c.value(bbox[i], i % 2).json().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let fenced = |key: &str, v: &str| {
        format!("```json\n[\n\t{{\"{key}\": [{v}], \"label\": {label}}}\n]\n```")
    };
    let instruction = step.action.describe(target);
    let loss = m.loss.map(|_| true);
    let turn = |speaker: &str, text: String| -> Turn { (speaker.to_string(), text, None) };
    let system = |default: &str| m.system.clone().unwrap_or_else(|| default.to_string());
    let turns = match (m.preset, m.answer) {
        (ChatPreset::Qwen25Vl | ChatPreset::Qwen3Vl, Answer::Box) => vec![
            turn("system", system(HELPFUL_ASSISTANT)),
            turn(
                "user",
                format!("<image>Locate {element}, output its bbox coordinates using JSON format."),
            ),
            ("assistant".into(), fenced("bbox_2d", &bbox), loss),
        ],
        (ChatPreset::Qwen25Vl, Answer::Point) => {
            vec![
                turn("system", system(HELPFUL_ASSISTANT)),
                turn(
                    "user",
                    format!("<image>point to {element}, output its coordinates in XML format <points x y>object</points>"),
                ),
                (
                    "assistant".into(),
                    format!(
                        "<points x1=\"{px}\" y1=\"{py}\" alt=\"{0}\">{0}</points>",
                        xml_escape(name.or(role).unwrap_or("element"))
                    ),
                    loss,
                ),
            ]
        }
        (ChatPreset::Qwen3Vl, Answer::Point) => vec![
            turn("system", system(HELPFUL_ASSISTANT)),
            turn(
                "user",
                format!("<image>Locate {element} in this image. Output the point coordinates in JSON format."),
            ),
            ("assistant".into(), fenced("point_2d", &point), loss),
        ],
        (ChatPreset::UiTars, _) => vec![
            turn("system", system(HELPFUL_ASSISTANT)),
            turn(
                "user",
                UI_TARS_GROUNDING.replace("{instruction}", &instruction),
            ),
            turn("user", "<image>".into()),
            // The prompt's action space has `click` only, whatever the
            // click was.
            (
                "assistant".into(),
                format!("Action: click(point='<point>{px} {py}</point>')"),
                loss,
            ),
        ],
        (ChatPreset::Opencua, _) => vec![
            turn("system", system(OPENCUA_GROUNDING_SYSTEM)),
            turn("user", format!("<image>{instruction}")),
            (
                "assistant".into(),
                format!(
                    "```python\n{}\n```",
                    step.action
                        .to_text(ActionSyntax::Opencua, c, Finish::Success)
                ),
                loss,
            ),
        ],
        (ChatPreset::Sharegpt | ChatPreset::QwenVl, answer) => {
            let (what, key, v) = match answer {
                Answer::Box => ("bbox", "bbox_2d", &bbox),
                Answer::Point => ("point", "point_2d", &point),
            };
            let user = format!(
                "<image>\nLocate {element} in this image and output the {what} coordinates in JSON format."
            );
            generic_turns(m, user, format!("{{\"{key}\": [{v}]}}"))
        }
    };
    (turns, vec![image])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::action::Action;
    use crate::sample::actor::Target;
    use crate::sample::convert::Convert;
    use crate::spec::{Coordinates, Loss, SmartResize, Task};
    use crate::store::ImageFormat;
    use serde_json::json;

    fn step(kind: &str, convert: Convert, target: Option<Target>) -> ChatStep {
        let action = Action::from_event(kind, &json!({"x": 960, "y": 540}));
        ChatStep {
            step: 3,
            text: String::new(),
            action,
            convert,
            thought: None,
            target,
            key: "k".into(),
            image: ImageFormat::Png,
        }
    }

    fn button() -> Option<Target> {
        Some(Target {
            bbox: [900.0, 520.0, 1020.0, 560.0],
            role: Some("button".into()),
            name: Some("Save".into()),
        })
    }

    fn sample(preset: ChatPreset, answer: Answer, s: &ChatStep) -> Chat {
        let m = Messages {
            preset,
            system: None,
            loss: Some(Loss::Last),
            task: Task::Grounding,
            answer,
        };
        let cx = ChatInput {
            instruction: "task",
            history: &[],
            frames: &[],
            current: s,
            format: crate::spec::OutputFormat::Parquet,
        };
        render(&m, &cx)
    }

    #[test]
    fn each_family_words_its_grounding_sample() {
        // The research's worked example: 1920x1080 is 1932x1092 after
        // smart_resize (factor 28), so (960, 540) answers (966, 546).
        let sr = Convert::new(
            Coordinates::SmartResize(SmartResize::QWEN25_VL_PROCESSOR),
            1920,
            1080,
        )
        .unwrap();
        let k = Convert::new(Coordinates::Normalized1000, 1920, 1080).unwrap();
        let norm = Convert::new(Coordinates::Normalized, 1920, 1080).unwrap();
        let last = |c: &Chat| c.0.last().unwrap().1.clone();

        let q25 = sample(
            ChatPreset::Qwen25Vl,
            Answer::Box,
            &step("click", sr, button()),
        );
        assert_eq!(
            q25.0[1].1,
            "<image>Locate the button \"Save\", output its bbox coordinates using JSON format."
        );
        assert_eq!(
            last(&q25),
            "```json\n[\n\t{\"bbox_2d\": [906, 526, 1026, 566], \"label\": \"Save\"}\n]\n```"
        );
        assert_eq!(q25.0.last().unwrap().2, Some(true));
        assert_eq!(q25.1, vec!["k.png".to_string()]);
        let q25p = sample(
            ChatPreset::Qwen25Vl,
            Answer::Point,
            &step("click", sr, button()),
        );
        assert_eq!(
            last(&q25p),
            "<points x1=\"966\" y1=\"546\" alt=\"Save\">Save</points>"
        );
        let q3 = sample(
            ChatPreset::Qwen3Vl,
            Answer::Point,
            &step("click", k, button()),
        );
        assert_eq!(
            last(&q3),
            "```json\n[\n\t{\"point_2d\": [500, 500], \"label\": \"Save\"}\n]\n```"
        );
        let tars = sample(
            ChatPreset::UiTars,
            Answer::Point,
            &step("double_click", sr, button()),
        );
        assert!(tars.0[1]
            .1
            .ends_with("## User Instruction\nDouble-click the button \"Save\""));
        assert_eq!(tars.0[2].1, "<image>");
        assert_eq!(last(&tars), "Action: click(point='<point>966 546</point>')");
        let cua = sample(
            ChatPreset::Opencua,
            Answer::Point,
            &step("click", norm, button()),
        );
        assert_eq!(cua.0[0].1, OPENCUA_GROUNDING_SYSTEM);
        assert_eq!(cua.0[1].1, "<image>Click the button \"Save\"");
        assert_eq!(last(&cua), "```python\npyautogui.click(x=0.5, y=0.5)\n```");
        let px = Convert::new(Coordinates::Pixels, 1920, 1080).unwrap();
        let odd = Some(Target {
            bbox: [0.0, 0.0, 10.0, 10.0],
            role: None,
            name: Some("Save & \"Close\" <x>".into()),
        });
        let xml = sample(ChatPreset::Qwen25Vl, Answer::Point, &step("click", sr, odd));
        assert_eq!(
            last(&xml),
            "<points x1=\"966\" y1=\"546\" alt=\"Save &amp; &quot;Close&quot; &lt;x&gt;\">Save &amp; &quot;Close&quot; &lt;x&gt;</points>"
        );
        let rel = sample(
            ChatPreset::Sharegpt,
            Answer::Point,
            &step("click", norm, button()),
        );
        assert_eq!(last(&rel), "{\"point_2d\": [0.5, 0.5]}");
        let generic = sample(
            ChatPreset::QwenVl,
            Answer::Box,
            &step("click", px, button()),
        );
        assert_eq!(generic.0[0].0, "human");
        assert_eq!(last(&generic), "{\"bbox_2d\": [900, 520, 1020, 560]}");
    }

    #[test]
    fn recorded_media_tags_do_not_add_images() {
        let px = Convert::new(Coordinates::Pixels, 100, 100).unwrap();
        let tagged = Some(Target {
            bbox: [0.0, 0.0, 10.0, 10.0],
            role: Some("<video>".into()),
            name: Some("<image> here".into()),
        });
        let s = step("click", px, tagged).for_chat();
        for preset in ChatPreset::ALL {
            let answer = match preset {
                ChatPreset::UiTars | ChatPreset::Opencua => Answer::Point,
                _ => Answer::Box,
            };
            let (turns, images) = sample(preset, answer, &s);
            let tags: usize = turns.iter().map(|t| t.1.matches("<image>").count()).sum();
            assert_eq!((tags, images.len()), (1, 1), "{preset:?}");
            let all: String = turns.iter().map(|t| t.1.as_str()).collect();
            assert!(
                all.contains("[image] here") && !all.contains("<video>"),
                "{all}"
            );
        }
    }

    #[test]
    fn only_clicks_at_a_named_element_ground() {
        let px = Convert::new(Coordinates::Pixels, 100, 100).unwrap();
        assert!(grounds(&step("click", px, button())));
        assert!(grounds(&step("right_click", px, button())));
        assert!(!grounds(&step("click", px, None)));
        assert!(!grounds(&step("scroll", px, button())));
        let unnamed = Target {
            bbox: [0.0; 4],
            role: None,
            name: None,
        };
        assert!(!grounds(&step("click", px, Some(unnamed))));
        let blank = Target {
            bbox: [0.0; 4],
            role: Some(" ".into()),
            name: Some(String::new()),
        };
        assert!(!grounds(&step("click", px, Some(blank))));
    }
}
