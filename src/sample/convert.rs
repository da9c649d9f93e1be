//! Coordinate conventions of step rows: [`Coord`] (a whole number or a
//! fraction), [`Convert`] (pixels of one frame into `pixels`, `normalized`,
//! `normalized_1000` or the pixels of its `smart_resize`, clamped, rounded
//! half away from zero) and Qwen2.5-VL's [`smart_resize`] arithmetic, as
//! `qwen_vl_utils` computes it.

use serde_json::{json, Value};

use crate::spec::{Coordinates, SmartResize};

/// A coordinate in a convention: a whole number or a fraction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Coord {
    /// Pixels, 0–1000, resized pixels.
    Int(i64),
    /// 0–1, four decimals.
    Frac(f64),
}

impl Coord {
    pub(super) fn json(self) -> Value {
        match self {
            Coord::Int(n) => json!(n),
            Coord::Frac(f) => json!(f),
        }
    }

    pub(super) fn text(self) -> String {
        match self {
            Coord::Int(n) => n.to_string(),
            Coord::Frac(f) => format!("{f}"),
        }
    }

    /// As a float (for Arrow columns of fractions).
    pub fn as_f64(self) -> f64 {
        match self {
            Coord::Int(n) => n as f64,
            Coord::Frac(f) => f,
        }
    }

    /// As a whole number (for Arrow columns of integers).
    pub fn as_i64(self) -> i64 {
        match self {
            Coord::Int(n) => n,
            Coord::Frac(f) => f.round() as i64,
        }
    }
}

/// Converts pixel coordinates of one frame into a convention.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Convert {
    coords: Coordinates,
    /// The original frame's size.
    size: (u32, u32),
    /// The size the coordinates refer to (the resized image for
    /// `smart_resize`, else the original).
    target: (u32, u32),
}

impl Convert {
    /// The conversion for a `width`×`height` frame; a frame `smart_resize`
    /// refuses (an aspect ratio above 200, an empty side) is refused here
    /// too, with its message, as `qwen_vl_utils.smart_resize` refuses it.
    pub fn new(coords: Coordinates, width: u32, height: u32) -> Result<Self, String> {
        Self::resized(coords, coords.smart_resize(), width, height)
    }

    /// [`Convert::new`] for an observation resized by `resize` (relative
    /// conventions are the same on it; `smart_resize` coordinates are on
    /// their own resize, which `resize` then is).
    pub fn resized(
        coords: Coordinates,
        resize: Option<SmartResize>,
        width: u32,
        height: u32,
    ) -> Result<Self, String> {
        let target = match resize {
            Some(r) => smart_resize(width, height, r)?,
            None => (width, height),
        };
        Ok(Convert {
            coords,
            size: (width.max(1), height.max(1)),
            target,
        })
    }

    /// The size of the image the coordinates refer to.
    pub fn target(&self) -> (u32, u32) {
        self.target
    }

    /// Pixel `v` on axis `axis` (0: x, 1: y) in the convention: clamped to
    /// the image, rounded half away from zero.
    pub fn value(&self, v: f64, axis: usize) -> Coord {
        let (size, target) = if axis == 0 {
            (self.size.0, self.target.0)
        } else {
            (self.size.1, self.target.1)
        };
        let size = f64::from(size);
        match self.coords {
            Coordinates::Pixels => Coord::Int(v.round().clamp(0.0, size - 1.0) as i64),
            Coordinates::Normalized => {
                Coord::Frac(((v / size).clamp(0.0, 1.0) * 10_000.0).round() / 10_000.0)
            }
            Coordinates::Normalized1000 => {
                Coord::Int((v * 1000.0 / size).round().clamp(0.0, 1000.0) as i64)
            }
            Coordinates::SmartResize(_) => {
                let t = f64::from(target.max(1));
                Coord::Int((v * t / size).round().clamp(0.0, t - 1.0) as i64)
            }
        }
    }

    /// `v` in original pixels, clamped to the frame.
    pub fn pixel(&self, v: f64, axis: usize) -> i64 {
        let size = if axis == 0 { self.size.0 } else { self.size.1 };
        v.round().clamp(0.0, f64::from(size) - 1.0) as i64
    }
}

/// Python's `round()` on a float: half to even.
fn round_half_even(v: f64) -> f64 {
    let r = v.round();
    if (v - v.trunc()).abs() == 0.5 {
        2.0 * (v / 2.0).round()
    } else {
        r
    }
}

/// Qwen2.5-VL's `smart_resize` (`qwen_vl_utils`): the `(width, height)` a
/// `width`×`height` image is resized to — both sides multiples of
/// `factor`, the area within `[min_pixels, max_pixels]`, the aspect ratio
/// kept as well as that allows. Same float arithmetic as the Python
/// (Python's half-to-even `round`), so it gives the same sizes. Refuses
/// an aspect ratio above 200, as the Python does.
pub fn smart_resize(width: u32, height: u32, r: SmartResize) -> Result<(u32, u32), String> {
    let (w, h) = (f64::from(width), f64::from(height));
    if width == 0 || height == 0 {
        return Err(format!("cannot resize a {width}×{height} image"));
    }
    if w.max(h) / w.min(h) > 200.0 {
        return Err(format!(
            "a {width}×{height} image has an aspect ratio above 200"
        ));
    }
    let f = f64::from(r.factor);
    let (min, max) = (r.min_pixels as f64, r.max_pixels as f64);
    let mut h_bar = f.max(round_half_even(h / f) * f);
    let mut w_bar = f.max(round_half_even(w / f) * f);
    if h_bar * w_bar > max {
        let beta = ((h * w) / max).sqrt();
        h_bar = f.max((h / beta / f).floor() * f);
        w_bar = f.max((w / beta / f).floor() * f);
    } else if h_bar * w_bar < min {
        let beta = (min / (h * w)).sqrt();
        h_bar = (h * beta / f).ceil() * f;
        w_bar = (w * beta / f).ceil() * f;
    }
    Ok((w_bar as u32, h_bar as u32))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::action::{Action, Finish};
    use crate::spec::ActionSyntax;
    use serde_json::json;

    #[test]
    fn conventions_round_and_clamp() {
        let a = Action::from_event("click", &json!({"x": 999, "y": 250}));
        let n = Convert::new(Coordinates::Normalized, 1000, 500).unwrap();
        assert_eq!(
            a.to_text(ActionSyntax::Json, &n, Finish::Success),
            r#"{"type":"click","x":0.999,"y":0.5}"#
        );
        let k = Convert::new(Coordinates::Normalized1000, 1000, 500).unwrap();
        assert_eq!(
            a.to_text(ActionSyntax::Pyautogui, &k, Finish::Success),
            "pyautogui.click(x=999, y=500)"
        );
        let off = Action::from_event("click", &json!({"x": 5000, "y": -3}));
        let p = Convert::new(Coordinates::Pixels, 1000, 500).unwrap();
        assert_eq!(
            off.to_text(ActionSyntax::Pyautogui, &p, Finish::Success),
            "pyautogui.click(x=999, y=0)"
        );
    }

    #[test]
    fn smart_resize_matches_qwen() {
        // Values from qwen_vl_utils.smart_resize (Python).
        let d = SmartResize::QWEN25_VL;
        assert_eq!(smart_resize(1920, 1080, d), Ok((1316, 728)));
        assert_eq!(smart_resize(1280, 800, d), Ok((1260, 784)));
        assert_eq!(smart_resize(70, 42, d), Ok((56, 56)));
        assert_eq!(smart_resize(10, 10, d), Ok((56, 56)));
        assert!(smart_resize(1, 300, d).is_err());
    }
}
