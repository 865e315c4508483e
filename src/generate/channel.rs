//! Synthetic channels: many varied but reproducible packages spread over
//! subdirectories, for indexer tests and benchmarks.

use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

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
    /// Mean payload size; individual packages vary from 0.5x to 1.5x.
    pub payload_bytes: usize,
    /// Share of packages written as `.conda` (0.5 = half).
    pub conda_fraction: f64,
}

impl Default for ChannelSpec {
    fn default() -> Self {
        ChannelSpec {
            packages: 16,
            seed: 0,
            subdirs: vec!["linux-64".to_owned(), "noarch".to_owned()],
            payload_bytes: 1024,
            conda_fraction: 0.5,
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
    (0..spec.packages)
        .map(|index| {
            let subdir = &subdirs[index % subdirs.len()];
            let package = package_spec(index, subdir, spec, &mut rng);
            write_package(&package, &root.join(subdir))
        })
        .collect()
}

/// The `index`-th package of the channel, varied by the channel's RNG.
fn package_spec(
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
    let mut package = PackageSpec::new(package_name(group), version, build, subdir, format);
    package.build_number = build_number;
    package.depends = depends(group, rng);
    package.payload_bytes = vary_size(spec.payload_bytes, rng);
    package.seed = rng.gen();
    package
}

/// Names are `pkg0001`, `pkg0002`, ... (1-based, like a human would count).
fn package_name(group: usize) -> String {
    format!("pkg{:04}", group + 1)
}

/// Up to two dependencies on earlier names, so the channel has a graph.
fn depends(group: usize, rng: &mut ChaCha8Rng) -> Vec<String> {
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
        .map(|dep| format!("{} >=0.1", package_name(dep)))
        .collect()
}

/// A size uniformly drawn from `[mean/2, mean*3/2]`.
fn vary_size(mean: usize, rng: &mut ChaCha8Rng) -> usize {
    let low = mean / 2;
    low + rng.gen_range(0..=mean)
}
