//! The monolithic outputs: `repodata.json`, `repodata_from_packages.json`
//! and `run_exports.json`, and their `.bz2` and `.zst` copies when asked
//! for.
//!
//! Compressed copies are written before the JSON they copy. If a run dies in
//! between, the JSON is still the old one, so the next run sees it differ and
//! rewrites both; a copy is never left behind an up-to-date JSON.
//!
//! The server's writes after each update take a faster path,
//! [`stage_live`]: the listing is known to have changed, so nothing
//! is read back; the copies are compressed while the JSON is written; the
//! identical `repodata.json` and `repodata_from_packages.json` (without
//! patches) share one file on disk (hard links); and one directory sync
//! makes every rename durable.

use std::io::{self, Write};

use super::super::IndexOptions;
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
            Self::Zst(level) => zstd_compress(bytes, level),
        }
    }
}

/// Documents past this size are compressed on every core.
const MULTITHREADED_ZSTD_BYTES: usize = 4 << 20;

/// One zstd frame of `bytes`. A big document is cut into jobs that zstd
/// compresses in parallel: still one frame, read by every decoder, and
/// for a 100,000-package `repodata.json` (34 MB) the larger half of what
/// a commit waits for.
fn zstd_compress(bytes: &[u8], level: i32) -> io::Result<Vec<u8>> {
    let workers = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    if bytes.len() < MULTITHREADED_ZSTD_BYTES || workers < 2 {
        return zstd::bulk::compress(bytes, level);
    }
    let mut compressor = zstd::bulk::Compressor::new(level)?;
    let workers = u32::try_from(workers).unwrap_or(u32::MAX);
    compressor.set_parameter(zstd::zstd_safe::CParameter::NbWorkers(workers))?;
    compressor.compress(bytes)
}

/// The monolithic documents of one subdir, already rendered.
pub(crate) struct Monolithic {
    /// `repodata_from_packages.json`: what the packages say.
    pub from_packages: Vec<u8>,
    /// `repodata.json` when patches made it differ.
    pub patched: Option<Vec<u8>>,
    pub run_exports: Option<Vec<u8>>,
}

impl Monolithic {
    pub fn repodata(&self) -> &[u8] {
        self.patched.as_deref().unwrap_or(&self.from_packages)
    }
}

/// Adds the monolithic files that changed, each preceded by its
/// compressed copies; `repodata.json` last, since clients read it.
pub(super) fn add_files(
    files: &mut Files,
    storage: &dyn Storage,
    subdir: &str,
    documents: &Monolithic,
    options: &IndexOptions,
) -> io::Result<()> {
    files.add_json(
        storage,
        format!("{subdir}/repodata_from_packages.json"),
        &documents.from_packages,
        options,
    )?;
    if let Some(run_exports) = &documents.run_exports {
        files.add_json(
            storage,
            format!("{subdir}/run_exports.json"),
            run_exports,
            options,
        )?;
    }
    files.add_json(
        storage,
        format!("{subdir}/repodata.json"),
        documents.repodata(),
        options,
    )
}

/// What one subdir's metadata write replaces and removes.
#[derive(Default)]
pub(super) struct Files {
    pub write: Vec<(String, Vec<u8>)>,
    pub stale: Vec<String>,
}

