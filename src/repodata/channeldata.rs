//! `channeldata.json` and `rss.xml` at the channel root, as conda-index
//! 0.13.0's `update_channeldata` and `rss.py` write them.
//!
//! Per package, the index keeps what channeldata needs from `about.json`,
//! `paths.json` (post-install flags) and the recipe ([`package_extras`]);
//! per name, channeldata keeps the newest version's values, merged across
//! subdirs in sorted order and into the `channeldata.json` already on disk
//! (conda-index never drops a name). Its quirks are kept: a name's
//! `timestamp` is that of the last (name, version) group processed, not the
//! newest.

use std::collections::{BTreeSet, HashMap};

use serde_json::{Map, Value};

use super::json::{to_python_json, JsonStyle};
use super::version::VersionOrder;
use crate::package::InfoMembers;

/// Values taken from the newest version.
const KEEP_NEWER: [&str; 16] = [
    "description",
    "dev_url",
    "doc_url",
    "doc_source_url",
    "home",
    "license",
    "source_url",
    "source_git_url",
    "summary",
    "icon_url",
    "icon_hash",
    "tags",
    "identifiers",
    "keywords",
    "recipe_origin",
    "version",
];

/// True when any version says so.
const ANY_TRUE: [&str; 7] = [
    "binary_prefix",
    "text_prefix",
    "activate.d",
    "deactivate.d",
    "pre_link",
    "post_link",
    "pre_unlink",
];

/// Python's truth value of a JSON value.
fn truthy(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
    }
}

fn yaml_to_json(yaml: &yaml_rust2::Yaml) -> Value {
    use yaml_rust2::Yaml;
    match yaml {
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::Real(r) => r
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Null, Value::Number),
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Array(items) => Value::Array(items.iter().map(yaml_to_json).collect()),
        Yaml::Hash(map) => Value::Object(
            map.iter()
                .filter_map(|(k, v)| {
                    let key = match k {
                        Yaml::String(s) => s.clone(),
                        Yaml::Integer(i) => i.to_string(),
                        Yaml::Boolean(b) => if *b { "True" } else { "False" }.to_owned(),
                        _ => return None,
                    };
                    Some((key, yaml_to_json(v)))
                })
                .collect(),
        ),
        _ => Value::Null,
    }
}

/// conda-index's `_cache_post_install_details`, from `paths.json`.
fn post_install(paths_json: Option<&[u8]>) -> Map<String, Value> {
    let mut flags: Map<String, Value> = ANY_TRUE
        .iter()
        .map(|k| ((*k).to_owned(), Value::Bool(false)))
        .collect();
    let paths: Option<Value> = paths_json.and_then(|b| serde_json::from_slice(b).ok());
    let entries = paths
        .as_ref()
        .and_then(|p| p.get("paths"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for f in &entries {
        let text = |key: &str| f.get(key).and_then(Value::as_str);
        if truthy(f.get("prefix_placeholder")) {
            match text("file_mode") {
                Some("binary") => flags.insert("binary_prefix".into(), Value::Bool(true)),
                Some("text") => flags.insert("text_prefix".into(), Value::Bool(true)),
                _ => None,
            };
        }
        let path = text("_path").unwrap_or("");
        for k in ["activate.d", "deactivate.d"] {
            if path.starts_with(&format!("etc/conda/{k}")) {
                flags.insert(k.into(), Value::Bool(true));
            }
        }
        for (pattern, key) in [
            ("pre-link", "pre_link"),
            ("post-link", "post_link"),
            ("pre-unlink", "pre_unlink"),
        ] {
            // fnmatch `*/.*-{pattern}.*`
            let hit = path
                .find("/.")
                .and_then(|i| path.get(i + 2..))
                .is_some_and(|tail| tail.contains(&format!("-{pattern}.")));
            if hit {
                flags.insert(key.into(), Value::Bool(true));
            }
        }
    }
    flags
}

/// `_clear_newline_chars`: strip, newlines to spaces; a list is joined.
fn clear_newlines(data: &mut Map<String, Value>, key: &str) {
    let joined = match data.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => {
            match items.iter().map(Value::as_str).collect::<Option<Vec<_>>>() {
                Some(parts) => parts.concat(),
                None => return,
            }
        }
        _ => return,
    };
    data.insert(key.into(), Value::String(joined.trim().replace('\n', " ")));
}

/// Whether YAML text uses a tag the safe loader (ruamel's, which
/// conda-index uses) refuses, such as `!!python/object`: conda-index then
/// reads the recipe as `{}`.
fn unsafe_yaml_tag(text: &str) -> bool {
    const SAFE: [&str; 12] = [
        "!!str",
        "!!int",
        "!!float",
        "!!bool",
        "!!null",
        "!!map",
        "!!seq",
        "!!set",
        "!!binary",
        "!!timestamp",
        "!!omap",
        "!!pairs",
    ];
    let bytes = text.as_bytes();
    text.match_indices('!').any(|(i, _)| {
        let before = i.checked_sub(1).and_then(|j| bytes.get(j).copied());
        let starts_tag = before.is_none_or(|b| b" \t\n\r[{,".contains(&b)) && before != Some(b'!');
        if !starts_tag {
            return false;
        }
        let tag: String = text
            .get(i..)
            .unwrap_or("")
            .chars()
            .take_while(|c| !c.is_whitespace() && !",[]{}".contains(*c))
            .collect();
        tag.len() > 1 && !SAFE.contains(&tag.as_str())
    })
}

/// What channeldata keeps of one package besides its record, as a compact
/// JSON object: recipe, about.json, post-install flags and index.json
/// merged in that order, `source.*` as `source_*`, newlines cleared.
pub fn package_extras(members: &InfoMembers, index: &Map<String, Value>) -> String {
    let mut data = Map::new();
    let recipe = members
        .recipe
        .as_deref()
        .and_then(|b| std::str::from_utf8(b).ok())
        .filter(|text| !unsafe_yaml_tag(text))
        .and_then(|text| yaml_rust2::YamlLoader::load_from_str(text).ok())
        .and_then(|docs| docs.first().map(yaml_to_json));
    let about: Option<Value> = members
        .about_json
        .as_deref()
        .and_then(|b| serde_json::from_slice(b).ok());
    for part in [recipe, about] {
        if let Some(Value::Object(map)) = part {
            data.extend(map);
        }
    }
    data.extend(post_install(members.paths_json.as_deref()));
    data.extend(index.clone());
    if let Some(Value::Object(source)) = data.get("source").cloned() {
        for (k, v) in source {
            data.insert(format!("source_{k}"), v);
        }
    }
    clear_newlines(&mut data, "description");
    clear_newlines(&mut data, "summary");
    let kept: Map<String, Value> = data
        .into_iter()
        .filter(|(k, _)| {
            (KEEP_NEWER.contains(&k.as_str()) && k != "version") || ANY_TRUE.contains(&k.as_str())
        })
        .collect();
    String::from_utf8_lossy(&to_python_json(&Value::Object(kept), JsonStyle::Compact)).into_owned()
}

/// `_make_seconds`: milliseconds (past year 9999) become seconds.
fn seconds(value: Option<&Value>) -> i64 {
    let t = value
        .and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)))
        .unwrap_or(0);
    if t > 253_402_300_799 {
        t / 1000
    } else {
        t
    }
}

