//! An arbitrary tar stream packed the two ways conda does (bzip2 for a
//! `.tar.bz2`; zstd inside a ZIP for a `.conda`, the tar as its info
//! part, with an empty `pkg-` part: the same tar as both would repeat every
//! member, and put `info/` in the payload) and read by the indexer and the strict walk, so the
//! fuzzer works on tar headers and member names rather than compressed
//! bits. Whatever the strict walk accepts is extracted in a model of an
//! unguarded installer, which must never write or link outside the prefix.
#![no_main]

use artifact_upload_handler_fuzz::{bzip2_compress, check_package, conda_container, escapes, STEM};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|tar: &[u8]| {
    let tar_bz2 = check_package(&bzip2_compress(tar), &format!("{STEM}.tar.bz2"));
    let conda = check_package(&conda_container(tar, &[0; 1024]), &format!("{STEM}.conda"));
    if tar_bz2.is_ok() || conda.is_ok() {
        if let Some(escape) = escapes(tar) {
            panic!("the strict walk accepted an unsafe package: {escape}");
        }
    }
});
