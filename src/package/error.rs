//! Why a file could not be read as a conda package. Messages are lowercase and
//! say what is wrong; the caller adds which file.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("not a conda package file name (expected .tar.bz2 or .conda)")]
    UnknownFormat,
    #[error("cannot read the file: {0}")]
    Io(#[from] io::Error),
    #[error("corrupt or truncated compressed data: {0}")]
    Decompression(String),
    #[error("malformed tar archive inside the package: {0}")]
    Tar(String),
    #[error("not a valid ZIP file: {0}")]
    NotAZip(String),
    #[error("unreadable ZIP member: {0}")]
    BadZipMember(String),
    #[error("no `{0}` member at the ZIP root")]
    MissingInfoArchive(String),
    #[error("no info/index.json in the package")]
    MissingIndexJson,
    #[error("{member} is not a regular file (tar member type {kind})")]
    NotARegularFile { member: &'static str, kind: String },
    #[error("{member} is {size} bytes, over the {limit}-byte limit")]
    MemberTooLarge {
        member: &'static str,
        size: u64,
        limit: u64,
    },
    #[error("info/index.json not found within the first {0} decompressed bytes")]
    ScanLimitExceeded(u64),
    #[error("decompresses to more than {0} bytes (a decompression bomb?)")]
    ExpansionLimitExceeded(u64),
    #[error("unsafe tar member {member:?}: {why}")]
    UnsafeMember { member: String, why: String },
    #[error("no `{0}` member at the ZIP root")]
    MissingPkgArchive(String),
    #[error("the ZIP central directory lists `{0}` more than once (readers disagree on which copy is the member)")]
    ZipDuplicateEntry(String),
    #[error(
        "ZIP entry `{central}` has the local header name `{local}` (readers disagree on its name)"
    )]
    ZipNameMismatch { central: String, local: String },
    #[error("{len} bytes at offset {offset} belong to no entry in the ZIP central directory (hidden data or a hidden local entry)")]
    ZipUnlistedBytes { offset: u64, len: u64 },
    #[error("malformed ZIP structure: {0}")]
    ZipLayout(String),
    #[error("unexpected ZIP entry `{0}` (a .conda holds only metadata.json and its info- and pkg- archives)")]
    UnexpectedZipEntry(String),
    #[error("tar member {member:?} {why}")]
    DuplicateMember { member: String, why: &'static str },
    #[error(
        "tar member {0:?} is in the pkg- archive: info/ members belong in the info- archive only"
    )]
    InfoInPkgArchive(String),
    #[error("{0}")]
    TrailingData(String),
}

impl PackageError {
    /// Whether conda-index 0.13.0 survives this fault (it catches the
    /// exceptions of an unreadable stream or a missing `index.json`, and
    /// still lists the file in `run_exports.json`), as opposed to crashing
    /// on it (a malformed tar, a ZIP without the info member).
    pub fn conda_index_tolerates(&self) -> bool {
        matches!(
            self,
            Self::Io(_)
                | Self::Decompression(_)
                | Self::NotAZip(_)
                | Self::MissingIndexJson
                | Self::NotARegularFile { .. }
        )
    }
}
