//! CEP 16 sharded repodata, as conda-index 0.13.0 writes it with
//! `--write-shards`: per package name, a zstd-compressed msgpack shard
//! `{"packages": {fn: record}, "packages.conda": {fn: record}}` stored as
//! `<sha256 of the compressed bytes>.msgpack.zst`, and an index
//! `repodata_shards.msgpack.zst` mapping each name to that hash.
//!
//! The bytes follow conda-index's: records in `index.json`'s key order
//! then `md5`, `sha256`, `size` and `run_exports` (`sqlitecache.py`,
//! `indexed_shards`), `md5`/`sha256` as raw bytes (`pack_record`),
//! `msgpack.packb` defaults ([`Tree::write_msgpack`]), zstd at its default
//! level 3 with the content size in every frame header (conda's reader
//! needs it: conda-libmamba-solver#748).

use std::collections::BTreeMap;
use std::io;

use super::record::{RecordError, STRIPPED_KEYS};
use super::tree::Tree;
use super::IndexedPackage;
use crate::package::{Digests, PackageFormat};

/// The shard index conda and rattler ask for first.
pub const SHARDS_INDEX: &str = "repodata_shards.msgpack.zst";
/// The index of the unpatched shards (`repodata_from_packages.json`'s
/// counterpart).
pub const SHARDS_INDEX_FROM_PACKAGES: &str = "repodata_shards_from_packages.msgpack.zst";
/// `backports.zstd.compress`'s default level.
pub const SHARD_ZSTD_LEVEL: i32 = 3;
/// CEP 16's version of the index format.
const SHARDS_VERSION: u64 = 1;

/// A shard's address: the sha256 of its compressed bytes.
pub type ShardHash = [u8; 32];

/// What a package's shard entry needs beyond its record: the name that
/// picks its shard, and its record in `index.json`'s order when that is
/// not the order [`default_shard_record`] gives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardExtras {
    pub name: Option<String>,
    pub shard_record: Option<String>,
}

/// Works out [`ShardExtras`] from the package's own members, given the
/// `record` and normalised `run_exports` already built from them.
pub fn shard_extras(
    index_json: &[u8],
    digests: &Digests,
    run_exports_json: Option<&[u8]>,
    record: &str,
    run_exports: &str,
) -> Result<ShardExtras, RecordError> {
    let mut exact = Tree::parse("info/index.json", index_json)?;
    let Tree::Object(entries) = &mut exact else {
        return Err(RecordError::NotAnObject);
    };
    entries.retain(|(key, _)| !STRIPPED_KEYS.contains(&key.as_str()));
    exact.set("md5", Tree::String(digests.md5.clone()));
    exact.set("sha256", Tree::String(digests.sha256.clone()));
    exact.set("size", Tree::Number(digests.size.into()));
    // The text as SQLite stored it, `{}` only when the member is missing
    // (`json.loads(run_exports or "{}")`): unlike run_exports.json, a
    // falsy document such as `[]` stays as it is.
    let run_exports_tree = match run_exports_json {
        Some(bytes) => Tree::parse("info/run_exports.json", bytes)?,
        None => Tree::Object(Vec::new()),
    };
    exact.set("run_exports", run_exports_tree);
    let name = match exact.get("name") {
        Some(Tree::String(name)) => Some(name.clone()),
        _ => None,
    };
    let exact_json = exact.to_json(false);
    let derived = default_shard_record(record, run_exports)?.to_json(false);
    let shard_record =
        (exact_json != derived).then(|| String::from_utf8_lossy(&exact_json).into_owned());
    Ok(ShardExtras { name, shard_record })
}

/// The shard record of a package whose `index.json` was sorted: the
/// record's keys in order, `md5`, `sha256` and `size` moved last, then
/// `run_exports`.
fn default_shard_record(record: &str, run_exports: &str) -> Result<Tree, RecordError> {
    let mut tree = Tree::parse("record", record.as_bytes())?;
    if let Tree::Object(entries) = &mut tree {
        for key in ["md5", "sha256", "size"] {
            if let Some(at) = entries.iter().position(|(k, _)| k == key) {
                let entry = entries.remove(at);
                entries.push(entry);
            }
        }
    }
    tree.set(
        "run_exports",
        Tree::parse("run_exports", run_exports.as_bytes())?,
    );
    Ok(tree)
}

