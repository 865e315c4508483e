//! Walks the tar stream of a package's `info/` part and keeps the members the
//! index needs. Member names are compared as bytes and never used as paths;
//! only regular files are read, each within a size cap.

use std::io::{self, Read};

use tar::{Archive, Entry, EntryType};

use super::member_rules::normalised;
pub(crate) use super::member_rules::MemberRules;
use super::{PackageError, MAX_INFO_MEMBER_BYTES, MAX_SCANNED_BYTES};

const INDEX_JSON: &str = "info/index.json";
const RUN_EXPORTS_JSON: &str = "info/run_exports.json";

/// The raw bytes of the info members the index uses. More (`about.json`,
/// `paths.json`, the recipe) can be added here when channeldata needs them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InfoMembers {
    /// `info/index.json`, always present in a readable package.
    pub index_json: Vec<u8>,
    /// `info/run_exports.json`, present in a minority of packages.
    pub run_exports_json: Option<Vec<u8>>,
}

/// When to stop walking the tar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopRule {
    /// The tar holds only info members (`.conda`): read it to its end
    /// (it is small), so that a second copy of a member is seen.
    EndOfInfoTar,
    /// A whole `.tar.bz2`: conda-build writes `info/` first, so once
    /// `index.json` is found, the first member outside `info/` ends the walk
    /// and the payload is never decompressed.
    FirstPayloadMember,
    /// Every member, to the end of the compressed stream (uploads: the
    /// whole archive must be sound, not only its start).
    EveryMember,
}

/// How far to walk a tar and what to check on the way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Walk {
    pub stop: StopRule,
    /// Refuse members an installer could be tricked by (see
    /// [`MemberRules`]).
    pub strict: bool,
    /// Most decompressed bytes to pass through.
    pub limit: u64,
}

impl Walk {
    /// The indexer's walk: as little as possible, nothing refused that
    /// conda-index would list.
    pub(crate) fn index(stop: StopRule) -> Self {
        Self {
            stop,
            strict: false,
            limit: MAX_SCANNED_BYTES,
        }
    }
}

/// Reads the wanted info members from a decompressed tar stream.
pub(crate) fn collect<R: Read>(
    tar: R,
    walk: Walk,
    rules: &mut MemberRules,
) -> Result<InfoMembers, PackageError> {
    let found = scan(tar, walk, rules)?;
    Ok(InfoMembers {
        index_json: found.index_json.ok_or(PackageError::MissingIndexJson)?,
        run_exports_json: found.run_exports_json,
    })
}

/// Walks a whole tar stream (a `.conda`'s `pkg-` part), checking every
/// member.
pub(crate) fn check_every_member<R: Read>(
    tar: R,
    limit: u64,
    rules: &mut MemberRules,
) -> Result<(), PackageError> {
    let walk = Walk {
        stop: StopRule::EveryMember,
        strict: true,
        limit,
    };
    scan(tar, walk, rules).map(drop)
}

#[derive(Default)]
struct Found {
    index_json: Option<Vec<u8>>,
    run_exports_json: Option<Vec<u8>>,
}

fn scan<R: Read>(tar: R, walk: Walk, rules: &mut MemberRules) -> Result<Found, PackageError> {
    let fail = |err| scan_error(err, walk);
    let mut archive = Archive::new(LimitedReader::new(tar, walk.limit));
    let mut found = Found::default();
    for entry in archive.entries().map_err(fail)? {
        let mut entry = entry.map_err(fail)?;
        if walk.strict {
            rules.check(&entry)?;
        }
        let name = member_name(&entry);
        if found.index_json.is_some()
            && walk.stop == StopRule::FirstPayloadMember
            && !name.starts_with(b"info/")
        {
            break;
        }
        let wanted = if name == INDEX_JSON.as_bytes() {
            Some(INDEX_JSON)
        } else if name == RUN_EXPORTS_JSON.as_bytes() {
            Some(RUN_EXPORTS_JSON)
        } else {
            None
        };
        // Small info files are read whole on a strict walk: their bytes
        // tell an exact repeat (harmless, and real packages have them)
        // from a second copy that differs.
        let kind = entry.header().entry_type();
        let small_info_file = name.starts_with(b"info/")
            && matches!(kind, EntryType::Regular | EntryType::Continuous)
            && entry.size() <= MAX_INFO_MEMBER_BYTES;
        let content = match wanted {
            Some(member) => Some(read_member(&mut entry, member, walk)?),
            None if walk.strict && small_info_file => {
                Some(read_member(&mut entry, "an info member", walk)?)
            }
            None => None,
        };
        if walk.strict {
            rules.check_unique(&entry, content.as_deref())?;
        }
        let (Some(member), Some(content)) = (wanted, content) else {
            continue;
        };
        let slot = if member == INDEX_JSON {
            &mut found.index_json
        } else {
            &mut found.run_exports_json
        };
        match slot {
            // Clients install the last copy: indexing the first of two
            // different ones would list metadata nobody installs.
            Some(first) if *first != content => return Err(duplicate(&entry)),
            Some(_) => {}
            None => *slot = Some(content),
        }
    }
    if walk.stop == StopRule::EveryMember {
        // Past the tar's end-of-archive blocks: the rest of the compressed
        // stream must decode too (trailing padding, checksums).
        io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(fail)?;
    }
    Ok(found)
}

