//! `--patch-generator` against conda-index 0.13.0: the golden patched
//! channel, and instructions that exercise every rule of its
//! `_apply_instructions` (merges, nulls, nested objects, `.tar.bz2` fixes
//! copied to the `.conda`, revoke, remove, the shared-list quirk), given as
//! a `.tar.bz2`, a `.conda`, a `.py` run by `--python`, and a plain
//! `patch_instructions.json` (ours only; the same result as the package).

use std::fs;
use std::io::Write;
use std::path::Path;

use artifact_upload_handler::generate::{write_package, Format, Member, PackageSpec};

use crate::common::{self, copy_tree, index, stderr};
use crate::differential::assert_same_bytes;
use crate::shards::{compare_with_oracle, golden_files};

fn golden() -> std::path::PathBuf {
    common::fixtures().join("golden/conda-index-0.13.0-extra/conda-test-recipes-patched")
}

/// A `.tar.bz2` holding `members` (path, bytes), as conda-index reads a
/// patch generator package.
fn tar_bz2(path: &Path, members: &[(&str, &[u8])]) {
    let file = fs::File::create(path).unwrap();
    let encoder = bzip2::write::BzEncoder::new(file, bzip2::Compression::best());
    let mut tar = tar::Builder::new(encoder);
    for (name, bytes) in members {
        let mut header = tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, name, *bytes).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap().flush().unwrap();
}

#[test]
fn the_golden_patched_channel() {
    let channel = common::channel_copy("conda-test-recipes");
    let generator = golden().join("patch_instructions.tar.bz2");
    let output = index(
        channel.path(),
        &[
            "--patch-generator",
            generator.to_str().unwrap(),
            "--run-exports",
            "--write-shards",
        ],
    );
    assert!(
        matches!(output.status.code(), Some(0 | 2)),
        "{}",
        stderr(&output)
    );
    let noarch = channel.path().join("noarch");
    for file in [
        "repodata.json",
        "repodata_from_packages.json",
        "patch_instructions.json",
        "run_exports.json",
    ] {
        assert_same_bytes(
            &format!("noarch/{file}"),
            &fs::read(golden().join("noarch").join(file)).unwrap(),
            &fs::read(noarch.join(file)).unwrap(),
        );
    }
    for (index_file, index_golden, shards_golden) in [
        (
            "repodata_shards.msgpack.zst",
            "repodata_shards.json",
            "shards.json",
        ),
        (
            "repodata_shards_from_packages.msgpack.zst",
            "repodata_shards_from_packages.json",
            "shards_from_packages.json",
        ),
    ] {
        let (index_text, shards_text) = golden_files(&noarch, index_file);
        for (golden_file, text) in [(index_golden, index_text), (shards_golden, shards_text)] {
            assert_same_bytes(
                golden_file,
                &fs::read(golden().join("noarch").join(golden_file)).unwrap(),
                text.as_bytes(),
            );
        }
    }
}

/// Instructions for [`patch_channel`]'s packages.
const INSTRUCTIONS: &str = r#"{
  "patch_instructions_version": 1,
  "packages": {
    "a-1.0-0.tar.bz2": {"depends": ["python >=3.8", "libz"], "license": "MIT", "meta": {"x": 1}},
    "b-1.0-0.tar.bz2": {"constrains": ["c <2"], "gone": null, "not_there": null},
    "zz-9-0.tar.bz2": {"depends": []},
    "c-1.0-0.tar.bz2": null
  },
  "packages.conda": {
    "a-1.0-0.conda": {"meta": {"y": 2}, "track_features": "x"},
    "d-1.0-0.conda": {"run_exports": {"weak": ["d"]}, "nested": {"deeper": {"k": [1, 2.5]}}}
  },
  "revoke": ["a-1.0-0.tar.bz2", "d-1.0-0.conda"],
  "remove": ["e-1.0-0.tar.bz2", "missing-1-0.conda"]
}"#;

