//! SQL functions the export query uses, registered by `crate::engine::register()`:
//! the frame sampling tests of SPEC §4 (one per mode, each with the
//! `keep_action_frames` union built in) and two row helpers (`frame_key`,
//! `event_actions`), `split_of` (leak-free splits, `split.rs`) and
//! `redact_text` (`redact.rs`), and the redaction a `redact` spec applies to
//! export rows (`redaction.rs`). All are vectorised over Arrow arrays and are per-row
//! tests over columns the store precomputed, so they parallelise and can be
//! pushed into scans.

mod action;
mod action_text;
mod actor;
mod chat;
mod convert;
mod grounding;
mod redact;
mod redaction;
mod resize;
mod row;
mod sampling;
mod split;
mod step_columns;
mod step_udfs;
mod steps;
mod turns;

use datafusion::logical_expr::ScalarUDF;

pub use action::{Action, Finish, ACTION_TYPES};
pub use actor::Target;
pub use convert::{smart_resize, Convert, Coord};
pub use redact::{redactor, RedactText, Redactor};
pub use redaction::{paint_image, PlanBuilder, Rect, RedactionPlan};
pub use row::{EventActions, FrameKey};
pub use sampling::{SampleEventOnly, SampleEveryNMs, SampleKeyframesOnly};
pub use split::{group_hash, SplitOf, SplitPlan};
pub use step_udfs::{SmartResizeUdf, StepAction};
pub use steps::StepRows;
pub use turns::{image_path, IMAGES_FOLDER};

/// Every function of this module.
pub fn udfs() -> Vec<ScalarUDF> {
    vec![
        ScalarUDF::new_from_impl(SampleEventOnly::new()),
        ScalarUDF::new_from_impl(SampleEveryNMs::new()),
        ScalarUDF::new_from_impl(SampleKeyframesOnly::new()),
        ScalarUDF::new_from_impl(FrameKey::new()),
        ScalarUDF::new_from_impl(EventActions::new()),
        ScalarUDF::new_from_impl(SplitOf::new()),
        ScalarUDF::new_from_impl(RedactText::new()),
        ScalarUDF::new_from_impl(StepAction::new()),
        ScalarUDF::new_from_impl(SmartResizeUdf::new()),
    ]
}
