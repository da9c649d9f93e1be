//! Leak-free splits: `split_of(key, salt, 'train', 0.9, 'val', 0.05, …)`
//! puts a group key into a named split by a stable hash, so every row of a
//! group lands in one split and a key's split never changes when more
//! sessions are sealed.
//!
//! The hash is the first 8 bytes (big-endian) of SHA-256 over
//! `salt`, one `0x00` byte and `key` (UTF-8): a number `h` in `[0, 2⁶⁴)`.
//! The splits are laid out on that range in byte order of their names
//! (whatever order they are written in), each taking its fraction: split
//! `i` owns `[⌊C(i-1)·2⁶⁴⌋, ⌊C(i)·2⁶⁴⌋)` where `C(i)` is the running sum of
//! the fractions up to and including it (IEEE double arithmetic), and the
//! last split runs to `2⁶⁴`. Same key, salt and fractions: same split, on
//! any machine and in any query.

use std::sync::Arc;

use arrow::array::{Array, AsArray, StringBuilder};
use arrow::datatypes::DataType;
use datafusion::common::{exec_err, Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use sha2::{Digest, Sha256};

use crate::spec::{check_fraction, check_fraction_sum, is_split_name};

/// The splits of an export laid out on the hash range.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitPlan {
    names: Vec<String>,
    /// Exclusive end of each split's range; the last is 2⁶⁴.
    ends: Vec<u128>,
}

impl SplitPlan {
    /// The plan of `(name, fraction)` pairs (any order; laid out in name
    /// order). Fractions must be in (0, 1] and add up to 1 (± 1e-6).
    pub fn new(parts: &[(String, f64)]) -> std::result::Result<Self, String> {
        let mut parts = parts.to_vec();
        parts.sort_by(|a, b| a.0.cmp(&b.0));
        if parts.is_empty() {
            return Err("no split given".into());
        }
        for w in parts.windows(2) {
            if w[0].0 == w[1].0 {
                return Err(format!("split {:?} is given twice", w[0].0));
            }
        }
        for (n, f) in &parts {
            if !is_split_name(n) {
                return Err(format!(
                    "{n:?} is not a split name (1 to 32 of a-z A-Z 0-9 _)"
                ));
            }
            check_fraction(*f).map_err(|m| format!("split {n:?}: {m}"))?;
        }
        check_fraction_sum(parts.iter().map(|(_, f)| f))?;
        const RANGE: f64 = 18_446_744_073_709_551_616.0; // 2^64
        let mut cum = 0.0;
        let mut ends = Vec::with_capacity(parts.len());
        for (i, (_, f)) in parts.iter().enumerate() {
            cum += f;
            ends.push(if i + 1 == parts.len() {
                1u128 << 64
            } else {
                (cum * RANGE) as u128
            });
        }
        Ok(SplitPlan {
            names: parts.into_iter().map(|(n, _)| n).collect(),
            ends,
        })
    }

    /// The split names, in layout order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The index of `key`'s split under `salt`.
    pub fn assign(&self, salt: &str, key: &str) -> usize {
        let h = group_hash(salt, key) as u128;
        self.ends
            .iter()
            .position(|&end| h < end)
            .unwrap_or(self.ends.len() - 1)
    }
}

/// The first 8 bytes, big-endian, of SHA-256(`salt` ‖ 0x00 ‖ `key`).
pub fn group_hash(salt: &str, key: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(salt.as_bytes());
    h.update([0u8]);
    h.update(key.as_bytes());
    let d = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    u64::from_be_bytes(first)
}

/// `split_of(key, salt, name1, fraction1, name2, fraction2, …)` → the
/// split name of `key` (null for a null key). Names and fractions must be
/// constants.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SplitOf {
    signature: Signature,
}