/// The member's name as the path it installs to: some tools write
/// `./info/index.json`, which conda itself installs correctly, and
/// `info//index.json` lands in the same file, as `INFO/index.json` does
/// on the case-folding file systems of macOS and Windows.
fn member_name<R: Read>(entry: &Entry<'_, R>) -> Vec<u8> {
    let mut name = normalised(&entry.path_bytes());
    if name.len() >= 5
        && name
            .get(..5)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"info/"))
    {
        name.make_ascii_lowercase();
    }
    name
}

fn duplicate<R: Read>(entry: &Entry<'_, R>) -> PackageError {
    PackageError::DuplicateMember {
        member: String::from_utf8_lossy(&entry.path_bytes()).into_owned(),
        why: "names a path an earlier member already has (clients install the last copy)",
    }
}

fn read_member<R: Read>(
    entry: &mut Entry<'_, R>,
    member: &'static str,
    walk: Walk,
) -> Result<Vec<u8>, PackageError> {
    let kind = entry.header().entry_type();
    if !matches!(kind, EntryType::Regular | EntryType::Continuous) {
        return Err(PackageError::NotARegularFile {
            member,
            kind: format!("{kind:?}").to_lowercase(),
        });
    }
    let size = entry.size();
    if size > MAX_INFO_MEMBER_BYTES {
        return Err(PackageError::MemberTooLarge {
            member,
            size,
            limit: MAX_INFO_MEMBER_BYTES,
        });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    entry
        .read_to_end(&mut bytes)
        .map_err(|e| scan_error(e, walk))?;
    Ok(bytes)
}

/// Tells a bomb (scan limit) and a bad compressed stream apart from a
/// malformed tar.
fn scan_error(err: io::Error, walk: Walk) -> PackageError {
    if err.kind() == io::ErrorKind::FileTooLarge {
        return if walk.stop == StopRule::EveryMember {
            PackageError::ExpansionLimitExceeded(walk.limit)
        } else {
            PackageError::ScanLimitExceeded(walk.limit)
        };
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = err.get_ref().map(|e| e as _);
    while let Some(inner) = source {
        if let Some(DecompressorError(message)) = inner.downcast_ref() {
            if message.contains(super::bz2::AFTER_STREAM) {
                return PackageError::TrailingData(message.clone());
            }
            return PackageError::Decompression(message.clone());
        }
        source = inner.source();
    }
    PackageError::Tar(err.to_string())
}

/// Marks errors that come from the decompressor, not from the tar parser.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct DecompressorError(String);

/// Wraps a decompressor so its errors can be told apart from tar errors.
pub(crate) struct DecompressorErrors<R>(R);

impl<R> DecompressorErrors<R> {
    pub(crate) fn new(inner: R) -> Self {
        Self(inner)
    }

    pub(crate) fn into_inner(self) -> R {
        self.0
    }
}

impl<R: Read> Read for DecompressorErrors<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0
            .read(buf)
            .map_err(|e| io::Error::new(e.kind(), DecompressorError(e.to_string())))
    }
}

/// Fails the read once more than `limit` bytes have come through, so a
/// decompression bomb costs bounded time.
struct LimitedReader<R> {
    inner: R,
    remaining: u64,
}

impl<R> LimitedReader<R> {
    fn new(inner: R, limit: u64) -> Self {
        Self {
            inner,
            remaining: limit,
        }
    }
}

impl<R: Read> Read for LimitedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                "decompressed size limit reached",
            ));
        }
        let n = (&mut self.inner).take(self.remaining).read(buf)?;
        self.remaining = self.remaining.saturating_sub(n as u64);
        Ok(n)
    }
}
