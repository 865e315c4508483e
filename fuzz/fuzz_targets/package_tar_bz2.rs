//! Arbitrary bytes read as a `.tar.bz2` by the indexer (`read_package`) and
//! by the upload's strict walk (`read_verified`): never a panic, and what
//! the strict walk accepts the indexer reads the same.
#![no_main]

use artifact_upload_handler_fuzz::{check_package, STEM};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = check_package(data, &format!("{STEM}.tar.bz2"));
});
