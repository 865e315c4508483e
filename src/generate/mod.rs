//! Deterministic generator of valid conda packages (`.tar.bz2` and `.conda`).
//!
//! This module owns building package bytes from a [`PackageSpec`], writing
//! them to disk, and laying out whole synthetic channels with
//! [`generate_channel`]. It exists for tests, benchmarks and committed
//! fixtures, so every byte it emits depends only on the spec: tar mtimes,
//! owners and modes, zip timestamps and payload contents are all fixed or
//! derived from the spec's seed. Member names are written raw into the tar
//! headers, which lets tests build hostile archives (`../x`, `/abs`, ...)
//! that a strict tar builder would refuse.

mod channel;
mod container;
pub mod hostile;
mod members;
mod tarball;
#[cfg(test)]
mod tests;

use std::fs;
use std::path::{Path, PathBuf};

pub use channel::{generate_channel, ChannelSpec, Sizes, COMPRESSED_SHARE, REALISTIC_TIERS};

/// The two on-disk conda package formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Legacy bzip2-compressed tarball.
    TarBz2,
    /// CEP 35 zip container holding zstd-compressed info and payload tars.
    Conda,
}

impl Format {
    /// File name suffix including the leading dot.
    pub fn extension(&self) -> &'static str {
        match self {
            Format::TarBz2 => ".tar.bz2",
            Format::Conda => ".conda",
        }
    }
}

/// What a tar member is; link targets are written raw like member paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberKind {
    File(Vec<u8>),
    Symlink(String),
    Hardlink(String),
    Dir,
}

/// One tar member; `path` goes into the header verbatim, unvalidated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub path: String,
    pub kind: MemberKind,
}

impl Member {
    /// A regular file member.
    pub fn file(path: impl Into<String>, data: impl Into<Vec<u8>>) -> Self {
        Member {
            path: path.into(),
            kind: MemberKind::File(data.into()),
        }
    }
}

/// Everything that determines a generated package's bytes.
#[derive(Debug, Clone)]
pub struct PackageSpec {
    pub name: String,
    pub version: String,
    pub build: String,
    pub build_number: u64,
    pub subdir: String,
    pub format: Format,
    pub depends: Vec<String>,
    /// Merged into the generated index.json; these keys win.
    pub extra_index: serde_json::Map<String, serde_json::Value>,
    /// If set, written verbatim as `info/index.json` (for odd JSON text).
    pub index_json_raw: Option<Vec<u8>>,
    /// Written as `info/run_exports.json` when set.
    pub run_exports: Option<serde_json::Value>,
    /// Size of the seeded payload file `lib/<name>/data.bin`.
    pub payload_bytes: usize,
    pub seed: u64,
    /// Appended after the standard info members, inside the info part.
    pub extra_info_members: Vec<Member>,
    /// Appended after the payload file, inside the pkg part.
    pub extra_pkg_members: Vec<Member>,
    /// Spell the standard info member names `./info/...`.
    pub dotslash: bool,
}

impl PackageSpec {
    /// A spec with small, boring defaults: build number 0, no depends,
    /// 1 KiB payload, seed 0, no run_exports and no extra members.
    pub fn new(
        name: impl Into<String>,
        version: impl Into<String>,
        build: impl Into<String>,
        subdir: impl Into<String>,
        format: Format,
    ) -> Self {
        PackageSpec {
            name: name.into(),
            version: version.into(),
            build: build.into(),
            build_number: 0,
            subdir: subdir.into(),
            format,
            depends: Vec::new(),
            extra_index: serde_json::Map::new(),
            index_json_raw: None,
            run_exports: None,
            payload_bytes: 1024,
            seed: 0,
            extra_info_members: Vec::new(),
            extra_pkg_members: Vec::new(),
            dotslash: false,
        }
    }

    /// `<name>-<version>-<build>`, the file name without extension.
    pub fn stem(&self) -> String {
        format!("{}-{}-{}", self.name, self.version, self.build)
    }

    /// `<name>-<version>-<build>.tar.bz2` or `.conda`.
    pub fn file_name(&self) -> String {
        format!("{}{}", self.stem(), self.format.extension())
    }
}

/// Failures while generating packages; each names the file involved.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("failed to {action} for {file}")]
    Io {
        action: &'static str,
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to build zip container for {file}")]
    Zip {
        file: String,
        #[source]
        source: zip::result::ZipError,
    },
    #[error("failed to serialize {member} for {file}")]
    Json {
        member: &'static str,
        file: String,
        #[source]
        source: serde_json::Error,
    },
}

impl GenerateError {
    /// Adapter for `map_err` that records what was being done to which file.
    fn io(
        action: &'static str,
        file: impl std::fmt::Display,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let file = file.to_string();
        move |source| GenerateError::Io {
            action,
            file,
            source,
        }
    }
}

/// Builds the complete package file contents for `spec`.
pub fn package_bytes(spec: &PackageSpec) -> Result<Vec<u8>, GenerateError> {
    let payload = members::pkg_members(spec);
    let info = members::info_members(spec, &payload)?;
    match spec.format {
        Format::TarBz2 => container::tar_bz2(spec, &info, &payload),
        Format::Conda => container::conda(spec, &info, &payload),
    }
}

/// Writes `dir/<file_name>`, creating `dir` first; returns the full path.
pub fn write_package(spec: &PackageSpec, dir: &Path) -> Result<PathBuf, GenerateError> {
    let file_name = spec.file_name();
    let bytes = package_bytes(spec)?;
    fs::create_dir_all(dir).map_err(GenerateError::io("create directory", dir.display()))?;
    let path = dir.join(&file_name);
    fs::write(&path, bytes).map_err(GenerateError::io("write package", path.display()))?;
    Ok(path)
}
