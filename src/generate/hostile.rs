//! Packages that read one way to the server and another to an installer
//! (issue 12), built from the same parts as the valid ones so tests and
//! fuzz seeds need no hand-made binaries.
//!
//! Each [`Hostile`] case hides what a client would install behind what a
//! careless reader would verify: a `pkg-` part with `bin/evil ->
//! /etc/passwd`, or an `index.json` saying `numpy 99.0 pwn` for linux-64
//! with a dependency on `evil-dep`. The ZIP cases are written by a small
//! stored-ZIP writer here, since the `zip` crate refuses to write a
//! duplicate name and cannot hide an entry or misname a local header.

use serde_json::json;

use super::container::{mtime, zstd_tar, CONDA_METADATA};
use super::members::{info_members, pkg_members};
use super::tarball::write_tar;
use super::{Format, GenerateError, Member, MemberKind, PackageSpec};

/// One way a package can show the server one thing and install another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hostile {
    /// The central directory lists `pkg-<stem>.tar.zst` twice: the first
    /// local entry (the one rattler streams first) is evil, the last (the
    /// one a central-directory reader returns) is clean.
    DuplicateCentralEntry,
    /// An evil `pkg-` local entry before the listed ones, absent from the
    /// central directory.
    HiddenLocalEntry,
    /// The `pkg-` local header names another file than the central
    /// directory does.
    LocalNameMismatch,
    /// Bytes before the first local entry.
    PrefixBytes,
    /// Bytes after the end of the central directory record.
    TrailingBytes,
    /// A third, listed `.tar.zst` entry (rattler extracts every one).
    ExtraZstEntry,
    /// A second, evil `info/index.json` after the first in the info
    /// section, under the given name; in a `.tar.bz2` or a `.conda`'s
    /// info tar.
    DuplicateIndexJson(Format, &'static str),
    /// The evil `info/index.json` after the payload of a `.tar.bz2`,
    /// where a reader that stops after `info/` never looks.
    LateIndexJson,
    /// `info/index.json` inside a `.conda`'s `pkg-` tar.
    IndexJsonInPkgTar,
    /// A `.tar.bz2` whose tar goes on, with an evil member, in a second
    /// bzip2 stream.
    SecondBzip2Stream,
    /// A `.tar.bz2` with bytes after its bzip2 stream.
    TrailingBzip2Garbage,
    /// A `.conda` whose `pkg-` tar goes on, with an evil member, in a
    /// second zstd frame.
    SecondZstdFrame,
}

/// The second spellings of `info/index.json` that land on the same file.
pub const INDEX_JSON_SPELLINGS: [&str; 4] = [
    "info/index.json",
    "./info/index.json",
    "info//index.json",
    "INFO/index.json",
];

impl Hostile {
    /// Every case, each spelling of the duplicate in each format.
    pub fn all() -> Vec<Hostile> {
        let mut all = vec![
            Hostile::DuplicateCentralEntry,
            Hostile::HiddenLocalEntry,
            Hostile::LocalNameMismatch,
            Hostile::PrefixBytes,
            Hostile::TrailingBytes,
            Hostile::ExtraZstEntry,
        ];
        for format in [Format::TarBz2, Format::Conda] {
            for spelling in INDEX_JSON_SPELLINGS {
                all.push(Hostile::DuplicateIndexJson(format, spelling));
            }
        }
        all.extend([
            Hostile::LateIndexJson,
            Hostile::IndexJsonInPkgTar,
            Hostile::SecondBzip2Stream,
            Hostile::TrailingBzip2Garbage,
            Hostile::SecondZstdFrame,
        ]);
        all
    }

    pub fn format(self) -> Format {
        match self {
            Hostile::DuplicateIndexJson(format, _) => format,
            Hostile::LateIndexJson | Hostile::SecondBzip2Stream | Hostile::TrailingBzip2Garbage => {
                Format::TarBz2
            }
            _ => Format::Conda,
        }
    }

