//! A `.conda`'s ZIP must read the same way whichever way it is read.
//!
//! We (like conda, through Python's `zipfile`) find entries through the
//! central directory at the end of the file; rattler streams the local
//! headers from the start. When the two disagree, a package can show one
//! member to the server and install another (issue 12): a name listed twice
//! in the central directory, a local entry the directory does not list, a
//! local header naming a different file. So a `.conda` is accepted only when
//! the file is exactly its local entries, back to back from byte 0, in the
//! order and with the names, offsets and sizes the central directory gives,
//! then the central directory, then its end record, with nothing before,
//! between or after.
//!
//! The `zip` crate parses the directory; this module only walks the fixed
//! headers between its entries to prove that nothing else is there.

use std::io::{Read, Seek, SeekFrom};

use zip::ZipArchive;

use super::PackageError;

const LOCAL_HEADER: u32 = 0x0403_4b50;
const CENTRAL_HEADER: u32 = 0x0201_4b50;
const DATA_DESCRIPTOR: u32 = 0x0807_4b50;
const ZIP64_END: u32 = 0x0606_4b50;
const ZIP64_LOCATOR: u32 = 0x0706_4b50;
const END_OF_DIRECTORY: u32 = 0x0605_4b50;

/// Fixed part of a local header, central header and end record.
const LOCAL_FIXED: u64 = 30;
const CENTRAL_FIXED: u64 = 46;
const END_FIXED: u64 = 22;
const ZIP64_LOCATOR_LEN: u64 = 20;
/// General-purpose flag: sizes and CRC follow the data.
const FLAG_DATA_DESCRIPTOR: u16 = 1 << 3;

/// One central-directory entry, as the `zip` crate reports it.
struct Entry {
    name: Vec<u8>,
    header_start: u64,
    compressed_size: u64,
    uncompressed_size: u64,
    crc32: u32,
}

/// Checks that the file's local entries and central directory agree one
/// to one and cover the whole file (see the module doc). The directory is
/// parsed here and again by the caller: the crate lends no access to its
/// reader, and a directory is small.
pub(crate) fn check<R: Read + Seek>(reader: &mut R) -> Result<(), PackageError> {
    let mut archive =
        ZipArchive::new(&mut *reader).map_err(|e| PackageError::NotAZip(e.to_string()))?;
    if archive.offset() != 0 {
        return Err(unlisted(0, archive.offset()));
    }
    if archive.has_duplicate_names() {
        let directory_start = archive.central_directory_start();
        drop(archive);
        return Err(PackageError::ZipDuplicateEntry(duplicate_name(
            reader,
            directory_start,
        )?));
    }
    if !archive.comment().is_empty() {
        return Err(PackageError::ZipLayout(
            "the ZIP end record carries a comment".into(),
        ));
    }
    let mut entries = Vec::with_capacity(archive.len());
    for index in 0..archive.len() {
        let file = archive
            .by_index_raw(index)
            .map_err(|e| PackageError::BadZipMember(e.to_string()))?;
        entries.push(Entry {
            name: file.name_raw().to_vec(),
            header_start: file.header_start(),
            compressed_size: file.compressed_size(),
            uncompressed_size: file.size(),
            crc32: file.crc32(),
        });
    }
    let directory_start = archive.central_directory_start();
    drop(archive);
    let file_len = reader.seek(SeekFrom::End(0))?;
    let mut at = 0;
    let mut by_offset: Vec<&Entry> = entries.iter().collect();
    by_offset.sort_by_key(|entry| entry.header_start);
    for entry in by_offset {
        if entry.header_start != at {
            return Err(unlisted(at, entry.header_start.saturating_sub(at)));
        }
        at = local_entry_end(reader, entry)?;
    }
    if at != directory_start {
        return Err(unlisted(at, directory_start.saturating_sub(at)));
    }
    // The directory lists exactly the entries above, in the crate's order.
    for entry in &entries {
        let header = read_at(reader, at, CENTRAL_FIXED)?;
        let name_len = u64::from(le16(&header, 28));
        let extra_len = u64::from(le16(&header, 30));
        let comment_len = u64::from(le16(&header, 32));
        if le32(&header, 0) != CENTRAL_HEADER
            || read_at(reader, at + CENTRAL_FIXED, name_len)? != entry.name
        {
            return Err(PackageError::ZipLayout(format!(
                "the ZIP central directory at offset {at} does not list `{}` where expected",
                shown(&entry.name)
            )));
        }
        at += CENTRAL_FIXED + name_len + extra_len + comment_len;
    }
    at = skip_zip64_end(reader, at)?;
    let end_start = file_len.saturating_sub(END_FIXED);
    if at != end_start || le32(&read_at(reader, at, END_FIXED)?, 0) != END_OF_DIRECTORY {
        return Err(unlisted(at, file_len.saturating_sub(at)));
    }
    reader.seek(SeekFrom::Start(0))?;
    Ok(())
}

/// Parses the local header at `entry.header_start` and returns the offset
/// just past its data (and data descriptor, if it has one).
fn local_entry_end<R: Read + Seek>(reader: &mut R, entry: &Entry) -> Result<u64, PackageError> {
    let start = entry.header_start;
    let header = read_at(reader, start, LOCAL_FIXED)?;
    if le32(&header, 0) != LOCAL_HEADER {
        return Err(PackageError::ZipLayout(format!(
            "no local header at offset {start} for ZIP entry `{}`",
            shown(&entry.name)
        )));
    }
    let flags = le16(&header, 6);
    let name_len = u64::from(le16(&header, 26));
    let extra_len = u64::from(le16(&header, 28));
    let local_name = read_at(reader, start + LOCAL_FIXED, name_len)?;
    if local_name != entry.name {
        return Err(PackageError::ZipNameMismatch {
            central: shown(&entry.name),
            local: shown(&local_name),
        });
    }
    let data_end = start
        .checked_add(LOCAL_FIXED + name_len + extra_len)
        .and_then(|v| v.checked_add(entry.compressed_size))
        .ok_or_else(|| PackageError::ZipLayout("ZIP entry sizes overflow".into()))?;
    if flags & FLAG_DATA_DESCRIPTOR == 0 {
        return Ok(data_end);
    }
    Ok(data_end + data_descriptor_len(reader, data_end, entry)?)
}

