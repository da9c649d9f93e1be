//! [`Generator`]: realistic recording bundles, deterministic in a seed.
//!
//! Each session walks one of a few business workflows (navigate, pick a row,
//! fill a form, submit, confirm) with a human, model or script actor. Frames
//! are captured on a timer and right after each action; the screen stays
//! still between actions, the pointer glides to its targets, carets blink,
//! typing changes a few pixels and navigation changes most of them. Outcomes
//! (success, error dialog, abandoned half-way), tags, memory-graph paths and
//! start times spread over 2026 vary by session. Session `i` of a seed is
//! always the same bundle.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::ImageEncoder;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use super::draft::{BundleDraft, DraftFrame};
use super::screen::{Screen, Theme};
use crate::error::Result;

/// A workflow the generator can act out.
#[derive(Debug, Clone, Copy)]
pub struct Workflow {
    /// Name, as in `session.json`.
    pub name: &'static str,
    /// Application theme.
    pub theme: Theme,
    /// Pages visited, in order (URL path segments).
    pub pages: &'static [&'static str],
    /// Memory-graph path ids this workflow's sessions may carry.
    pub paths: &'static [&'static str],
}

/// The workflows of the demo store.
pub const WORKFLOWS: [Workflow; 5] = [
    Workflow {
        name: "process_invoice",
        theme: Theme {
            accent: [33, 97, 196],
            background: [245, 246, 248],
            sidebar: [226, 230, 238],
        },
        pages: &["inbox", "invoices", "invoice", "approve"],
        paths: &["p_open_invoice", "p_approve_invoice", "p_flag_duplicate"],
    },
    Workflow {
        name: "triage_ticket",
        theme: Theme {
            accent: [120, 60, 170],
            background: [250, 248, 252],
            sidebar: [234, 228, 240],
        },
        pages: &["queue", "ticket", "assign"],
        paths: &["p_read_ticket", "p_assign_owner", "p_set_priority"],
    },
    Workflow {
        name: "update_crm_record",
        theme: Theme {
            accent: [20, 140, 110],
            background: [244, 249, 247],
            sidebar: [222, 236, 231],
        },
        pages: &["contacts", "contact", "edit"],
        paths: &["p_find_contact", "p_edit_fields"],
    },
    Workflow {
        name: "book_travel",
        theme: Theme {
            accent: [220, 110, 30],
            background: [252, 249, 245],
            sidebar: [240, 232, 222],
        },
        pages: &["search", "results", "checkout", "confirmation"],
        paths: &["p_search_flights", "p_pick_fare", "p_pay"],
    },
    Workflow {
        name: "reconcile_payments",
        theme: Theme {
            accent: [60, 70, 90],
            background: [246, 246, 246],
            sidebar: [230, 230, 232],
        },
        pages: &["ledger", "matches", "review"],
        paths: &["p_match_payment", "p_post_adjustment"],
    },
];

const TAGS: [&str; 7] = ["batch-a", "batch-b", "eu", "us", "apac", "pilot", "gold"];
const ACTORS: [&str; 3] = ["human", "model", "script"];
const OUTCOMES: [&str; 3] = ["success", "error", "abandoned"];
/// First start time: 2026-01-01T00:00:00Z, in seconds.
const SPAN_START: i64 = 1_767_225_600;
/// Start times spread over ten months.
const SPAN_SECS: i64 = 300 * 24 * 3600;

/// Deterministic generator of recording bundles.
#[derive(Debug, Clone)]
pub struct Generator {
    seed: u64,
    width: u32,
    height: u32,
    scale: f64,
}

impl Generator {
    /// A generator for `seed`, rendering 960×600 screens.
    pub fn new(seed: u64) -> Self {
        Generator {
            seed,
            width: 960,
            height: 600,
            scale: 1.0,
        }
    }

    /// Screen size in pixels (at least 640×400).
    pub fn with_size(mut self, width: u32, height: u32) -> Self {
        self.width = width.max(640);
        self.height = height.max(400);
        self
    }

    /// Scales session length (number of steps and idle time); 1.0 is the
    /// default, smaller is faster for tests.
    pub fn with_scale(mut self, scale: f64) -> Self {
        self.scale = scale.clamp(0.05, 10.0);
        self
    }