    /// A package name (conda's grammar) telling the case apart.
    pub fn package_name(self) -> String {
        let name = match self {
            Hostile::DuplicateCentralEntry => "dup-central",
            Hostile::HiddenLocalEntry => "hidden-local",
            Hostile::LocalNameMismatch => "name-mismatch",
            Hostile::PrefixBytes => "zip-prefix",
            Hostile::TrailingBytes => "zip-trailer",
            Hostile::ExtraZstEntry => "extra-zst",
            Hostile::DuplicateIndexJson(_, spelling) => {
                return format!(
                    "dup-index-{}",
                    match spelling {
                        "info/index.json" => "plain",
                        "./info/index.json" => "dotslash",
                        "info//index.json" => "doubleslash",
                        _ => "upper",
                    }
                );
            }
            Hostile::LateIndexJson => "late-index",
            Hostile::IndexJsonInPkgTar => "index-in-pkg",
            Hostile::SecondBzip2Stream => "two-bz2-streams",
            Hostile::TrailingBzip2Garbage => "bz2-trailer",
            Hostile::SecondZstdFrame => "two-zstd-frames",
        };
        name.to_owned()
    }

    /// Whether `index` (which reads only the info members, and stops at
    /// the payload of a `.tar.bz2`) can tell: the ZIP structure and the
    /// info section. The rest only the upload's full walk finds.
    pub fn index_finds(self) -> bool {
        !matches!(
            self,
            Hostile::LateIndexJson
                | Hostile::IndexJsonInPkgTar
                | Hostile::SecondBzip2Stream
                | Hostile::TrailingBzip2Garbage
                | Hostile::SecondZstdFrame
        )
    }

    /// The spec of the clean package this case starts from.
    pub fn spec(self) -> PackageSpec {
        PackageSpec::new(self.package_name(), "1.0", "0", "noarch", self.format())
    }
}

/// The `index.json` an attacker wants installed.
fn evil_index_json() -> Vec<u8> {
    let doc = json!({
        "arch": "x86_64", "build": "pwn", "build_number": 0,
        "depends": ["evil-dep"], "name": "numpy", "platform": "linux",
        "subdir": "linux-64", "version": "99.0",
    });
    doc.to_string().into_bytes()
}

fn evil_link() -> Member {
    Member {
        path: "bin/evil".into(),
        kind: MemberKind::Symlink("/etc/passwd".into()),
    }
}

/// Builds the file name and bytes of a hostile package.
pub fn hostile_package(kind: Hostile) -> Result<(String, Vec<u8>), GenerateError> {
    let mut spec = kind.spec();
    let file = spec.file_name();
    let bytes = match kind {
        Hostile::DuplicateIndexJson(_, spelling) => {
            spec.extra_info_members
                .push(Member::file(spelling, evil_index_json()));
            super::package_bytes(&spec)?
        }
        Hostile::LateIndexJson => {
            spec.extra_pkg_members
                .push(Member::file("info/index.json", evil_index_json()));
            super::package_bytes(&spec)?
        }
        Hostile::IndexJsonInPkgTar => {
            spec.extra_pkg_members
                .push(Member::file("info/index.json", evil_index_json()));
            super::package_bytes(&spec)?
        }
        Hostile::TrailingBzip2Garbage => {
            let mut bytes = super::package_bytes(&spec)?;
            bytes.extend_from_slice(b"trailing bytes after the stream");
            bytes
        }
        Hostile::SecondBzip2Stream => {
            let payload = pkg_members(&spec);
            let info = info_members(&spec, &payload)?;
            let head = open_tar(info.iter().chain(&payload), mtime(&spec), &file)?;
            let tail = raw_tar(&[evil_link()], mtime(&spec), &file)?;
            let mut bytes = bzip2_bytes(&head, &file)?;
            bytes.extend(bzip2_bytes(&tail, &file)?);
            bytes
        }
        _ => conda_variant(kind, &spec)?,
    };
    Ok((file, bytes))
}

