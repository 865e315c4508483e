//! `.tar.bz2` packages: a bzip2-compressed tar with `info/` first.
//!
//! Only as much of the bzip2 stream is decoded as it takes to pass the info
//! members; the rest of the file is read raw, for the digests only.

use std::io::{BufReader, Read};

use bzip2::bufread::MultiBzDecoder;

use super::info::{self, InfoMembers, StopRule};
use super::{HashingReader, PackageError};

/// Small enough that a short package is not read ahead much past `info/`.
const READ_BUFFER: usize = 64 * 1024;

pub(crate) fn read_info<R: Read>(file: &mut HashingReader<R>) -> Result<InfoMembers, PackageError> {
    // Python's bz2 module, which conda uses, reads concatenated streams too.
    let decoder = info::DecompressorErrors::new(MultiBzDecoder::new(BufReader::with_capacity(
        READ_BUFFER,
        file,
    )));
    info::collect(decoder, StopRule::FirstPayloadMember)
}
