//! `current_repodata.json`: the newest version of every package, the
//! versions the `-m` file pins, and what they need to stay installable,
//! as conda-index 0.13.0's `current_repodata.py` picks them through
//! conda's `Resolve` (conda 26.7).
//!
//! The steps, each as conda takes them:
//! 1. Records as `SubdirData` loads them: a `.tar.bz2` with a `.conda`
//!    twin is left out; `python` 2.x/3.x depends on `pip`
//!    (`add_pip_as_python_dependency`); records are one per
//!    (name, version, build number, build), the last one winning.
//! 2. Each name's records sorted newest first by (version, build number,
//!    timestamp, build).
//! 3. For each name: every record matching `name=<newest version>`, and
//!    `name=<newest matching pin>` for each pin.
//! 4. A dependency none of those satisfy brings in every record of the
//!    newest version that does (one level: their own dependencies are not
//!    followed, as in conda-index).
//! 5. A name whose kept records have features also keeps its newest
//!    feature-less record not newer than them.
//!
//! The output is the input document without its records, then the kept
//! records, each `.conda` one with `legacy_bz2_md5` (its `.tar.bz2`
//! twin's md5, or `null`).

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::{Map, Value};

use super::matchspec::MatchSpec;
use super::version::VersionOrder;

/// `-m/--current-index-versions-file`: versions to keep per name besides
/// the newest.
pub type Pins = BTreeMap<String, Vec<String>>;

#[derive(Debug, thiserror::Error)]
pub enum CurrentRepodataError {
    #[error("repodata.json is not a JSON object: {0}")]
    NotJson(#[source] serde_json::Error),
}

/// One record as conda's `Resolve` sees it.
#[derive(Debug, Clone)]
struct Rec {
    section: &'static str,
    file_name: String,
    name: String,
    version: String,
    order: Option<VersionOrder>,
    build: String,
    build_number: i64,
    timestamp: f64,
    depends: Vec<String>,
    has_features: bool,
}

type Key = (String, String, i64, String);

impl Rec {
    fn from_record(section: &'static str, file_name: &str, record: &Value) -> Option<Self> {
        let text = |key: &str| record.get(key).and_then(Value::as_str).map(str::to_owned);
        let name = text("name")?;
        let version = match record.get("version") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => return None,
        };
        if record
            .get("record_version")
            .and_then(Value::as_i64)
            .is_some_and(|v| v > 1)
        {
            return None;
        }
        let mut depends: Vec<String> = match record.get("depends") {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|d| d.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        if name == "python" && (version.starts_with("2.") || version.starts_with("3.")) {
            depends.push("pip".into());
        }
        let features = |key: &str| match record.get(key) {
            Some(Value::String(s)) => s.split([' ', ',']).any(|f| !f.is_empty()),
            Some(Value::Array(items)) => !items.is_empty(),
            _ => false,
        };
        let mut timestamp = record
            .get("timestamp")
            .and_then(Value::as_f64)
            .unwrap_or(0.0);
        if timestamp > 253_402_300_799.0 {
            timestamp /= 1000.0; // milliseconds, as conda's TimestampField reads them
        }
        Some(Self {
            section,
            file_name: file_name.to_owned(),
            order: VersionOrder::parse(&version).ok(),
            build: text("build").unwrap_or_default(),
            build_number: record
                .get("build_number")
                .and_then(Value::as_i64)
                .unwrap_or(0),
            timestamp,
            depends,
            has_features: features("track_features") || features("features"),
            name,
            version,
        })
    }

    fn key(&self) -> Key {
        (
            self.name.clone(),
            self.version.clone(),
            self.build_number,
            self.build.clone(),
        )
    }

