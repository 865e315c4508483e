//! Writing a subdir's metadata files: each JSON document, and its `.bz2` and
//! `.zst` copies when asked for.
//!
//! Compressed copies are written before the JSON they copy. If a run dies in
//! between, the JSON is still the old one, so the next run sees it differ and
//! rewrites both; a copy is never left behind an up-to-date JSON.
//!
//! The server's writes after each update take a faster path,
//! [`write_subdir_live`]: the listing is known to have changed, so nothing
//! is read back; the copies are compressed while the JSON is written; the
//! identical `repodata.json` and `repodata_from_packages.json` share one
//! file on disk (hard links); and one directory sync makes every rename
//! durable.

use std::io::{self, Write};

use super::IndexOptions;
use crate::repodata::SubdirRepodata;
use crate::storage::{LocalFs, StagedFile, Storage};

/// conda-index 0.13.0 compresses with zstd level 16.
pub const DEFAULT_ZSTD_LEVEL: i32 = 16;

/// The JSON documents that hold the listing, identical without patches.
const REPODATA: [&str; 2] = ["repodata_from_packages.json", "repodata.json"];

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
        let changed = !storage.holds(&path, json)?;
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

/// Writes a subdir's metadata after an update that changed its listing:
/// `repodata.json` and `repodata_from_packages.json` (the same `json`,
/// hard-linked), `run_exports.json` when asked for, and their compressed
/// copies. Every file is written (and synced) under a temporary name
/// before any is renamed into place, so a failure while writing (a full
/// disk) changes nothing; returns once every rename is durable. Copies are
/// renamed before the JSON they copy, and repodata.json comes last, as in
/// [`write_subdir`].
pub(crate) fn write_subdir_live(
    storage: &LocalFs,
    subdir: &str,
    json: &[u8],
    run_exports: Option<&[u8]>,
    options: &IndexOptions,
) -> io::Result<()> {
    let wanted: Vec<Compression> = [
        (options.bz2, Compression::Bz2),
        (options.zst, Compression::Zst(options.zstd_level)),
    ]
    .into_iter()
    .filter_map(|(wanted, compression)| wanted.then_some(compression))
    .collect();
    // (names sharing one file, the JSON, compressed how) in install order.
    let mut documents: Vec<(Vec<String>, &[u8], Option<Compression>)> = Vec::new();
    let mut add = |names: &[&str], bytes| {
        for &compression in &wanted {
            let ext = compression.extension();
            let copies = names.iter().map(|name| format!("{name}{ext}")).collect();
            documents.push((copies, bytes, Some(compression)));
        }
        let names = names.iter().map(|name| (*name).to_owned()).collect();
        documents.push((names, bytes, None));
    };
    if let Some(run_exports) = run_exports {
        add(&["run_exports.json"], run_exports);
    }
    add(&REPODATA, json);
    // One thread per file: compressing takes longest, and the JSON is
    // written and synced meanwhile.
    let staged = std::thread::scope(|scope| {
        let workers: Vec<_> = documents
            .iter()
            .map(|&(_, bytes, compression)| {
                scope.spawn(move || match compression {
                    Some(compression) => storage.stage(subdir, &compression.compress(bytes)?),
                    None => storage.stage(subdir, bytes),
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| {
                worker
                    .join()
                    .unwrap_or_else(|_| Err(io::Error::other("compression thread panicked")))
            })
            .collect::<io::Result<Vec<StagedFile>>>()
    })?;
    // A copy not asked for any more would no longer match the new JSON.
    for compression in [Compression::Bz2, Compression::Zst(0)] {
        let ext = compression.extension();
        if !wanted.iter().any(|w| w.extension() == ext) {
            for name in REPODATA
                .iter()
                .chain(run_exports.map(|_| &"run_exports.json"))
            {
                storage.remove(&format!("{subdir}/{name}{ext}"))?;
            }
        }
    }
    for ((names, _, _), staged) in documents.iter().zip(staged) {
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        staged.install(&names)?;
    }
    storage.sync_dir(subdir)
}
