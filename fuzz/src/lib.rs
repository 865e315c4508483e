//! What the fuzz targets share: the checks every package read must pass,
//! the containers built around a fuzzed tar, and an extraction model that
//! says whether a package could make an installer write outside its
//! prefix.
//!
//! The targets panic (and libFuzzer reports a crash) when a property fails;
//! everything here is for fuzzing only, so it asserts freely.

use std::collections::HashMap;
use std::io::{Cursor, Read, Write};

use artifact_upload_handler::package::{read_package, read_verified, PackageError};

/// The stem the package targets use for their file names.
pub const STEM: &str = "fuzz-1.0-0";

/// Runs the indexer's read and the upload's strict read on `bytes`, named
/// `file_name`, and checks how they relate. Returns the strict read's
/// result for target-specific checks.
pub fn check_package(bytes: &[u8], file_name: &str) -> Result<(), PackageError> {
    let indexed = read_package(Cursor::new(bytes), file_name);
    let verified = read_verified(Cursor::new(bytes), file_name);
    if let Ok(info) = &indexed {
        assert_eq!(info.digests.size, bytes.len() as u64, "digest size");
    }
    if let Ok(members) = &verified {
        // The strict walk sees everything the indexer's walk sees (and
        // more), so whatever it accepts the indexer reads the same way.
        let info = match &indexed {
            Ok(info) => info,
            Err(err) => panic!("accepted for upload but not indexable: {err}"),
        };
        assert_eq!(
            info.members.index_json, members.index_json,
            "index.json differs"
        );
        if file_name.ends_with(".conda") {
            assert_eq!(
                info.members.run_exports_json, members.run_exports_json,
                "run_exports.json differs"
            );
        }
    }
    verified.map(drop)
}

/// bzip2 with libbzip2 at its fastest level.
pub fn bzip2_compress(data: &[u8]) -> Vec<u8> {
    let mut encoder = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
    encoder.write_all(data).expect("bzip2 into memory");
    encoder.finish().expect("bzip2 into memory")
}

/// A `.conda` named [`STEM`] whose info and pkg members are both `tar`,
/// zstd-compressed, in a stored ZIP (as conda writes them).
pub fn conda_container(info_tar: &[u8], pkg_tar: &[u8]) -> Vec<u8> {
    use zip::write::SimpleFileOptions;
    let options = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let members: [(String, Vec<u8>); 3] = [
        (
            "metadata.json".into(),
            br#"{"conda_pkg_format_version": 2}"#.to_vec(),
        ),
        (
            format!("info-{STEM}.tar.zst"),
            zstd::encode_all(info_tar, 1).expect("zstd into memory"),
        ),
        (
            format!("pkg-{STEM}.tar.zst"),
            zstd::encode_all(pkg_tar, 1).expect("zstd into memory"),
        ),
    ];
    for (name, data) in members {
        zip.start_file(name, options).expect("zip into memory");
        zip.write_all(&data).expect("zip into memory");
    }
    zip.finish().expect("zip into memory").into_inner()
}

/// Where a path ends up once symlinks are followed.
#[derive(Debug, PartialEq, Eq)]
enum Resolved {
    /// Inside the prefix, at these components.
    Inside(Vec<Vec<u8>>),
    /// Above the prefix, or absolute.
    Outside,
    /// Too many symlink hops (an installer fails with ELOOP: harmless).
    Loop,
}

/// A model of extracting a tar into an empty prefix the way an installer
/// without its own path checks does (Python's `tarfile` with no filter):
/// parent directories are followed through symlinks, a regular file is
/// opened for writing through a symlink of the same name, a hard link's
/// target is followed, and a symlink replaces whatever had its name.
#[derive(Default)]
pub struct Extraction {
    /// The symlinks currently in the prefix, by resolved-parent path.
    symlinks: HashMap<Vec<Vec<u8>>, Vec<u8>>,
}