    /// conda's `version_key`, one channel and one subdir.
    fn cmp_key(&self, other: &Self) -> Ordering {
        let version = match (&self.order, &other.order) {
            (Some(a), Some(b)) => a.cmp(b),
            // conda cannot order an invalid version at all; put it last.
            (Some(_), None) => Ordering::Greater,
            (None, Some(_)) => Ordering::Less,
            (None, None) => Ordering::Equal,
        };
        version
            .then(self.build_number.cmp(&other.build_number))
            .then(self.timestamp.total_cmp(&other.timestamp))
            .then_with(|| self.build.cmp(&other.build))
    }
}

/// conda's `Resolve` over a set of records: groups by name, newest first.
struct Resolve<'a> {
    groups: Vec<(String, Vec<&'a Rec>)>,
    by_name: HashMap<String, usize>,
}

impl<'a> Resolve<'a> {
    fn new(records: impl IntoIterator<Item = &'a Rec>) -> Self {
        // The index is a dict keyed by record: one per key, the last wins
        // (at the first one's place).
        let mut index: Vec<&Rec> = Vec::new();
        let mut at: HashMap<Key, usize> = HashMap::new();
        for rec in records {
            match at.get(&rec.key()) {
                Some(&i) => {
                    if let Some(slot) = index.get_mut(i) {
                        *slot = rec;
                    }
                }
                None => {
                    at.insert(rec.key(), index.len());
                    index.push(rec);
                }
            }
        }
        let mut groups: Vec<(String, Vec<&Rec>)> = Vec::new();
        let mut by_name = HashMap::new();
        for rec in index {
            let i = *by_name.entry(rec.name.clone()).or_insert_with(|| {
                groups.push((rec.name.clone(), Vec::new()));
                groups.len() - 1
            });
            if let Some((_, group)) = groups.get_mut(i) {
                group.push(rec);
            }
        }
        for (_, group) in &mut groups {
            // Python's sorted(reverse=True) is stable too.
            group.sort_by(|a, b| b.cmp_key(a));
        }
        Self { groups, by_name }
    }

    fn group(&self, name: &str) -> &[&'a Rec] {
        self.by_name
            .get(name)
            .and_then(|&i| self.groups.get(i))
            .map_or(&[], |(_, group)| group.as_slice())
    }

    fn find_matches(&self, spec: &MatchSpec) -> Vec<&'a Rec> {
        let candidates: Vec<&'a Rec> = match spec.exact_name() {
            Some(name) => self.group(name).to_vec(),
            None => self
                .groups
                .iter()
                .flat_map(|(_, g)| g.iter().copied())
                .collect(),
        };
        candidates
            .into_iter()
            .filter(|r| spec.matches(&r.name, &r.version, &r.build))
            .collect()
    }

    /// Every record matching `name=version`.
    fn same_version(&self, name: &str, version: &str) -> Vec<&'a Rec> {
        match MatchSpec::parse(&format!("{name}={version}")) {
            Ok(spec) => self.find_matches(&spec),
            Err(_) => Vec::new(),
        }
    }
}

/// Records in a set keyed as conda's records hash: first one in stays.
#[derive(Default)]
struct RecSet<'a> {
    seen: HashSet<Key>,
    records: Vec<&'a Rec>,
}

impl<'a> RecSet<'a> {
    fn insert(&mut self, rec: &'a Rec) {
        if self.seen.insert(rec.key()) {
            self.records.push(rec);
        }
    }
}

/// Groups as conda-index copies them: name → set of records.
type Groups<'a> = Vec<(String, RecSet<'a>)>;

fn groups_of<'a>(resolve: &Resolve<'a>) -> Groups<'a> {
    resolve
        .groups
        .iter()
        .map(|(name, group)| {
            let mut set = RecSet::default();
            group.iter().for_each(|r| set.insert(r));
            (name.clone(), set)
        })
        .collect()
}

fn add_to<'a>(groups: &mut Groups<'a>, name: &str, records: &[&'a Rec]) {
    let i = match groups.iter().position(|(n, _)| n == name) {
        Some(i) => i,
        None => {
            groups.push((name.to_owned(), RecSet::default()));
            groups.len() - 1
        }
    };
    if let Some((_, set)) = groups.get_mut(i) {
        records.iter().for_each(|r| set.insert(r));
    }
}

fn flatten<'a>(groups: &Groups<'a>) -> Vec<&'a Rec> {
    groups
        .iter()
        .flat_map(|(_, set)| set.records.iter().copied())
        .collect()
}

fn newest_with_pins<'a>(all: &Resolve<'a>, pins: &Pins) -> Vec<&'a Rec> {
    let mut groups: Groups = Vec::new();
    for (name, group) in &all.groups {
        let Some(newest) = group.first() else {
            continue;
        };
        add_to(&mut groups, name, &all.same_version(name, &newest.version));
        for pin in pins.get(name).into_iter().flatten() {
            if let Some(pinned) = all.same_version(name, pin).first() {
                add_to(&mut groups, name, &all.same_version(name, &pinned.version));
            }
        }
    }
    flatten(&groups)
}

