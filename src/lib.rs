//! artifact-upload-handler: publish conda packages to a channel and keep its
//! metadata current, with no conda installation needed.
//!
//! The crate is layered so dependencies point one way:
//! [`package`] (one package file) and [`storage`] (the file-system
//! interface) ← [`repodata`] (records, names and their exact JSON bytes) ←
//! [`index`] (whole channels, incremental, and the server's live index) ←
//! [`publish`] (one upload or delete, shared by every protocol) ←
//! [`server`] (HTTP: front door, handlers, status codes) ← [`cli`] (the
//! command line). [`token`] (token hashes) is used by `server` and `cli`;
//! [`generate`] makes synthetic packages for tests and benchmarks.
//!
//! An upload, from a handler to its 201, goes one way through them:
//!
//! ```text
//! server::handlers ─► publish ─► package   (read and verify the archive)
//!                             ─► repodata  (parse index.json once: the record)
//!                             ─► storage   (place the file)
//!                             ─► index     (list it; durable before the 201)
//! ```

// Input reaches every module but the command line and the test-package
// generator: it must fail with an error, never panic. Lint levels are
// inherited, so this covers each new module by default.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::string_slice,
        clippy::panic,
        clippy::unreachable,
        clippy::todo,
        clippy::unimplemented
    )
)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

// The command line's input is the operator's: a bad flag is a usage
// error, and it reports errors as messages rather than panicking, so only
// indexing is allowed there.
#[allow(clippy::indexing_slicing, clippy::string_slice)]
pub mod cli;
// Makes packages from the project's own specs, never from input.
#[warn(clippy::unwrap_used)] // as everywhere by Cargo.toml's [lints]
#[allow(
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::string_slice,
    clippy::panic,
    clippy::unreachable
)]
pub mod generate;
pub mod index;
pub mod metrics;
pub mod package;
pub mod publish;
pub mod repodata;
pub mod server;
pub mod storage;
pub mod token;