/// A package's record as its shard holds it: `md5` and `sha256` as bytes.
pub fn shard_record(package: &IndexedPackage) -> Result<Tree, RecordError> {
    let mut tree = match &package.shard_record {
        Some(json) => Tree::parse("shard record", json.as_bytes())?,
        None => default_shard_record(&package.record, &package.run_exports)?,
    };
    for key in ["sha256", "md5"] {
        if let Some(Tree::String(hex)) = tree.get(key) {
            if let Some(bytes) = from_hex(hex) {
                tree.set(key, Tree::Bytes(bytes));
            }
        }
    }
    Ok(tree)
}

fn from_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.is_empty() || !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect()
}

/// The shard of one name: its records (by file name) in both sections,
/// and the files a patch removed (the key is left out when none were,
/// as conda-index drops an empty `removed`).
pub fn shard_msgpack<'a>(
    records: impl IntoIterator<Item = (&'a str, &'a Tree)>,
    removed: &[String],
) -> Vec<u8> {
    let mut sections: [Vec<(&str, &Tree)>; 2] = [Vec::new(), Vec::new()];
    for (file_name, record) in records {
        match PackageFormat::from_file_name(file_name) {
            Some(PackageFormat::TarBz2) => sections[0].push((file_name, record)),
            Some(PackageFormat::Conda) => sections[1].push((file_name, record)),
            None => {}
        }
    }
    let mut out = Vec::new();
    let _ = rmp::encode::write_map_len(&mut out, if removed.is_empty() { 2 } else { 3 });
    for (key, section) in ["packages", "packages.conda"]
        .into_iter()
        .zip(&mut sections)
    {
        section.sort_by(|a, b| a.0.cmp(b.0));
        let _ = rmp::encode::write_str(&mut out, key);
        let _ = rmp::encode::write_map_len(&mut out, len32(section.len()));
        for (file_name, record) in section.iter() {
            let _ = rmp::encode::write_str(&mut out, file_name);
            record.write_msgpack(&mut out);
        }
    }
    if !removed.is_empty() {
        let _ = rmp::encode::write_str(&mut out, "removed");
        let _ = rmp::encode::write_array_len(&mut out, len32(removed.len()));
        for file_name in removed {
            let _ = rmp::encode::write_str(&mut out, file_name);
        }
    }
    out
}

/// The `info` of a shard index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardIndexInfo {
    pub subdir: String,
    /// CEP 15 `base_url` (`<base-url>/<subdir>/`), or empty.
    pub base_url: String,
    /// When the index was written, `%Y-%m-%dT%H:%M:%SZ`.
    pub created_at: String,
}

/// The shard index: `{"version", "info", "shards"}`, names sorted (as
/// SQLite's `ORDER BY` gives them to conda-index). `shards_base_url` is
/// empty like conda-index's: shards live beside the index.
pub fn shard_index_msgpack(info: &ShardIndexInfo, shards: &BTreeMap<String, ShardHash>) -> Vec<u8> {
    use rmp::encode::{write_bin, write_map_len, write_str, write_uint};
    let mut out = Vec::new();
    let _ = write_map_len(&mut out, 3);
    let _ = write_str(&mut out, "version");
    let _ = write_uint(&mut out, SHARDS_VERSION);
    let _ = write_str(&mut out, "info");
    let _ = write_map_len(&mut out, 4);
    for (key, value) in [
        ("base_url", info.base_url.as_str()),
        ("shards_base_url", ""),
        ("created_at", info.created_at.as_str()),
        ("subdir", info.subdir.as_str()),
    ] {
        let _ = write_str(&mut out, key);
        let _ = write_str(&mut out, value);
    }
    let _ = write_str(&mut out, "shards");
    let _ = write_map_len(&mut out, len32(shards.len()));
    for (name, hash) in shards {
        let _ = write_str(&mut out, name);
        let _ = write_bin(&mut out, hash);
    }
    out
}

fn len32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

thread_local! {
    static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// zstd at [`SHARD_ZSTD_LEVEL`], one frame with its content size in the
/// header. Reuses one compression context per thread: shards are small
/// and many, and making a context costs more than compressing one.
pub fn compress(bytes: &[u8]) -> io::Result<Vec<u8>> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let compressor = match &mut *slot {
            Some(compressor) => compressor,
            empty => empty.insert(zstd::bulk::Compressor::new(SHARD_ZSTD_LEVEL)?),
        };
        compressor.compress(bytes)
    })
}

/// A shard's file name, `<hex sha256>.msgpack.zst`.
pub fn shard_file_name(hash: &ShardHash) -> String {
    format!("{}.msgpack.zst", crate::package::hex(hash))
}

