//! `.conda` packages (CEP 35): a ZIP holding `metadata.json`,
//! `info-<stem>.tar.zst` and `pkg-<stem>.tar.zst`.
//!
//! The info member is found through the ZIP's central directory, as conda
//! itself finds it, and only that member is decompressed; the multi-megabyte
//! `pkg-` member is read once, by the digest pass. The info member must sit at
//! the ZIP root under its exact name, or conda cannot install the package.

use std::io::{Read, Seek};

use zip::result::ZipError;
use zip::ZipArchive;

use super::info::{self, InfoMembers, StopRule};
use super::PackageError;

pub(crate) fn read_info<R: Read + Seek>(
    file: &mut R,
    stem: &str,
) -> Result<InfoMembers, PackageError> {
    let expected = format!("info-{stem}.tar.zst");
    let mut archive = ZipArchive::new(file).map_err(|e| PackageError::NotAZip(e.to_string()))?;
    let mut member = match archive.by_name(&expected) {
        Ok(member) => member,
        Err(ZipError::FileNotFound) => return Err(PackageError::MissingInfoArchive(expected)),
        Err(err) => return Err(PackageError::BadZipMember(err.to_string())),
    };
    let decoder = info::DecompressorErrors::new(
        zstd::stream::read::Decoder::new(&mut member)
            .map_err(|e| PackageError::Decompression(e.to_string()))?,
    );
    info::collect(decoder, StopRule::EndOfInfoTar)
}
