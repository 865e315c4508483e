//! Checks that generated packages decode with ordinary readers and are
//! byte-for-byte reproducible.

#![allow(clippy::unwrap_used)] // panicking is how tests report failure

use std::collections::HashSet;
use std::io::{Cursor, Read};

use rand::SeedableRng;

use super::*;

fn read_tar(bytes: &[u8]) -> Vec<(Vec<u8>, tar::EntryType, Vec<u8>)> {
    let mut archive = tar::Archive::new(bytes);
    let mut out = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path_bytes().into_owned();
        let kind = entry.header().entry_type();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        out.push((path, kind, data));
    }
    out
}

fn bunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    bzip2::read::BzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn index_of(data: &[u8]) -> serde_json::Value {
    serde_json::from_slice(data).unwrap()
}

#[test]
fn tar_bz2_has_index_json_first_with_fields() {
    let mut spec = PackageSpec::new("foo", "1.2.3", "h123_0", "linux-64", Format::TarBz2);
    spec.depends = vec!["bar >=1".into()];
    spec.run_exports = Some(serde_json::json!({"weak": ["foo >=1.2"]}));
    let entries = read_tar(&bunzip(&package_bytes(&spec).unwrap()));
    let names: Vec<&[u8]> = entries.iter().map(|e| e.0.as_slice()).collect();
    assert_eq!(
        names,
        [
            &b"info/index.json"[..],
            b"info/paths.json",
            b"info/run_exports.json",
            b"lib/foo/data.bin"
        ]
    );
    let index = index_of(&entries[0].2);
    assert_eq!(index["name"], "foo");
    assert_eq!(index["version"], "1.2.3");
    assert_eq!(index["build"], "h123_0");
    assert_eq!(index["subdir"], "linux-64");
    assert_eq!(index["arch"], "x86_64");
    assert_eq!(index["platform"], "linux");
    assert_eq!(index["depends"], serde_json::json!(["bar >=1"]));
    assert!(index["timestamp"].is_u64());
    assert_eq!(entries[3].2.len(), 1024);
}

#[test]
fn conda_is_stored_zip_with_members_in_order() {
    let spec = PackageSpec::new("foo", "1.0", "0", "noarch", Format::Conda);
    assert_eq!(spec.file_name(), "foo-1.0-0.conda");
    let mut zip = zip::ZipArchive::new(Cursor::new(package_bytes(&spec).unwrap())).unwrap();
    let mut names = Vec::new();
    let mut offsets = Vec::new();
    let mut parts = Vec::new();
    for i in 0..zip.len() {
        let mut file = zip.by_index(i).unwrap();
        assert_eq!(file.compression(), zip::CompressionMethod::Stored);
        names.push(file.name().unwrap().into_owned());
        offsets.push(file.header_start());
        let mut data = Vec::new();
        file.read_to_end(&mut data).unwrap();
        parts.push(data);
    }
    assert_eq!(
        names,
        [
            "metadata.json",
            "info-foo-1.0-0.tar.zst",
            "pkg-foo-1.0-0.tar.zst"
        ]
    );
    // Physical order matters to streaming readers, not just directory order.
    assert!(offsets.windows(2).all(|w| w[0] < w[1]));
    let metadata: serde_json::Value = serde_json::from_slice(&parts[0]).unwrap();
    assert_eq!(metadata["conda_pkg_format_version"], 2);
    let info = read_tar(&zstd::decode_all(parts[1].as_slice()).unwrap());
    assert_eq!(info[0].0, b"info/index.json");
    let index = index_of(&info[0].2);
    assert_eq!(index["subdir"], "noarch");
    assert!(index["arch"].is_null() && index["platform"].is_null());
    let pkg = read_tar(&zstd::decode_all(parts[2].as_slice()).unwrap());
    assert_eq!(pkg[0].0, b"lib/foo/data.bin");
}

#[test]
fn same_spec_gives_identical_bytes() {
    for format in [Format::TarBz2, Format::Conda] {
        let mut spec = PackageSpec::new("foo", "1.0", "0", "linux-64", format);
        spec.seed = 42;
        spec.payload_bytes = 10_000;
        let first = package_bytes(&spec).unwrap();
        assert_eq!(first, package_bytes(&spec).unwrap());
        spec.seed = 43;
        assert_ne!(first, package_bytes(&spec).unwrap());
    }
}

#[test]
fn payload_compresses_to_roughly_sixty_percent() {
    let mut spec = PackageSpec::new("foo", "1.0", "0", "linux-64", Format::TarBz2);
    spec.payload_bytes = 200_000;
    let ratio = package_bytes(&spec).unwrap().len() as f64 / 200_000.0;
    assert!((0.55..=0.70).contains(&ratio), "ratio {ratio}");
}

