//! `.tar.bz2` packages: a bzip2-compressed tar with `info/` first.
//!
//! Only as much of the bzip2 stream is decoded as the walk needs: for the
//! index, just past the info members; the rest of the file is read raw, for
//! the digests only.

use std::io::{BufReader, Read};

use bzip2::bufread::MultiBzDecoder;

use super::info::{self, InfoMembers, Walk};
use super::PackageError;

/// Small enough that a short package is not read ahead much past `info/`.
const READ_BUFFER: usize = 64 * 1024;

pub(crate) fn read_info<R: Read>(file: R, walk: Walk) -> Result<InfoMembers, PackageError> {
    // Python's bz2 module, which conda uses, reads concatenated streams too.
    let decoder = info::DecompressorErrors::new(MultiBzDecoder::new(BufReader::with_capacity(
        READ_BUFFER,
        file,
    )));
    info::collect(decoder, walk)
}
