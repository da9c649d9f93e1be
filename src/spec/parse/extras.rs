//! The `splits` and `redact` parts of a spec.

use serde_json::Value;

use super::{join, Parser};
use crate::spec::model::{Redaction, SplitKey, Splits, BUILTIN_PATTERNS};
use crate::store::json_type_name;

/// Most splits in one export.
const MAX_SPLITS: usize = 16;
/// How far the fractions' sum may be from 1.
const SUM_TOLERANCE: f64 = 1e-6;

/// The one rule for a split's fraction, for specs and `split_of` alike.
pub(crate) fn check_fraction(f: f64) -> Result<(), String> {
    if f > 0.0 && f <= 1.0 {
        Ok(())
    } else {
        Err(format!("{f} is not a fraction in (0, 1]"))
    }
}

/// The one rule for the fractions together: they add up to 1 (± 1e-6).
pub(crate) fn check_fraction_sum<'a>(
    fractions: impl IntoIterator<Item = &'a f64>,
) -> Result<(), String> {
    let sum: f64 = fractions.into_iter().sum();
    if (sum - 1.0).abs() > SUM_TOLERANCE {
        let shown = (sum * 1e6).round() / 1e6;
        return Err(format!("the fractions add up to {shown}, not 1"));
    }
    Ok(())
}
/// Most patterns in `redact.patterns`, and the longest custom regex.
const MAX_PATTERNS: usize = 64;
const MAX_PATTERN_LEN: usize = 1024;

/// Whether `name` may name a split: a Hugging Face split name and a folder
/// name at once (1 to 32 of a-z A-Z 0-9 _).
pub(crate) fn is_split_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl Parser {
    pub(super) fn splits(&mut self, v: &Value) -> Option<Splits> {
        let Some(obj) = v.as_object() else {
            self.err(
                "splits",
                format!(
                    "expected an object of split names and fractions, found {}",
                    json_type_name(v)
                ),
            );
            return None;
        };
        let before = self.errors.len();
        let mut by = SplitKey::SessionId;
        let mut salt = String::new();
        let mut parts: Vec<(String, f64)> = Vec::new();
        for (key, val) in obj {
            let path = join("splits", key);
            match key.as_str() {
                "by" => {
                    if let Some(s) = self.string(val, &path) {
                        by = self
                            .one_of(&s, &path, &SplitKey::ALL, SplitKey::as_str)
                            .unwrap_or(by);
                    }
                }
                "salt" => salt = self.string(val, &path).unwrap_or_default(),
                name if !is_split_name(name) => self.err(
                    &path,
                    "is not a split name (1 to 32 of a-z A-Z 0-9 _; `by` and `salt` are options)",
                ),
                name => match val.as_f64() {
                    Some(f) => match check_fraction(f) {
                        Ok(()) => parts.push((name.to_string(), f)),
                        Err(m) => self.err(&path, m),
                    },
                    None => self.err(
                        &path,
                        format!("expected a fraction, found {}", json_type_name(val)),
                    ),
                },
            }
        }
        if parts.is_empty() && self.errors.len() == before {
            self.err(
                "splits",
                "names no split (e.g. {\"train\": 0.9, \"val\": 0.05, \"test\": 0.05})",
            );
        }
        if parts.len() > MAX_SPLITS {
            self.err(
                "splits",
                format!("{} splits; at most {MAX_SPLITS}", parts.len()),
            );
        }
        let clean = self.errors.len() == before;
        if clean && !parts.is_empty() {
            if let Err(m) = check_fraction_sum(parts.iter().map(|(_, f)| f)) {
                self.err("splits", m);
            }
        }
        if self.errors.len() > before {
            return None;
        }
        parts.sort_by(|a, b| a.0.cmp(&b.0));
        Some(Splits { parts, by, salt })
    }

    pub(super) fn redaction(&mut self, v: &Value) -> Option<Redaction> {
        let obj = self.object(v, "redact", &["typed_text", "patterns", "rectangles"])?;
        let before = self.errors.len();
        let flag = |p: &mut Parser, name: &str| match obj.get(name) {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                p.err(
                    &join("redact", name),
                    format!("expected true or false, found {}", json_type_name(other)),
                );
                true
            }
        };
        let typed_text = flag(self, "typed_text");
        let rectangles = flag(self, "rectangles");
        let patterns = match obj.get("patterns") {
            None | Some(Value::Null) => BUILTIN_PATTERNS.iter().map(|s| s.to_string()).collect(),
            Some(v) => self.strings(v, "redact.patterns").unwrap_or_default(),
        };
        if patterns.len() > MAX_PATTERNS {
            self.err(
                "redact.patterns",
                format!("{} patterns; at most {MAX_PATTERNS}", patterns.len()),
            );
        }
        for (i, p) in patterns.iter().enumerate() {
            if BUILTIN_PATTERNS.contains(&p.as_str()) {
                continue;
            }
            let path = format!("redact.patterns[{i}]");
            if p.len() > MAX_PATTERN_LEN {
                self.err(&path, format!("longer than {MAX_PATTERN_LEN} bytes"));
                continue;
            }
            match compile_pattern(p) {
                Err(e) => self.err(
                    &path,
                    format!(
                        "is neither a pattern name ({}) nor a regex: {}",
                        BUILTIN_PATTERNS.join(", "),
                        regex_problem(&e)
                    ),
                ),
                Ok(r) if r.is_match("") => self.err(&path, "matches the empty string"),
                Ok(_) => {}
            }
        }
        (self.errors.len() == before).then_some(Redaction {
            typed_text,
            patterns,
            rectangles,
        })
    }
}

/// The most memory one compiled redaction pattern may take (its program,
/// and each of its lazy DFA caches): a pattern such as `\w{2000}` is
/// refused after this much work instead of compiling to tens of MB (the
/// crate's defaults are 10 MiB and 2 MiB). With at most 64 patterns an
/// export's redactor stays under ≈ 100 MiB.
pub(crate) const PATTERN_SIZE_LIMIT: usize = 512 << 10;

/// A caller's redaction pattern compiled within [`PATTERN_SIZE_LIMIT`]:
/// the one way the crate compiles a pattern it was given.
pub(crate) fn compile_pattern(p: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(p)
        .size_limit(PATTERN_SIZE_LIMIT)
        .dfa_size_limit(PATTERN_SIZE_LIMIT)
        .nest_limit(64)
        .build()
}

/// A regex error on one line (the crate's own text draws the pattern over
/// several lines).
pub(crate) fn regex_problem(e: &regex::Error) -> String {
    if let regex::Error::CompiledTooBig(limit) = e {
        return format!(
            "compiles to more than the {} KiB a pattern may take (repeat less, or match a shorter run)",
            limit >> 10
        );
    }
    let text = e.to_string();
    let last = text.lines().last().unwrap_or_default();
    last.strip_prefix("error: ").unwrap_or(last).to_string()
}
