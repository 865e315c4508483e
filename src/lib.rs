//! artifact-upload-handler: publish conda packages to a channel and keep its
//! metadata current, with no conda installation needed.
//!
//! The crate is layered so dependencies point one way:
//! [`package`] (one package file) ← [`repodata`] (records and their exact
//! JSON bytes) ← [`index`] (whole channels, incremental) ← the command line
//! in [`cli`]. [`storage`] is the file-system interface they share, and
//! [`generate`] makes synthetic packages for tests and benchmarks.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod cli;
pub mod generate;
pub mod index;
pub mod package;
pub mod publish;
pub mod repodata;
pub mod server;
pub mod storage;
pub mod token;
