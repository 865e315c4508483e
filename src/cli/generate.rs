//! `generate DIR`: make a channel of synthetic but valid conda packages, for
//! trying the indexer and server and for benchmarks.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::generate::{generate_channel, ChannelSpec};

/// Make a channel of synthetic, valid conda packages (deterministic for a
/// seed), for trying things out and for benchmarks.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Directory to create the channel in (subdirs are made inside it).
    dir: PathBuf,
    /// Number of packages.
    #[arg(long, default_value_t = 100)]
    packages: usize,
    /// Mean payload bytes per package.
    #[arg(long, default_value_t = 100_000)]
    payload_bytes: usize,
    /// Subdirs to spread the packages over.
    #[arg(long = "subdir", default_values_t = ["noarch".to_owned(), "linux-64".to_owned()])]
    subdirs: Vec<String>,
    /// Fraction of packages in the .conda format (the rest are .tar.bz2).
    #[arg(long, default_value_t = 0.5)]
    conda_fraction: f64,
    /// Seed for names and contents: the same seed gives the same bytes.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn run(args: GenerateArgs) -> ExitCode {
    let spec = ChannelSpec {
        packages: args.packages,
        seed: args.seed,
        subdirs: args.subdirs,
        payload_bytes: args.payload_bytes,
        conda_fraction: args.conda_fraction,
    };
    match generate_channel(&args.dir, &spec)
        .with_context(|| format!("cannot generate a channel in {}", args.dir.display()))
    {
        Ok(files) => {
            println!(
                "generated {} packages in {}",
                files.len(),
                args.dir.display()
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            super::report(&err);
            ExitCode::FAILURE
        }
    }
}
