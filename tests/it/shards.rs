//! CEP 16 shards (`--write-shards`) and conda-index's other output flags
//! against the conda-index 0.13.0 oracle and its goldens: on every fixture
//! channel and on packages with odd `index.json`, the monolithic files and
//! `patch_instructions.json` are byte-identical, and the shard indexes and
//! every shard decode to the same msgpack values in the same key order
//! (`created_at` aside). Every shard file must be named by the sha256 of its
//! bytes and carry its content size in the zstd frame header (conda reads
//! nothing else: conda-libmamba-solver#748).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use rmpv::Value;
use sha2::{Digest, Sha256};

use crate::common::{self, copy_tree, index, run_oracle, stderr};
use crate::differential::{assert_same_bytes, odd_packages, write_channel};

pub const BASE_URL: &str = "https://cdn.example.org/chan";
const INDEXES: [&str; 2] = [
    "repodata_shards.msgpack.zst",
    "repodata_shards_from_packages.msgpack.zst",
];

/// Decodes a zstd-compressed msgpack file.
pub fn decode(bytes: &[u8]) -> Value {
    let raw = zstd::decode_all(bytes).unwrap();
    rmpv::decode::read_value(&mut raw.as_slice()).unwrap()
}

fn map_mut(value: &mut Value) -> &mut Vec<(Value, Value)> {
    match value {
        Value::Map(entries) => entries,
        other => panic!("not a map: {other}"),
    }
}

fn get<'a>(map: &'a Value, key: &str) -> &'a Value {
    map.as_map()
        .unwrap()
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no {key:?} in {map}"))
}

/// A shard index with `info.created_at` masked, and its name → hash list.
pub fn read_index(path: &Path) -> (Value, Vec<(String, Vec<u8>)>) {
    let mut index = decode(&fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())));
    let shards = get(&index, "shards")
        .as_map()
        .unwrap()
        .iter()
        .map(|(name, hash)| {
            let hash = match hash {
                Value::Binary(bytes) => bytes.clone(),
                other => panic!("shard hash is not binary: {other}"),
            };
            (name.as_str().unwrap().to_owned(), hash)
        })
        .collect();
    for (key, value) in map_mut(&mut index) {
        match key.as_str() {
            Some("info") => {
                for (k, v) in map_mut(value) {
                    if k.as_str() == Some("created_at") {
                        assert!(v.as_str().unwrap().ends_with('Z'), "created_at {v}");
                        *v = Value::from("<created_at>");
                    }
                }
            }
            Some("shards") => *value = Value::Nil,
            _ => {}
        }
    }
    (index, shards)
}

/// Every shard an index names, decoded, after checking its file.
pub fn read_shards(dir: &Path, shards: &[(String, Vec<u8>)], ours: bool) -> Vec<(String, Value)> {
    shards
        .iter()
        .map(|(name, hash)| {
            let hex = artifact_upload_handler::package::hex(hash);
            let path = dir.join(format!("{hex}.msgpack.zst"));
            let bytes = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(
                Sha256::digest(&bytes).as_slice(),
                hash.as_slice(),
                "{}",
                path.display()
            );
            if ours {
                assert!(
                    matches!(zstd::zstd_safe::get_frame_content_size(&bytes), Ok(Some(_))),
                    "{} has no content size in its frame header",
                    path.display()
                );
            }
            (name.clone(), decode(&bytes))
        })
        .collect()
}