impl Files {
    /// A JSON document, preceded by its compressed copies.
    pub fn add_json(
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

/// Every monolithic file but `repodata.json`, and the compressed copies
/// of all three: what a commit to a bucket writes after `repodata.json`
/// (the one document several writers compare-and-swap).
pub(crate) fn derived_files(
    subdir: &str,
    documents: &Monolithic,
    options: &IndexOptions,
) -> io::Result<Vec<(String, Vec<u8>)>> {
    let wanted: Vec<Compression> = [
        (options.bz2, Compression::Bz2),
        (options.zst, Compression::Zst(options.zstd_level)),
    ]
    .into_iter()
    .filter_map(|(wanted, compression)| wanted.then_some(compression))
    .collect();
    let mut files = Vec::new();
    let mut documents_list: Vec<(&str, &[u8], bool)> = vec![(
        "repodata_from_packages.json",
        &documents.from_packages,
        true,
    )];
    if let Some(run_exports) = &documents.run_exports {
        documents_list.push(("run_exports.json", run_exports, true));
    }
    documents_list.push(("repodata.json", documents.repodata(), false));
    for (name, json, with_json) in documents_list {
        for compression in &wanted {
            let ext = compression.extension();
            files.push((format!("{subdir}/{name}{ext}"), compression.compress(json)?));
        }
        if with_json {
            files.push((format!("{subdir}/{name}"), json.to_vec()));
        }
    }
    Ok(files)
}

/// Stages a subdir's monolithic files after an update that changed its
/// listing: `repodata.json` and `repodata_from_packages.json` (one file,
/// hard-linked, unless patches make them differ), `run_exports.json` when
/// asked for, and their compressed copies, each written and synced under a
/// temporary name. Returns them in install order (copies before the JSON
/// they copy, repodata.json last) with the names each takes; removes
/// copies no longer asked for, which would not match the new JSON.
pub(crate) fn stage_live(
    storage: &LocalFs,
    subdir: &str,
    documents: &Monolithic,
    options: &IndexOptions,
) -> io::Result<Vec<(Vec<String>, StagedFile)>> {
    let wanted: Vec<Compression> = [
        (options.bz2, Compression::Bz2),
        (options.zst, Compression::Zst(options.zstd_level)),
    ]
    .into_iter()
    .filter_map(|(wanted, compression)| wanted.then_some(compression))
    .collect();
    // (names sharing one file, the JSON, compressed how) in install order.
    let mut documents_to_stage: Vec<(Vec<String>, &[u8], Option<Compression>)> = Vec::new();
    let mut add = |names: &[&str], bytes| {
        for &compression in &wanted {
            let ext = compression.extension();
            let copies = names.iter().map(|name| format!("{name}{ext}")).collect();
            documents_to_stage.push((copies, bytes, Some(compression)));
        }
        let names = names.iter().map(|name| (*name).to_owned()).collect();
        documents_to_stage.push((names, bytes, None));
    };
    if let Some(run_exports) = &documents.run_exports {
        add(&["run_exports.json"], run_exports);
    }
    match &documents.patched {
        None => add(&REPODATA, &documents.from_packages),
        Some(patched) => {
            add(&["repodata_from_packages.json"], &documents.from_packages);
            add(&["repodata.json"], patched);
        }
    }
    // One thread per file: compressing takes longest, and the JSON is
    // written and synced meanwhile.
    let staged = std::thread::scope(|scope| {
        let workers: Vec<_> = documents_to_stage
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
    for compression in [Compression::Bz2, Compression::Zst(0)] {
        let ext = compression.extension();
        if !wanted.iter().any(|w| w.extension() == ext) {
            for name in REPODATA
                .iter()
                .chain(documents.run_exports.as_ref().map(|_| &"run_exports.json"))
            {
                storage.remove(&format!("{subdir}/{name}{ext}"))?;
            }
        }
    }
    Ok(documents_to_stage
        .into_iter()
        .map(|(names, _, _)| names)
        .zip(staged)
        .collect())
}

/// Stages one more JSON document of a subdir (`current_repodata.json`)
/// and the compressed copies asked for, copies first; removes copies no
/// longer asked for.
pub(crate) fn stage_json(
    storage: &LocalFs,
    subdir: &str,
    name: &str,
    json: &[u8],
    options: &IndexOptions,
) -> io::Result<Vec<(Vec<String>, StagedFile)>> {
    let mut staged = Vec::new();
    for (wanted, compression) in [
        (options.bz2, Compression::Bz2),
        (options.zst, Compression::Zst(options.zstd_level)),
    ] {
        let copy = format!("{name}{}", compression.extension());
        if wanted {
            let bytes = compression.compress(json)?;
            staged.push((vec![copy], storage.stage(subdir, &bytes)?));
        } else {
            storage.remove(&format!("{subdir}/{copy}"))?;
        }
    }
    staged.push((vec![name.to_owned()], storage.stage(subdir, json)?));
    Ok(staged)
}