    /// Session `index` of this seed.
    pub fn session(&self, index: usize) -> BundleDraft {
        let mut rng =
            StdRng::seed_from_u64(self.seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let wf = WORKFLOWS[(index + (self.seed as usize)) % WORKFLOWS.len()];
        let outcome = OUTCOMES[index % 3];
        let actor = ACTORS[(index / 3) % 3];
        let started = SPAN_START + rng.random_range(0..SPAN_SECS);
        let started_ms = started * 1000 + rng.random_range(0..1000);
        let session_id = ulid_like(started_ms, &mut rng);
        let mut sim = Sim::new(&wf, actor, self, &mut rng);
        sim.act_out(outcome);
        let (frames, events, end_ms) = sim.finish();
        let mut tags: Vec<&str> = TAGS
            .iter()
            .copied()
            .filter(|_| rng.random_bool(0.3))
            .collect();
        if tags.is_empty() {
            tags.push(TAGS[index % TAGS.len()]);
        }
        let paths: Vec<&str> = wf
            .paths
            .iter()
            .copied()
            .filter(|_| rng.random_bool(0.5))
            .collect();
        let mut session = json!({
            "session_id": session_id,
            "workflow": wf.name,
            "outcome": outcome,
            "actor": {"kind": actor},
            "started_at": rfc3339(started_ms),
            "ended_at": rfc3339(started_ms + end_ms),
            "tags": tags,
            "paths": paths,
        });
        if actor != "script" || rng.random_bool(0.5) {
            session["actor"]["id"] = json!(format!("{actor}-{}", rng.random_range(1..20)));
        }
        session["instruction"] = json!(format!(
            "Complete the {} workflow: {}.",
            wf.name.replace('_', " "),
            wf.pages.join(" → ")
        ));
        BundleDraft {
            session,
            frames,
            events,
        }
    }

    /// Writes sessions `0..n` as bundle folders `dir/<session_id>/`, one per
    /// core at a time (memory holds a session per core), and returns their
    /// paths in index order.
    pub fn write_bundles(&self, dir: &Path, n: usize) -> Result<Vec<PathBuf>> {
        let workers = std::thread::available_parallelism()
            .map_or(2, |p| p.get())
            .min(n.max(1));
        let next = std::sync::atomic::AtomicUsize::new(0);
        let mut out: Vec<Option<PathBuf>> = vec![None; n];
        let results: Vec<Result<Vec<(usize, PathBuf)>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    scope.spawn(|| {
                        let mut done = Vec::new();
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            if i >= n {
                                return Ok(done);
                            }
                            let draft = self.session(i);
                            let path = dir.join(draft.session_id());
                            draft.write(&path)?;
                            done.push((i, path));
                        }
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        for r in results {
            for (i, p) in r? {
                out[i] = Some(p);
            }
        }
        Ok(out.into_iter().flatten().collect())
    }
}

/// `ses_` + a ULID-style id: 10 Crockford base32 characters of the start
/// millisecond, then 16 random ones.
fn ulid_like(ms: i64, rng: &mut StdRng) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let mut s = String::from("ses_");
    for i in (0..10).rev() {
        s.push(ALPHABET[((ms >> (i * 5)) & 31) as usize] as char);
    }
    for _ in 0..16 {
        s.push(ALPHABET[rng.random_range(0..32)] as char);
    }
    s
}

fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// Acts out one session: a list of screen states over time plus events,
/// sampled into frames at the end.
struct Sim<'a> {
    wf: &'a Workflow,
    gen: &'a Generator,
    rng: &'a mut StdRng,
    actor: &'a str,
    t: i64,
    screen: Screen,
    /// (time, state from that time on)
    states: Vec<(i64, Screen)>,
    events: Vec<Value>,
    capture_at: Vec<i64>,
    jpeg: bool,
    explicit_keyframes: bool,
    keyframe_at: Vec<i64>,
}

impl<'a> Sim<'a> {
    fn new(wf: &'a Workflow, actor: &'a str, gen: &'a Generator, rng: &'a mut StdRng) -> Self {
        let jpeg = actor == "human" && rng.random_bool(0.7);
        let explicit_keyframes = actor == "script" && rng.random_bool(0.5);
        let screen = Screen::new(wf.name.len() as u64 * 7919);
        let start = if rng.random_bool(0.3) {
            rng.random_range(40..400)
        } else {
            0
        };
        let mut sim = Sim {
            wf,
            gen,
            rng,
            actor,
            t: start,
            screen: screen.clone(),
            states: vec![(0, screen)],
            events: Vec::new(),
            capture_at: vec![start],
            jpeg,
            explicit_keyframes,
            keyframe_at: vec![],
        };
        if start > 0 {
            // A window-focus event recorded before the first frame.
            sim.events.push(
                json!({"t_ms": 0, "type": "focus", "action": false, "data": {"window": wf.name}}),
            );
        }
        sim
    }

    fn pace(&mut self, base: i64) -> i64 {
        let factor = match self.actor {
            "human" => 2.2,
            "model" => 1.4,
            _ => 0.5,
        };
        let jitter = self.rng.random_range(0.6..1.5);
        ((base as f64) * factor * jitter * self.gen.scale.max(0.3)) as i64 + 20
    }

    fn set(&mut self, screen: Screen) {
        self.screen = screen.clone();
        self.states.push((self.t, screen));
    }