/// Requires our shards in `ours/subdir` to decode as the oracle's do.
pub fn compare_shards(oracle: &Path, ours: &Path, what: &str) {
    for name in INDEXES {
        let (oracle_index, oracle_shards) = read_index(&oracle.join(name));
        let (our_index, our_shards) = read_index(&ours.join(name));
        assert_eq!(our_index, oracle_index, "{what}/{name}");
        let oracle_shards = read_shards(oracle, &oracle_shards, false);
        let our_shards = read_shards(ours, &our_shards, true);
        let names = |s: &[(String, Value)]| s.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        assert_eq!(
            names(&our_shards),
            names(&oracle_shards),
            "{what}/{name}: shard names"
        );
        for ((shard, ours), (_, theirs)) in our_shards.iter().zip(&oracle_shards) {
            assert_eq!(ours, theirs, "{what}/{name}: shard {shard:?}");
        }
    }
    let file = "patch_instructions.json";
    match (fs::read(oracle.join(file)), fs::read(ours.join(file))) {
        (Ok(theirs), Ok(mine)) => assert_same_bytes(&format!("{what}/{file}"), &theirs, &mine),
        (Err(_), Err(_)) => {}
        (theirs, mine) => panic!(
            "{what}/{file}: oracle {:?}, ours {:?}",
            theirs.is_ok(),
            mine.is_ok()
        ),
    }
}

const MONOLITHIC: [&str; 3] = [
    "repodata.json",
    "repodata_from_packages.json",
    "run_exports.json",
];

/// Indexes copies of `channel` with both indexers and `flags`; compares
/// the monolithic files (those present) and the shards of `subdirs`.
pub fn compare_with_oracle(channel: &Path, subdirs: &[&str], flags: &[&str]) {
    let oracle = tempfile::tempdir().unwrap();
    let ours = tempfile::tempdir().unwrap();
    copy_tree(channel, oracle.path());
    copy_tree(channel, ours.path());
    let mut oracle_flags = flags.to_vec();
    for subdir in subdirs {
        oracle_flags.extend(["--subdir", subdir]);
    }
    run_oracle(oracle.path(), &oracle_flags);
    let output = index(ours.path(), &oracle_flags);
    assert!(
        matches!(output.status.code(), Some(0 | 2)),
        "our index failed: {}",
        stderr(&output)
    );
    for subdir in subdirs {
        let (theirs, mine) = (oracle.path().join(subdir), ours.path().join(subdir));
        for file in MONOLITHIC {
            match (fs::read(theirs.join(file)), fs::read(mine.join(file))) {
                (Ok(t), Ok(m)) => assert_same_bytes(&format!("{subdir}/{file} {flags:?}"), &t, &m),
                (Err(_), Err(_)) => {}
                (t, m) => panic!(
                    "{subdir}/{file}: oracle {:?}, ours {:?}",
                    t.is_ok(),
                    m.is_ok()
                ),
            }
        }
        if flags.contains(&"--write-shards") {
            compare_shards(&theirs, &mine, &format!("{subdir} {flags:?}"));
        }
    }
}

/// The two packages conda-index crashes on, which the goldens left out.
const CRASHING: [(&str, &str); 2] = [
    ("conda-verify", "linux-64/testfile-0.0.38-py36_0.tar.bz2"),
    (
        "rattler",
        "linux-64/ca-certificates-2024.7.4-hbcca054_0.conda",
    ),
];

fn fixture_channel(name: &str) -> (tempfile::TempDir, Vec<String>) {
    let channel = common::channel_copy(name);
    for (crashing, file) in CRASHING {
        if crashing == name {
            fs::remove_file(channel.path().join(file)).unwrap();
        }
    }
    let mut subdirs: Vec<String> = fs::read_dir(channel.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| artifact_upload_handler::repodata::Subdir::is_valid(n) && !n.ends_with("-fake"))
        .collect();
    if name == "conda-verify" {
        // osx-64 has packages without a name: conda-index's shard writer
        // crashes there (we leave them out of the shards).
        subdirs.retain(|s| s != "osx-64");
    }
    if !subdirs.iter().any(|s| s == "noarch") {
        subdirs.push("noarch".into());
    }
    subdirs.sort();
    (channel, subdirs)
}

