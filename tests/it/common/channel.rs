//! A channel as the tests look at it: the token every test server accepts,
//! a subdir's `repodata.json` and what it lists, the channel's files (to
//! compare before and after), and the generated packages tests upload.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::time::SystemTime;

use artifact_upload_handler::generate::{package_bytes, Format, PackageSpec};

/// The token every test server accepts (named `ci` in-process, `token-1`
/// on the command line).
pub const TOKEN: &str = "mysecuretoken";

/// `subdir/repodata.json`, parsed.
pub fn repodata(root: &Path, subdir: &str) -> serde_json::Value {
    serde_json::from_slice(&fs::read(root.join(subdir).join("repodata.json")).unwrap()).unwrap()
}

/// The repodata section that lists a package file: `packages.conda` or
/// `packages`.
pub fn section(file_name: &str) -> &'static str {
    if file_name.ends_with(".conda") {
        "packages.conda"
    } else {
        "packages"
    }
}

/// The record `subdir/repodata.json` lists for `file_name`, if any (none
/// when there is no repodata.json yet).
pub fn listed(root: &Path, subdir: &str, file_name: &str) -> Option<serde_json::Value> {
    let bytes = fs::read(root.join(subdir).join("repodata.json")).ok()?;
    let repodata: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    repodata[section(file_name)].get(file_name).cloned()
}

/// Every file name `subdir/repodata.json` lists, in both sections.
pub fn listed_names(root: &Path, subdir: &str) -> BTreeSet<String> {
    if !root.join(subdir).join("repodata.json").exists() {
        return BTreeSet::new();
    }
    let doc = repodata(root, subdir);
    ["packages", "packages.conda"]
        .iter()
        .flat_map(|s| doc[s].as_object().unwrap().keys().cloned())
        .collect()
}

pub fn is_package(name: &str) -> bool {
    name.ends_with(".conda") || name.ends_with(".tar.bz2")
}

/// The channel's files with their bytes and mtimes, without our index
/// cache (an implementation detail): equal before and after means the
/// channel did not change.
pub fn channel_state(root: &Path) -> BTreeMap<String, (Vec<u8>, SystemTime)> {
    super::snapshot(root)
        .into_iter()
        .filter(|(path, _)| !path.contains(".cache/"))
        .collect()
}

/// A generated package, version 1.0 build 0: its file name and bytes.
pub fn package(name: &str, subdir: &str, format: Format) -> (String, Vec<u8>) {
    package_of(&PackageSpec::new(name, "1.0", "0", subdir, format))
}

/// The package `spec` describes (to change its payload or seed first).
pub fn package_of(spec: &PackageSpec) -> (String, Vec<u8>) {
    (spec.file_name(), package_bytes(spec).unwrap())
}

/// A `.conda` in `subdir` with `payload` bytes of payload.
pub fn sized_package(name: &str, subdir: &str, payload: usize) -> (String, Vec<u8>) {
    let mut spec = PackageSpec::new(name, "1.0", "0", subdir, Format::Conda);
    spec.payload_bytes = payload;
    package_of(&spec)
}

/// How many upload bodies are being received into (or were left in) the
/// channel's staging directory.
pub fn staged(root: &Path) -> usize {
    fs::read_dir(root.join(artifact_upload_handler::server::STAGING_DIR))
        .map(|dir| dir.count())
        .unwrap_or(0)
}