/// The `.conda` cases: the ZIP laid out by hand.
fn conda_variant(kind: Hostile, spec: &PackageSpec) -> Result<Vec<u8>, GenerateError> {
    let file = spec.file_name();
    let stem = spec.stem();
    let payload = pkg_members(spec);
    let info = info_members(spec, &payload)?;
    let info_zst = zstd_tar(spec, &info, "build info tar")?;
    let pkg_zst = zstd_tar(spec, &payload, "build pkg tar")?;
    let mut evil_payload = payload.clone();
    evil_payload.push(evil_link());
    let evil_zst = zstd_tar(spec, &evil_payload, "build evil pkg tar")?;
    let info_name = format!("info-{stem}.tar.zst");
    let pkg_name = format!("pkg-{stem}.tar.zst");
    let listed = |name: &str, data: &[u8]| ZipEntry {
        local_name: name.as_bytes().to_vec(),
        central_name: Some(name.as_bytes().to_vec()),
        data: data.to_vec(),
    };
    let mut entries = vec![
        listed("metadata.json", CONDA_METADATA),
        listed(&info_name, &info_zst),
    ];
    let (mut before, mut after) = (Vec::new(), Vec::new());
    match kind {
        Hostile::DuplicateCentralEntry => {
            entries.push(listed(&pkg_name, &evil_zst));
            entries.push(listed(&pkg_name, &pkg_zst));
        }
        Hostile::HiddenLocalEntry => {
            entries.push(ZipEntry {
                local_name: pkg_name.clone().into_bytes(),
                central_name: None,
                data: evil_zst,
            });
            entries.push(listed(&pkg_name, &pkg_zst));
        }
        Hostile::LocalNameMismatch => entries.push(ZipEntry {
            local_name: format!("pkg-{stem}.hidden").into_bytes(),
            central_name: Some(pkg_name.into_bytes()),
            data: pkg_zst,
        }),
        Hostile::PrefixBytes => {
            entries.push(listed(&pkg_name, &pkg_zst));
            before = b"bytes before the first entry".to_vec();
        }
        Hostile::TrailingBytes => {
            entries.push(listed(&pkg_name, &pkg_zst));
            after = b"bytes after the end record".to_vec();
        }
        Hostile::ExtraZstEntry => {
            entries.push(listed(&pkg_name, &pkg_zst));
            entries.push(listed("pkg-extra.tar.zst", &evil_zst));
        }
        Hostile::SecondZstdFrame => {
            let head = open_tar(&payload, mtime(spec), &file)?;
            let tail = raw_tar(&[evil_link()], mtime(spec), &file)?;
            let mut two = zstd_bytes(&head, &file)?;
            two.extend(zstd_bytes(&tail, &file)?);
            entries.push(listed(&pkg_name, &two));
        }
        _ => entries.push(listed(&pkg_name, &pkg_zst)),
    }
    let mut bytes = before;
    bytes.extend(stored_zip(&entries));
    bytes.extend(after);
    Ok(bytes)
}

/// A tar of `members` without its end-of-archive blocks (so another tar
/// can follow it in the next compressed stream).
fn open_tar<'a>(
    members: impl IntoIterator<Item = &'a Member>,
    mtime: u64,
    file: &str,
) -> Result<Vec<u8>, GenerateError> {
    let mut tar =
        write_tar(Vec::new(), members, mtime).map_err(GenerateError::io("build tar", file))?;
    tar.truncate(tar.len().saturating_sub(1024));
    Ok(tar)
}

fn raw_tar(members: &[Member], mtime: u64, file: &str) -> Result<Vec<u8>, GenerateError> {
    write_tar(Vec::new(), members, mtime).map_err(GenerateError::io("build tar", file))
}

fn bzip2_bytes(data: &[u8], file: &str) -> Result<Vec<u8>, GenerateError> {
    use std::io::Write;
    let mut encoder = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::best());
    encoder
        .write_all(data)
        .and_then(|()| encoder.finish())
        .map_err(GenerateError::io("bzip2-compress", file))
}

fn zstd_bytes(data: &[u8], file: &str) -> Result<Vec<u8>, GenerateError> {
    zstd::encode_all(data, 3).map_err(GenerateError::io("zstd-compress", file))
}

/// One stored ZIP entry: its local header's name, the central directory's
/// (none: not listed), and its bytes.
#[derive(Debug, Clone)]
pub struct ZipEntry {
    pub local_name: Vec<u8>,
    pub central_name: Option<Vec<u8>>,
    pub data: Vec<u8>,
}

/// 1980-01-01 00:00 in DOS date format (the `zip` crate's default).
const DOS_DATE: u16 = (1 << 5) | 1;

