//! Actions drawn on their frame: an SVG laid over the screenshot, in the
//! frame's own pixel coordinates (its `viewBox` is the image size, so it
//! lands on the right pixel at any display size). A click is a ring with a
//! solid dot of its button's colour at the exact point, a drag an arrow
//! from its start to its end, a scroll an arrow in its direction, typed
//! text and key chords a label; every mark carries `data-kind`, `data-x`
//! and `data-y` for a person's inspector (and the browser tests).

use crate::sample::Action;

use super::page::esc;

/// Colour of a click's dot, by kind.
pub(crate) fn click_colour(kind: &str) -> &'static str {
    match kind {
        "right_click" => "#00b0ff",
        "double_click" => "#ff8c00",
        _ => "#ff00ff",
    }
}

const LINE: &str = "#ff00ff";

/// The overlay of `actions` on a `width` × `height` frame shown
/// `display_width` pixels wide.
pub(crate) fn svg(actions: &[Action], width: u32, height: u32, display_width: u32) -> String {
    let (w, h) = (width.max(1) as f64, height.max(1) as f64);
    // Marks keep their on-screen size whatever the scale.
    let unit = w / display_width.max(1) as f64;
    let display_height = (h / unit).round();
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{display_width}\" height=\"{display_height}\" \
         viewBox=\"0 0 {w} {h}\" class=overlay>\
         <defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"8\" refY=\"5\" markerWidth=\"6\" \
         markerHeight=\"6\" orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"{LINE}\"/></marker></defs>"
    );
    let mut label_row = 0.0;
    let mut label = |out: &mut String, kind: &str, text: &str| {
        label_row += 1.0;
        let y = label_row * 18.0 * unit;
        out.push_str(&format!(
            "<g data-kind=\"{kind}\"><rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#1d2330\" opacity=\"0.8\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"{:.1}\" fill=\"#fff\" font-family=\"sans-serif\">{}</text></g>",
            4.0 * unit,
            y - 13.0 * unit,
            (text.chars().count() as f64 * 7.5 + 12.0) * unit,
            17.0 * unit,
            8.0 * unit,
            y,
            12.0 * unit,
            esc(text)
        ));
    };
    for a in actions {
        match a.kind {
            "click" | "double_click" | "right_click" => {
                if let Some((x, y)) = a.xy {
                    out.push_str(&format!(
                        "<g data-kind=\"{kind}\" data-x=\"{x}\" data-y=\"{y}\">\
                         <circle cx=\"{x}\" cy=\"{y}\" r=\"{:.1}\" fill=\"none\" stroke=\"{c}\" stroke-width=\"{:.1}\"/>\
                         <circle cx=\"{x}\" cy=\"{y}\" r=\"{:.1}\" fill=\"{c}\"/></g>",
                        14.0 * unit,
                        3.0 * unit,
                        5.0 * unit,
                        kind = a.kind,
                        c = click_colour(a.kind),
                    ));
                }
            }
            "drag" => {
                if let (Some((x, y)), Some((x2, y2))) = (a.xy, a.xy2) {
                    out.push_str(&format!(
                        "<g data-kind=\"drag\" data-x=\"{x}\" data-y=\"{y}\" data-x2=\"{x2}\" data-y2=\"{y2}\">\
                         <line x1=\"{x}\" y1=\"{y}\" x2=\"{x2}\" y2=\"{y2}\" stroke=\"{LINE}\" stroke-width=\"{:.1}\" marker-end=\"url(#arrow)\"/>\
                         <circle cx=\"{x}\" cy=\"{y}\" r=\"{:.1}\" fill=\"{LINE}\"/></g>",
                        3.0 * unit,
                        5.0 * unit,
                    ));
                }
            }
            "scroll" => {
                let (x, y) = a.xy.unwrap_or((w / 2.0, h / 2.0));
                let len = 40.0 * unit;
                let (dx, dy) = match a.direction {
                    Some("up") => (0.0, -len),
                    Some("left") => (-len, 0.0),
                    Some("right") => (len, 0.0),
                    _ => (0.0, len),
                };
                out.push_str(&format!(
                    "<g data-kind=\"scroll\" data-x=\"{x}\" data-y=\"{y}\" data-direction=\"{}\">\
                     <line x1=\"{x}\" y1=\"{y}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"{LINE}\" stroke-width=\"{:.1}\" marker-end=\"url(#arrow)\"/></g>",
                    a.direction.unwrap_or("down"),
                    x + dx,
                    y + dy,
                    4.0 * unit,
                ));
                let text = format!(
                    "scroll {} {}",
                    a.direction.unwrap_or("down"),
                    a.amount.unwrap_or(0)
                );
                label(&mut out, "scroll-label", &text);
            }
            "type" => {
                let text = format!("typed: {}", a.text.as_deref().unwrap_or(""));
                label(&mut out, "type", &text);
            }
            "key" | "hotkey" => {
                let text = format!("keys: {}", a.keys.as_deref().unwrap_or(&[]).join("+"));
                label(&mut out, a.kind, &text);
            }
            _ => {}
        }
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_click_is_a_dot_at_its_point_in_frame_pixels() {
        let a = Action::from_event("click", &json!({"x": 120, "y": 45, "button": "right"}));
        let s = svg(&[a], 640, 360, 320);
        assert!(s.contains("viewBox=\"0 0 640 360\""), "{s}");
        assert!(s.contains("width=\"320\" height=\"180\""), "{s}");
        assert!(
            s.contains("data-kind=\"right_click\" data-x=\"120\" data-y=\"45\""),
            "{s}"
        );
        assert!(s.contains("fill=\"#00b0ff\""), "{s}");
    }

    #[test]
    fn drags_scrolls_text_and_keys_are_drawn() {
        let actions = [
            Action::from_event("drag", &json!({"x": 1, "y": 2, "x2": 30, "y2": 40})),
            Action::from_event("scroll", &json!({"dy": -3})),
            Action::from_event("type", &json!({"text": "<b>hi</b>"})),
            Action::from_event("hotkey", &json!({"keys": ["ctrl", "c"]})),
        ];
        let s = svg(&actions, 100, 100, 100);
        assert!(s.contains(
            "data-kind=\"drag\" data-x=\"1\" data-y=\"2\" data-x2=\"30\" data-y2=\"40\""
        ));
        assert!(s.contains("data-direction=\"up\""));
        assert!(s.contains("typed: &lt;b&gt;hi&lt;/b&gt;"));
        assert!(s.contains("keys: ctrl+c"));
    }
}
