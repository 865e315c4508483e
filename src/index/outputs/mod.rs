//! Writing a subdir's metadata: the monolithic JSON documents
//! ([`monolithic`]), CEP 16 shards ([`shards`]) and patch instructions
//! ([`patches`]), as conda-index 0.13.0's flags ask for them.
//!
//! One subdir's files change together: new shard files are created (and
//! made durable) first, since the indexes name them; then every other
//! file goes through one [`Storage::write_atomic_all`], so a failure while
//! writing (a full disk) leaves them all as they were, and a file whose
//! bytes would not change is not touched.

pub(crate) mod channel;
pub(crate) mod current;
pub(crate) mod html;
mod monolithic;
pub(crate) mod patches;
pub(crate) mod shards;

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::time::SystemTime;

use super::IndexOptions;
use crate::repodata::current::Pins;
use crate::repodata::patch::Instructions;
use crate::repodata::shards::{
    created_at, ShardIndexInfo, SHARDS_INDEX, SHARDS_INDEX_FROM_PACKAGES,
};
use crate::repodata::tree::Tree;
use crate::repodata::{JsonStyle, RepodataView, SubdirRepodata};
use crate::storage::Storage;
pub use monolithic::DEFAULT_ZSTD_LEVEL;
pub(crate) use monolithic::{derived_files, stage_json, stage_live, Monolithic};
use patches::{PatchSource, PATCH_INSTRUCTIONS};
use shards::ShardState;

/// What one run shares across its subdirs.
pub(crate) struct Run {
    pub patches: Option<PatchSource>,
    /// `-m`: versions current_repodata.json keeps besides the newest.
    pub pins: Pins,
    /// The run's time: every subdir's shard index gets it as `created_at`.
    pub now: SystemTime,
    /// Read, do not write: the caller commits the outputs itself (a server
    /// on a bucket, whose writes must compare-and-swap with other servers').
    pub defer_writes: bool,
    /// Every subdir's records are wanted (by a server, or for
    /// channeldata.json), even where nothing changed.
    pub keep_records: bool,
    /// Each subdir's `patch_instructions.json` as last read, when it
    /// patched nothing: a server re-reads the file at every commit, and
    /// comparing its bytes costs far less than parsing 100,000 names.
    pub noop_patch_files: patches::NoopFiles,
}

impl Run {
    pub fn new(options: &IndexOptions) -> Result<Self, super::IndexError> {
        let patches = match &options.patch_generator {
            Some(path) => Some(PatchSource::load(path, options.python.as_deref())?),
            None => None,
        };
        let pins = match &options.current_index_versions {
            Some(path) => current::load_pins(path)?,
            None => Pins::new(),
        };
        Ok(Self {
            patches,
            pins,
            now: SystemTime::now(),
            defer_writes: false,
            keep_records: options.channeldata,
            noop_patch_files: patches::NoopFiles::default(),
        })
    }
}

/// CEP 15's `base_url` for a subdir: `<base-url>/<subdir>/`.
pub(crate) fn subdir_base_url(options: &IndexOptions, subdir: &str) -> Option<String> {
    options
        .base_url
        .as_ref()
        .map(|base| format!("{}/{subdir}/", base.trim_end_matches('/')))
}

fn invalid(err: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, err.to_string())
}

/// The monolithic documents: `repodata_from_packages.json` as the packages
/// say, `repodata.json` with `instructions` applied, `run_exports.json`.
pub(crate) fn monolithic(
    repodata: &SubdirRepodata,
    instructions: Option<&Instructions>,
    base_url: Option<&str>,
    options: &IndexOptions,
) -> io::Result<Monolithic> {
    let view = RepodataView {
        base_url,
        ..RepodataView::default()
    };
    let from_packages = repodata.repodata_json_view(options.style, &view);
    let patched = match instructions {
        Some(instructions) => {
            let (overrides, removed) = patch_monolithic(repodata, instructions)?;
            let view = RepodataView {
                base_url,
                overrides: Some(&overrides),
                removed: &removed,
            };
            Some(repodata.repodata_json_view(options.style, &view))
        }
        None => None,
    };
    let run_exports = options
        .run_exports
        .then(|| repodata.run_exports_json(options.style));
    Ok(Monolithic {
        from_packages,
        patched,
        run_exports,
    })
}

/// The records `instructions` change (file name → new record, `None` when
/// dropped) and the `removed` list.
type Overrides = BTreeMap<String, Option<String>>;

fn patch_monolithic(
    repodata: &SubdirRepodata,
    instructions: &Instructions,
) -> io::Result<(Overrides, Vec<String>)> {
    let mut records = Vec::new();
    for file_name in instructions.file_names_touched() {
        if let Some(package) = repodata.packages.get(&file_name) {
            let tree = Tree::parse("record", package.record.as_bytes()).map_err(invalid)?;
            records.push((file_name, tree));
        }
    }
    let names: Vec<String> = records.iter().map(|(name, _)| name.clone()).collect();
    let patched = instructions.apply(records).map_err(invalid)?;
    let overrides = names
        .into_iter()
        .map(|name| {
            let record = patched
                .records
                .get(&name)
                .map(|tree| String::from_utf8_lossy(&tree.to_json(true)).into_owned());
            (name, record)
        })
        .collect();
    Ok((overrides, patched.removed))
}