/// Packages in both formats; `b` has a key patched to null.
fn patch_channel(root: &Path) {
    fs::create_dir_all(root.join("noarch")).unwrap();
    for (name, formats) in [
        ("a", &[Format::TarBz2, Format::Conda][..]),
        ("b", &[Format::TarBz2, Format::Conda][..]),
        ("c", &[Format::TarBz2, Format::Conda][..]),
        ("d", &[Format::Conda][..]),
        ("e", &[Format::TarBz2, Format::Conda][..]),
        ("f", &[Format::Conda][..]),
    ] {
        for format in formats {
            let mut spec = PackageSpec::new(name, "1.0", "0", "noarch", *format);
            spec.depends = vec!["python".into()];
            spec.payload_bytes = 200;
            if name == "b" {
                spec.extra_index
                    .insert("gone".into(), serde_json::json!("x"));
            }
            if name == "d" {
                spec.run_exports = Some(serde_json::json!({"strong": ["d >=1"]}));
            }
            write_package(&spec, &root.join("noarch")).unwrap();
        }
    }
}

#[test]
fn every_patch_rule_applies_like_conda_index() {
    let channel = tempfile::tempdir().unwrap();
    patch_channel(channel.path());
    let generators = tempfile::tempdir().unwrap();
    let tarball = generators.path().join("patches.tar.bz2");
    tar_bz2(
        &tarball,
        &[
            ("noarch/patch_instructions.json", INSTRUCTIONS.as_bytes()),
            ("linux-64/patch_instructions.json", b"{}"),
        ],
    );
    let generator = tarball.to_str().unwrap();
    compare_with_oracle(
        channel.path(),
        &["noarch"],
        &[
            "--patch-generator",
            generator,
            "--write-shards",
            "--run-exports",
        ],
    );
    compare_with_oracle(
        channel.path(),
        &["noarch"],
        &[
            "--patch-generator",
            generator,
            "--base-url",
            crate::shards::BASE_URL,
        ],
    );

    // A .conda generator: the instructions in its pkg component.
    let mut spec = PackageSpec::new("patches", "1", "0", "noarch", Format::Conda);
    spec.extra_pkg_members.push(Member::file(
        "noarch/patch_instructions.json",
        INSTRUCTIONS.as_bytes().to_vec(),
    ));
    write_package(&spec, generators.path()).unwrap();
    let conda = generators.path().join("patches-1-0.conda");
    compare_with_oracle(
        channel.path(),
        &["noarch"],
        &[
            "--patch-generator",
            conda.to_str().unwrap(),
            "--write-shards",
        ],
    );

    // A plain patch_instructions.json gives what the package gives.
    let json = generators.path().join("patch_instructions.json");
    fs::write(&json, INSTRUCTIONS).unwrap();
    let (from_json, from_package) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for (dir, generator) in [(&from_json, &json), (&from_package, &tarball)] {
        copy_tree(channel.path(), dir.path());
        let output = index(
            dir.path(),
            &[
                "--patch-generator",
                generator.to_str().unwrap(),
                "--write-shards",
            ],
        );
        assert!(output.status.success(), "{}", stderr(&output));
    }
    for file in [
        "repodata.json",
        "patch_instructions.json",
        "repodata_shards.msgpack.zst",
    ] {
        let read =
            |dir: &tempfile::TempDir| fs::read(dir.path().join("noarch").join(file)).unwrap();
        if file.ends_with(".zst") {
            let (a, b) = (
                crate::shards::read_index(&from_json.path().join("noarch").join(file)),
                crate::shards::read_index(&from_package.path().join("noarch").join(file)),
            );
            assert_eq!(a, b, "{file}");
        } else {
            assert_same_bytes(file, &read(&from_package), &read(&from_json));
        }
    }
}

