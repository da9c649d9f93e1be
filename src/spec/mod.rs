//! Export specs (SPEC §4): parsing and validation with field-path errors,
//! time expressions resolved against `as_of`, and compilation to one SQL
//! query over `sessions` and `frames`.

mod compile;
mod error;
mod export_spec;
mod time;

pub use compile::{compile_sql, compile_statement, EXPORT_COLUMNS};
pub use error::{SpecError, SpecErrors};
pub use export_spec::{
    Destination, ExportSpec, FrameSampling, OutputFormat, SamplingMode, SessionFilter,
    DEFAULT_SHARD_SIZE_BYTES, MIN_SHARD_SIZE_BYTES,
};
pub use time::{format_instant, TimeExpr};