/// What a subdir's shards were before an update.
pub(crate) struct ShardsBefore<'a> {
    pub state: &'a ShardState,
    /// The maps `state` vouches for (`None`: unknown, rebuild every shard).
    pub maps: Option<&'a shards::ShardMaps>,
    /// Names whose packages changed since `maps` (`None`: any).
    pub dirty: Option<&'a BTreeSet<String>>,
    /// Every package's file name begins with its name (see
    /// [`shards::by_name`]).
    pub prefixed: bool,
}

/// Every enabled output of one subdir, ready to be written.
pub(crate) struct Plan {
    pub monolithic: Option<Monolithic>,
    /// `current_repodata.json` (`--current-repodata`).
    pub current: Option<Vec<u8>>,
    /// `patch_instructions.json`, when one is to be (re)written.
    pub patch_file: Option<Vec<u8>>,
    pub shards: Option<ShardPlan>,
}

pub(crate) struct ShardPlan {
    pub write: shards::ShardWrite,
    pub state: ShardState,
    /// Retired shard files to delete once the rest is written.
    pub expired: Vec<String>,
}

/// Works out a subdir's outputs: patch instructions, the monolithic
/// documents and the shards that changed since `before`.
pub(crate) fn plan(
    storage: &dyn Storage,
    repodata: &SubdirRepodata,
    options: &IndexOptions,
    run: &Run,
    before: ShardsBefore,
    now: SystemTime,
) -> io::Result<Plan> {
    let patches = run.patches.as_ref();
    let subdir = &repodata.subdir;
    let base_url = subdir_base_url(options, subdir);
    // A Python generator is given the unpatched repodata.
    let from_packages = match patches {
        Some(PatchSource::Python { .. }) => {
            let view = RepodataView {
                base_url: base_url.as_deref(),
                ..RepodataView::default()
            };
            repodata.repodata_json_view(JsonStyle::Compact, &view)
        }
        _ => Vec::new(),
    };
    let resolved = patches::resolve(
        storage,
        subdir,
        patches,
        &from_packages,
        options.style,
        &run.noop_patch_files,
    )
    .map_err(invalid)?;
    let instructions = resolved.apply.as_ref();
    let monolithic = match options.write_monolithic {
        true => Some(monolithic(
            repodata,
            instructions,
            base_url.as_deref(),
            options,
        )?),
        false => None,
    };
    let current = match (&monolithic, options.current_repodata) {
        (Some(documents), true) => Some(current::render(
            documents.repodata(),
            &run.pins,
            options.style,
        )?),
        _ => None,
    };
    let shards = match options.write_shards {
        true => Some(plan_shards(
            storage,
            repodata,
            options,
            instructions,
            base_url.as_deref(),
            before,
            now,
        )?),
        false => None,
    };
    let names = shards.as_ref().map(|s| &s.write.maps.patched);
    let quirk = match names {
        // Without a generator, conda-index's shard writer leaves
        // `{"<name>": {}, ...}` here (with one, it writes what it got).
        Some(names) if patches.is_none() && !resolved.kept_file && !names.is_empty() => {
            Some(Instructions::empty_per_name(names.keys().cloned()).to_file(options.style))
        }
        _ => None,
    };
    Ok(Plan {
        monolithic,
        current,
        patch_file: resolved.write.or(quirk),
        shards,
    })
}

fn plan_shards(
    storage: &dyn Storage,
    repodata: &SubdirRepodata,
    options: &IndexOptions,
    instructions: Option<&Instructions>,
    base_url: Option<&str>,
    before: ShardsBefore,
    now: SystemTime,
) -> io::Result<ShardPlan> {
    let subdir = &repodata.subdir;
    let mut state = before.state.clone();
    let (previous, dirty) = (before.maps, before.dirty);
    let fingerprint = shards::fingerprint(instructions, base_url.unwrap_or(""));
    // Shards made from other instructions or another base URL are rebuilt.
    let trusted = previous.filter(|_| state.fingerprint == fingerprint);
    let info = ShardIndexInfo {
        subdir: subdir.clone(),
        base_url: base_url.unwrap_or_default().to_owned(),
        created_at: created_at(now),
    };
    let missing_index = [SHARDS_INDEX, SHARDS_INDEX_FROM_PACKAGES]
        .iter()
        .any(|name| !state.indexes.contains_key(*name));
    let write = shards::build(
        repodata,
        instructions,
        trusted,
        (dirty, before.prefixed),
        &info,
        missing_index,
    )?;
    // Without a trusted state, shard files nobody refers to are found by
    // listing the subdir.
    let unknown = match previous {
        Some(_) => None,
        None => Some(
            storage
                .list(subdir)?
                .into_iter()
                .map(|e| e.name)
                .collect::<Vec<_>>(),
        ),
    };
    let expired = shards::retire(
        &mut state,
        previous,
        &write.maps,
        unknown.as_deref(),
        now,
        options.shard_retention,
    );
    state.fingerprint = fingerprint;
    for (path, bytes) in &write.indexes {
        let name = path.rsplit('/').next().unwrap_or(path).to_owned();
        let sha = crate::package::hex(&<sha2::Sha256 as sha2::Digest>::digest(bytes));
        state.indexes.insert(name, sha);
    }
    Ok(ShardPlan {
        write,
        state,
        expired,
    })
}