fn fixture_names() -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(common::fixtures().join("channels"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn every_fixture_channel_shards_like_conda_index() {
    for name in fixture_names() {
        let (channel, subdirs) = fixture_channel(&name);
        let subdirs: Vec<&str> = subdirs.iter().map(String::as_str).collect();
        compare_with_oracle(
            channel.path(),
            &subdirs,
            &["--write-shards", "--run-exports", "--base-url", BASE_URL],
        );
    }
}

#[test]
fn odd_packages_shard_like_conda_index() {
    let channel = tempfile::tempdir().unwrap();
    // conda-index's msgpack cannot pack integers beyond 64 bits (it
    // crashes; we write them as floats): those are taken out here.
    let big = [
        r#","i_30_digits":123456789012345678901234567890"#,
        r#","i_u64_max+1":18446744073709551616"#,
        r#","i_-2^63-1":-9223372036854775809"#,
        r#""n4":123456789012345678901234567890,"#,
    ];
    let without_big = |bytes: &mut Vec<u8>| {
        let mut text = String::from_utf8(bytes.clone()).unwrap();
        for number in big {
            text = text.replace(number, "");
        }
        *bytes = text.into_bytes();
    };
    let mut specs = odd_packages();
    for spec in &mut specs {
        if let Some(raw) = &mut spec.index_json_raw {
            without_big(raw);
        }
        for member in &mut spec.extra_info_members {
            if let artifact_upload_handler::generate::MemberKind::File(data) = &mut member.kind {
                without_big(data);
            }
        }
    }
    write_channel(channel.path(), &specs, &["noarch", "linux-64"]);
    compare_with_oracle(
        channel.path(),
        &["noarch", "linux-64"],
        &["--write-shards", "--run-exports"],
    );
}

/// Python's `json.dumps(obj, indent=1, ensure_ascii=False)`, bytes as hex:
/// how the goldens spell decoded shards.
pub fn golden_json(value: &Value) -> String {
    let mut out = String::new();
    write_golden(value, 0, &mut out);
    out.push('\n');
    out
}

fn write_golden(value: &Value, depth: usize, out: &mut String) {
    let indent = |out: &mut String, depth: usize| {
        out.push('\n');
        out.push_str(&" ".repeat(depth));
    };
    match value {
        Value::Nil => out.push_str("null"),
        Value::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Integer(i) => out.push_str(&i.to_string()),
        Value::F64(f) => {
            let number = serde_json::Number::from_f64(*f).unwrap();
            let mut bytes = Vec::new();
            artifact_upload_handler::repodata::json::write_number(&mut bytes, &number);
            out.push_str(&String::from_utf8(bytes).unwrap());
        }
        Value::String(s) => out.push_str(&python_string(s.as_str().unwrap())),
        Value::Binary(b) => {
            out.push_str(&format!("\"{}\"", artifact_upload_handler::package::hex(b)))
        }
        Value::Array(items) if items.is_empty() => out.push_str("[]"),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                indent(out, depth + 1);
                write_golden(item, depth + 1, out);
            }
            indent(out, depth);
            out.push(']');
        }
        Value::Map(entries) if entries.is_empty() => out.push_str("{}"),
        Value::Map(entries) => {
            out.push('{');
            for (i, (key, item)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                indent(out, depth + 1);
                out.push_str(&python_string(key.as_str().unwrap()));
                out.push_str(": ");
                write_golden(item, depth + 1, out);
            }
            indent(out, depth);
            out.push('}');
        }
        other => panic!("unexpected msgpack value {other}"),
    }
}

fn python_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `repodata_shards.json` and `shards.json` of the goldens, made from our
/// files in `dir` (`index` is the file name of the index).
pub fn golden_files(dir: &Path, index: &str) -> (String, String) {
    let (mut index_value, shards) = read_index(&dir.join(index));
    let decoded = read_shards(dir, &shards, true);
    for (key, value) in map_mut(&mut index_value) {
        if key.as_str() == Some("shards") {
            *value = Value::Map(
                shards
                    .iter()
                    .map(|(name, hash)| (Value::from(name.as_str()), Value::Binary(hash.clone())))
                    .collect(),
            );
        }
    }
    let by_name = Value::Map(
        decoded
            .into_iter()
            .map(|(name, shard)| (Value::from(name), shard))
            .collect(),
    );
    (golden_json(&index_value), golden_json(&by_name))
}

