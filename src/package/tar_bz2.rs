//! `.tar.bz2` packages: a bzip2-compressed tar with `info/` first.
//!
//! Only as much of the bzip2 stream is decoded as the walk needs: for the
//! index, just past the info members; the rest of the file is read raw, for
//! the digests only. Decoding is our own [`Bz2Decoder`], which reads
//! concatenated streams like Python's bz2 module (which conda uses).

use std::io::Read;

use super::bz2::Bz2Decoder;
use super::info::{self, InfoMembers, MemberRules, Walk};
use super::PackageError;

/// The info members and, on a strict walk, the paths verified (see
/// [`MemberRules::into_installed`]).
pub(crate) fn read_info<R: Read>(
    file: R,
    walk: Walk,
) -> Result<(InfoMembers, Vec<Vec<u8>>), PackageError> {
    // An upload must end with its first stream (see
    // `Bz2Decoder::single_stream`); the index reads like conda-index.
    let decoder = if walk.strict {
        Bz2Decoder::single_stream(file)
    } else {
        Bz2Decoder::new(file)
    };
    let decoder = info::DecompressorErrors::new(decoder);
    let mut rules = MemberRules::default();
    let members = info::collect(decoder, walk, &mut rules)?;
    if walk.strict {
        rules.finish()?;
    }
    Ok((members, rules.into_installed()))
}
