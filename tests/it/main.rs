//! One integration-test binary (like uv's `tests/it`): a shared harness in
//! `common/` and a module per area.

#![allow(clippy::unwrap_used)]

mod common;

mod cli;
mod clients;
mod crash;
mod crash_serve;
mod differential;
mod faults;
mod golden;
mod incremental;
mod invalid;
mod json_oracle;
mod names;
mod object_storage;
mod overload;
mod protocols;
mod rattler_targets;
mod reading;
mod serve;
mod server;
mod uploaders;
mod verify;
