//! Arbitrary bytes read as a `.conda` by the indexer and by the upload's
//! strict walk. The input is `<stem>\n<file bytes>` (the stem names the
//! info and pkg members the reader looks for; `fuzz/seed.sh` writes real
//! packages in this form); without a newline the whole input is the file
//! and the stem is `fuzz-1.0-0`.
#![no_main]

use artifact_upload_handler_fuzz::{check_package, STEM};
use libfuzzer_sys::fuzz_target;

/// Longest stem taken from the input (conda's file name limit).
const MAX_STEM: usize = 211;

fuzz_target!(|data: &[u8]| {
    let newline = data.iter().take(MAX_STEM + 1).position(|&b| b == b'\n');
    let (stem, file) = match newline {
        Some(at) => (
            String::from_utf8_lossy(&data[..at]).into_owned(),
            &data[at + 1..],
        ),
        None => (STEM.to_owned(), data),
    };
    let _ = check_package(file, &format!("{stem}.conda"));
});
