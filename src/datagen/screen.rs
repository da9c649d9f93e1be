//! A tiny GUI renderer: draws application-like screens (title bar, sidebar,
//! form fields, a data table, buttons, dialogs, a mouse pointer) from a
//! [`Screen`] state. Rendering is deterministic in the state, and small state
//! changes (a typed character, a moved pointer) change few pixels while
//! navigation redraws most of the screen, which is what frame sampling and
//! keyframe detection need to be exercised on.

use image::{Rgb, RgbImage};

/// Colour theme of one application.
#[derive(Debug, Clone, Copy)]
pub struct Theme {
    /// Title bar colour.
    pub accent: [u8; 3],
    /// Page background.
    pub background: [u8; 3],
    /// Sidebar background.
    pub sidebar: [u8; 3],
}

/// Everything that decides how a frame looks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Screen {
    /// Which application page is shown (decides the layout).
    pub page: u32,
    /// Seed of the page's layout (stable per workflow and page).
    pub layout_seed: u64,
    /// Characters typed into each form field.
    pub typed: [u32; 4],
    /// Focused form field.
    pub focus: Option<usize>,
    /// Selected table row.
    pub selected_row: Option<u32>,
    /// Vertical scroll offset of the main panel, in pixels.
    pub scroll: u32,
    /// A dialog is open (`Some(true)` = error dialog).
    pub dialog: Option<bool>,
    /// Mouse pointer position.
    pub pointer: (u32, u32),
    /// Caret blink phase.
    pub caret_on: bool,
}

impl Screen {
    /// The first screen of a session.
    pub fn new(layout_seed: u64) -> Self {
        Screen {
            page: 0,
            layout_seed,
            typed: [0; 4],
            focus: None,
            selected_row: None,
            scroll: 0,
            dialog: None,
            pointer: (400, 300),
            caret_on: true,
        }
    }

    /// Screen position of form field `i` (for pointer moves).
    pub fn field_pos(&self, i: usize) -> (u32, u32) {
        (330, 130 + i as u32 * 56)
    }

    /// Screen position of the primary button.
    pub fn button_pos(&self) -> (u32, u32) {
        (330, 370)
    }

    /// Renders the screen.
    pub fn render(&self, theme: &Theme, width: u32, height: u32) -> RgbImage {
        let mut c = Canvas::new(width, height, theme.background);
        let mut rng = Lcg(self.layout_seed ^ u64::from(self.page).wrapping_mul(0x9E37_79B9));
        // Title bar with app name and window buttons.
        c.rect(0, 0, width, 36, theme.accent);
        c.text(16, 12, 18, [250, 250, 250], &mut rng);
        for i in 0..3 {
            c.rect(
                width.saturating_sub(28 + i * 22),
                12,
                12,
                12,
                [235, 235, 235],
            );
        }
        // Sidebar navigation; the current page is highlighted.
        c.rect(0, 36, 200, height, theme.sidebar);
        for i in 0..9u32 {
            let y = 56 + i * 34;
            if i == self.page % 9 {
                c.rect(8, y - 6, 184, 26, shade(theme.accent, 60));
            }
            c.text(24, y, 10 + (i * 7 % 9), [60, 60, 70], &mut rng);
        }
        // Main panel: heading, form, table, button; shifted by scroll.
        let top = 60i64 - i64::from(self.scroll);
        // Each page has its own banner (colour and place), so navigating
        // changes the screen materially.
        if self.page > 0 {
            let tone = shade(theme.accent, (self.page * 37 % 80) as u8);
            let (bx, bw) = if self.page.is_multiple_of(2) {
                (220, width / 3)
            } else {
                (width / 2, width / 2 - 20)
            };
            let by = if self.page.is_multiple_of(3) {
                top + 330
            } else {
                top - 20
            };
            c.rect_at(i64::from(bx), by, bw, height / 4, tone);
        }
        c.text_at(230, top, 22, [30, 30, 40], &mut rng);
        for f in 0..4usize {
            let (_, fy) = self.field_pos(f);
            let y = fy as i64 - 70 + top;
            c.text_at(230, y, 8 + (f as u32 * 3), [90, 90, 100], &mut rng);
            let border = if self.focus == Some(f) {
                theme.accent
            } else {
                [190, 190, 200]
            };
            c.rect_at(230, y + 18, 340, 28, border);
            c.rect_at(232, y + 20, 336, 24, [255, 255, 255]);
            let chars = self.typed[f].min(40);
            for k in 0..chars {
                c.rect_at(238 + i64::from(k) * 8, y + 27, 6, 10, [40, 40, 40]);
            }
            if self.focus == Some(f) && self.caret_on {
                c.rect_at(238 + i64::from(chars) * 8, y + 24, 2, 16, [0, 0, 0]);
            }
        }
        let (bx, by) = self.button_pos();
        c.rect_at(
            i64::from(bx) - 100,
            i64::from(by) - 14 + top - 60,
            140,
            32,
            theme.accent,
        );
        // Data table on the right.
        let rows = 8 + (rng.next() % 10) as u32;
        for r in 0..rows {
            let y = top + 80 + i64::from(r) * 30;
            let bg = if self.selected_row == Some(r) {
                shade(theme.accent, 90)
            } else if r % 2 == 0 {
                [248, 248, 250]
            } else {
                [238, 239, 243]
            };
            c.rect_at(600, y, width.saturating_sub(620), 28, bg);
            for col in 0..4 {
                c.text_at(
                    610 + i64::from(col) * 80,
                    y + 9,
                    3 + (rng.next() % 6) as u32,
                    [70, 70, 80],
                    &mut rng,
                );
            }
        }
        if let Some(is_error) = self.dialog {
            c.dim();
            let (dw, dh) = (360, 180);
            let (dx, dy) = ((width - dw) / 2, (height - dh) / 2);
            c.rect(dx, dy, dw, dh, [252, 252, 252]);
            let bar = if is_error {
                [200, 40, 40]
            } else {
                theme.accent
            };
            c.rect(dx, dy, dw, 30, bar);
            c.text(dx + 20, dy + 60, 24, [50, 50, 50], &mut rng);
            c.text(dx + 20, dy + 84, 18, [50, 50, 50], &mut rng);
            c.rect(dx + dw - 120, dy + dh - 46, 100, 30, bar);
        }
        c.pointer(self.pointer);
        c.img
    }
}