/// A stored (uncompressed) ZIP of `entries` in order, with the central
/// directory listing the listed ones (also the fuzz targets' ZIP
/// mutator's writer).
pub fn stored_zip(entries: &[ZipEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    let mut listed = 0u16;
    for entry in entries {
        let offset = out.len() as u32;
        let crc = crc32(&entry.data);
        let size = entry.data.len() as u32;
        out.extend(0x0403_4b50u32.to_le_bytes());
        out.extend([20, 0, 0, 0, 0, 0, 0, 0]); // version, flags, method, time
        out.extend(DOS_DATE.to_le_bytes());
        out.extend(crc.to_le_bytes());
        out.extend(size.to_le_bytes());
        out.extend(size.to_le_bytes());
        out.extend((entry.local_name.len() as u16).to_le_bytes());
        out.extend(0u16.to_le_bytes());
        out.extend(&entry.local_name);
        out.extend(&entry.data);
        let Some(name) = &entry.central_name else {
            continue;
        };
        listed += 1;
        central.extend(0x0201_4b50u32.to_le_bytes());
        central.extend([0x1e, 3, 20, 0, 0, 0, 0, 0, 0, 0]); // made by unix 3.0, version, flags, method, time
        central.extend(DOS_DATE.to_le_bytes());
        central.extend(crc.to_le_bytes());
        central.extend(size.to_le_bytes());
        central.extend(size.to_le_bytes());
        central.extend((name.len() as u16).to_le_bytes());
        central.extend([0, 0, 0, 0, 0, 0, 0, 0]); // extra, comment, disk, internal
        central.extend((0o100_644u32 << 16).to_le_bytes());
        central.extend(offset.to_le_bytes());
        central.extend(name);
    }
    let directory_start = out.len() as u32;
    out.extend(&central);
    out.extend(0x0605_4b50u32.to_le_bytes());
    out.extend([0, 0, 0, 0]);
    out.extend(listed.to_le_bytes());
    out.extend(listed.to_le_bytes());
    out.extend((central.len() as u32).to_le_bytes());
    out.extend(directory_start.to_le_bytes());
    out.extend(0u16.to_le_bytes());
    out
}

/// CRC-32 (IEEE), bit by bit: the generator's archives are small.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Odd but sound packages, each in both formats: what the server accepts
/// and conda and rattler must extract the same way (committed as
/// `fixtures/accepted-corpus/`, seeds for the fuzz targets).
pub fn accepted_corpus() -> Vec<PackageSpec> {
    let symlink = |path: &str, target: &str| Member {
        path: path.into(),
        kind: MemberKind::Symlink(target.into()),
    };
    let mut specs = Vec::new();
    for format in [Format::TarBz2, Format::Conda] {
        let spec = |name: &str| {
            let mut spec = PackageSpec::new(name, "1.0", "0", "noarch", format);
            spec.payload_bytes = 512;
            spec
        };
        specs.push(spec("corpus-plain"));
        let mut dotslash = spec("corpus-dotslash");
        dotslash.dotslash = true;
        specs.push(dotslash);
        let mut links = spec("corpus-links");
        links.extra_pkg_members = vec![
            Member::file("lib/links/a.txt", b"a".to_vec()),
            symlink("lib/links/b.txt", "a.txt"),
            symlink("bin/tool", "../lib/links/a.txt"),
            Member {
                path: "lib/links/c.txt".into(),
                kind: MemberKind::Hardlink("lib/links/a.txt".into()),
            },
        ];
        specs.push(links);
        let mut long = spec("corpus-long-names");
        let deep = format!("share/{}/{}.txt", "d".repeat(90), "f".repeat(80));
        long.extra_pkg_members = vec![
            Member::file(deep.clone(), b"deep".to_vec()),
            symlink("share/deep-link", &deep.replacen("share/", "", 1)),
        ];
        specs.push(long);
        let mut exports = spec("corpus-exports");
        exports.depends = vec!["python >=3.8".into(), "libzlib >=1.2,<2".into()];
        exports.run_exports = Some(json!({"weak": ["corpus-exports >=1.0"]}));
        specs.push(exports);
        let mut repeat = spec("corpus-repeat-info");
        repeat.extra_info_members = vec![
            Member::file("info/files", b"lib/x\n".to_vec()),
            Member::file("./info/files", b"lib/x\n".to_vec()),
        ];
        specs.push(repeat);
        let mut dirs = spec("corpus-dirs");
        dirs.extra_pkg_members = vec![
            Member {
                path: "etc/conf.d/".into(),
                kind: MemberKind::Dir,
            },
            Member::file("etc/conf.d/a.conf", b"x=1\n".to_vec()),
            Member {
                path: "etc/conf.d".into(),
                kind: MemberKind::Dir,
            },
        ];
        specs.push(dirs);
        let mut unicode = spec("corpus-unicode");
        unicode.extra_pkg_members = vec![Member::file("share/ünïcødé €.txt", b"u".to_vec())];
        specs.push(unicode);
    }
    specs
}