/// The length of the data descriptor at `at`, which must repeat the
/// entry's CRC and sizes (with or without its optional signature, with
/// 4- or 8-byte sizes).
fn data_descriptor_len<R: Read + Seek>(
    reader: &mut R,
    at: u64,
    entry: &Entry,
) -> Result<u64, PackageError> {
    let file_len = reader.seek(SeekFrom::End(0))?;
    let available = file_len.saturating_sub(at).min(24);
    let bytes = read_at(reader, at, available)?;
    let signed = bytes.len() >= 4 && le32(&bytes, 0) == DATA_DESCRIPTOR;
    let body = if signed { 4 } else { 0 };
    for wide in [false, true] {
        let width = if wide { 8 } else { 4 };
        let len = body + 4 + 2 * width;
        if (bytes.len() as u64) < len as u64 {
            continue;
        }
        let size = |offset: usize| {
            if wide {
                le64(&bytes, offset)
            } else {
                u64::from(le32(&bytes, offset))
            }
        };
        if le32(&bytes, body) == entry.crc32
            && size(body + 4) == entry.compressed_size
            && size(body + 4 + width) == entry.uncompressed_size
        {
            return Ok(len as u64);
        }
    }
    Err(PackageError::ZipLayout(format!(
        "the data descriptor of ZIP entry `{}` does not repeat its central directory record",
        shown(&entry.name)
    )))
}

/// Steps over a ZIP64 end record and its locator, if they follow the
/// directory.
fn skip_zip64_end<R: Read + Seek>(reader: &mut R, at: u64) -> Result<u64, PackageError> {
    let file_len = reader.seek(SeekFrom::End(0))?;
    if file_len.saturating_sub(at) < 12 + ZIP64_LOCATOR_LEN + END_FIXED {
        return Ok(at);
    }
    let head = read_at(reader, at, 12)?;
    if le32(&head, 0) != ZIP64_END {
        return Ok(at);
    }
    let record_len = le64(&head, 4)
        .checked_add(12)
        .and_then(|v| v.checked_add(at))
        .ok_or_else(|| PackageError::ZipLayout("ZIP64 end record size overflows".into()))?;
    let locator = read_at(
        reader,
        record_len,
        ZIP64_LOCATOR_LEN.min(file_len.saturating_sub(record_len)),
    )?;
    if locator.len() as u64 != ZIP64_LOCATOR_LEN
        || le32(&locator, 0) != ZIP64_LOCATOR
        || le64(&locator, 8) != at
    {
        return Err(unlisted(at, file_len.saturating_sub(at)));
    }
    Ok(record_len + ZIP64_LOCATOR_LEN)
}

/// Names a file listed twice, by walking the directory's own records
/// (the crate keeps only one entry per name).
fn duplicate_name<R: Read + Seek>(
    reader: &mut R,
    directory_start: u64,
) -> Result<String, PackageError> {
    let mut at = directory_start;
    let mut seen = std::collections::HashSet::new();
    loop {
        let header = match read_at(reader, at, CENTRAL_FIXED) {
            Ok(header) if le32(&header, 0) == CENTRAL_HEADER => header,
            _ => return Ok("an entry".into()),
        };
        let name_len = u64::from(le16(&header, 28));
        let name = read_at(reader, at + CENTRAL_FIXED, name_len)?;
        if !seen.insert(name.clone()) {
            return Ok(shown(&name));
        }
        at +=
            CENTRAL_FIXED + name_len + u64::from(le16(&header, 30)) + u64::from(le16(&header, 32));
    }
}

fn unlisted(offset: u64, len: u64) -> PackageError {
    PackageError::ZipUnlistedBytes { offset, len }
}

/// Reads exactly `len` bytes at `at` (at most a few kilobytes: headers
/// and names).
fn read_at<R: Read + Seek>(reader: &mut R, at: u64, len: u64) -> Result<Vec<u8>, PackageError> {
    reader.seek(SeekFrom::Start(at))?;
    let mut bytes = Vec::new();
    reader.take(len).read_to_end(&mut bytes)?;
    if (bytes.len() as u64) < len {
        return Err(PackageError::ZipLayout(format!(
            "the ZIP file ends inside a header at offset {at}"
        )));
    }
    Ok(bytes)
}

fn shown(name: &[u8]) -> String {
    String::from_utf8_lossy(name).escape_debug().to_string()
}

fn le16(bytes: &[u8], at: usize) -> u16 {
    let mut out = [0; 2];
    if let Some(src) = bytes.get(at..at + 2) {
        out.copy_from_slice(src);
    }
    u16::from_le_bytes(out)
}

fn le32(bytes: &[u8], at: usize) -> u32 {
    let mut out = [0; 4];
    if let Some(src) = bytes.get(at..at + 4) {
        out.copy_from_slice(src);
    }
    u32::from_le_bytes(out)
}

fn le64(bytes: &[u8], at: usize) -> u64 {
    let mut out = [0; 8];
    if let Some(src) = bytes.get(at..at + 8) {
        out.copy_from_slice(src);
    }
    u64::from_le_bytes(out)
}