fn shade(c: [u8; 3], towards_white: u8) -> [u8; 3] {
    c.map(|v| v.saturating_add(((255 - u16::from(v)) * u16::from(towards_white) / 100) as u8))
}

/// A small deterministic generator for layout details.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

struct Canvas {
    img: RgbImage,
}

impl Canvas {
    fn new(w: u32, h: u32, bg: [u8; 3]) -> Self {
        Canvas {
            img: RgbImage::from_pixel(w, h, Rgb(bg)),
        }
    }

    fn rect(&mut self, x: u32, y: u32, w: u32, h: u32, color: [u8; 3]) {
        self.rect_at(i64::from(x), i64::from(y), w, h, color);
    }

    fn rect_at(&mut self, x: i64, y: i64, w: u32, h: u32, color: [u8; 3]) {
        let (iw, ih) = (i64::from(self.img.width()), i64::from(self.img.height()));
        let (x0, y0) = (x.clamp(0, iw), y.clamp(0, ih));
        let (x1, y1) = (
            (x + i64::from(w)).clamp(0, iw),
            (y + i64::from(h)).clamp(0, ih),
        );
        let stride = self.img.width() as usize * 3;
        let buf: &mut [u8] = &mut self.img;
        for yy in y0..y1 {
            let row = &mut buf[yy as usize * stride..(yy as usize + 1) * stride];
            for px in row[x0 as usize * 3..x1 as usize * 3].chunks_exact_mut(3) {
                px.copy_from_slice(&color);
            }
        }
    }

    /// A line of "text": `words` blocks of glyph-sized marks.
    fn text(&mut self, x: u32, y: u32, glyphs: u32, color: [u8; 3], rng: &mut Lcg) {
        self.text_at(i64::from(x), i64::from(y), glyphs, color, rng);
    }

    fn text_at(&mut self, x: i64, y: i64, glyphs: u32, color: [u8; 3], rng: &mut Lcg) {
        let mut cx = x;
        for _ in 0..glyphs {
            let r = rng.next();
            if r.is_multiple_of(6) {
                cx += 5; // a space
                continue;
            }
            let h = 7 + (r % 4) as u32;
            self.rect_at(cx, y + 10 - i64::from(h), 5, h, color);
            cx += 7;
        }
    }

    fn dim(&mut self) {
        for p in self.img.pixels_mut() {
            p.0 = p.0.map(|v| v / 2);
        }
    }

    fn pointer(&mut self, (px, py): (u32, u32)) {
        for dy in 0..14u32 {
            for dx in 0..=dy / 2 {
                let (x, y) = (px + dx, py + dy);
                if x < self.img.width() && y < self.img.height() {
                    let edge = dx == 0 || dx == dy / 2 || dy == 13;
                    let v = if edge { 0 } else { 255 };
                    self.img.put_pixel(x, y, Rgb([v, v, v]));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const THEME: Theme = Theme {
        accent: [30, 90, 200],
        background: [245, 246, 248],
        sidebar: [228, 231, 238],
    };

    #[test]
    fn typing_changes_little_navigation_changes_much() {
        let a = Screen::new(7);
        let mut typed = a.clone();
        typed.typed[1] = 3;
        let mut nav = a.clone();
        nav.page = 3;
        let diff =
            |x: &RgbImage, y: &RgbImage| x.pixels().zip(y.pixels()).filter(|(p, q)| p != q).count();
        let (ia, it, inav) = (
            a.render(&THEME, 640, 400),
            typed.render(&THEME, 640, 400),
            nav.render(&THEME, 640, 400),
        );
        assert!(diff(&ia, &it) < 1_000);
        assert!(diff(&ia, &inav) > 5_000);
        assert_eq!(ia, a.render(&THEME, 640, 400), "rendering is deterministic");
    }
}