fn golden_extra() -> std::path::PathBuf {
    common::fixtures().join("golden/conda-index-0.13.0-extra")
}

/// Our shards and base-url repodata equal the goldens (text of the decoded
/// form, key order included), for every channel and subdir they cover.
#[test]
fn every_fixture_channel_matches_the_shard_goldens() {
    for name in fixture_names() {
        let golden = golden_extra().join(&name);
        for (flags, index_golden, repodata_golden) in [
            (vec!["--write-shards"], "repodata_shards.json", None),
            (
                vec!["--write-shards", "--base-url", BASE_URL],
                "repodata_shards.base_url.json",
                Some("repodata.base_url.json"),
            ),
        ] {
            let (channel, _) = fixture_channel(&name);
            let output = index(channel.path(), &flags);
            assert!(
                matches!(output.status.code(), Some(0 | 2)),
                "{}",
                stderr(&output)
            );
            let mut checked = BTreeMap::new();
            for subdir in fs::read_dir(&golden).unwrap() {
                let subdir = subdir.unwrap().file_name().into_string().unwrap();
                let dir = golden.join(&subdir);
                if !dir.is_dir() {
                    continue;
                }
                let ours = channel.path().join(&subdir);
                if let Some(file) = repodata_golden {
                    assert_same_bytes(
                        &format!("{name}/{subdir}/{file}"),
                        &fs::read(dir.join(file)).unwrap(),
                        &fs::read(ours.join("repodata.json")).unwrap(),
                    );
                }
                let Ok(expected_index) = fs::read_to_string(dir.join(index_golden)) else {
                    continue;
                };
                let (index_text, shards_text) = golden_files(&ours, "repodata_shards.msgpack.zst");
                assert_same_bytes(
                    &format!("{name}/{subdir}/{index_golden}"),
                    expected_index.as_bytes(),
                    index_text.as_bytes(),
                );
                let expected_shards = fs::read_to_string(dir.join("shards.json")).unwrap();
                assert_same_bytes(
                    &format!("{name}/{subdir}/shards.json"),
                    expected_shards.as_bytes(),
                    shards_text.as_bytes(),
                );
                if repodata_golden.is_none() {
                    if let Ok(expected) = fs::read(dir.join("patch_instructions.json")) {
                        assert_same_bytes(
                            &format!("{name}/{subdir}/patch_instructions.json"),
                            &expected,
                            &fs::read(ours.join("patch_instructions.json")).unwrap(),
                        );
                    }
                }
                checked.insert(subdir, ());
            }
            if name != "conda-test-recipes-patched" {
                assert!(!checked.is_empty(), "{name}: nothing compared");
            }
        }
    }
}

#[test]
fn no_write_monolithic_is_refused_with_run_exports_like_conda_index() {
    let (channel, subdirs) = fixture_channel("conda-test-recipes");
    let before = common::snapshot(channel.path());
    let output = index(channel.path(), &["--no-write-monolithic", "--run-exports"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output),
        "Error: Conflicting arguments: --run-exports require(s) --write-monolithic (the default setting).\n"
    );
    assert_eq!(common::snapshot(channel.path()), before);
    let subdirs: Vec<&str> = subdirs.iter().map(String::as_str).collect();
    compare_with_oracle(
        channel.path(),
        &subdirs,
        &["--no-write-monolithic", "--write-shards"],
    );
}