/// Every file a subdir's outputs may comprise, whichever options made
/// them (the shard files aside: they are named by their content, and
/// the shard indexes name them). A stamp of each, present or absent, tells
/// whether anything but an indexer touched them.
pub(crate) fn output_paths(subdir: &str) -> Vec<String> {
    let documents = [
        "repodata.json",
        "repodata_from_packages.json",
        "run_exports.json",
        current::CURRENT_REPODATA,
    ];
    let compressed = documents
        .iter()
        .flat_map(|name| ["", ".bz2", ".zst"].map(|ext| format!("{name}{ext}")));
    let single = [
        PATCH_INSTRUCTIONS,
        SHARDS_INDEX,
        SHARDS_INDEX_FROM_PACKAGES,
        html::INDEX_HTML,
    ]
    .map(str::to_owned);
    compressed
        .chain(single)
        .map(|name| format!("{subdir}/{name}"))
        .chain([shards::state_path(subdir)])
        .collect()
}

/// What [`write_subdir`] did.
pub(crate) struct Written {
    pub files: usize,
    /// The shards now on disk, when shards are written.
    pub shards: Option<(shards::ShardMaps, ShardState)>,
    /// Every output a subdir can have ([`output_paths`]), to be stamped as
    /// this write left them.
    pub outputs: Vec<String>,
    /// When a retired shard is next due for deletion.
    pub expires: Option<u64>,
}

/// Writes every enabled output of one subdir, then `extra` files (the
/// index cache). `dirty` names the packages whose shards may have changed
/// since the last run (`None`: any).
pub(crate) fn write_subdir(
    storage: &dyn Storage,
    repodata: &SubdirRepodata,
    options: &IndexOptions,
    run: &Run,
    dirty: Option<BTreeSet<String>>,
    extra: Vec<(String, Vec<u8>)>,
) -> io::Result<Written> {
    let subdir = &repodata.subdir;
    let old_state = ShardState::load(storage, subdir);
    let old_maps = shards::load_maps(storage, subdir, &old_state);
    let before = ShardsBefore {
        state: &old_state,
        maps: old_maps.as_ref(),
        dirty: dirty.as_ref(),
        prefixed: false, // a walk of the subdir costs nothing next to reading it
    };
    let plan = plan(storage, repodata, options, run, before, run.now)?;
    let mut files = monolithic::Files::default();
    if let Some(patch_file) = plan.patch_file {
        files
            .write
            .push((format!("{subdir}/{PATCH_INSTRUCTIONS}"), patch_file));
    }
    if let Some(documents) = &plan.monolithic {
        monolithic::add_files(&mut files, storage, subdir, documents, options)?;
    }
    current::add_files(
        &mut files,
        storage,
        subdir,
        plan.current.as_deref(),
        options,
    )?;
    let (mut new_shards, mut expired, mut shards_now) = (Vec::new(), Vec::new(), None);
    match plan.shards {
        Some(shard_plan) => {
            files.write.extend(shard_plan.write.indexes);
            if shard_plan.state != old_state {
                storage.create_dir_all(&format!("{subdir}/.cache"))?;
                files
                    .write
                    .push((shards::state_path(subdir), shard_plan.state.to_bytes()));
            }
            new_shards = shard_plan.write.shards;
            expired = shard_plan.expired;
            shards_now = Some((shard_plan.write.maps, shard_plan.state));
        }
        None => {
            // A shard index left from an earlier run would send clients to
            // outdated shards (conda-index leaves it): remove it.
            for name in [SHARDS_INDEX, SHARDS_INDEX_FROM_PACKAGES] {
                let path = format!("{subdir}/{name}");
                if storage.stat(&path)?.is_some() {
                    files.stale.push(path);
                }
            }
        }
    }
    let expires = shards_now
        .as_ref()
        .and_then(|(_, state)| shards::next_expiry(state, options.shard_retention));
    files.write.extend(extra);
    for copy in &files.stale {
        tracing::info!("removing {copy}: it no longer matches what it stood for");
    }
    let created = storage.create_all(&new_shards)?;
    let written = storage.write_atomic_all(&files.write, &files.stale)?;
    for file in expired {
        storage.remove(&format!("{subdir}/{file}"))?;
    }
    let html = match options.index_html && options.write_monolithic {
        true => {
            let name = channel::channel_name(storage, options);
            html::write(storage, subdir, &name, options.bz2, run.now)?
        }
        false => 0,
    };
    Ok(Written {
        files: created + written + html,
        shards: shards_now,
        outputs: output_paths(subdir),
        expires,
    })
}
