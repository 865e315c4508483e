//! `.conda` packages (CEP 35): a ZIP holding `metadata.json`,
//! `info-<stem>.tar.zst` and `pkg-<stem>.tar.zst`.
//!
//! Members are found through the ZIP's central directory, as conda itself
//! finds them. For the index only the info member is decompressed; the
//! multi-megabyte `pkg-` member is read once, by the digest pass. A strict
//! walk (uploads) also decompresses the `pkg-` member to check every path in
//! it. Both members must sit at the ZIP root under their exact names, or
//! conda cannot install the package.

use std::io::{Read, Seek};

use zip::result::ZipError;
use zip::ZipArchive;

use super::info::{self, InfoMembers, MemberRules, StopRule, Walk};
use super::PackageError;

pub(crate) fn read_info<R: Read + Seek>(
    file: R,
    stem: &str,
    walk: Walk,
) -> Result<InfoMembers, PackageError> {
    let mut archive = ZipArchive::new(file).map_err(|e| PackageError::NotAZip(e.to_string()))?;
    let info_name = format!("info-{stem}.tar.zst");
    let info_walk = Walk {
        stop: if walk.stop == StopRule::EveryMember {
            StopRule::EveryMember
        } else {
            StopRule::EndOfInfoTar
        },
        ..walk
    };
    // conda extracts both parts into one directory: one set of rules.
    let mut rules = MemberRules::default();
    let members = with_member(
        &mut archive,
        &info_name,
        PackageError::MissingInfoArchive,
        |tar| info::collect(tar, info_walk, &mut rules),
    )?;
    if walk.strict {
        let pkg_name = format!("pkg-{stem}.tar.zst");
        with_member(
            &mut archive,
            &pkg_name,
            PackageError::MissingPkgArchive,
            |tar| info::check_every_member(tar, walk.limit, &mut rules),
        )?;
        rules.finish()?;
    }
    Ok(members)
}

/// Runs `read` on the decompressed tar stream of the root member `name`.
fn with_member<R: Read + Seek, T>(
    archive: &mut ZipArchive<R>,
    name: &str,
    missing: fn(String) -> PackageError,
    read: impl FnOnce(&mut dyn Read) -> Result<T, PackageError>,
) -> Result<T, PackageError> {
    let mut member = match archive.by_name(name) {
        Ok(member) => member,
        Err(ZipError::FileNotFound) => return Err(missing(name.to_owned())),
        Err(err) => return Err(PackageError::BadZipMember(err.to_string())),
    };
    let decoder = zstd::stream::read::Decoder::new(&mut member)
        .map_err(|e| PackageError::Decompression(e.to_string()))?;
    read(&mut info::DecompressorErrors::new(decoder))
}