/// What [`Extraction::member`] found wrong.
pub type Escape = String;

const MAX_HOPS: usize = 40;

fn is_separator(b: u8) -> bool {
    b == b'/' || b == b'\\'
}

fn is_absolute(path: &[u8]) -> bool {
    let drive = matches!(path, [letter, b':', ..] if letter.is_ascii_alphabetic());
    drive || path.first().copied().is_some_and(is_separator)
}

fn components(path: &[u8]) -> Vec<Vec<u8>> {
    path.split(|&b| is_separator(b))
        .filter(|part| !part.is_empty() && *part != b".")
        .map(<[u8]>::to_vec)
        .collect()
}

impl Extraction {
    /// Resolves `path` relative to the directory `base`, following symlinks
    /// in every component (the last one too when `follow_last`).
    fn resolve(&self, base: Vec<Vec<u8>>, path: &[u8], follow_last: bool) -> Resolved {
        if is_absolute(path) {
            return Resolved::Outside;
        }
        let mut at = base;
        let mut todo: Vec<Vec<u8>> = components(path);
        todo.reverse();
        let mut hops = 0;
        while let Some(part) = todo.pop() {
            if part == b".." {
                if at.pop().is_none() {
                    return Resolved::Outside;
                }
                continue;
            }
            at.push(part);
            let last = todo.is_empty();
            if last && !follow_last {
                break;
            }
            if let Some(target) = self.symlinks.get(&at) {
                hops += 1;
                if hops > MAX_HOPS {
                    return Resolved::Loop;
                }
                if is_absolute(target) {
                    return Resolved::Outside;
                }
                at.pop();
                todo.extend(components(target).into_iter().rev());
            }
        }
        Resolved::Inside(at)
    }

    /// Extracts one member; an error says how it would escape the prefix.
    pub fn member<R: Read>(&mut self, entry: &tar::Entry<'_, R>) -> Result<(), Escape> {
        let name = entry.path_bytes().into_owned();
        let show = |what: &str| format!("{what}: {}", String::from_utf8_lossy(&name));
        let kind = entry.header().entry_type();
        let follow_last = matches!(
            kind,
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse
        );
        let parent = match self.resolve(Vec::new(), &name, follow_last) {
            Resolved::Inside(path) => path,
            Resolved::Outside => return Err(show("member written outside the prefix")),
            Resolved::Loop => return Ok(()),
        };
        match kind {
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                self.symlinks.insert(parent, target);
            }
            tar::EntryType::Link => {
                self.symlinks.remove(&parent);
                let target = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                // tarfile resolves a hard link's target from the prefix.
                if self.resolve(Vec::new(), &target, true) == Resolved::Outside {
                    return Err(show("hard link to a file outside the prefix"));
                }
            }
            tar::EntryType::Regular
            | tar::EntryType::Continuous
            | tar::EntryType::GNUSparse
            | tar::EntryType::Directory
            | tar::EntryType::XGlobalHeader => {}
            other => return Err(show(&format!("accepted a {other:?} member"))),
        }
        Ok(())
    }

    /// After the last member: every symlink left in the prefix must point
    /// inside it.
    pub fn finish(&self) -> Result<(), Escape> {
        for (at, target) in &self.symlinks {
            let mut dir = at.clone();
            dir.pop();
            if self.resolve(dir, target, true) == Resolved::Outside {
                return Err(format!(
                    "symlink {:?} -> {:?} points outside the prefix",
                    at.iter()
                        .map(|p| String::from_utf8_lossy(p).into_owned())
                        .collect::<Vec<_>>()
                        .join("/"),
                    String::from_utf8_lossy(target)
                ));
            }
        }
        Ok(())
    }
}