fn version_text(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "0".into(),
        Some(other) => other.to_string(),
    }
}

/// One subdir's packages for [`ChannelData::update`]: its (patched)
/// repodata.json and each file's extras.
pub struct SubdirPackages<'a> {
    pub subdir: &'a str,
    pub repodata_json: &'a [u8],
    pub extras: &'a dyn Fn(&str) -> Option<(String, String)>,
}

/// The channel's channeldata, in conda-index's in-memory order (which
/// rss.xml's ties follow).
#[derive(Debug, Default)]
pub struct ChannelData {
    packages: Vec<(String, Map<String, Value>)>,
    at: HashMap<String, usize>,
    subdirs: BTreeSet<String>,
}

impl ChannelData {
    /// Starts from the `channeldata.json` on disk, as conda-index does.
    pub fn load(existing: Option<&[u8]>) -> Self {
        let mut data = Self::default();
        let Some(Value::Object(doc)) = existing.and_then(|b| serde_json::from_slice(b).ok()) else {
            return data;
        };
        if let Some(Value::Object(packages)) = doc.get("packages") {
            for (name, package) in packages {
                if let Value::Object(package) = package {
                    data.at.insert(name.clone(), data.packages.len());
                    data.packages.push((name.clone(), package.clone()));
                }
            }
        }
        if let Some(Value::Array(subdirs)) = doc.get("subdirs") {
            data.subdirs
                .extend(subdirs.iter().filter_map(|s| s.as_str().map(str::to_owned)));
        }
        data
    }

