//! Behaviour across modules, in one test binary (one link, shared helpers).

mod cli;
mod s3_store;
mod seal;
mod support;
mod tables;