/// Extracts all of `tar` in the model; the first escape found, if any.
pub fn escapes(tar: &[u8]) -> Option<Escape> {
    let mut archive = tar::Archive::new(tar);
    let mut model = Extraction::default();
    let entries = archive.entries().ok()?;
    for entry in entries {
        let Ok(entry) = entry else { break };
        if let Err(escape) = model.member(&entry) {
            return Some(escape);
        }
    }
    model.finish().err()
}

/// One change to a `.conda`'s ZIP structure, of the kinds that made the
/// server and rattler read different members (issue 12). Entry numbers
/// are taken modulo the number of entries.
#[derive(arbitrary::Arbitrary, Debug, Clone, Copy)]
pub enum ZipOp {
    /// List and store an entry twice, the copy right after it.
    Duplicate(u8),
    /// Swap two entries' places.
    Swap(u8, u8),
    /// Give an entry's local header another entry's name.
    RenameLocal(u8, u8),
    /// Give an entry's central record another entry's name.
    RenameCentral(u8, u8),
    /// Store a copy of an entry before it, unlisted.
    Hide(u8),
    /// Keep an entry's bytes but drop it from the central directory.
    Unlist(u8),
    /// Give an entry another entry's bytes.
    CopyData(u8, u8),
    /// Bytes before the first entry.
    Prefix(u8),
    /// Bytes after the end record.
    Trailer(u8),
}

/// The entries of a ZIP (central-directory order, stored data as raw
/// bytes), if the `zip` crate can list them.
pub fn zip_entries(
    bytes: &[u8],
) -> Option<Vec<artifact_upload_handler::generate::hostile::ZipEntry>> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).ok()?;
    let mut entries = Vec::new();
    for index in 0..archive.len() {
        let file = archive.by_index_raw(index).ok()?;
        let start = usize::try_from(file.data_start()?).ok()?;
        let end = start.checked_add(usize::try_from(file.compressed_size()).ok()?)?;
        entries.push(artifact_upload_handler::generate::hostile::ZipEntry {
            local_name: file.name_raw().to_vec(),
            central_name: Some(file.name_raw().to_vec()),
            data: bytes.get(start..end)?.to_vec(),
        });
    }
    Some(entries)
}

/// Rewrites a ZIP with `ops` applied (as a stored ZIP); `None` if it
/// cannot be listed or has no entries.
pub fn apply_zip_ops(bytes: &[u8], ops: &[ZipOp]) -> Option<Vec<u8>> {
    let mut entries = zip_entries(bytes)?;
    let (mut prefix, mut trailer) = (Vec::new(), Vec::new());
    for op in ops {
        let n = entries.len();
        if n == 0 {
            return None;
        }
        let at = |i: u8| usize::from(i) % n;
        match *op {
            ZipOp::Duplicate(i) => {
                let copy = entries[at(i)].clone();
                entries.insert(at(i) + 1, copy);
            }
            ZipOp::Swap(i, j) => entries.swap(at(i), at(j)),
            ZipOp::RenameLocal(i, j) => {
                let name = entries[at(j)].local_name.clone();
                entries[at(i)].local_name = name;
            }
            ZipOp::RenameCentral(i, j) => {
                let name = entries[at(j)]
                    .central_name
                    .clone()
                    .or_else(|| Some(entries[at(j)].local_name.clone()));
                entries[at(i)].central_name = name;
            }
            ZipOp::Hide(i) => {
                let mut copy = entries[at(i)].clone();
                copy.central_name = None;
                entries.insert(at(i), copy);
            }
            ZipOp::Unlist(i) => entries[at(i)].central_name = None,
            ZipOp::CopyData(i, j) => {
                let data = entries[at(j)].data.clone();
                entries[at(i)].data = data;
            }
            ZipOp::Prefix(len) => prefix.resize(usize::from(len % 64) + 1, b'P'),
            ZipOp::Trailer(len) => trailer.resize(usize::from(len % 64) + 1, b'T'),
        }
    }
    let mut out = prefix;
    out.extend(artifact_upload_handler::generate::hostile::stored_zip(
        &entries,
    ));
    out.extend(trailer);
    Some(out)
}