    fn wait(&mut self, base: i64) {
        let ms = self.pace(base);
        self.idle(ms);
    }

    fn idle(&mut self, ms: i64) {
        let end = self.t + ms;
        while self.t + 530 < end {
            self.t += 530;
            if self.screen.focus.is_some() {
                let mut s = self.screen.clone();
                s.caret_on = !s.caret_on;
                self.set(s);
            }
        }
        self.t = end;
    }

    fn glide_to(&mut self, target: (u32, u32)) {
        let steps = 4;
        let dur = self.pace(300);
        let from = self.screen.pointer;
        for k in 1..=steps {
            self.t += dur / steps;
            let mut s = self.screen.clone();
            let lerp = |a: u32, b: u32| (a as i64 + (b as i64 - a as i64) * k / steps) as u32;
            s.pointer = (lerp(from.0, target.0), lerp(from.1, target.1));
            self.set(s);
        }
    }

    fn action(&mut self, kind: &str, data: Value) {
        self.t += 15;
        self.events
            .push(json!({"t_ms": self.t, "type": kind, "action": true, "data": data}));
        self.capture_at.push(self.t + 60);
    }

    fn observe(&mut self, kind: &str, data: Value) {
        self.events
            .push(json!({"t_ms": self.t, "type": kind, "action": false, "data": data}));
    }

    /// A left click at `at` on the element `role` named `name` (its box
    /// ±60×12 around the point); a model actor also records `thought`.
    fn click(&mut self, at: (u32, u32), role: &str, name: &str, thought: &str) {
        self.glide_to(at);
        let (x, y) = (at.0 as i64, at.1 as i64);
        let bbox = [(x - 60).max(0), (y - 12).max(0), x + 60, y + 12];
        let mut data = json!({
            "x": at.0, "y": at.1, "button": "left",
            "element": {"bbox": bbox, "role": role, "name": name},
        });
        if self.actor == "model" {
            data["thought"] = json!(thought);
        }
        self.action("click", data);
    }

    fn navigate(&mut self, page: usize) {
        let name = self.wf.pages[page % self.wf.pages.len()];
        let mut s = self.screen.clone();
        s.page = page as u32 + 1;
        s.typed = [0; 4];
        s.focus = None;
        s.selected_row = None;
        s.scroll = 0;
        s.dialog = None;
        self.t += self.pace(120);
        self.set(s);
        self.keyframe_at.push(self.t);
        self.observe(
            "navigate",
            json!({"url": format!("https://apps.example.com/{}/{name}", self.wf.name)}),
        );
        self.t += self.pace(200);
        self.observe("network_idle", json!({}));
    }

    fn fill_form(&mut self) {
        let fields = self.rng.random_range(1..=4usize);
        for f in 0..fields {
            let pos = self.screen.field_pos(f);
            let name = format!("Field {}", f + 1);
            let thought = format!("I need to fill in field {} of the form.", f + 1);
            self.click(pos, "textbox", &name, &thought);
            let mut s = self.screen.clone();
            s.focus = Some(f);
            self.set(s);
            let n = self.rng.random_range(3..18u32);
            let text: String = (0..n)
                .map(|_| self.rng.random_range(b'a'..=b'z') as char)
                .collect();
            if self.actor == "human" {
                // Humans type in bursts; each burst is one event.
                for chunk in text.as_bytes().chunks(5) {
                    self.t += self.pace(250);
                    let mut s = self.screen.clone();
                    s.typed[f] += chunk.len() as u32;
                    self.set(s);
                    self.action("type", json!({"text": String::from_utf8_lossy(chunk)}));
                }
            } else {
                self.t += self.pace(80);
                let mut s = self.screen.clone();
                s.typed[f] += n;
                self.set(s);
                self.action("type", json!({"text": text}));
            }
            if self.rng.random_bool(0.3) {
                self.action("key", json!({"key": "Tab"}));
            }
            self.wait(150);
        }
    }

