//! `--current-repodata`: `<subdir>/current_repodata.json` (and its `.bz2`
//! and `.zst` copies as for repodata.json), made from the patched
//! repodata.json by [`crate::repodata::current`]; and the `-m` file of
//! versions to keep.
//!
//! Without the flag, conda-index removes a `current_repodata.json` left by
//! an earlier run (and its copies), so a client never reads one that no
//! longer matches repodata.json; so do we.

use std::io;
use std::path::{Path, PathBuf};

use yaml_rust2::{Yaml, YamlLoader};

use super::monolithic::Files;
use crate::index::{IndexError, IndexOptions};
use crate::repodata::current::{current_repodata, Pins};
use crate::repodata::{to_python_json, JsonStyle};
use crate::storage::Storage;

pub(crate) const CURRENT_REPODATA: &str = "current_repodata.json";

/// Renders current_repodata.json as conda-index writes it (sorted keys,
/// no trailing newline when compact).
pub(super) fn render(repodata_json: &[u8], pins: &Pins, style: JsonStyle) -> io::Result<Vec<u8>> {
    let document = current_repodata(repodata_json, pins)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    Ok(to_python_json(&document, style))
}

/// Adds current_repodata.json when it changed, or its removal when it is
/// not asked for (only where the monolithic files are written, as
/// conda-index does).
pub(super) fn add_files(
    files: &mut Files,
    storage: &dyn Storage,
    subdir: &str,
    current: Option<&[u8]>,
    options: &IndexOptions,
) -> io::Result<()> {
    let path = format!("{subdir}/{CURRENT_REPODATA}");
    match current {
        Some(json) => files.add_json(storage, path, json, options),
        None if options.write_monolithic => {
            for file in [path.clone(), format!("{path}.bz2"), format!("{path}.zst")] {
                if storage.stat(&file)?.is_some() {
                    files.stale.push(file);
                }
            }
            Ok(())
        }
        None => Ok(()),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PinsError {
    #[error("cannot read --current-index-versions-file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("--current-index-versions-file {path} is not YAML: {reason}")]
    Yaml { path: PathBuf, reason: String },
    #[error("--current-index-versions-file {path}: expected a mapping of package names to lists of versions")]
    Shape { path: PathBuf },
}

/// A YAML scalar as Python's `str()` shows what ruamel's safe loader
/// made of it (`3.10` is the float 3.1).
fn python_str(value: &Yaml) -> Option<String> {
    match value {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Real(text) => text.parse::<f64>().ok().map(|f| format!("{f:?}")),
        Yaml::Boolean(b) => Some(if *b { "True" } else { "False" }.to_owned()),
        _ => None,
    }
}

/// Reads the `-m` file: `{name: [version, ...]}`.
pub(crate) fn load_pins(path: &Path) -> Result<Pins, IndexError> {
    let text = std::fs::read_to_string(path).map_err(|source| PinsError::Read {
        path: path.to_owned(),
        source,
    })?;
    let docs = YamlLoader::load_from_str(&text).map_err(|e| PinsError::Yaml {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    let shape = || PinsError::Shape {
        path: path.to_owned(),
    };
    let mut pins = Pins::new();
    let Some(doc) = docs.first() else {
        return Ok(pins); // an empty file: no pins (None in conda-index)
    };
    let map = match doc {
        Yaml::Hash(map) => map,
        Yaml::Null => return Ok(pins),
        _ => return Err(shape().into()),
    };
    for (name, versions) in map {
        let name = python_str(name).ok_or_else(shape)?;
        let versions = match versions {
            Yaml::Array(items) => items.iter().map(python_str).collect::<Option<Vec<_>>>(),
            // Python iterates a string character by character.
            Yaml::String(s) => Some(s.chars().map(String::from).collect()),
            other => python_str(other).map(|v| vec![v]),
        }
        .ok_or_else(shape)?;
        pins.insert(name, versions);
    }
    Ok(pins)
}
