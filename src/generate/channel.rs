//! Synthetic channels: many varied but reproducible packages spread over
//! subdirectories, for indexer tests and benchmarks.
//!
//! Every package's spec is drawn from one seeded RNG in order, then the
//! files are written in parallel: the bytes depend only on the seed.

use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::{write_package, Format, GenerateError, PackageSpec};

/// Packages per name; each gets a distinct minor version, which is what
/// keeps every file name in the channel unique.
const VERSIONS_PER_NAME: usize = 4;

/// Shape of a generated channel.
#[derive(Debug, Clone)]
pub struct ChannelSpec {
    pub packages: usize,
    pub seed: u64,
    /// Subdirs to fill round-robin; empty means just `noarch`.
    pub subdirs: Vec<String>,
    /// Mean payload size for [`Sizes::Uniform`].
    pub payload_bytes: usize,
    /// Share of packages written as `.conda` (0.5 = half).
    pub conda_fraction: f64,
    /// How package sizes are drawn.
    pub sizes: Sizes,
    /// Package names are `<prefix>0001`, `<prefix>0002`, ...
    pub name_prefix: String,
}

/// The generator's payload compresses to about this share of its size
/// (60% random bytes, the rest repeated text), in both formats.
pub const COMPRESSED_SHARE: f64 = 0.61;

/// How package sizes are drawn.
#[derive(Debug, Clone, PartialEq)]
pub enum Sizes {
    /// Payloads from 0.5x to 1.5x `payload_bytes`.
    Uniform,
    /// Files of about `min..=max` bytes, uniformly.
    Range { min: u64, max: u64 },
    /// Like a real channel: most files small, a few of hundreds of MB
    /// (see [`REALISTIC_TIERS`]).
    Realistic,
    /// Files of a few hundred bytes: a 100,000-package channel in seconds.
    Tiny,
}

/// [`Sizes::Realistic`]: (share of packages, smallest file, largest file),
/// log-uniform within a tier. The mean file is about 1.7 MB.
pub const REALISTIC_TIERS: [(f64, u64, u64); 4] = [
    (0.700, 2_000, 200_000),
    (0.250, 200_000, 5_000_000),
    (0.048, 5_000_000, 50_000_000),
    (0.002, 100_000_000, 400_000_000),
];

impl Default for ChannelSpec {
    fn default() -> Self {
        ChannelSpec {
            packages: 16,
            seed: 0,
            subdirs: vec!["linux-64".to_owned(), "noarch".to_owned()],
            payload_bytes: 1024,
            conda_fraction: 0.5,
            sizes: Sizes::Uniform,
            name_prefix: "pkg".to_owned(),
        }
    }
}

/// Writes `spec.packages` packages under `root/<subdir>/` and returns their
/// paths in generation order. The same spec always yields the same files.
pub fn generate_channel(root: &Path, spec: &ChannelSpec) -> Result<Vec<PathBuf>, GenerateError> {
    let noarch = ["noarch".to_owned()];
    let subdirs = if spec.subdirs.is_empty() {
        &noarch[..]
    } else {
        &spec.subdirs[..]
    };
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let packages: Vec<PackageSpec> = (0..spec.packages)
        .map(|index| package_spec(index, &subdirs[index % subdirs.len()], spec, &mut rng))
        .collect();
    // Largest first, so a few huge packages do not end up last on one core.
    let mut order: Vec<usize> = (0..packages.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(packages[i].payload_bytes));
    let mut written: Vec<(usize, PathBuf)> = order
        .into_par_iter()
        .map(|i| {
            let package = &packages[i];
            write_package(package, &root.join(&package.subdir)).map(|path| (i, path))
        })
        .collect::<Result<_, _>>()?;
    written.sort_unstable_by_key(|(i, _)| *i);
    Ok(written.into_iter().map(|(_, path)| path).collect())
}

/// The `index`-th package of the channel, varied by the channel's RNG.
pub(super) fn package_spec(
    index: usize,
    subdir: &str,
    spec: &ChannelSpec,
    rng: &mut ChaCha8Rng,
) -> PackageSpec {
    let group = index / VERSIONS_PER_NAME;
    let version = format!(
        "{}.{}.{}",
        rng.gen_range(0..3),
        index % VERSIONS_PER_NAME,
        rng.gen_range(0..10)
    );
    let build_number = rng.gen_range(0..3u64);
    let build = format!("h{:08x}_{build_number}", rng.gen::<u32>());
    let format = if rng.gen_bool(spec.conda_fraction.clamp(0.0, 1.0)) {
        Format::Conda
    } else {
        Format::TarBz2
    };
    let name = package_name(&spec.name_prefix, group);
    let mut package = PackageSpec::new(name, version, build, subdir, format);
    package.build_number = build_number;
    package.depends = depends(&spec.name_prefix, group, rng);
    package.payload_bytes = match &spec.sizes {
        Sizes::Uniform => vary_size(spec.payload_bytes, rng),
        Sizes::Range { min, max } => payload_for(rng.gen_range(*min..=(*max).max(*min))),
        Sizes::Realistic => payload_for(realistic_size(rng)),
        Sizes::Tiny => rng.gen_range(0..=64),
    };
    package.seed = rng.gen();
    package
}

/// Names are `pkg0001`, `pkg0002`, ... (1-based, like a human would count).
fn package_name(prefix: &str, group: usize) -> String {
    format!("{prefix}{:04}", group + 1)
}

/// Up to two dependencies on earlier names, so the channel has a graph.
fn depends(prefix: &str, group: usize, rng: &mut ChaCha8Rng) -> Vec<String> {
    if group == 0 {
        return Vec::new();
    }
    let count = rng.gen_range(0..=2);
    let mut picks: Vec<usize> = (0..count).map(|_| rng.gen_range(0..group)).collect();
    // Two draws can hit the same name; a spec listing it twice is odd.
    picks.sort_unstable();
    picks.dedup();
    picks
        .into_iter()
        .map(|dep| format!("{} >=0.1", package_name(prefix, dep)))
        .collect()
}

/// A size uniformly drawn from `[mean/2, mean*3/2]`.
fn vary_size(mean: usize, rng: &mut ChaCha8Rng) -> usize {
    let low = mean / 2;
    low + rng.gen_range(0..=mean)
}

/// The payload that compresses to a file of about `file_bytes`.
fn payload_for(file_bytes: u64) -> usize {
    (file_bytes as f64 / COMPRESSED_SHARE) as usize
}

/// A file size from [`REALISTIC_TIERS`].
fn realistic_size(rng: &mut ChaCha8Rng) -> u64 {
    let mut pick: f64 = rng.gen();
    for (share, low, high) in REALISTIC_TIERS {
        if pick < share {
            let (low, high) = ((low as f64).ln(), (high as f64).ln());
            return rng.gen_range(low..high).exp() as u64;
        }
        pick -= share;
    }
    REALISTIC_TIERS[0].1
}
