//! Writing a subdir's metadata files: each JSON document, and its `.bz2` and
//! `.zst` copies when asked for.
//!
//! Compressed copies are written before the JSON they copy. If a run dies in
//! between, the JSON is still the old one, so the next run sees it differ and
//! rewrites both; a copy is never left behind an up-to-date JSON.

use std::io::{self, Write};

use super::IndexOptions;
use crate::repodata::SubdirRepodata;
use crate::storage::Storage;

/// conda-index 0.13.0 compresses with zstd level 16.
pub const DEFAULT_ZSTD_LEVEL: i32 = 16;

#[derive(Debug, Clone, Copy)]
enum Compression {
    Bz2,
    Zst(i32),
}

impl Compression {
    fn extension(self) -> &'static str {
        match self {
            Self::Bz2 => ".bz2",
            Self::Zst(_) => ".zst",
        }
    }

    fn compress(self, bytes: &[u8]) -> io::Result<Vec<u8>> {
        match self {
            Self::Bz2 => {
                let mut encoder =
                    bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::best());
                encoder.write_all(bytes)?;
                encoder.finish()
            }
            Self::Zst(level) => zstd::bulk::compress(bytes, level),
        }
    }
}

/// Writes every metadata file of one subdir, then `extra` files (the index
/// cache), as one [`Storage::write_atomic_all`]: a failure while writing (a
/// full disk) leaves every one of them as it was. Returns how many files
/// changed.
pub(crate) fn write_subdir(
    storage: &dyn Storage,
    repodata: &SubdirRepodata,
    options: &IndexOptions,
    extra: Vec<(String, Vec<u8>)>,
) -> io::Result<usize> {
    let subdir = &repodata.subdir;
    let json = repodata.repodata_json(options.style);
    let mut files = Files::default();
    files.add_json(
        storage,
        format!("{subdir}/repodata_from_packages.json"),
        &json,
        options,
    )?;
    if options.run_exports {
        let run_exports = repodata.run_exports_json(options.style);
        files.add_json(
            storage,
            format!("{subdir}/run_exports.json"),
            &run_exports,
            options,
        )?;
    }
    // Last: clients read repodata.json, so it changes only once the rest has.
    files.add_json(storage, format!("{subdir}/repodata.json"), &json, options)?;
    files.write.extend(extra);
    for copy in &files.stale {
        tracing::info!("removing {copy}: it no longer matches the JSON it copied");
    }
    storage.write_atomic_all(&files.write, &files.stale)
}

/// What one subdir's metadata write replaces and removes.
#[derive(Default)]
struct Files {
    write: Vec<(String, Vec<u8>)>,
    stale: Vec<String>,
}

impl Files {
    /// A JSON document, preceded by its compressed copies.
    fn add_json(
        &mut self,
        storage: &dyn Storage,
        path: String,
        json: &[u8],
        options: &IndexOptions,
    ) -> io::Result<()> {
        let changed = storage.read(&path)?.as_deref() != Some(json);
        for (wanted, compression) in [
            (options.bz2, Compression::Bz2),
            (options.zst, Compression::Zst(options.zstd_level)),
        ] {
            let copy = format!("{path}{}", compression.extension());
            if wanted && (changed || storage.stat(&copy)?.is_none()) {
                self.write.push((copy, compression.compress(json)?));
            } else if !wanted && changed && storage.stat(&copy)?.is_some() {
                self.stale.push(copy);
            }
        }
        if changed {
            self.write.push((path, json.to_vec()));
        }
        Ok(())
    }
}
