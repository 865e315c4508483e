//! The member lists of a package: standard info files, seeded payload, and
//! the caller's extra members, in the order conda-build would write them.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::{GenerateError, Member, MemberKind, PackageSpec};

/// Fixed base for generated timestamps (2021-01-01T00:00:00Z, in ms), so
/// fixtures look realistic but never depend on the wall clock.
const BASE_TIMESTAMP_MS: u64 = 1_609_459_200_000;

/// Share of each payload block that is random; the rest is repeated text.
/// About 60% random keeps compressed size near 60-65% of the payload.
const RANDOM_PER_BLOCK: usize = 615;
const BLOCK: usize = 1024;
const FILLER_TEXT: &[u8] = b"conda package payload filler text. ";

/// The package timestamp in milliseconds, a pure function of the seed.
pub(super) fn timestamp_ms(spec: &PackageSpec) -> u64 {
    // Spread over ~3 years in whole seconds so tar mtimes (seconds) agree.
    BASE_TIMESTAMP_MS + (spec.seed % 100_000_000) * 1000
}

/// Path of the single seeded payload file.
pub(super) fn payload_path(spec: &PackageSpec) -> String {
    format!("lib/{}/data.bin", spec.name)
}

/// Deterministic, partly compressible payload of `len` bytes.
pub(super) fn payload_data(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut data = vec![0u8; len];
    for block in data.chunks_mut(BLOCK) {
        let split = block.len().min(RANDOM_PER_BLOCK);
        let (random, text) = block.split_at_mut(split);
        rng.fill_bytes(random);
        for (byte, filler) in text.iter_mut().zip(FILLER_TEXT.iter().cycle()) {
            *byte = *filler;
        }
    }
    data
}

/// Payload members: the seeded data file followed by the caller's extras.
pub(super) fn pkg_members(spec: &PackageSpec) -> Vec<Member> {
    let data = Member::file(
        payload_path(spec),
        payload_data(spec.payload_bytes, spec.seed),
    );
    std::iter::once(data)
        .chain(spec.extra_pkg_members.iter().cloned())
        .collect()
}

/// Info members: index.json, paths.json, run_exports.json, then extras.
/// `payload` is the result of [`pkg_members`], passed in so paths.json
/// describes exactly what is written without generating the data twice.
pub(super) fn info_members(
    spec: &PackageSpec,
    payload: &[Member],
) -> Result<Vec<Member>, GenerateError> {
    let prefix = if spec.dotslash { "./info/" } else { "info/" };
    let mut out = vec![
        Member::file(format!("{prefix}index.json"), index_json(spec)?),
        Member::file(format!("{prefix}paths.json"), paths_json(spec, payload)?),
    ];
    if let Some(run_exports) = &spec.run_exports {
        let bytes = to_json(run_exports, "info/run_exports.json", spec)?;
        out.push(Member::file(format!("{prefix}run_exports.json"), bytes));
    }
    out.extend(spec.extra_info_members.iter().cloned());
    Ok(out)
}

/// Bytes of info/index.json: the raw override, or the generated document.
fn index_json(spec: &PackageSpec) -> Result<Vec<u8>, GenerateError> {
    if let Some(raw) = &spec.index_json_raw {
        return Ok(raw.clone());
    }
    let (platform, arch) = platform_and_arch(&spec.subdir);
    // serde_json's Map is a BTreeMap here, so keys come out sorted like
    // conda-build writes them.
    let mut index = Map::new();
    index.insert("arch".into(), arch.map_or(Value::Null, Value::from));
    index.insert("build".into(), json!(spec.build));
    index.insert("build_number".into(), json!(spec.build_number));
    index.insert("depends".into(), json!(spec.depends));
    index.insert("license".into(), json!("BSD-3-Clause"));
    index.insert("name".into(), json!(spec.name));
    index.insert("platform".into(), platform.map_or(Value::Null, Value::from));
    index.insert("subdir".into(), json!(spec.subdir));
    index.insert("timestamp".into(), json!(timestamp_ms(spec)));
    index.insert("version".into(), json!(spec.version));
    index.extend(spec.extra_index.clone());
    to_json(&Value::Object(index), "info/index.json", spec)
}

/// conda's `platform`/`arch` for a subdir; both null for noarch.
fn platform_and_arch(subdir: &str) -> (Option<&str>, Option<&str>) {
    let Some((platform, arch)) = subdir.split_once('-') else {
        return (None, None);
    };
    let arch = match arch {
        "64" => "x86_64",
        "32" => "x86",
        other => other,
    };
    (Some(platform), Some(arch))
}

/// Bytes of info/paths.json, describing every payload member that is not
/// a directory (hostile names included, so indexers see them too).
fn paths_json(spec: &PackageSpec, payload: &[Member]) -> Result<Vec<u8>, GenerateError> {
    let paths: Vec<Value> = payload.iter().filter_map(path_entry).collect();
    let doc = json!({ "paths": paths, "paths_version": 1 });
    to_json(&doc, "info/paths.json", spec)
}

fn path_entry(member: &Member) -> Option<Value> {
    let entry = match &member.kind {
        MemberKind::File(data) => json!({
            "_path": member.path,
            "path_type": "hardlink",
            "sha256": format!("{:x}", Sha256::digest(data)),
            "size_in_bytes": data.len(),
        }),
        MemberKind::Symlink(_) => json!({ "_path": member.path, "path_type": "softlink" }),
        MemberKind::Hardlink(_) => json!({ "_path": member.path, "path_type": "hardlink" }),
        MemberKind::Dir => return None,
    };
    Some(entry)
}

fn to_json(
    value: &Value,
    member: &'static str,
    spec: &PackageSpec,
) -> Result<Vec<u8>, GenerateError> {
    serde_json::to_vec(value).map_err(|source| GenerateError::Json {
        member,
        file: spec.file_name(),
        source,
    })
}