/// A `.py` generator, run by conda-index in-process and by us through
/// `--python`: repodata.json and patch_instructions.json match.
#[test]
fn python_generator_runs_through_python() {
    let channel = tempfile::tempdir().unwrap();
    patch_channel(channel.path());
    let generators = tempfile::tempdir().unwrap();
    let script = generators.path().join("gen_patches.py");
    let script_text = format!(
        r#"import json
def _patch_repodata(repodata, subdir):
    instructions = json.loads({INSTRUCTIONS:?})
    # Computed from the repodata it is given, as real generators do.
    for fn in repodata["packages.conda"]:
        if fn.startswith("f-"):
            instructions["packages.conda"][fn] = {{"license": "from " + subdir}}
    return instructions if subdir == "noarch" else {{}}
"#
    );
    fs::write(&script, script_text).unwrap();
    let (_, venv) = common::oracle();
    let python = venv.join("bin/python");
    let mut flags = vec!["--patch-generator", script.to_str().unwrap()];
    // The oracle runs the script itself; --python is ours.
    let oracle = tempfile::tempdir().unwrap();
    copy_tree(channel.path(), oracle.path());
    common::run_oracle(oracle.path(), &flags);
    flags.extend(["--python", python.to_str().unwrap()]);
    let ours = tempfile::tempdir().unwrap();
    copy_tree(channel.path(), ours.path());
    let output = index(ours.path(), &flags);
    assert!(output.status.success(), "{}", stderr(&output));
    for file in [
        "repodata.json",
        "repodata_from_packages.json",
        "patch_instructions.json",
    ] {
        assert_same_bytes(
            file,
            &fs::read(oracle.path().join("noarch").join(file)).unwrap(),
            &fs::read(ours.path().join("noarch").join(file)).unwrap(),
        );
    }

    // Without --python: a clear error, and nothing written.
    let bare = tempfile::tempdir().unwrap();
    copy_tree(channel.path(), bare.path());
    let before = common::snapshot(bare.path());
    let output = index(
        bare.path(),
        &["--patch-generator", script.to_str().unwrap()],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("needs --python"),
        "{}",
        stderr(&output)
    );
    let mut after = common::snapshot(bare.path());
    after.remove(".auh-lock"); // taken before the options are checked
    assert!(after == before, "files changed");
}

/// Bad instructions are refused before anything is written.
#[test]
fn bad_instructions_change_nothing() {
    let channel = tempfile::tempdir().unwrap();
    patch_channel(channel.path());
    let generators = tempfile::tempdir().unwrap();
    for (i, bad) in [
        r#"{"patch_instructions_version": 2}"#,
        r#"{"packages": ["a-1.0-0.tar.bz2"]}"#,
        r#"{"revoke": ["f-1.0-0.conda"], "packages.conda": {"f-1.0-0.conda": {"depends": null}}}"#,
        "not json",
    ]
    .into_iter()
    .enumerate()
    {
        let tarball = generators.path().join(format!("bad{i}.tar.bz2"));
        tar_bz2(
            &tarball,
            &[("noarch/patch_instructions.json", bad.as_bytes())],
        );
        let before = common::snapshot(channel.path());
        let output = index(
            channel.path(),
            &["--patch-generator", tarball.to_str().unwrap()],
        );
        assert_eq!(output.status.code(), Some(1), "{bad}: {}", stderr(&output));
        assert!(
            stderr(&output).contains("patch instructions"),
            "{bad}: {}",
            stderr(&output)
        );
        // Only the first run of a fresh channel would create noarch/'s
        // outputs; the rest must leave the tree exactly as it was.
        let after = common::snapshot(channel.path());
        let changed: Vec<_> = after
            .iter()
            .filter(|(path, value)| {
                before.get(*path) != Some(value) && !path.contains(".cache") && *path != ".auh-lock"
            })
            .map(|(path, _)| path.clone())
            .collect();
        assert!(changed.is_empty(), "{bad}: changed {changed:?}");
    }
}
