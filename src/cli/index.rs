//! `index CHANNEL_DIR`: write the channel's metadata with the native indexer,
//! or hand over to `conda index`. `CHANNEL_DIR` may be `s3://BUCKET/PREFIX`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};

use crate::index::conda::{CondaIndexError, CondaIndexer};
use crate::index::{index_channel, IndexError, IndexOptions, IndexSummary};
use crate::repodata::JsonStyle;
use crate::storage::{
    ChannelLocation, ChannelLock, LocalFs, ObjectOptions, ObjectStorage, S3Location, Storage,
};

/// Exit status when the metadata was written but some packages were left out.
const EXIT_LEFT_OUT: u8 = 2;

/// Packages read at once from an object store: each read mostly waits for
/// the network.
const OBJECT_STORE_PARALLEL: usize = 16;

/// Write repodata.json for every subdir of a channel (byte-compatible with
/// conda-index 0.13.0).
///
/// Subdirs are `noarch` (always created) and every directory named
/// `<platform>-<arch>` (CEP 26). Only new or changed packages are read; a
/// package that cannot be read is left out with a warning.
///
/// `CHANNEL_DIR` may be `s3://BUCKET/PREFIX`: endpoint and credentials come
/// from the environment (AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID,
/// AWS_SECRET_ACCESS_KEY, AWS_ALLOW_HTTP=true for a plain-HTTP endpoint)
/// and the usual AWS credential chain.
///
/// Exit status: 0 all packages indexed, 2 metadata written but some packages
/// left out, 1 fatal error (nothing changed).
#[derive(Debug, Args)]
pub struct IndexArgs {
    /// The channel's root directory (the one holding noarch/), or
    /// s3://BUCKET/PREFIX.
    channel_dir: PathBuf,
    /// Index only this subdir (repeatable).
    #[arg(long = "subdir", value_name = "SUBDIR")]
    subdirs: Vec<String>,
    /// Also write zstd-compressed copies (repodata.json.zst, ...).
    #[arg(long)]
    zst: bool,
    /// Also write bzip2-compressed copies (repodata.json.bz2, ...).
    #[arg(long)]
    bz2: bool,
    /// Also write run_exports.json (CEP 12).
    #[arg(long)]
    run_exports: bool,
    /// Pretty-print the JSON (indent 2) instead of one compact line.
    #[arg(long)]
    no_compact: bool,
    /// Packages read at once [default: 16 on s3://, one per core on disk].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    max_parallel: Option<u16>,
    /// Which indexer writes the metadata.
    #[arg(long, value_enum, default_value_t = Indexer::Native)]
    indexer: Indexer,
    /// The conda executable for `--indexer conda` (run as `CONDA_EXE index DIR`).
    #[arg(long, env = "AUH_CONDA_EXE", default_value = "conda")]
    conda_exe: PathBuf,
    /// Also write CEP 16 sharded repodata (repodata_shards.msgpack.zst and
    /// one <sha256>.msgpack.zst per package name).
    #[arg(long, overrides_with = "no_write_shards")]
    write_shards: bool,
    #[arg(long, hide = true)]
    no_write_shards: bool,
    /// Do not write repodata.json (and its copies); with --write-shards,
    /// only shards.
    #[arg(long, overrides_with = "write_monolithic")]
    no_write_monolithic: bool,
    #[arg(long, hide = true)]
    write_monolithic: bool,
    /// Patch the repodata: a .conda/.tar.bz2 holding
    /// <subdir>/patch_instructions.json, a patch_instructions.json for every
    /// subdir, or a .py with _patch_repodata (run by --python).
    #[arg(long, value_name = "PATH")]
    patch_generator: Option<PathBuf>,
    /// The Python interpreter that runs a .py patch generator.
    #[arg(long, env = "AUH_PYTHON", value_name = "PYTHON")]
    python: Option<PathBuf>,
    /// Packages are served from this URL, not beside repodata.json (CEP 15:
    /// writes base_url and repodata_version 2).
    #[arg(long, value_name = "URL")]
    base_url: Option<String>,
    /// Add new and changed packages, but keep listing those whose files are
    /// gone.
    #[arg(long, overrides_with = "no_update_only")]
    update_only: bool,
    #[arg(long, hide = true)]
    no_update_only: bool,
    /// The channel name shown in index.html and rss.xml (default: the
    /// directory's name).
    #[arg(short = 'n', long, value_name = "NAME")]
    channel_name: Option<String>,
    /// Seconds a shard no index refers to any more is kept (clients may
    /// still hold an index that names it).
    #[arg(long, value_name = "SECONDS", default_value_t = crate::index::DEFAULT_SHARD_RETENTION.as_secs())]
    shard_retention: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Indexer {
    /// The built-in indexer: no conda needed.
    Native,
    /// Run `conda index` (the optional fallback).
    Conda,
}

pub fn run(args: IndexArgs) -> ExitCode {
    let result = match args.indexer {
        Indexer::Native => run_native(&args),
        Indexer::Conda => run_conda(&args),
    };
    result.unwrap_or_else(|err| {
        match err.downcast_ref::<IndexError>() {
            // conda-index's own words, so scripts that match them still do.
            Some(conflict @ IndexError::Conflicting(_)) => eprintln!("Error: {conflict}"),
            _ => super::report(&err),
        }
        ExitCode::FAILURE
    })
}

fn run_native(args: &IndexArgs) -> anyhow::Result<ExitCode> {
    let location = ChannelLocation::parse(&args.channel_dir)?;
    let mut options = IndexOptions {
        subdirs: args.subdirs.clone(),
        zst: args.zst,
        bz2: args.bz2,
        run_exports: args.run_exports,
        style: if args.no_compact {
            JsonStyle::Indented
        } else {
            JsonStyle::Compact
        },
        progress: std::io::stderr().is_terminal(),
        max_parallel: args.max_parallel.map(usize::from),
        write_monolithic: !args.no_write_monolithic,
        write_shards: args.write_shards,
        base_url: args.base_url.clone(),
        patch_generator: args.patch_generator.clone(),
        python: args.python.clone(),
        update_only: args.update_only,
        channel_name: args.channel_name.clone(),
        shard_retention: std::time::Duration::from_secs(args.shard_retention),
        ..IndexOptions::default()
    };
    options.validate()?;
    let summary = match location {
        ChannelLocation::Local(dir) => {
            if !dir.is_dir() {
                bail!(
                    "channel directory {} does not exist or is not a directory",
                    dir.display()
                );
            }
            let _lock = ChannelLock::acquire(&dir)?;
            let summary = index_in(&LocalFs::new(&dir), &options)?;
            summary_line(&summary)
        }
        ChannelLocation::S3(s3) => {
            options.max_parallel = options.max_parallel.or(Some(OBJECT_STORE_PARALLEL));
            index_bucket(&s3, &options)?
        }
    };
    println!("{}", summary.0);
    Ok(if summary.1 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_LEFT_OUT)
    })
}