/// The hash named by a shard file name, if it is one.
pub fn parse_shard_file_name(name: &str) -> Option<ShardHash> {
    let hex = name.strip_suffix(".msgpack.zst")?;
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    from_hex(hex)?.try_into().ok()
}

/// The name → hash map of a compressed shard index (ours or
/// conda-index's); `None` if it does not decode as one.
pub fn decode_index(compressed: &[u8]) -> Option<BTreeMap<String, ShardHash>> {
    let bytes = zstd::bulk::decompress(compressed, 1 << 30).ok()?;
    let value = rmpv::decode::read_value(&mut bytes.as_slice()).ok()?;
    let shards = value
        .as_map()?
        .iter()
        .find(|(key, _)| key.as_str() == Some("shards"))?
        .1
        .as_map()?;
    shards
        .iter()
        .map(|(name, hash)| {
            let hash: ShardHash = match hash {
                rmpv::Value::Binary(bytes) => bytes.as_slice().try_into().ok()?,
                _ => return None,
            };
            Some((name.as_str()?.to_owned(), hash))
        })
        .collect()
}

/// The UTC time as conda-index stamps `created_at`.
pub fn created_at(time: std::time::SystemTime) -> String {
    let seconds = time
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let at = time::OffsetDateTime::from_unix_timestamp(i64::try_from(seconds).unwrap_or(0))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digests() -> Digests {
        Digests {
            md5: "00ff".into(),
            sha256: "abcd".into(),
            size: 9,
        }
    }

    fn package(index_json: &str, run_exports_json: Option<&str>) -> IndexedPackage {
        let record = crate::repodata::build_record(index_json.as_bytes(), &digests()).unwrap();
        let run_exports =
            crate::repodata::normalise_run_exports(run_exports_json.map(str::as_bytes)).unwrap();
        let extras = shard_extras(
            index_json.as_bytes(),
            &digests(),
            run_exports_json.map(str::as_bytes),
            &record,
            &run_exports,
        )
        .unwrap();
        IndexedPackage {
            record,
            run_exports,
            sha256: digests().sha256,
            name: extras.name,
            shard_record: extras.shard_record,
        }
    }

    fn shard_json(package: &IndexedPackage) -> String {
        String::from_utf8(shard_record(package).unwrap().to_json(false)).unwrap()
    }

    #[test]
    fn sorted_index_json_needs_no_stored_order() {
        let p = package(r#"{"build":"0","name":"a","version":"1"}"#, None);
        assert_eq!(p.name.as_deref(), Some("a"));
        assert_eq!(p.shard_record, None);
        assert_eq!(
            shard_json(&p),
            r#"{"build":"0","name":"a","version":"1","md5":"00ff","sha256":"abcd","size":9,"run_exports":{}}"#
        );
    }

    #[test]
    fn other_orders_and_falsy_run_exports_are_kept() {
        let p = package(
            r#"{"name":"a","size":1,"arch":"x","build":"0"}"#,
            Some(r#"{"weak":["x"],"strong":[]}"#),
        );
        assert_eq!(
            shard_json(&p),
            r#"{"name":"a","size":9,"build":"0","md5":"00ff","sha256":"abcd","run_exports":{"weak":["x"],"strong":[]}}"#
        );
        let p = package(r#"{"build":"0","name":"a"}"#, Some("[]"));
        assert_eq!(p.run_exports, "{}");
        assert!(shard_json(&p).ends_with(r#""run_exports":[]}"#));
    }

    #[test]
    fn frames_carry_their_content_size() {
        let bytes = vec![7u8; 10_000];
        let compressed = compress(&bytes).unwrap();
        assert!(matches!(
            zstd::zstd_safe::get_frame_content_size(&compressed),
            Ok(Some(10_000))
        ));
    }

    #[test]
    fn index_round_trips() {
        let mut shards = BTreeMap::new();
        shards.insert("b".to_owned(), [1u8; 32]);
        shards.insert("a".to_owned(), [2u8; 32]);
        let info = ShardIndexInfo {
            subdir: "noarch".into(),
            base_url: String::new(),
            created_at: created_at(std::time::UNIX_EPOCH),
        };
        assert_eq!(info.created_at, "1970-01-01T00:00:00Z");
        let compressed = compress(&shard_index_msgpack(&info, &shards)).unwrap();
        assert_eq!(decode_index(&compressed), Some(shards));
        let name = shard_file_name(&[0xab; 32]);
        assert_eq!(parse_shard_file_name(&name), Some([0xab; 32]));
        assert_eq!(parse_shard_file_name("repodata.msgpack.zst"), None);
    }
}
