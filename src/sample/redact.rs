//! Typed-text redaction: [`Redactor`] masks what its patterns match
//! (`email`, `credit_card` with a Luhn check, `phone`, `iban` with its
//! mod-97 check, or any custom regex) with `[REDACTED:<pattern>]`, and
//! `redact_text(text, pattern, …)` is the same in SQL. An export's `redact`
//! spec runs it over every string inside every event's `data` and over
//! typing runs (`runs.rs`), and paints redaction rectangles (`paint.rs`).

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, LazyLock, Mutex};

use arrow::array::{Array, AsArray, StringBuilder};
use arrow::datatypes::DataType;
use datafusion::common::{exec_err, Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use regex::Regex;

use crate::spec::{compile_pattern, regex_problem, BUILTIN_PATTERNS};

/// A check a built-in pattern's candidate must pass besides the regex.
type Validator = fn(&str) -> bool;

struct Rule {
    label: String,
    regex: Regex,
    valid: Option<Validator>,
}

/// Masks pattern matches in text.
pub struct Redactor {
    rules: Vec<Rule>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let labels: Vec<&str> = self.rules.iter().map(|r| r.label.as_str()).collect();
        f.debug_struct("Redactor").field("rules", &labels).finish()
    }
}

fn digits(s: &str) -> Vec<u32> {
    s.chars().filter_map(|c| c.to_digit(10)).collect()
}

