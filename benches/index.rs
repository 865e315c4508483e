//! Criterion micro-benchmarks of the indexer's hot paths.
//!
//! Groups:
//! - `bzip2_first_16k`: the first 16 KB of one generated ~100 KB `.tar.bz2`
//!   (where `info/` lives) through our decoder and through libbzip2 (the
//!   `bzip2` crate), on the same bytes.
//! - `read_package`: open and read one ~100 KB generated package of each
//!   format (info members plus md5/sha256 of the whole file).
//! - `repodata_json`: serialise a subdir of 100,000 realistic records into
//!   compact `repodata.json` bytes.
//! - `index_channel`: index a generated 500-package channel (4 subdirs, half
//!   `.conda`) cold (no cache, no outputs) and with nothing changed (cache
//!   hit for every package, outputs already up to date).
//! - `incremental`: one update. `index_one_new_of_500`: an `index` run after
//!   one package was added to the 500-package channel (one package read,
//!   one subdir's outputs and cache rewritten). `live_add_into_100000`: the
//!   server's [`LiveIndex::add`] of one package into a subdir of 100,000
//!   (tiny generated packages), up to durable repodata.json and
//!   repodata.json.zst (zstd level 1, serve's default).
//!
//! Run with `cargo bench --bench index` (add `-- --quick` for a fast pass, or
//! a group name such as `-- index_channel` to run one group). The end-to-end
//! comparison against rattler-index and conda-index is `benches/compare.sh`.

use std::fs;
use std::hint::black_box;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

use artifact_upload_handler::generate::{
    generate_channel, write_package, ChannelSpec, Format, PackageSpec, Sizes,
};
use artifact_upload_handler::index::{index_channel, index_package, IndexOptions, LiveIndex};
use artifact_upload_handler::package::bz2::Bz2Decoder;
use artifact_upload_handler::package::read_package_file;
use artifact_upload_handler::repodata::{IndexedPackage, JsonStyle, SubdirRepodata};
use artifact_upload_handler::storage::{ChannelStore, LocalFs, Storage};

/// The generator's payload compresses to about 61%, so this gives ~100 KB
/// package files.
const PAYLOAD_FOR_100KB: usize = 165_000;
const REPODATA_RECORDS: usize = 100_000;
const CHANNEL_PACKAGES: usize = 500;
const CHANNEL_PAYLOAD_BYTES: usize = 100_000;
const CHANNEL_SUBDIRS: [&str; 4] = ["noarch", "linux-64", "osx-64", "win-64"];
const LIVE_PACKAGES: usize = 100_000;

fn bench_bzip2_first_16k(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut spec = PackageSpec::new(
        "benchpkg",
        "1.2.3",
        "h0123abcd_0",
        "linux-64",
        Format::TarBz2,
    );
    spec.payload_bytes = PAYLOAD_FOR_100KB;
    let path = write_package(&spec, dir.path()).expect("write package");
    let bytes = fs::read(&path).expect("read package");
    let first_16k = |mut reader: Box<dyn Read + '_>| {
        let mut out = vec![0u8; 16 * 1024];
        reader.read_exact(&mut out).expect("decode");
        out
    };
    let mut group = c.benchmark_group("bzip2_first_16k");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("ours", |b| {
        b.iter(|| first_16k(Box::new(Bz2Decoder::new(black_box(&bytes[..])))))
    });
    group.bench_function("libbzip2", |b| {
        b.iter(|| {
            first_16k(Box::new(bzip2::read::MultiBzDecoder::new(black_box(
                &bytes[..],
            ))))
        })
    });
    group.finish();
}

fn bench_read_package(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut group = c.benchmark_group("read_package");
    for (label, format) in [("tar_bz2", Format::TarBz2), ("conda", Format::Conda)] {
        let mut spec = PackageSpec::new("benchpkg", "1.2.3", "h0123abcd_0", "linux-64", format);
        spec.payload_bytes = PAYLOAD_FOR_100KB;
        spec.seed = 42;
        spec.depends = vec!["python >=3.9".to_owned(), "libzlib >=1.2.13".to_owned()];
        let path = write_package(&spec, dir.path()).expect("write package");
        let size = fs::metadata(&path).expect("stat package").len();
        group.throughput(Throughput::Bytes(size));
        group.bench_function(format!("{label}_{}kb", size / 1000), |b| {
            b.iter(|| read_package_file(black_box(&path)).expect("read package"))
        });
    }
    group.finish();
}

