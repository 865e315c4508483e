//! One conda package file: format detection, streaming reads of the `info/`
//! members the index needs, and the file's digests — all in a single pass over
//! the bytes, with nothing extracted to disk and no member path trusted.
//!
//! Both formats are read as streams so the same code serves files on disk and
//! (later) upload bodies. Memory per package is bounded: only the wanted info
//! members are held, each capped at [`MAX_INFO_MEMBER_BYTES`], and the
//! decompressed bytes scanned are capped at [`MAX_SCANNED_BYTES`] so a tiny
//! archive that expands to gigabytes is refused rather than followed.
//!
//! Two depths of reading: [`read_package`] reads as little as the index
//! needs (and accepts whatever conda-index would list), while
//! [`read_verified`] walks every member of an upload to the end of its
//! streams and refuses members an installer could be tricked by.

pub mod bz2;
mod conda;
mod digest;
mod error;
pub(crate) mod info;
mod member_rules;
mod tar_bz2;
mod zip_layout;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

pub(crate) use digest::hex_digit;
pub use digest::{hex, Digests, Hasher, HashingReader};
pub use error::PackageError;
pub use info::InfoMembers;
use info::{StopRule, Walk};

/// Largest `info/` member we are willing to hold in memory. Real
/// `index.json` files are a few kilobytes.
pub const MAX_INFO_MEMBER_BYTES: u64 = 16 * 1024 * 1024;

/// Most decompressed bytes scanned while looking for the info members.
pub const MAX_SCANNED_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// How many times its own size a verified package may expand to. Real
/// packages stay far below (binaries and text compress 3-10x); a bomb does
/// not, and is refused after bounded work.
pub const MAX_EXPANSION_RATIO: u64 = 200;

/// A small package may always expand to this much, whatever its ratio.
pub const MIN_EXPANSION_BYTES: u64 = 256 * 1024 * 1024;

/// Never decompress more than this while verifying one package.
pub const MAX_VERIFIED_BYTES: u64 = 64 * 1024 * 1024 * 1024;

/// The decompression budget for verifying a package of `size` bytes.
pub fn expansion_limit(size: u64) -> u64 {
    size.saturating_mul(MAX_EXPANSION_RATIO)
        .clamp(MIN_EXPANSION_BYTES, MAX_VERIFIED_BYTES)
}

/// The two conda package formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PackageFormat {
    /// The legacy bzip2-compressed tar.
    TarBz2,
    /// The CEP 35 ZIP container with zstd-compressed inner tars.
    Conda,
}

impl PackageFormat {
    /// The format a file name's extension says, if it is a package at all.
    pub fn from_file_name(file_name: &str) -> Option<Self> {
        if file_name.ends_with(".tar.bz2") {
            Some(Self::TarBz2)
        } else if file_name.ends_with(".conda") {
            Some(Self::Conda)
        } else {
            None
        }
    }

    /// The file name extension, with its leading dot.
    pub fn extension(self) -> &'static str {
        match self {
            Self::TarBz2 => ".tar.bz2",
            Self::Conda => ".conda",
        }
    }

    /// The file name without the extension: `name-version-build`.
    pub fn stem(self, file_name: &str) -> &str {
        file_name
            .strip_suffix(self.extension())
            .unwrap_or(file_name)
    }
}

/// What reading a package yields: the raw info members and the file digests.
#[derive(Debug, Clone)]
pub struct PackageInfo {
    pub members: InfoMembers,
    pub digests: Digests,
}

/// Reads a package named `file_name` (which decides the format and, for
/// `.conda`, the expected info member's name).
///
/// A `.tar.bz2` is read in one pass: the digests are computed on the bytes
/// the decompressor consumes, and decompression stops after `info/`. A
/// `.conda` has its small info member read through the ZIP directory, then
/// one sequential digest pass.
pub fn read_package<R: Read + Seek>(
    mut reader: R,
    file_name: &str,
) -> Result<PackageInfo, PackageError> {
    let format = PackageFormat::from_file_name(file_name).ok_or(PackageError::UnknownFormat)?;
    let (members, digests) = match format {
        PackageFormat::TarBz2 => {
            let mut hashing = HashingReader::new(reader);
            let (members, _) =
                tar_bz2::read_info(&mut hashing, Walk::index(StopRule::FirstPayloadMember))?;
            hashing.drain()?;
            (members, hashing.finish())
        }
        PackageFormat::Conda => {
            let walk = Walk::index(StopRule::EndOfInfoTar);
            let (members, _) = conda::read_info(&mut reader, format.stem(file_name), walk)?;
            reader.seek(SeekFrom::Start(0))?;
            let mut hashing = HashingReader::new(reader);
            hashing.drain()?;
            (members, hashing.finish())
        }
    };
    Ok(PackageInfo { members, digests })
}

/// Reads an uploaded package strictly: every member of every part is walked
/// to the end of its compressed stream (so truncation and corruption
/// anywhere are found), each member must be safe to extract, and the whole
/// may expand to at most [`expansion_limit`] bytes. Digests are not
/// computed here: an upload is hashed as it arrives.
pub fn read_verified<R: Read + Seek>(
    reader: R,
    file_name: &str,
) -> Result<InfoMembers, PackageError> {
    read_verified_paths(reader, file_name).map(|(members, _)| members)
}

/// [`read_verified`], also returning every path a member other than a
/// directory installs (normalised: `./a//b` is `a/b`), in archive order:
/// what the server verified, to compare with what clients extract.
pub fn read_verified_paths<R: Read + Seek>(
    mut reader: R,
    file_name: &str,
) -> Result<(InfoMembers, Vec<String>), PackageError> {
    let format = PackageFormat::from_file_name(file_name).ok_or(PackageError::UnknownFormat)?;
    let size = reader.seek(SeekFrom::End(0))?;
    reader.seek(SeekFrom::Start(0))?;
    let walk = Walk {
        stop: StopRule::EveryMember,
        strict: true,
        limit: expansion_limit(size),
    };
    let (members, paths) = match format {
        PackageFormat::TarBz2 => tar_bz2::read_info(reader, walk)?,
        PackageFormat::Conda => conda::read_info(reader, format.stem(file_name), walk)?,
    };
    let paths = paths
        .into_iter()
        .map(|path| String::from_utf8_lossy(&path).into_owned())
        .collect();
    Ok((members, paths))
}

/// Reads a package file from disk; see [`read_package`].
pub fn read_package_file(path: &Path) -> Result<PackageInfo, PackageError> {
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or(PackageError::UnknownFormat)?;
    let file = File::open(path)?;
    read_package(file, file_name)
}