    fn act_out(&mut self, outcome: &str) {
        let pages = self.wf.pages.len();
        let steps = ((pages as f64) * self.gen.scale.max(0.25)).ceil() as usize;
        let stop_at = match outcome {
            "abandoned" => self.rng.random_range(0..steps.max(1)),
            _ => steps,
        };
        let fail_at = (outcome == "error").then(|| self.rng.random_range(0..steps.max(1)));
        self.wait(400);
        for step in 0..steps {
            if step == stop_at {
                self.wait(3000);
                return;
            }
            let nav_target = (230 + step as u32 * 40, 60 + (step as u32 % 9) * 34);
            let page = self.wf.pages[step % self.wf.pages.len()];
            let thought = format!("The next step is the {page} page; I open it from the sidebar.");
            self.click((100, nav_target.1), "link", page, &thought);
            self.navigate(step);
            if self.rng.random_bool(0.5) {
                let row = self.rng.random_range(0..8u32);
                let name = format!("Row {}", row + 1);
                let thought = format!("Row {} is the record this task is about.", row + 1);
                self.click((700, 150 + row * 30), "row", &name, &thought);
                let mut s = self.screen.clone();
                s.selected_row = Some(row);
                self.set(s);
            }
            if self.rng.random_bool(0.3) {
                self.action("scroll", json!({"dy": 120}));
                let mut s = self.screen.clone();
                s.scroll += 120;
                self.set(s);
                self.wait(300);
            }
            self.fill_form();
            let button = self.screen.button_pos();
            self.click(
                button,
                "button",
                "Continue",
                "The form is complete, so I submit it.",
            );
            let failed = fail_at == Some(step);
            let mut s = self.screen.clone();
            s.dialog = Some(failed);
            s.focus = None;
            self.t += self.pace(150);
            self.set(s);
            self.keyframe_at.push(self.t);
            if failed {
                self.observe(
                    "error",
                    json!({"message": "Validation failed: amount does not match"}),
                );
                self.wait(1500);
                return;
            }
            self.observe("dialog_open", json!({"kind": "confirm"}));
            self.wait(500);
            self.click(
                (self.gen.width / 2 + 110, self.gen.height / 2 + 65),
                "button",
                "Confirm",
                "The dialog asks to confirm; I confirm.",
            );
            let mut s = self.screen.clone();
            s.dialog = None;
            self.t += self.pace(100);
            self.set(s);
            self.keyframe_at.push(self.t);
            self.wait(600);
        }
    }

    /// Samples frames: every capture interval, plus just after each action.
    fn finish(mut self) -> (Vec<DraftFrame>, Vec<Value>, i64) {
        let end = self.t + 200;
        let interval = match self.actor {
            "human" => 1000,
            "model" => 700,
            _ => 500,
        };
        let mut t = self.capture_at[0];
        while t < end {
            self.capture_at.push(t);
            t += interval;
        }
        self.capture_at.sort_unstable();
        self.capture_at.dedup();
        self.capture_at.retain(|&c| c <= end);
        let theme = self.wf.theme;
        let mut frames = Vec::with_capacity(self.capture_at.len());
        let mut kf_cursor = 0;
        for (i, &at) in self.capture_at.iter().enumerate() {
            let idx = self
                .states
                .partition_point(|(st, _)| *st <= at)
                .saturating_sub(1);
            let img = self.states[idx]
                .1
                .render(&theme, self.gen.width, self.gen.height);
            let (image, ext) = encode(&img, self.jpeg);
            let keyframe = self.explicit_keyframes.then(|| {
                let mut changed = i == 0;
                while kf_cursor < self.keyframe_at.len() && self.keyframe_at[kf_cursor] <= at {
                    changed = true;
                    kf_cursor += 1;
                }
                changed
            });
            frames.push(DraftFrame {
                t_ms: at,
                keyframe,
                image,
                ext,
            });
        }
        self.events.sort_by_key(|e| e["t_ms"].as_i64().unwrap_or(0));
        (frames, self.events, end)
    }
}

fn encode(img: &image::RgbImage, jpeg: bool) -> (Vec<u8>, &'static str) {
    let mut out = Cursor::new(Vec::new());
    let (w, h) = img.dimensions();
    if jpeg {
        let enc = JpegEncoder::new_with_quality(&mut out, 82);
        enc.write_image(img.as_raw(), w, h, image::ExtendedColorType::Rgb8)
            .expect("in-memory JPEG encoding cannot fail");
        (out.into_inner(), "jpg")
    } else {
        let enc =
            PngEncoder::new_with_quality(&mut out, CompressionType::Fast, FilterType::Adaptive);
        enc.write_image(img.as_raw(), w, h, image::ExtendedColorType::Rgb8)
            .expect("in-memory PNG encoding cannot fail");
        (out.into_inner(), "png")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_deterministic_and_varied() {
        let g = Generator::new(1).with_size(640, 400).with_scale(0.3);
        let a = g.session(0);
        let b = g.session(0);
        assert_eq!(a.session, b.session);
        assert_eq!(a.frames.len(), b.frames.len());
        assert_eq!(a.frames[0].image, b.frames[0].image);
        let outcomes: std::collections::BTreeSet<String> = (0..9)
            .map(|i| {
                g.session(i).session["outcome"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(outcomes.len(), 3);
        let t: Vec<i64> = a.frames.iter().map(|f| f.t_ms).collect();
        assert!(
            t.windows(2).all(|w| w[0] < w[1]),
            "frame times strictly increase"
        );
        assert!(a.events.iter().any(|e| e["action"] == true));
    }
}
