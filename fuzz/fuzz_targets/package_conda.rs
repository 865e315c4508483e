//! Arbitrary bytes read as a `.conda` by the indexer and by the upload's
//! strict walk. The input is `<stem>\n<file bytes>` (the stem names the
//! info and pkg members the reader looks for; `fuzz/seed.sh` writes real
//! packages in this form); without a newline the whole input is the file
//! and the stem is `fuzz-1.0-0`.
//!
//! A custom mutator rewrites the ZIP's structure a third of the time
//! (entries duplicated, reordered, renamed in one header only, hidden from
//! the directory, bytes around it; see `ZipOp`), and whatever the strict
//! walk accepts must stream, local header by local header as rattler reads
//! it, to exactly the central directory's entries.
#![no_main]

use artifact_upload_handler_fuzz::{
    assert_streamed_like_directory, check_package, mutate_conda, STEM,
};
use libfuzzer_sys::{fuzz_mutator, fuzz_target};

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
    if check_package(file, &format!("{stem}.conda")).is_ok() {
        assert_streamed_like_directory(file);
    }
});

fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    let skip = data[..size]
        .iter()
        .take(MAX_STEM + 1)
        .position(|&b| b == b'\n')
        .map_or(0, |at| at + 1);
    mutate_conda(data, size, max_size, seed, skip)
});
