//! `.conda` packages (CEP 35): a ZIP holding `metadata.json`,
//! `info-<stem>.tar.zst` and `pkg-<stem>.tar.zst`.
//!
//! Members are found through the ZIP's central directory, as conda itself
//! finds them. For the index only the info member is decompressed; the
//! multi-megabyte `pkg-` member is read once, by the digest pass. A strict
//! walk (uploads) also decompresses the `pkg-` member to check every path in
//! it. Both members must sit at the ZIP root under their exact names, or
//! conda cannot install the package.
//!
//! Before any member is read, the ZIP must read one way only
//! ([`zip_layout`]) and hold nothing but `metadata.json` and the two parts:
//! rattler extracts every `.tar.zst` entry it streams past, so a third one
//! would be installed unverified. Each part must be a single zstd frame
//! with nothing after it: Python's `zstandard` stream reader (conda's)
//! stops at the end of the first frame, where the `zstd` crate (rattler's)
//! reads on into the next.

use std::io::{BufRead, Read, Seek};

use zip::result::ZipError;
use zip::ZipArchive;

use super::info::{self, InfoMembers, MemberRules, StopRule, Walk};
use super::{zip_layout, PackageError};

pub(crate) fn read_info<R: Read + Seek>(
    mut file: R,
    stem: &str,
    walk: Walk,
) -> Result<(InfoMembers, Vec<Vec<u8>>), PackageError> {
    zip_layout::check(&mut file)?;
    let mut archive = ZipArchive::new(file).map_err(|e| PackageError::NotAZip(e.to_string()))?;
    let info_name = format!("info-{stem}.tar.zst");
    let pkg_name = format!("pkg-{stem}.tar.zst");
    if archive.index_for_name(&info_name).is_none() {
        return Err(PackageError::MissingInfoArchive(info_name));
    }
    if let Some(other) = archive
        .file_names_raw()
        .find(|name| ![b"metadata.json", info_name.as_bytes(), pkg_name.as_bytes()].contains(name))
    {
        return Err(PackageError::UnexpectedZipEntry(
            String::from_utf8_lossy(other).escape_debug().to_string(),
        ));
    }
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
        walk.strict,
        |tar| info::collect(tar, info_walk, &mut rules),
    )?;
    if walk.strict {
        rules.enter_pkg_archive();
        with_member(
            &mut archive,
            &pkg_name,
            PackageError::MissingPkgArchive,
            true,
            |tar| info::check_every_member(tar, walk.limit, &mut rules),
        )?;
        rules.finish()?;
    }
    Ok((members, rules.into_installed()))
}

/// Runs `read` on the decompressed tar stream of the root member `name`;
/// with `whole`, `read` must have consumed the one zstd frame, and nothing
/// may follow it in the member.
fn with_member<R: Read + Seek, T>(
    archive: &mut ZipArchive<R>,
    name: &str,
    missing: fn(String) -> PackageError,
    whole: bool,
    read: impl FnOnce(&mut dyn Read) -> Result<T, PackageError>,
) -> Result<T, PackageError> {
    let mut member = match archive.by_name(name) {
        Ok(member) => member,
        Err(ZipError::FileNotFound) => return Err(missing(name.to_owned())),
        Err(err) => return Err(PackageError::BadZipMember(err.to_string())),
    };
    let decoder = zstd::stream::read::Decoder::new(&mut member)
        .map_err(|e| PackageError::Decompression(e.to_string()))?
        .single_frame();
    let mut decoder = info::DecompressorErrors::new(decoder);
    let value = read(&mut decoder)?;
    if whole {
        let mut rest = decoder.into_inner().finish();
        let after_frame = !rest.fill_buf()?.is_empty();
        if after_frame {
            return Err(PackageError::TrailingData(format!(
                "`{name}` holds data after its zstd frame (readers disagree on whether it is part of the archive)"
            )));
        }
    }
    Ok(value)
}
