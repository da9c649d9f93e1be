//! Realistic recording bundles for the demo, the tests and the benches:
//! [`Generator`] acts out workflows and renders their screens; [`BundleDraft`]
//! holds a bundle as values and writes it in the SPEC §2 layout.

mod draft;
mod fixtures;
mod scenario;
mod screen;

pub use draft::{BundleDraft, DraftFrame};
pub use fixtures::{
    fixture_bundles, pattern_image, seal_fixtures, FIXTURE_LATE_SEALED_AT, FIXTURE_SEALED_AT,
};
pub use scenario::{Generator, Workflow, WORKFLOWS};
pub use screen::{Screen, Theme};
