//! The actor's fields of an event's `data`, checked at sealing where
//! present: `thought` (the actor's reasoning) and `element` (the target of
//! the action), with errors naming `events.jsonl`, the line and the field
//! path (`data.element.bbox[2]`). Every other `data` field is the
//! recorder's own and passes as it is.

use serde_json::Value;

use super::bundle::{MAX_ELEMENT_TEXT_BYTES, MAX_THOUGHT_BYTES};
use super::bundle_reader::{BundleReader, Fields, EVENTS_FILE};
use crate::error::BundleError;

impl BundleReader<'_> {
    /// The two `data` fields the product reads itself, checked where
    /// present: `thought` (the actor's reasoning, a string of at most
    /// [`MAX_THOUGHT_BYTES`]) and `element` (the target of the action:
    /// `{bbox: [x1, y1, x2, y2]` in frame pixels, `role`?, `name`?`}`).
    /// Every other `data` field is the recorder's own and passes as it is.
    pub(super) fn actor_fields(&self, lineno: usize, data: &Value) -> Result<(), BundleError> {
        let Some(map) = data.as_object() else {
            return Ok(());
        };
        let obj = Fields::new(self, EVENTS_FILE, Some(lineno), data, "data")?;
        if let Some(t) = obj.optional_str("thought")? {
            if t.len() > MAX_THOUGHT_BYTES {
                return Err(obj.field_err(
                    "thought",
                    format!(
                        "{} bytes, longer than the {MAX_THOUGHT_BYTES} accepted",
                        t.len()
                    ),
                ));
            }
        }
        let Some(element) = map.get("element").filter(|v| !v.is_null()) else {
            return Ok(());
        };
        let el = Fields::new(self, EVENTS_FILE, Some(lineno), element, "data.element")?;
        el.deny_unknown(&["bbox", "role", "name"])?;
        for name in ["role", "name"] {
            if el
                .optional_str(name)?
                .is_some_and(|s| s.len() > MAX_ELEMENT_TEXT_BYTES)
            {
                return Err(el.field_err(
                    name,
                    format!("longer than the {MAX_ELEMENT_TEXT_BYTES} bytes accepted"),
                ));
            }
        }
        let bbox = el.required("bbox")?;
        let expected = "a list of four numbers [x1, y1, x2, y2] in frame pixels";
        let corners: Vec<f64> = match bbox.as_array() {
            Some(items) if items.len() == 4 => items
                .iter()
                .enumerate()
                .map(|(i, v)| match v.as_f64() {
                    Some(n) if n >= 0.0 => Ok(n),
                    Some(n) => Err(el.field_err(&format!("bbox[{i}]"), format!("{n} is negative"))),
                    None => Err(el.mistyped(&format!("bbox[{i}]"), "a number", v)),
                })
                .collect::<Result<_, _>>()?,
            _ => return Err(el.mistyped("bbox", expected, bbox)),
        };
        if corners[0] > corners[2] || corners[1] > corners[3] {
            return Err(el.field_err(
                "bbox",
                format!("{bbox} has x1 > x2 or y1 > y2 (expected [left, top, right, bottom])"),
            ));
        }
        Ok(())
    }
}
