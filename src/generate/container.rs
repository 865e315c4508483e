//! Wraps member lists into the two package containers: a bzip2 tarball, or
//! a CEP 35 `.conda` zip of zstd-compressed info and payload tars.

use std::io::Write;

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipWriter};

use super::members::timestamp_ms;
use super::tarball::write_tar;
use super::{GenerateError, Member, PackageSpec};

/// conda-build uses level 19, but that is slow on the random payload and
/// barely changes its size; a fast level keeps benchmarks' setup cheap.
const ZSTD_LEVEL: i32 = 3;
/// Exact bytes conda writes for `metadata.json`.
pub(super) const CONDA_METADATA: &[u8] = br#"{"conda_pkg_format_version": 2}"#;

/// Tar mtime in seconds, derived from the (seeded) package timestamp.
pub(super) fn mtime(spec: &PackageSpec) -> u64 {
    timestamp_ms(spec) / 1000
}

/// `.tar.bz2`: one tar with info members first, as conda-build orders it.
pub(super) fn tar_bz2(
    spec: &PackageSpec,
    info: &[Member],
    payload: &[Member],
) -> Result<Vec<u8>, GenerateError> {
    let file = spec.file_name();
    let encoder = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::best());
    write_tar(encoder, info.iter().chain(payload), mtime(spec))
        .and_then(|encoder| encoder.finish())
        .map_err(GenerateError::io("build bzip2-compressed tar", &file))
}

/// `.conda`: stored zip of metadata.json, info-<stem>.tar.zst and
/// pkg-<stem>.tar.zst, in that order.
pub(super) fn conda(
    spec: &PackageSpec,
    info: &[Member],
    payload: &[Member],
) -> Result<Vec<u8>, GenerateError> {
    let stem = spec.stem();
    let info_zst = zstd_tar(spec, info, "build info tar")?;
    let pkg_zst = zstd_tar(spec, payload, "build pkg tar")?;
    let entries: [(String, &[u8]); 3] = [
        ("metadata.json".to_owned(), CONDA_METADATA),
        (format!("info-{stem}.tar.zst"), &info_zst),
        (format!("pkg-{stem}.tar.zst"), &pkg_zst),
    ];
    stored_zip(&entries).map_err(|source| GenerateError::Zip {
        file: spec.file_name(),
        source,
    })
}

pub(super) fn zstd_tar(
    spec: &PackageSpec,
    members: &[Member],
    action: &'static str,
) -> Result<Vec<u8>, GenerateError> {
    let file = spec.file_name();
    zstd::stream::Encoder::new(Vec::new(), ZSTD_LEVEL)
        .and_then(|encoder| write_tar(encoder, members, mtime(spec)))
        .and_then(|encoder| encoder.finish())
        .map_err(GenerateError::io(action, &file))
}

/// An uncompressed zip whose entries carry a fixed timestamp and mode.
fn stored_zip(entries: &[(String, &[u8])]) -> zip::result::ZipResult<Vec<u8>> {
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Stored)
        .last_modified_time(DateTime::DEFAULT)
        .unix_permissions(0o644);
    let mut zip = ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data) in entries {
        zip.start_file(name.as_str(), options)?;
        zip.write_all(data)?;
    }
    Ok(zip.finish()?.into_inner())
}