fn add_missing_deps<'a>(new: &Resolve<'a>, all: &Resolve<'a>) -> Vec<&'a Rec> {
    let mut expanded = groups_of(new);
    let mut seen: HashSet<&str> = HashSet::new();
    for (_, group) in &new.groups {
        for rec in group {
            for dep in &rec.depends {
                if !seen.insert(dep.as_str()) {
                    continue;
                }
                let Ok(spec) = MatchSpec::parse(dep) else {
                    tracing::warn!(
                        "current_repodata: {} depends on {dep:?}, not a match spec",
                        rec.file_name
                    );
                    continue;
                };
                if !new.find_matches(&spec).is_empty() {
                    continue;
                }
                if let Some(best) = all.find_matches(&spec).first() {
                    let name = spec.name.clone();
                    add_to(
                        &mut expanded,
                        &name,
                        &all.same_version(&name, &best.version),
                    );
                }
            }
        }
    }
    flatten(&expanded)
}

fn add_previous_for_features<'a>(new: &Resolve<'a>, all: &Resolve<'a>) -> Vec<&'a Rec> {
    let mut expanded = groups_of(new);
    for (name, group) in &new.groups {
        if !group.iter().any(|r| r.has_features) {
            continue;
        }
        let Some(latest) = group.first() else {
            continue;
        };
        let keep = all.group(name).iter().find(|r| {
            !r.has_features
                && latest.order.is_some()
                && r.order.is_some()
                && r.order <= latest.order
        });
        if let Some(keep) = keep {
            // `{keep_m} | set(...)`: the kept record comes first.
            let position = expanded.iter().position(|(n, _)| n == name);
            if let Some((_, set)) = position.and_then(|i| expanded.get_mut(i)) {
                let mut with_keep = RecSet::default();
                with_keep.insert(keep);
                set.records.iter().for_each(|r| with_keep.insert(r));
                *set = with_keep;
            }
        }
    }
    flatten(&expanded)
}

/// The records `current_repodata.json` keeps, as (section, file name).
fn keep(document: &Map<String, Value>, pins: &Pins) -> Vec<(&'static str, String)> {
    let section = |key: &str| document.get(key).and_then(Value::as_object);
    let empty = Map::new();
    let conda = section("packages.conda").unwrap_or(&empty);
    let legacy = section("packages").unwrap_or(&empty);
    let mut records = Vec::new();
    for (file_name, record) in conda {
        records.extend(Rec::from_record("packages.conda", file_name, record));
    }
    for (file_name, record) in legacy {
        let twin = file_name
            .strip_suffix(".tar.bz2")
            .map(|stem| format!("{stem}.conda"));
        if twin.is_some_and(|twin| conda.contains_key(&twin)) {
            continue;
        }
        records.extend(Rec::from_record("packages", file_name, record));
    }
    let all = Resolve::new(&records);
    let newest = newest_with_pins(&all, pins);
    let with_deps = add_missing_deps(&Resolve::new(newest), &all);
    let kept = add_previous_for_features(&Resolve::new(with_deps), &all);
    kept.into_iter()
        .map(|r| (r.section, r.file_name.clone()))
        .collect()
}

/// `current_repodata.json`'s document, from the (patched) repodata.json.
pub fn current_repodata(repodata_json: &[u8], pins: &Pins) -> Result<Value, CurrentRepodataError> {
    let document: Map<String, Value> =
        serde_json::from_slice(repodata_json).map_err(CurrentRepodataError::NotJson)?;
    let kept = keep(&document, pins);
    let section = |key: &str| document.get(key).and_then(Value::as_object);
    let mut out: Map<String, Value> = document
        .iter()
        .filter(|(k, _)| *k != "packages" && *k != "packages.conda")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let (mut packages, mut conda) = (Map::new(), Map::new());
    for (section_name, file_name) in kept {
        let Some(record) = section(section_name).and_then(|s| s.get(&file_name)) else {
            continue;
        };
        if file_name.ends_with(".conda") {
            let mut record = record.clone();
            let twin = file_name.replace(".conda", ".tar.bz2");
            let md5 = section("packages")
                .and_then(|s| s.get(&twin))
                .and_then(|r| r.get("md5"))
                .cloned()
                .unwrap_or(Value::Null);
            if let Value::Object(map) = &mut record {
                map.insert("legacy_bz2_md5".into(), md5);
            }
            conda.insert(file_name, record);
        } else if file_name.ends_with(".tar.bz2") {
            packages.insert(file_name, record.clone());
        }
    }
    out.insert("packages".into(), Value::Object(packages));
    out.insert("packages.conda".into(), Value::Object(conda));
    Ok(Value::Object(out))
}
