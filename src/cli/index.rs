//! `index CHANNEL_DIR`: write the channel's metadata with the native indexer,
//! or hand over to `conda index`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};

use crate::index::conda::{CondaIndexError, CondaIndexer};
use crate::index::{index_channel, IndexOptions, IndexSummary};
use crate::repodata::JsonStyle;
use crate::storage::{ChannelLock, LocalFs};

/// Exit status when the metadata was written but some packages were left out.
const EXIT_LEFT_OUT: u8 = 2;

/// Write repodata.json for every subdir of a channel (byte-compatible with
/// conda-index 0.13.0).
///
/// Subdirs are `noarch` (always created) and every directory named
/// `<platform>-<arch>` (CEP 26). Only new or changed packages are read; a
/// package that cannot be read is left out with a warning.
///
/// Exit status: 0 all packages indexed, 2 metadata written but some packages
/// left out, 1 fatal error (nothing changed).
#[derive(Debug, Args)]
pub struct IndexArgs {
    /// The channel's root directory (the one holding noarch/).
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
    /// Which indexer writes the metadata.
    #[arg(long, value_enum, default_value_t = Indexer::Native)]
    indexer: Indexer,
    /// The conda executable for `--indexer conda` (run as `CONDA_EXE index DIR`).
    #[arg(long, env = "AUH_CONDA_EXE", default_value = "conda")]
    conda_exe: PathBuf,
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
        super::report(&err);
        ExitCode::FAILURE
    })
}

fn run_native(args: &IndexArgs) -> anyhow::Result<ExitCode> {
    if !args.channel_dir.is_dir() {
        bail!(
            "channel directory {} does not exist or is not a directory",
            args.channel_dir.display()
        );
    }
    let options = IndexOptions {
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
        ..IndexOptions::default()
    };
    options.validate()?;
    let _lock = ChannelLock::acquire(&args.channel_dir)?;
    let storage = LocalFs::new(&args.channel_dir);
    let summary = index_channel(&storage, &options)
        .with_context(|| format!("cannot index {}", args.channel_dir.display()))?;
    println!("{}", summary_line(&summary));
    Ok(if summary.left_out.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_LEFT_OUT)
    })
}

fn summary_line(summary: &IndexSummary) -> String {
    format!(
        "indexed {} packages in {} subdirs: {} read, {} left out, {} files written, {:.2} s",
        summary.packages,
        summary.subdirs,
        summary.read,
        summary.left_out.len(),
        summary.files_written,
        summary.elapsed.as_secs_f64()
    )
}

/// Runs `CONDA_EXE index CHANNEL_DIR` with the same output flags and passes
/// its exit status on.
fn run_conda(args: &IndexArgs) -> anyhow::Result<ExitCode> {
    let indexer = CondaIndexer {
        exe: args.conda_exe.clone(),
        subdirs: args.subdirs.clone(),
        zst: args.zst,
        bz2: args.bz2,
        run_exports: args.run_exports,
        no_compact: args.no_compact,
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
