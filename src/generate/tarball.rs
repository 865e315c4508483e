//! Raw tar writing. `tar::Header::set_path` rejects `..`, absolute and
//! over-long names, but tests need exactly such hostile archives, so names
//! and link targets are copied into the header bytes unvalidated, using the
//! GNU long-name records when they do not fit in 100 bytes.

use std::io::{self, Write};

use tar::{Builder, EntryType, Header};

use super::{Member, MemberKind};

/// Width of the name and linkname fields in a tar header.
const NAME_FIELD: usize = 100;
/// Conventional name of GNU long-name/long-link records.
const LONG_LINK_NAME: &[u8] = b"././@LongLink";

/// Serializes `members` in order as an uncompressed tar with fixed mtime,
/// owner and modes, so the output depends only on the inputs, into any
/// writer (a compressor: a large package is never held uncompressed);
/// returns the writer.
pub(super) fn write_tar<'a, W: Write>(
    out: W,
    members: impl IntoIterator<Item = &'a Member>,
    mtime: u64,
) -> io::Result<W> {
    let mut builder = Builder::new(out);
    for member in members {
        append_member(&mut builder, member, mtime)?;
    }
    builder.into_inner()
}

fn append_member<W: Write>(
    builder: &mut Builder<W>,
    member: &Member,
    mtime: u64,
) -> io::Result<()> {
    let (entry_type, data, link): (EntryType, &[u8], Option<&str>) = match &member.kind {
        MemberKind::File(data) => (EntryType::Regular, data, None),
        MemberKind::Symlink(target) => (EntryType::Symlink, &[], Some(target)),
        MemberKind::Hardlink(target) => (EntryType::Link, &[], Some(target)),
        MemberKind::Dir => (EntryType::Directory, &[], None),
    };
    let name = member.path.as_bytes();
    if name.len() > NAME_FIELD {
        append_long_record(builder, EntryType::GNULongName, name, mtime)?;
    }
    if let Some(target) = link.map(str::as_bytes).filter(|t| t.len() > NAME_FIELD) {
        append_long_record(builder, EntryType::GNULongLink, target, mtime)?;
    }
    let mode = if entry_type.is_dir() { 0o755 } else { 0o644 };
    let mut header = fixed_header(entry_type, mode, data.len() as u64, mtime);
    copy_truncated(&mut header.as_old_mut().name, name);
    if let Some(target) = link {
        copy_truncated(&mut header.as_old_mut().linkname, target.as_bytes());
    }
    header.set_cksum();
    builder.append(&header, data)
}

/// Emits a GNU `L`/`K` record carrying a name too long for the header;
/// readers apply it to the following entry.
fn append_long_record<W: Write>(
    builder: &mut Builder<W>,
    kind: EntryType,
    name: &[u8],
    mtime: u64,
) -> io::Result<()> {
    // GNU tar NUL-terminates the stored name and counts the NUL in the size.
    let mut data = name.to_vec();
    data.push(0);
    let mut header = fixed_header(kind, 0o644, data.len() as u64, mtime);
    copy_truncated(&mut header.as_old_mut().name, LONG_LINK_NAME);
    header.set_cksum();
    builder.append(&header, data.as_slice())
}

/// A GNU header with everything but the names filled in deterministically.
fn fixed_header(kind: EntryType, mode: u32, size: u64, mtime: u64) -> Header {
    let mut header = Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(mtime);
    header.set_uid(0);
    header.set_gid(0);
    header
}

/// Copies as much of `src` as fits; the header field is already zeroed,
/// so shorter names end up NUL-terminated.
fn copy_truncated(field: &mut [u8], src: &[u8]) {
    let len = src.len().min(field.len());
    field[..len].copy_from_slice(&src[..len]);
}