/// SplitMix64: deterministic filler for digests and sizes, no RNG crate API.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn hex_digits(state: &mut u64, len: usize) -> String {
    let mut out = String::with_capacity(len);
    while out.len() < len {
        out.push_str(&format!("{:016x}", splitmix(state)));
    }
    out.truncate(len);
    out
}

/// A subdir of `n` records shaped like conda-index's compact output: sorted
/// keys, depends, license, digests, size and timestamp; half `.conda`.
fn big_subdir(n: usize) -> SubdirRepodata {
    let mut state = 0x5eed_u64;
    let mut repodata = SubdirRepodata::new("linux-64");
    for i in 0..n {
        let name = format!("pkg{:05}", i / 4);
        let version = format!("{}.{}.{}", i % 3, i % 4, splitmix(&mut state) % 10);
        let build_number = splitmix(&mut state) % 3;
        let build = format!("h{}_{build_number}", hex_digits(&mut state, 8));
        let ext = if i % 2 == 0 { ".conda" } else { ".tar.bz2" };
        let file_name = format!("{name}-{version}-{build}{ext}");
        let depends = if i < 8 {
            String::new()
        } else {
            format!(
                "\"pkg{:05} >=0.1\",\"python >=3.9,<3.14.0a0\"",
                splitmix(&mut state) % (i as u64 / 4)
            )
        };
        let sha256 = hex_digits(&mut state, 64);
        let record = format!(
            concat!(
                "{{\"build\":\"{build}\",\"build_number\":{bn},\"depends\":[{deps}],",
                "\"license\":\"BSD-3-Clause\",\"license_family\":\"BSD\",\"md5\":\"{md5}\",",
                "\"name\":\"{name}\",\"sha256\":\"{sha}\",\"size\":{size},",
                "\"subdir\":\"linux-64\",\"timestamp\":{ts},\"version\":\"{version}\"}}"
            ),
            build = build,
            bn = build_number,
            deps = depends,
            md5 = hex_digits(&mut state, 32),
            name = name,
            sha = sha256,
            size = 40_000 + splitmix(&mut state) % 200_000,
            ts = 1_700_000_000_000 + splitmix(&mut state) % 100_000_000_000,
            version = version,
        );
        repodata.packages.insert(
            file_name,
            Arc::new(IndexedPackage {
                record,
                run_exports: "{}".to_owned(),
                sha256,
                name: Some(name.to_owned()),
                shard_record: None,
                channeldata: String::new(),
            }),
        );
    }
    repodata
}

fn bench_repodata_json(c: &mut Criterion) {
    let repodata = big_subdir(REPODATA_RECORDS);
    let bytes = repodata.repodata_json(JsonStyle::Compact).len() as u64;
    let mut group = c.benchmark_group("repodata_json");
    group.sample_size(20);
    group.throughput(Throughput::Bytes(bytes));
    group.bench_function(format!("compact_{REPODATA_RECORDS}_records"), |b| {
        b.iter(|| black_box(&repodata).repodata_json(JsonStyle::Compact))
    });
    group.finish();
}

/// Deletes what an index run leaves in each subdir: its cache and every
/// `repodata*.json*` output (plus `run_exports.json*`, if any).
fn remove_outputs(root: &Path) {
    for subdir in CHANNEL_SUBDIRS {
        let dir = root.join(subdir);
        let cache = dir
            .join(".cache")
            .join("artifact-upload-handler-index.json");
        if cache.exists() {
            fs::remove_file(&cache).expect("remove cache");
        }
        for entry in fs::read_dir(&dir).expect("list subdir") {
            let entry = entry.expect("dir entry");
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("repodata") || name.starts_with("run_exports.json") {
                fs::remove_file(entry.path()).expect("remove output");
            }
        }
    }
}

