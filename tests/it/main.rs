//! Behaviour across modules, in one test binary (one link, shared helpers).

mod cli;
#[cfg(feature = "cluster")]
mod cluster;
mod dest;
mod dest_servers;
mod entra;
mod export;
mod gcp;
mod layout;
mod loaders;
mod presets;
mod redact;
mod s3_store;
mod seal;
mod server;
mod spec_prop;
mod splits;
mod steps;
mod store_maintenance;
mod support;
mod tables;
mod tenancy;
mod verify;