/// The Luhn checksum of a card number (13 to 19 digits).
fn luhn(s: &str) -> bool {
    let d = digits(s);
    if !(13..=19).contains(&d.len()) {
        return false;
    }
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &x)| {
            if i % 2 == 1 {
                let y = x * 2;
                if y > 9 {
                    y - 9
                } else {
                    y
                }
            } else {
                x
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// The ISO 13616 check: the rearranged number mod 97 is 1.
fn iban_check(s: &str) -> bool {
    let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if !(15..=34).contains(&compact.len()) {
        return false;
    }
    let (head, tail) = compact.split_at(4);
    let mut rem: u64 = 0;
    for c in tail.chars().chain(head.chars()) {
        let v = match c.to_digit(36) {
            Some(v) => v as u64,
            None => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

/// 7 to 15 digits, as E.164 allows.
fn phone_digits(s: &str) -> bool {
    (7..=15).contains(&digits(s).len())
}

fn builtin(name: &str) -> Option<(&'static str, Option<Validator>)> {
    Some(match name {
        "email" => (
            r"(?i)\b[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}\b",
            None,
        ),
        "credit_card" => (r"\b\d(?:[ -]?\d){12,18}\b", Some(luhn)),
        // An international prefix or a separator between digit groups is
        // required, so plain numbers (ids, amounts, dates) do not match.
        "phone" => (
            r"(?:\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]?\d{2,4}){1,3}|\(\d{2,4}\)[ .-]?\d{3,4}[ .-]?\d{3,4}|\b\d{3}[ .-]\d{3}[ .-]\d{4})\b",
            Some(phone_digits),
        ),
        "iban" => (r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b", Some(iban_check)),
        _ => return None,
    })
}

impl Redactor {
    /// A redactor of `patterns`: built-in names ([`BUILTIN_PATTERNS`]) or
    /// regexes (labelled `custom`).
    pub fn new(patterns: &[String]) -> std::result::Result<Self, String> {
        let mut rules = Vec::with_capacity(patterns.len());
        for p in patterns {
            let (label, source, valid) = match builtin(p) {
                Some((src, valid)) => (p.clone(), src.to_string(), valid),
                None => ("custom".to_string(), p.clone(), None),
            };
            let regex = compile_pattern(&source).map_err(|e| {
                format!(
                    "{p:?} is neither a pattern name ({}) nor a regex: {}",
                    BUILTIN_PATTERNS.join(", "),
                    regex_problem(&e)
                )
            })?;
            if regex.is_match("") {
                return Err(format!("{p:?} matches the empty string"));
            }
            rules.push(Rule {
                label,
                regex,
                valid,
            });
        }
        Ok(Redactor { rules })
    }

    /// The byte ranges of `text` to mask, sorted and merged, each with the
    /// label of the pattern that found it first.
    pub fn find(&self, text: &str) -> Vec<(Range<usize>, &str)> {
        let mut found: Vec<(Range<usize>, &str)> = Vec::new();
        for rule in &self.rules {
            for m in rule.regex.find_iter(text) {
                if rule.valid.is_none_or(|ok| ok(m.as_str())) {
                    found.push((m.range(), rule.label.as_str()));
                }
            }
        }
        found.sort_by_key(|(r, _)| (r.start, std::cmp::Reverse(r.end)));
        let mut merged: Vec<(Range<usize>, &str)> = Vec::new();
        for (r, label) in found {
            match merged.last_mut() {
                Some((last, _)) if r.start < last.end => last.end = last.end.max(r.end),
                _ => merged.push((r, label)),
            }
        }
        merged
    }

    /// `text` with every match replaced by `[REDACTED:<pattern>]`.
    pub fn redact<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let found = self.find(text);
        if found.is_empty() {
            return Cow::Borrowed(text);
        }
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for (r, label) in found {
            out.push_str(&text[at..r.start]);
            out.push_str(&mask(label));
            at = r.end;
        }
        out.push_str(&text[at..]);
        Cow::Owned(out)
    }

    /// Event `data` (JSON text) with every string inside it redacted;
    /// `None` when nothing matched (the text stays byte for byte).
    /// Text that is not JSON is redacted as text.
    pub fn redact_json(&self, data: &str) -> Option<String> {
        match serde_json::from_str::<serde_json::Value>(data) {
            Ok(mut v) => self
                .redact_value(&mut v)
                .then(|| serde_json::to_string(&v).unwrap_or_default()),
            Err(_) => match self.redact(data) {
                Cow::Owned(s) => Some(s),
                Cow::Borrowed(_) => None,
            },
        }
    }

    /// Redacts every string in `v` (keys too); true when one changed.
    fn redact_value(&self, v: &mut serde_json::Value) -> bool {
        use serde_json::Value;
        match v {
            Value::String(s) => match self.redact(s) {
                Cow::Owned(r) => {
                    *s = r;
                    true
                }
                Cow::Borrowed(_) => false,
            },
            Value::Array(items) => items
                .iter_mut()
                .fold(false, |changed, i| self.redact_value(i) | changed),
            Value::Object(map) => {
                let entries = std::mem::take(map);
                let mut changed = false;
                for (k, mut val) in entries {
                    changed |= self.redact_value(&mut val);
                    let k = match self.redact(&k) {
                        Cow::Owned(r) => {
                            changed = true;
                            r
                        }
                        Cow::Borrowed(_) => k,
                    };
                    map.insert(k, val);
                }
                changed
            }
            _ => false,
        }
    }
}

/// What a match of `label` is replaced with.
pub(crate) fn mask(label: &str) -> String {
    format!("[REDACTED:{label}]")
}

/// Redactors by pattern list, so a query compiles each list once.
static CACHE: LazyLock<Mutex<HashMap<Vec<String>, Arc<Redactor>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The redactor of `patterns`, compiled once per process.
pub fn redactor(patterns: &[String]) -> std::result::Result<Arc<Redactor>, String> {
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(r) = cache.get(patterns) {
        return Ok(Arc::clone(r));
    }
    let r = Arc::new(Redactor::new(patterns)?);
    // A few lists (those SQL queries use): an export compiles its own.
    if cache.len() < 16 {
        cache.insert(patterns.to_vec(), Arc::clone(&r));
    }
    Ok(r)
}

/// `redact_text(text, pattern, …)` or `redact_text(text, ['email', …])`:
/// `text` with every match of the patterns (constants) masked.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct RedactText {
    signature: Signature,
}

impl RedactText {
    /// The function.
    pub fn new() -> Self {
        Self {
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

impl Default for RedactText {
    fn default() -> Self {
        Self::new()
    }
}

fn patterns_of(args: &[ColumnarValue]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for a in args {
        let ColumnarValue::Scalar(s) = a else {
            return exec_err!("redact_text: the patterns must be constants");
        };
        match s {
            ScalarValue::List(l) => {
                let values = arrow::compute::cast(l.values(), &DataType::Utf8)?;
                let values = values.as_string::<i32>();
                for i in 0..values.len() {
                    if values.is_valid(i) {
                        out.push(values.value(i).to_string());
                    }
                }
            }
            other => match other.cast_to(&DataType::Utf8)? {
                ScalarValue::Utf8(Some(p)) => out.push(p),
                _ => return exec_err!("redact_text: a pattern is null"),
            },
        }
    }
    if out.is_empty() {
        return exec_err!("redact_text(text, pattern, …) needs at least one pattern");
    }
    Ok(out)
}

impl ScalarUDFImpl for RedactText {
    fn name(&self) -> &str {
        "redact_text"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        if args.len() < 2 {
            return exec_err!("redact_text(text, pattern, …) needs at least one pattern");
        }
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let patterns = patterns_of(&args.args[1..])?;
        let r = match redactor(&patterns) {
            Ok(r) => r,
            Err(m) => return exec_err!("redact_text: {m}"),
        };
        let text = args.args[0].to_array(args.number_rows)?;
        let text = arrow::compute::cast(&text, &DataType::Utf8)?;
        let text = text.as_string::<i32>();
        let mut out = StringBuilder::with_capacity(text.len(), text.value_data().len());
        for i in 0..text.len() {
            if text.is_null(i) {
                out.append_null();
            } else {
                out.append_value(r.redact(text.value(i)));
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(p: &str) -> Redactor {
        Redactor::new(&[p.to_string()]).unwrap()
    }

    #[test]
    fn every_builtin_masks_its_positives_and_leaves_its_negatives() {
        let cases: [(&str, &[&str], &[&str]); 4] = [
            (
                "email",
                &[
                    "alice@example.com",
                    "Bob.Smith+x@mail.co.uk",
                    "a_b@sub.example.org",
                ],
                &[
                    "alice@",
                    "@example.com",
                    "not an email",
                    "a@b",
                    "user at example dot com",
                ],
            ),
            (
                "credit_card",
                &[
                    "4111 1111 1111 1111",
                    "4111-1111-1111-1111",
                    "5500005555555559",
                    "378282246310005",
                ],
                &[
                    "4111 1111 1111 1112",
                    "1234567890123",
                    "2026-01-01",
                    "123456",
                ],
            ),
            (
                "phone",
                &[
                    "+1 415 555 0132",
                    "+44 20 7946 0958",
                    "(415) 555-0132",
                    "415-555-0132",
                    "+4915123456789",
                ],
                &[
                    "2026-01-01",
                    "invoice 12345",
                    "12:30:45",
                    "10.5.3",
                    "415555",
                ],
            ),
            (
                "iban",
                &[
                    "DE89370400440532013000",
                    "GB82 WEST 1234 5698 7654 32",
                    "FR1420041010050500013M02606",
                ],
                &[
                    "DE89370400440532013001",
                    "GB00 WEST 1234 5698 7654 32",
                    "XX12",
                    "INVOICE2026001234",
                ],
            ),
        ];
        for (name, yes, no) in cases {
            let red = r(name);
            for p in yes {
                let text = format!("typed: {p} done");
                let out = red.redact(&text);
                assert_eq!(
                    out,
                    format!("typed: [REDACTED:{name}] done"),
                    "{name} should mask {p:?}"
                );
            }
            for n in no {
                assert_eq!(red.redact(n), *n, "{name} should leave {n:?}");
            }
        }
    }

    #[test]
    fn custom_regexes_and_json_data() {
        let red = Redactor::new(&["email".into(), r"ACME-\d{4}".into()]).unwrap();
        assert_eq!(red.redact("id ACME-1234 x"), "id [REDACTED:custom] x");
        let data = r#"{"text": "mail alice@example.com", "n": 3, "list": ["ACME-0001"]}"#;
        let out = red.redact_json(data).unwrap();
        assert!(
            !out.contains("alice") && !out.contains("ACME-0001"),
            "{out}"
        );
        assert!(
            out.contains("[REDACTED:email]") && out.contains("\"n\":3"),
            "{out}"
        );
        assert_eq!(red.redact_json(r#"{"text": "hello"}"#), None, "untouched");
        assert!(Redactor::new(&["(".into()])
            .unwrap_err()
            .contains("nor a regex"));
        assert!(Redactor::new(&["x*".into()])
            .unwrap_err()
            .contains("empty string"));
    }
}