fn bench_index_channel(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let spec = ChannelSpec {
        packages: CHANNEL_PACKAGES,
        seed: 0,
        subdirs: CHANNEL_SUBDIRS.iter().map(|s| (*s).to_owned()).collect(),
        payload_bytes: CHANNEL_PAYLOAD_BYTES,
        conda_fraction: 0.5,
        ..ChannelSpec::default()
    };
    let files = generate_channel(dir.path(), &spec).expect("generate channel");
    let total: u64 = files
        .iter()
        .map(|f| fs::metadata(f).expect("stat").len())
        .sum();
    let storage = LocalFs::new(dir.path());
    let options = IndexOptions::default();

    let mut group = c.benchmark_group("index_channel");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));

    group.throughput(Throughput::Bytes(total));
    group.bench_function(format!("cold_{CHANNEL_PACKAGES}_packages"), |b| {
        b.iter_batched(
            || remove_outputs(dir.path()),
            |()| {
                let summary = index_channel(&storage, &options).expect("index");
                assert_eq!(summary.read, CHANNEL_PACKAGES);
                summary
            },
            BatchSize::PerIteration,
        )
    });

    // One run to fill the cache and write the outputs; after it nothing is
    // read and nothing is rewritten.
    remove_outputs(dir.path());
    index_channel(&storage, &options).expect("index");
    group.throughput(Throughput::Elements(CHANNEL_PACKAGES as u64));
    group.bench_function(format!("no_change_{CHANNEL_PACKAGES}_packages"), |b| {
        b.iter(|| {
            let summary = index_channel(&storage, &options).expect("index");
            assert_eq!(summary.read, 0);
            assert_eq!(summary.files_written, 0);
            summary
        })
    });
    group.finish();
}

/// Writes the `n`-th extra package (distinct name) into `root/subdir`.
fn extra_package(root: &Path, subdir: &str, n: usize) -> String {
    let mut spec = PackageSpec::new(
        format!("extra{n:06}"),
        "1.0.0",
        "h0123abcd_0",
        subdir,
        if n.is_multiple_of(2) {
            Format::Conda
        } else {
            Format::TarBz2
        },
    );
    spec.payload_bytes = 2000;
    spec.seed = n as u64;
    write_package(&spec, &root.join(subdir)).expect("write package");
    spec.file_name()
}

fn bench_incremental(c: &mut Criterion) {
    let mut group = c.benchmark_group("incremental");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(15));

    let dir = tempfile::tempdir().expect("temp dir");
    let spec = ChannelSpec {
        packages: CHANNEL_PACKAGES,
        subdirs: CHANNEL_SUBDIRS.iter().map(|s| (*s).to_owned()).collect(),
        payload_bytes: CHANNEL_PAYLOAD_BYTES,
        ..ChannelSpec::default()
    };
    generate_channel(dir.path(), &spec).expect("generate channel");
    let storage = LocalFs::new(dir.path());
    let options = IndexOptions::default();
    index_channel(&storage, &options).expect("index");
    let mut n = 0;
    group.bench_function(format!("index_one_new_of_{CHANNEL_PACKAGES}"), |b| {
        b.iter_batched(
            || {
                n += 1;
                extra_package(dir.path(), "linux-64", n)
            },
            |_| {
                let summary = index_channel(&storage, &options).expect("index");
                assert_eq!(summary.read, 1);
                summary
            },
            BatchSize::PerIteration,
        )
    });

    let dir = tempfile::tempdir().expect("temp dir");
    let spec = ChannelSpec {
        packages: LIVE_PACKAGES,
        subdirs: vec!["linux-64".to_owned()],
        sizes: Sizes::Tiny,
        ..ChannelSpec::default()
    };
    generate_channel(dir.path(), &spec).expect("generate channel");
    let options = IndexOptions {
        zst: true,
        zstd_level: 1,
        ..IndexOptions::default()
    };
    let (live, _) =
        LiveIndex::open(ChannelStore::Local(LocalFs::new(dir.path())), options).expect("open");
    let storage = LocalFs::new(dir.path());
    let mut n = 0;
    group.bench_function(format!("live_add_into_{LIVE_PACKAGES}"), |b| {
        b.iter_batched(
            || {
                n += 1;
                let name = extra_package(dir.path(), "linux-64", n);
                let path = format!("linux-64/{name}");
                let stat = storage.stat(&path).expect("stat").expect("placed");
                let file = storage.open(&path).expect("open");
                let package = index_package(file, &name).expect("index package");
                (stat, package)
            },
            |(stat, package)| live.add("linux-64", stat, package).expect("add"),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(
    benches,
    bench_bzip2_first_16k,
    bench_read_package,
    bench_repodata_json,
    bench_index_channel,
    bench_incremental
);
criterion_main!(benches);
