//! [`BundleError`]: a recording bundle that cannot be sealed, with the
//! place that is wrong (bundle folder, file, 1-based line, field path).

use std::fmt;
use std::path::PathBuf;

/// A bundle that cannot be sealed, with the place that is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleError {
    /// The bundle folder.
    pub bundle: PathBuf,
    /// The file inside the bundle (`session.json`, `frames.jsonl`, …).
    pub file: String,
    /// 1-based line number for `.jsonl` files.
    pub line: Option<usize>,
    /// Field path inside the JSON value (`actor.kind`), if one is to blame.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for BundleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.bundle.join(&self.file).display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": field `{field}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for BundleError {}
