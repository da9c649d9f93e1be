//! A step sample's action drawn on its observation. The sample carries the
//! action in the spec's coordinate convention (`action`), the original
//! frame's size (`width`, `height`) and the stored observation's
//! (`image_width`, `image_height`); the convention is the manifest's
//! (`resolved.step.coordinates`). Converting back here, from the
//! documented meaning of each convention and not through the exporter's
//! own code, puts the mark where the model is told the action is: with a
//! wrong convention it lands visibly off the element.

use serde_json::Value;

use crate::sample::Action;

use super::samples::Sample;

/// The action as drawn: in the observation's pixels.
pub(crate) struct Drawn {
    pub(crate) convention: String,
    pub(crate) action: Action,
    pub(crate) x: f64,
    pub(crate) y: f64,
    pub(crate) width: u32,
    pub(crate) height: u32,
}

/// The convention's name (`pixels`, `normalized`, `normalized_1000`,
/// `smart_resize`).
fn convention(resolved: &Value) -> String {
    match &resolved["step"]["coordinates"] {
        Value::String(s) => s.clone(),
        Value::Object(o) if o.contains_key("smart_resize") => "smart_resize".into(),
        _ => "pixels".into(),
    }
}

/// `v` of the convention on an axis of `original` pixels (the frame) and
/// `observed` pixels (the stored image), in observation pixels.
fn back(convention: &str, v: f64, original: f64, observed: f64) -> f64 {
    match convention {
        "normalized" => v * observed,
        "normalized_1000" => v / 1000.0 * observed,
        // Pixels of the resized observation: already the stored image's.
        "smart_resize" => v,
        // Pixels of the original frame.
        _ => v * observed / original.max(1.0),
    }
}

/// The sample's action in its observation's pixels, when it has one with
/// a point.
pub(crate) fn drawn(s: &Sample, resolved: &Value) -> Option<Drawn> {
    let num = |k: &str| s.values.get(k).and_then(Value::as_f64);
    let (w, h) = (num("width")?, num("height")?);
    let (iw, ih) = (
        num("image_width").unwrap_or(w),
        num("image_height").unwrap_or(h),
    );
    let action = s.values.get("action")?;
    let kind = action["type"].as_str()?;
    let (x, y) = (action["x"].as_f64()?, action["y"].as_f64()?);
    let conv = convention(resolved);
    let (bx, by) = (back(&conv, x, w, iw), back(&conv, y, h, ih));
    let mut data = serde_json::json!({"x": bx, "y": by});
    if let (Some(x2), Some(y2)) = (action["x2"].as_f64(), action["y2"].as_f64()) {
        data["x2"] = back(&conv, x2, w, iw).into();
        data["y2"] = back(&conv, y2, h, ih).into();
    }
    for key in ["direction", "amount", "text", "keys"] {
        if !action[key].is_null() {
            data[key] = action[key].clone();
        }
    }
    if kind == "right_click" {
        data["button"] = "right".into();
    }
    Some(Drawn {
        convention: conv,
        action: Action::from_event(kind, &data),
        x: bx,
        y: by,
        width: iw as u32,
        height: ih as u32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_convention_comes_back_to_observation_pixels() {
        assert_eq!(back("pixels", 100.0, 960.0, 960.0), 100.0);
        assert_eq!(back("pixels", 100.0, 960.0, 480.0), 50.0);
        assert_eq!(back("normalized", 0.25, 960.0, 960.0), 240.0);
        assert!((back("normalized_1000", 104.0, 960.0, 960.0) - 99.84).abs() < 1e-9);
        assert_eq!(back("smart_resize", 97.0, 960.0, 924.0), 97.0);
        let resolved =
            serde_json::json!({"step": {"coordinates": {"smart_resize": {"factor": 28}}}});
        assert_eq!(convention(&resolved), "smart_resize");
    }
}
