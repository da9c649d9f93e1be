//! Export specs (SPEC §4): the typed spec (`model.rs`), parsing and
//! validation with field-path errors (`parse.rs`), time expressions resolved
//! against `as_of` (`time.rs`), and compilation to one SQL query over
//! `sessions` and `frames` (`compile.rs`).

mod compile;
mod model;
mod parse;
mod steps;
mod time;

pub use crate::error::{SpecError, SpecErrors};
pub use compile::{
    compile_redaction_sql, compile_selection_sql, compile_sessions_sql, compile_sql,
    compile_statement, compile_step_sql,
};
pub use model::{
    check_partitions, check_shard_size, partition_of, Destination, ExportSpec, FrameSampling,
    OutputFormat, Redaction, SamplingMode, SessionFilter, SplitKey, Splits, BUILTIN_PATTERNS,
    DEFAULT_SHARD_SIZE_BYTES, MAX_MDS_SHARD_SIZE_BYTES, MAX_PARTITIONS, MIN_SHARD_SIZE_BYTES,
};
pub(crate) use parse::{
    check_fraction, check_fraction_sum, compile_pattern, is_split_name, regex_problem,
};
pub use steps::{
    ActionSyntax, Answer, ChatPreset, Coordinates, History, Loss, Messages, ModelDefaults,
    SmartResize, StepUnit, Task,
};
pub use time::{format_instant, TimeExpr};
