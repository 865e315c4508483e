//! One integration-test binary (like uv's `tests/it`): a shared harness in
//! `common/` and a module per area.

#![allow(clippy::unwrap_used)]

mod common;

mod channel_page;
mod cli;
mod clients;
mod crash;
mod crash_serve;
mod differential;
mod extra_outputs;
mod extractors;
mod faults;
mod golden;
mod hostile_packages;
mod hostile_requests;
mod incremental;
mod invalid;
mod json_oracle;
mod metrics;
mod names;
mod object_storage;
mod overload;
mod patches;
mod protocols;
mod queue;
mod queue_load;
mod rattler_targets;
mod reading;
mod s3_serve;
mod scopes;
mod serve;
mod serve_shards;
mod server;
mod shards;
mod uploaders;
mod verify;