#[test]
fn channel_has_distinct_files_over_all_subdirs() {
    let dir = tempfile::tempdir().unwrap();
    let spec = ChannelSpec {
        packages: 20,
        seed: 7,
        subdirs: vec!["linux-64".into(), "osx-arm64".into(), "noarch".into()],
        payload_bytes: 512,
        conda_fraction: 0.5,
        ..ChannelSpec::default()
    };
    let paths = generate_channel(dir.path(), &spec).unwrap();
    assert_eq!(paths.len(), 20);
    let names: HashSet<_> = paths.iter().map(|p| p.file_name().unwrap()).collect();
    assert_eq!(names.len(), 20);
    for subdir in &spec.subdirs {
        let count = std::fs::read_dir(dir.path().join(subdir)).unwrap().count();
        assert!(count >= 6, "{subdir} has {count}");
    }
    let conda = paths
        .iter()
        .filter(|p| p.to_string_lossy().ends_with(".conda"));
    assert!((1..20).contains(&conda.count()));
    let again = tempfile::tempdir().unwrap();
    let second = generate_channel(again.path(), &spec).unwrap();
    for (a, b) in paths.iter().zip(&second) {
        assert_eq!(std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    }
}

#[test]
fn hostile_names_round_trip_verbatim() {
    let long = format!("lib/{}/x", "d".repeat(150));
    let mut spec = PackageSpec::new("foo", "1.0", "0", "noarch", Format::TarBz2);
    spec.dotslash = true;
    spec.extra_pkg_members = vec![
        Member::file("../evil", b"x".to_vec()),
        Member::file("/abs/path", b"y".to_vec()),
        Member::file(long.clone(), b"z".to_vec()),
        Member {
            path: "lib/link".into(),
            kind: MemberKind::Symlink("../../etc/passwd".into()),
        },
        Member {
            path: "lib/dir/".into(),
            kind: MemberKind::Dir,
        },
    ];
    let bytes = bunzip(&package_bytes(&spec).unwrap());
    // Raw header bytes: the name field must hold exactly "../evil".
    assert!(bytes.windows(8).any(|w| w == b"../evil\0"));
    let entries = read_tar(&bytes);
    let names: Vec<&[u8]> = entries.iter().map(|e| e.0.as_slice()).collect();
    assert_eq!(names[0], b"./info/index.json");
    assert!(names.contains(&&b"../evil"[..]));
    assert!(names.contains(&&b"/abs/path"[..]));
    assert!(names.contains(&long.as_bytes()));
    let mut archive = tar::Archive::new(bytes.as_slice());
    let link = archive
        .entries()
        .unwrap()
        .map(Result::unwrap)
        .find(|e| e.header().entry_type().is_symlink())
        .unwrap();
    assert_eq!(&*link.link_name_bytes().unwrap(), b"../../etc/passwd");
}

#[test]
fn raw_index_json_and_extra_keys_are_honoured() {
    let mut spec = PackageSpec::new("foo", "1.0", "0", "noarch", Format::TarBz2);
    spec.extra_index.insert("license".into(), "MIT".into());
    let entries = read_tar(&bunzip(&package_bytes(&spec).unwrap()));
    assert_eq!(index_of(&entries[0].2)["license"], "MIT");
    let raw = br#"{"name":"a","name":"b","size":1E16}"#.to_vec();
    spec.index_json_raw = Some(raw.clone());
    let entries = read_tar(&bunzip(&package_bytes(&spec).unwrap()));
    assert_eq!(entries[0].2, raw);
}

#[test]
fn sizes_and_name_prefix_shape_the_channel() {
    let dir = tempfile::tempdir().unwrap();
    let range = ChannelSpec {
        packages: 6,
        sizes: Sizes::Range {
            min: 20_000,
            max: 40_000,
        },
        name_prefix: "big".into(),
        ..ChannelSpec::default()
    };
    for path in generate_channel(&dir.path().join("range"), &range).unwrap() {
        let size = std::fs::metadata(&path).unwrap().len();
        assert!((16_000..=48_000).contains(&size), "{path:?}: {size}");
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with("big0"), "{name}");
    }
    let tiny = ChannelSpec {
        packages: 40,
        sizes: Sizes::Tiny,
        ..ChannelSpec::default()
    };
    for path in generate_channel(&dir.path().join("tiny"), &tiny).unwrap() {
        let size = std::fs::metadata(&path).unwrap().len();
        assert!(size < 4096, "{path:?}: {size}");
    }
}

#[test]
fn realistic_sizes_are_mostly_small() {
    let spec = ChannelSpec {
        packages: 2000,
        sizes: Sizes::Realistic,
        ..ChannelSpec::default()
    };
    // Only the specs (no files): 2,000 draws follow the tiers.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(spec.seed);
    let payloads: Vec<usize> = (0..spec.packages)
        .map(|i| channel::package_spec(i, "noarch", &spec, &mut rng).payload_bytes)
        .collect();
    let small = payloads.iter().filter(|&&p| p < 400_000).count();
    let huge = payloads.iter().filter(|&&p| p > 150_000_000).count();
    assert!((1300..=1500).contains(&small), "{small} small");
    assert!(huge <= 12, "{huge} huge");
}