fn index_in(storage: &dyn Storage, options: &IndexOptions) -> anyhow::Result<IndexSummary> {
    index_channel(storage, options).with_context(|| format!("cannot index {}", storage.location()))
}

/// Indexes a channel in a bucket. No lock: an object store has none (the
/// metadata is written object by object, each atomically).
fn index_bucket(s3: &S3Location, options: &IndexOptions) -> anyhow::Result<(String, bool)> {
    let storage = ObjectStorage::open(s3, ObjectOptions::default())?;
    let summary = index_in(&storage, options)?;
    let traffic = storage.traffic();
    let (line, complete) = summary_line(&summary);
    Ok((
        format!(
            "{line}; {} requests, {} bytes received, {} bytes sent",
            traffic.requests, traffic.bytes_down, traffic.bytes_up
        ),
        complete,
    ))
}

/// The summary line, and whether every package was indexed.
fn summary_line(summary: &IndexSummary) -> (String, bool) {
    let line = format!(
        "indexed {} packages in {} subdirs: {} read, {} left out, {} files written, {:.2} s",
        summary.packages,
        summary.subdirs,
        summary.read,
        summary.left_out.len(),
        summary.files_written,
        summary.elapsed.as_secs_f64()
    );
    (line, summary.left_out.is_empty())
}

/// Runs `CONDA_EXE index CHANNEL_DIR` with the same output flags and passes
/// its exit status on.
fn run_conda(args: &IndexArgs) -> anyhow::Result<ExitCode> {
    if let ChannelLocation::S3(s3) = ChannelLocation::parse(&args.channel_dir)? {
        bail!("--indexer conda needs a local channel directory, not {s3}");
    }
    let indexer = CondaIndexer {
        exe: args.conda_exe.clone(),
        subdirs: args.subdirs.clone(),
        zst: args.zst,
        bz2: args.bz2,
        run_exports: args.run_exports,
        no_compact: args.no_compact,
        write_shards: args.write_shards,
        no_write_monolithic: args.no_write_monolithic,
        update_only: args.update_only,
        patch_generator: args.patch_generator.clone(),
        base_url: args.base_url.clone(),
        channel_name: args.channel_name.clone(),
    };
    let _lock = if args.channel_dir.is_dir() {
        Some(ChannelLock::acquire(&args.channel_dir)?)
    } else {
        None // conda reports a missing channel itself
    };
    let mut command = indexer.command(&args.channel_dir);
    tracing::info!("running {command:?}");
    let status = command.status().map_err(|e| indexer.spawn_error(e))?;
    match indexer.check(status, &[]) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(CondaIndexError::Failed { code, .. }) => {
            tracing::error!(
                "{} index exited with status {code}",
                args.conda_exe.display()
            );
            Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
        }
        Err(err) => Err(err.into()),
    }
}