    /// `_update_channeldata` for one subdir.
    pub fn update(&mut self, subdir: &SubdirPackages) {
        let doc: Map<String, Value> =
            serde_json::from_slice(subdir.repodata_json).unwrap_or_default();
        let section = |key: &str| doc.get(key).and_then(Value::as_object).cloned();
        let conda = section("packages.conda").unwrap_or_default();
        let legacy = section("packages").unwrap_or_default();
        let mut all: Vec<(String, Value)> = conda.clone().into_iter().collect();
        for (file_name, record) in legacy {
            let twin = file_name
                .strip_suffix(".tar.bz2")
                .map(|stem| format!("{stem}.conda"));
            if !twin.is_some_and(|t| conda.contains_key(&t)) {
                all.push((file_name, record));
            }
        }
        // newest_by_name_and_version: one per (name, version), the newest
        // timestamp (the first on ties), in first-seen order.
        let mut groups: Vec<(String, Value)> = Vec::new();
        let mut group_at: HashMap<(String, String), usize> = HashMap::new();
        for (file_name, record) in all {
            let (Some(name), Some(version)) = (record.get("name"), record.get("version")) else {
                continue;
            };
            let key = (name.to_string(), version.to_string());
            let ts = record
                .get("timestamp")
                .and_then(Value::as_f64)
                .unwrap_or(0.0);
            match group_at.get(&key) {
                Some(&i) => {
                    if let Some(slot) = groups.get_mut(i) {
                        let old = slot
                            .1
                            .get("timestamp")
                            .and_then(Value::as_f64)
                            .unwrap_or(0.0);
                        if old < ts {
                            *slot = (file_name, record);
                        }
                    }
                }
                None => {
                    group_at.insert(key, groups.len());
                    groups.push((file_name, record));
                }
            }
        }
        for (file_name, record) in groups {
            let Some((extras, run_exports)) = (subdir.extras)(&file_name) else {
                continue;
            };
            let mut data: Map<String, Value> = serde_json::from_str(&extras).unwrap_or_default();
            data.insert(
                "run_exports".into(),
                serde_json::from_str(&run_exports).unwrap_or(Value::Object(Map::new())),
            );
            if let Value::Object(fields) = record {
                data.extend(fields);
            }
            self.merge(subdir.subdir, &data);
        }
        self.subdirs.insert(subdir.subdir.to_owned());
    }

    fn merge(&mut self, subdir: &str, data: &Map<String, Value>) {
        let Some(name) = data.get("name").and_then(Value::as_str).map(str::to_owned) else {
            return;
        };
        let i = *self.at.entry(name.clone()).or_insert_with(|| {
            self.packages.push((name.clone(), Map::new()));
            self.packages.len() - 1
        });
        let Some((_, entry)) = self.packages.get_mut(i) else {
            return;
        };
        let data_v = version_text(data.get("version"));
        let erec_v = version_text(entry.get("version"));
        let newer_version = match (VersionOrder::parse(&data_v), VersionOrder::parse(&erec_v)) {
            (Ok(a), Ok(b)) => a > b,
            _ => false,
        };
        let data_newer = newer_version
            || (data_v == erec_v
                && seconds(data.get("timestamp")) > seconds(entry.get("timestamp")));
        for k in KEEP_NEWER {
            let value = if truthy(data.get(k)) && (data_newer || !truthy(entry.get(k))) {
                data.get(k).cloned()
            } else {
                entry.get(k).cloned()
            };
            entry.insert(k.into(), value.unwrap_or(Value::Null));
        }
        for k in ANY_TRUE {
            let any = truthy(data.get(k)) || truthy(entry.get(k));
            entry.insert(k.into(), Value::Bool(any));
        }
        let mut subdirs: BTreeSet<String> = entry
            .get("subdirs")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        subdirs.insert(subdir.to_owned());
        entry.insert(
            "subdirs".into(),
            Value::Array(subdirs.into_iter().map(Value::String).collect()),
        );
        let mut run_exports = match entry.get("run_exports") {
            Some(Value::Object(map)) => map.clone(),
            _ => Map::new(),
        };
        if truthy(data.get("run_exports")) {
            if let Some(exports) = data.get("run_exports") {
                run_exports.insert(data_v, exports.clone());
            }
        }
        entry.insert("run_exports".into(), Value::Object(run_exports));
        // conda-index looks the old timestamp up in the wrong dict: it is
        // always this version's.
        let ts = seconds(data.get("timestamp")).max(0);
        entry.insert("timestamp".into(), Value::from(ts));
    }

    /// `channeldata.json`'s bytes (sorted keys, a trailing newline).
    pub fn to_json(&self, style: JsonStyle) -> Vec<u8> {
        let packages: Map<String, Value> = self
            .packages
            .iter()
            .map(|(name, fields)| {
                let kept: Map<String, Value> = fields
                    .iter()
                    .filter(|(k, v)| !v.is_null() && *k != "commits")
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                (name.clone(), Value::Object(kept))
            })
            .collect();
        let mut doc = Map::new();
        doc.insert("channeldata_version".into(), Value::from(1));
        doc.insert("packages".into(), Value::Object(packages));
        doc.insert(
            "subdirs".into(),
            Value::Array(self.subdirs.iter().cloned().map(Value::String).collect()),
        );
        let mut out = to_python_json(&Value::Object(doc), style);
        out.push(b'\n');
        out
    }

    /// `rss.xml`: the 100 most recently built names, `now` (Unix seconds)
    /// as the feed's date.
    pub fn rss(&self, channel_name: &str, now: i64) -> String {
        super::rss::render(channel_name, &self.packages, now)
    }
}
