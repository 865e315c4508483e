//! `generate DIR`: make a channel of synthetic but valid conda packages, for
//! trying the indexer and server and for benchmarks.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::generate::{generate_channel, ChannelSpec, Sizes};

/// Make a channel of synthetic, valid conda packages (deterministic for a
/// seed), for trying things out and for benchmarks.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Directory to create the channel in (subdirs are made inside it).
    dir: PathBuf,
    /// Number of packages.
    #[arg(long, default_value_t = 100)]
    packages: usize,
    /// Mean payload bytes per package (with `--sizes uniform`; files are
    /// about 61% of it).
    #[arg(long, default_value_t = 100_000)]
    payload_bytes: usize,
    /// Package file sizes: `uniform` (0.5x to 1.5x --payload-bytes),
    /// `realistic` (70% of 2-200 KB, 25% up to 5 MB, 4.8% up to 50 MB, 0.2%
    /// of 100-400 MB), `tiny` (a few hundred bytes: 100,000 packages in
    /// seconds), or a range of file sizes such as `100M-200M`.
    #[arg(long, default_value = "uniform", value_parser = parse_sizes)]
    sizes: Sizes,
    /// Package names are PREFIX0001, PREFIX0002, ...
    #[arg(long, default_value = "pkg")]
    name_prefix: String,
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
        sizes: args.sizes,
        name_prefix: args.name_prefix,
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

fn parse_sizes(text: &str) -> Result<Sizes, String> {
    match text {
        "uniform" => return Ok(Sizes::Uniform),
        "realistic" => return Ok(Sizes::Realistic),
        "tiny" => return Ok(Sizes::Tiny),
        _ => {}
    }
    let (min, max) = text.split_once('-').ok_or_else(|| {
        format!("{text:?}: expected uniform, realistic, tiny or a range such as 100M-200M")
    })?;
    let (min, max) = (parse_bytes(min)?, parse_bytes(max)?);
    if min > max {
        return Err(format!("{text:?}: the range is empty"));
    }
    Ok(Sizes::Range { min, max })
}

/// `1500`, `100K`, `100M`, `2G` (powers of 1000).
fn parse_bytes(text: &str) -> Result<u64, String> {
    let upper = text.trim().to_ascii_uppercase();
    let (digits, unit) = match upper.strip_suffix(['K', 'M', 'G']) {
        Some(digits) => (digits, &upper[digits.len()..]),
        None => (upper.as_str(), ""),
    };
    let scale = match unit {
        "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        _ => 1,
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| format!("{text:?} is not a size (such as 1500, 100K, 100M, 2G)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_sizes("tiny"), Ok(Sizes::Tiny));
        assert_eq!(
            parse_sizes("100M-200M"),
            Ok(Sizes::Range {
                min: 100_000_000,
                max: 200_000_000
            })
        );
        assert_eq!(
            parse_sizes("1500-2k"),
            Ok(Sizes::Range {
                min: 1500,
                max: 2000
            })
        );
        for bad in ["", "huge", "2M-1M", "x-1M", "1M-", "99999999999999G-1"] {
            assert!(parse_sizes(bad).is_err(), "{bad}");
        }
    }
}
