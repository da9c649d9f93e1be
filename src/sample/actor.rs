//! What the actor thought and aimed at, read from an action event's
//! `data`: `thought` (its reasoning, a string) and `element` (the target:
//! `{bbox: [x1, y1, x2, y2]` in frame pixels, `role`?, `name`?`}`). Sealing
//! checks both (`store/bundle_reader.rs`); a store sealed before that may
//! hold other shapes, which read as absent here rather than failing.

use serde_json::Value;

/// The target element of an action.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// `[x1, y1, x2, y2]` in pixels of the original frame.
    pub bbox: [f64; 4],
    /// The element's role (`button`, `link`, …), if given.
    pub role: Option<String>,
    /// The element's accessible name, if given.
    pub name: Option<String>,
}

/// How an element is named in text: `the {role} "{name}"`, `"{name}"` or
/// `the {role}` (the name JSON-quoted); `None` without either.
pub(super) fn phrase(role: Option<&str>, name: Option<&str>) -> Option<String> {
    let quoted = |n: &str| Value::String(n.into()).to_string();
    match (role, name) {
        (Some(r), Some(n)) => Some(format!("the {r} {}", quoted(n))),
        (None, Some(n)) => Some(quoted(n)),
        (Some(r), None) => Some(format!("the {r}")),
        (None, None) => None,
    }
}

/// `data.thought`, if it is a string.
pub(super) fn thought(data: &Value) -> Option<String> {
    data.get("thought")?.as_str().map(str::to_string)
}

/// `data.element`, if it is one (four non-negative numbers, ordered).
pub(super) fn target(data: &Value) -> Option<Target> {
    let el = data.get("element")?;
    let b = el.get("bbox")?.as_array()?;
    if b.len() != 4 {
        return None;
    }
    let mut bbox = [0.0; 4];
    for (slot, v) in bbox.iter_mut().zip(b) {
        *slot = v.as_f64().filter(|n| *n >= 0.0)?;
    }
    if bbox[0] > bbox[2] || bbox[1] > bbox[3] {
        return None;
    }
    let text = |k: &str| el.get(k).and_then(Value::as_str).map(str::to_string);
    Some(Target {
        bbox,
        role: text("role"),
        name: text("name"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_checked_shapes_and_ignores_others() {
        let d = json!({"thought": "go", "element": {"bbox": [1, 2, 3.5, 4], "name": "OK"}});
        assert_eq!(thought(&d).as_deref(), Some("go"));
        let t = target(&d).unwrap();
        assert_eq!(t.bbox, [1.0, 2.0, 3.5, 4.0]);
        assert_eq!((t.role, t.name.as_deref()), (None, Some("OK")));
        assert_eq!(thought(&json!({"thought": 1})), None);
        assert_eq!(target(&json!({"element": {"bbox": [3, 0, 1, 1]}})), None);
        assert_eq!(target(&json!({"element": {"bbox": [0, 0, 1]}})), None);
        assert_eq!(target(&json!(null)), None);
    }
}
