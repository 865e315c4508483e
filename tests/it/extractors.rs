//! What the server verifies is what clients install (issue 12): every
//! fixture package and every package of the accepted corpus
//! (`fixtures/accepted-corpus/`, made by `generate::hostile::
//! accepted_corpus`) that the upload check accepts is extracted by
//! py-rattler 0.28.0 and by conda-package-streaming 0.12.0, and each finds
//! exactly the paths the strict walk verified and the `info/index.json`
//! it read.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;

use artifact_upload_handler::generate::hostile::accepted_corpus;
use artifact_upload_handler::generate::package_bytes;
use artifact_upload_handler::package::read_verified_paths;

use crate::common;

/// Extracts each package given into a fresh directory with the tool named
/// first (`rattler` or `cps`); prints, per package, the paths that are not
/// directories (symlinks to directories included) and `info/index.json`
/// as hex, or the extractor's error.
const EXTRACT: &str = r#"
import json, os, shutil, sys, tempfile
tool, out = sys.argv[1], {}
if tool == "rattler":
    from rattler.package_streaming import extract
else:
    from conda_package_streaming.extract import extract
for path in sys.argv[2:]:
    dest = tempfile.mkdtemp()
    try:
        extract(path, dest)
    except Exception as e:
        out[path] = {"error": repr(e)}
        shutil.rmtree(dest)
        continue
    members = []
    for root, dirs, files in os.walk(dest):
        for name in dirs + files:
            full = os.path.join(root, name)
            if os.path.islink(full) or not os.path.isdir(full):
                members.append(os.path.relpath(full, dest))
    index = os.path.join(dest, "info", "index.json")
    out[path] = {
        "members": sorted(members),
        "index_json": open(index, "rb").read().hex() if os.path.isfile(index) else None,
    }
    shutil.rmtree(dest)
print(json.dumps(out))
"#;

/// Fixture packages whose symlinks have empty targets.
const EMPTY_SYMLINKS: [&str; 2] = [
    "channels/conda-format-repo/linux-64/zlib-1.2.11-h7b6447c_3.conda",
    "channels/conda-format-repo/osx-64/zlib-1.2.11-h1de35cc_3.conda",
];

fn extract_all(python: &Path, tool: &str, packages: &[PathBuf]) -> serde_json::Value {
    let output = Command::new(python)
        .args(["-c", EXTRACT, tool])
        .args(packages)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{tool}: {}",
        common::stderr(&output)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn packages_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.to_string_lossy().into_owned();
        if path.is_dir() {
            packages_under(&path, out);
        } else if name.ends_with(".conda") || name.ends_with(".tar.bz2") {
            out.push(path);
        }
    }
}

fn accepted_corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/accepted-corpus")
}

/// The committed corpus is what the generator makes (`AUH_REGENERATE=1`
/// rewrites it).
#[test]
fn accepted_corpus_is_the_generators() {
    let dir = accepted_corpus_dir();
    if std::env::var_os("AUH_REGENERATE").is_some() {
        fs::create_dir_all(&dir).unwrap();
        for spec in accepted_corpus() {
            fs::write(dir.join(spec.file_name()), package_bytes(&spec).unwrap()).unwrap();
        }
    }
    let mut committed = BTreeSet::new();
    for entry in fs::read_dir(&dir).unwrap() {
        committed.insert(entry.unwrap().file_name().into_string().unwrap());
    }
    let specs = accepted_corpus();
    assert_eq!(
        committed,
        specs.iter().map(|s| s.file_name()).collect::<BTreeSet<_>>()
    );
    for spec in specs {
        let bytes = fs::read(dir.join(spec.file_name())).unwrap();
        assert!(
            bytes == package_bytes(&spec).unwrap(),
            "{} differs from the generator's",
            spec.file_name()
        );
    }
}

#[test]
fn rattler_and_conda_extract_exactly_what_was_verified() {
    let mut packages = Vec::new();
    packages_under(&common::fixtures().join("channels"), &mut packages);
    packages_under(&common::fixtures().join("invalid"), &mut packages);
    packages_under(&accepted_corpus_dir(), &mut packages);
    // What the strict walk accepts: its paths and index.json.
    let mut verified = BTreeMap::new();
    for path in &packages {
        let name = path.file_name().unwrap().to_str().unwrap();
        if let Ok((members, paths)) = read_verified_paths(File::open(path).unwrap(), name) {
            let paths: BTreeSet<String> = paths.into_iter().collect();
            verified.insert(path.clone(), (paths, hex(&members.index_json)));
        }
    }
    assert!(verified.len() >= 100, "only {} accepted", verified.len());
    let accepted: Vec<PathBuf> = verified.keys().cloned().collect();
    let mut failures = Vec::new();
    let mut mismatches = Vec::new();
    for (tool, python) in [
        ("rattler", common::python_with_rattler()),
        ("cps", common::python_with_cps()),
    ] {
        let extracted = extract_all(&python, tool, &accepted);
        for (path, (paths, index_json)) in &verified {
            let got = &extracted[path.to_str().unwrap()];
            let shown = path
                .strip_prefix(common::fixtures())
                .unwrap_or(path)
                .display()
                .to_string();
            if let Some(error) = got.get("error") {
                failures.push(format!(
                    "{tool} {shown}: {}",
                    error
                        .as_str()
                        .unwrap()
                        .chars()
                        .take(200)
                        .collect::<String>()
                ));
                continue;
            }
            let members: BTreeSet<String> = got["members"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m.as_str().unwrap().to_owned())
                .collect();
            if &members != paths {
                mismatches.push(format!(
                    "{tool} {shown}: extracted {:?} not verified, verified {:?} not extracted",
                    members.difference(paths).collect::<Vec<_>>(),
                    paths.difference(&members).collect::<Vec<_>>()
                ));
            }
            if got["index_json"].as_str() != Some(index_json.as_str()) {
                mismatches.push(format!("{tool} {shown}: another info/index.json"));
            }
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    // Symlinks with empty targets (accepted: they point nowhere) stop
    // both extractors, so these install nothing at all, under any client.
    let expected: BTreeSet<String> = ["rattler", "cps"]
        .iter()
        .flat_map(|tool| EMPTY_SYMLINKS.map(|p| format!("{tool} {p}")))
        .collect();
    let failed: BTreeSet<String> = failures
        .iter()
        .map(|f| f.split(": ").next().unwrap().to_owned())
        .collect();
    assert_eq!(failed, expected, "{}", failures.join("\n"));
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