/// The custom mutator of the `.conda` targets: most of the time
/// libFuzzer's own byte mutations, otherwise one to three [`ZipOp`]s
/// chosen by `seed` on the ZIP after `skip` bytes (the stem line).
pub fn mutate_conda(
    data: &mut [u8],
    size: usize,
    max_size: usize,
    seed: u32,
    skip: usize,
) -> usize {
    let mut rng = seed;
    let mut next = move || {
        // xorshift32: deterministic in the seed, as libFuzzer requires.
        rng ^= rng << 13;
        rng ^= rng >> 17;
        rng ^= rng << 5;
        rng
    };
    if next() % 3 != 0 || skip > size {
        return libfuzzer_sys::fuzzer_mutate(data, size, max_size);
    }
    let ops: Vec<ZipOp> = (0..1 + next() % 3)
        .map(|_| {
            let (a, b) = (next() as u8, next() as u8);
            match next() % 9 {
                0 => ZipOp::Duplicate(a),
                1 => ZipOp::Swap(a, b),
                2 => ZipOp::RenameLocal(a, b),
                3 => ZipOp::RenameCentral(a, b),
                4 => ZipOp::Hide(a),
                5 => ZipOp::Unlist(a),
                6 => ZipOp::CopyData(a, b),
                7 => ZipOp::Prefix(a),
                _ => ZipOp::Trailer(a),
            }
        })
        .collect();
    let Some(zip) = apply_zip_ops(&data[skip..size], &ops) else {
        return libfuzzer_sys::fuzzer_mutate(data, size, max_size);
    };
    if skip + zip.len() > max_size {
        return libfuzzer_sys::fuzzer_mutate(data, size, max_size);
    }
    data[skip..skip + zip.len()].copy_from_slice(&zip);
    skip + zip.len()
}

/// For a `.conda` the strict walk accepted: a reader that streams the
/// local headers from the start (rattler's) finds exactly the central
/// directory's entries, in file order, with the same bytes. A streaming
/// reader that gives up is fine (the install fails; nothing unverified is
/// installed).
pub fn assert_streamed_like_directory(bytes: &[u8]) {
    let mut listed = zip_entries(bytes).expect("an accepted .conda lists its entries");
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).expect("accepted");
    let mut starts: Vec<u64> = (0..archive.len())
        .map(|i| archive.by_index_raw(i).expect("accepted").header_start())
        .collect();
    let mut order: Vec<usize> = (0..listed.len()).collect();
    order.sort_by_key(|&i| starts[i]);
    starts.sort_unstable();
    let listed: Vec<_> = order
        .iter()
        .map(|&i| std::mem::replace(&mut listed[i], empty_entry()))
        .collect();
    let mut reader = Cursor::new(bytes);
    let mut streamed = Vec::new();
    loop {
        match zip::read::read_zipfile_from_stream(&mut reader) {
            Ok(Some(mut file)) => {
                let name = file.name_raw().to_vec();
                let mut data = Vec::new();
                if file.read_to_end(&mut data).is_err() {
                    return;
                }
                streamed.push((name, data));
            }
            Ok(None) => break,
            Err(_) => return,
        }
    }
    assert_eq!(streamed.len(), listed.len(), "streamed entry count");
    for ((name, data), entry) in streamed.iter().zip(&listed) {
        assert_eq!(Some(name), entry.central_name.as_ref(), "streamed name");
        // Stored entries only: deflated ones are compared by name.
        if data.len() == entry.data.len() {
            assert_eq!(data, &entry.data, "streamed bytes");
        }
    }
}

fn empty_entry() -> artifact_upload_handler::generate::hostile::ZipEntry {
    artifact_upload_handler::generate::hostile::ZipEntry {
        local_name: Vec::new(),
        central_name: None,
        data: Vec::new(),
    }
}