impl SplitOf {
    /// The function.
    pub fn new() -> Self {
        Self {
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

impl Default for SplitOf {
    fn default() -> Self {
        Self::new()
    }
}

fn constant_str(v: &ColumnarValue, what: &str) -> Result<String> {
    match v {
        ColumnarValue::Scalar(s) => match s.cast_to(&DataType::Utf8)? {
            ScalarValue::Utf8(Some(s)) => Ok(s),
            _ => exec_err!("split_of: {what} must be a non-null constant string"),
        },
        _ => exec_err!("split_of: {what} must be a constant"),
    }
}

fn constant_f64(v: &ColumnarValue, what: &str) -> Result<f64> {
    match v {
        ColumnarValue::Scalar(s) => match s.cast_to(&DataType::Float64)? {
            ScalarValue::Float64(Some(f)) => Ok(f),
            _ => exec_err!("split_of: {what} must be a non-null constant number"),
        },
        _ => exec_err!("split_of: {what} must be a constant"),
    }
}

impl ScalarUDFImpl for SplitOf {
    fn name(&self) -> &str {
        "split_of"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        if args.len() < 4 || !args.len().is_multiple_of(2) {
            return exec_err!(
                "split_of(key, salt, name1, fraction1, …) takes a key, a salt and name/fraction pairs; got {} arguments",
                args.len()
            );
        }
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let a = &args.args;
        let salt = constant_str(&a[1], "the salt")?;
        let mut parts = Vec::new();
        for (i, pair) in a[2..].chunks(2).enumerate() {
            let name = constant_str(&pair[0], &format!("split name {}", i + 1))?;
            let f = constant_f64(&pair[1], &format!("fraction {}", i + 1))?;
            parts.push((name, f));
        }
        let plan = match SplitPlan::new(&parts) {
            Ok(p) => p,
            Err(m) => return exec_err!("split_of: {m}"),
        };
        let keys = a[0].to_array(args.number_rows)?;
        let keys = arrow::compute::cast(&keys, &DataType::Utf8)?;
        let keys = keys.as_string::<i32>();
        let mut out = StringBuilder::with_capacity(keys.len(), keys.len() * 5);
        for i in 0..keys.len() {
            if keys.is_null(i) {
                out.append_null();
            } else {
                out.append_value(&plan.names[plan.assign(&salt, keys.value(i))]);
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(parts: &[(&str, f64)]) -> SplitPlan {
        let parts: Vec<(String, f64)> = parts.iter().map(|(n, f)| (n.to_string(), *f)).collect();
        SplitPlan::new(&parts).unwrap()
    }

    #[test]
    fn fractions_map_to_hash_ranges_in_name_order() {
        let p = plan(&[("train", 0.9), ("val", 0.05), ("test", 0.05)]);
        assert_eq!(p.names(), ["test", "train", "val"]);
        // Written in another order: the same plan.
        assert_eq!(p, plan(&[("test", 0.05), ("val", 0.05), ("train", 0.9)]));
        let mut counts = [0usize; 3];
        for i in 0..20_000 {
            counts[p.assign("", &format!("ses_{i}"))] += 1;
        }
        // 5 % / 90 % / 5 % within a few standard deviations.
        assert!((800..1200).contains(&counts[0]), "{counts:?}");
        assert!((17_600..18_400).contains(&counts[1]), "{counts:?}");
        assert!((800..1200).contains(&counts[2]), "{counts:?}");
    }

    #[test]
    fn the_hash_is_pinned_and_the_salt_changes_it() {
        // SHA-256("\0ses_a1")[..8]: a change here moves every session.
        let expect = {
            let d = Sha256::digest(b"\0ses_a1");
            u64::from_be_bytes(d[..8].try_into().unwrap())
        };
        assert_eq!(group_hash("", "ses_a1"), expect);
        assert_ne!(group_hash("x", "ses_a1"), group_hash("", "ses_a1"));
        let p = plan(&[("a", 0.5), ("b", 0.5)]);
        let expected = usize::from(expect >= 1u64 << 63);
        assert_eq!(p.assign("", "ses_a1"), expected);
    }

    #[test]
    fn bad_plans_say_why() {
        let bad = |parts: &[(&str, f64)]| {
            let parts: Vec<(String, f64)> =
                parts.iter().map(|(n, f)| (n.to_string(), *f)).collect();
            SplitPlan::new(&parts).unwrap_err()
        };
        assert!(bad(&[("a", 0.5), ("b", 0.4)]).contains("add up to 0.9"));
        assert!(bad(&[("a", 0.5), ("a", 0.5)]).contains("given twice"));
        assert!(bad(&[("a/b", 1.0)]).contains("not a split name"));
        assert!(bad(&[("a", 0.0), ("b", 1.0)]).contains("not a fraction"));
        assert!(bad(&[]).contains("no split"));
    }
}