/// `--update-only`: a package whose file is gone stays listed (in the
/// monolithic files and the shards) until a run without it.
#[test]
fn update_only_matches_conda_index() {
    let (channel, _) = fixture_channel("conda-test-recipes");
    let (oracle, ours) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    copy_tree(channel.path(), oracle.path());
    copy_tree(channel.path(), ours.path());
    let gone = "noarch/versioned-2.0-0.conda";
    for flags in [
        &["--write-shards"][..],
        &["--write-shards", "--update-only"][..],
        &["--write-shards"][..],
    ] {
        run_oracle(oracle.path(), flags);
        let output = index(ours.path(), flags);
        assert!(output.status.success(), "{}", stderr(&output));
        for file in ["repodata.json", "repodata_from_packages.json"] {
            assert_same_bytes(
                &format!("{file} {flags:?}"),
                &fs::read(oracle.path().join("noarch").join(file)).unwrap(),
                &fs::read(ours.path().join("noarch").join(file)).unwrap(),
            );
        }
        compare_shards(
            &oracle.path().join("noarch"),
            &ours.path().join("noarch"),
            &format!("{flags:?}"),
        );
        for dir in [&oracle, &ours] {
            let _ = fs::remove_file(dir.path().join(gone));
        }
    }
    let repodata = fs::read_to_string(ours.path().join("noarch/repodata.json")).unwrap();
    assert!(!repodata.contains("versioned-2.0-0.conda"));
}

/// A run that changes nothing writes nothing; an upload rewrites only its
/// name's shard and the indexes; a replaced shard is kept for the retention
/// time, then removed.
#[test]
fn shards_are_incremental_and_retired_shards_expire() {
    use artifact_upload_handler::generate::{
        generate_channel, write_package, ChannelSpec, Format, PackageSpec,
    };
    let channel = tempfile::tempdir().unwrap();
    let spec = ChannelSpec {
        packages: 30,
        seed: 7,
        subdirs: vec!["noarch".into()],
        payload_bytes: 200,
        conda_fraction: 0.5,
        ..ChannelSpec::default()
    };
    generate_channel(channel.path(), &spec).unwrap();
    let run = |extra: &[&str]| {
        let mut flags = vec!["--write-shards"];
        flags.extend(extra);
        let output = index(channel.path(), &flags);
        assert!(output.status.success(), "{}", stderr(&output));
        common::stdout(&output)
    };
    run(&[]);
    let before = common::snapshot(channel.path());
    assert!(run(&[]).contains(" 0 files written"));
    assert_eq!(
        common::snapshot(channel.path()),
        before,
        "a no-change run wrote"
    );

    let noarch = channel.path().join("noarch");
    let (_, old_shards) = read_index(&noarch.join("repodata_shards.msgpack.zst"));
    let (name, old_hash) = old_shards[0].clone();
    let mut new = PackageSpec::new(name.clone(), "99.0", "0", "noarch", Format::Conda);
    new.payload_bytes = 100;
    write_package(&new, &noarch).unwrap();
    run(&[]);
    let (_, new_shards) = read_index(&noarch.join("repodata_shards.msgpack.zst"));
    let after = common::snapshot(channel.path());
    let shard_file = |hash: &[u8]| {
        format!(
            "noarch/{}.msgpack.zst",
            artifact_upload_handler::package::hex(hash)
        )
    };
    for ((n, old), (_, new)) in old_shards.iter().zip(&new_shards) {
        if *n == name {
            assert_ne!(old, new);
            assert!(!before.contains_key(&shard_file(new)));
        } else {
            assert_eq!(old, new);
            assert_eq!(
                before[&shard_file(new)],
                after[&shard_file(new)],
                "{n}'s shard was rewritten"
            );
        }
    }
    let retired = shard_file(&old_hash);
    assert!(
        after.contains_key(&retired),
        "the replaced shard is kept for a while"
    );
    run(&["--shard-retention", "0"]);
    assert!(
        !channel.path().join(&retired).exists(),
        "the retired shard outlived its retention"
    );
    read_shards(&noarch, &new_shards, true);
}
