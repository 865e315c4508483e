//! Where a subdir's patch instructions come from (`--patch-generator`),
//! and which ones conda-index 0.13.0 would apply and write:
//!
//! - a `.conda` or `.tar.bz2` generator holds `<subdir>/patch_instructions.json`
//!   in its payload (the last such member wins);
//! - a `.py` generator's `_patch_repodata(repodata, subdir)` is run by an
//!   external Python (`--python`), given `repodata_from_packages.json`;
//! - any other file is one `patch_instructions.json` for every subdir (our
//!   addition; conda-index would try to import it as Python).
//!
//! Generated instructions that are not empty are written to the subdir's
//! `patch_instructions.json`; otherwise that file, if there is one, is
//! applied (conda-index's `_write_or_load_instructions`), so patches
//! persist across runs. Deliberate difference: conda-index also runs a
//! `gen_patch.py` it finds in the channel root; we run nothing that was not
//! asked for.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::repodata::patch::{Instructions, PatchError};
use crate::repodata::JsonStyle;
use crate::storage::Storage;

/// Largest instructions member read from a generator package.
const MAX_MEMBER: u64 = 256 << 20;
/// The subdir file conda-index writes and reads back.
pub const PATCH_INSTRUCTIONS: &str = "patch_instructions.json";

#[derive(Debug, thiserror::Error)]
pub enum PatchSourceError {
    #[error("cannot read patch generator {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("patch generator {path} is a Python file: running it needs --python (an interpreter to run it with)")]
    NoPython { path: String },
    #[error("patch generator {path} failed for {subdir}: {detail}")]
    Python {
        path: String,
        subdir: String,
        detail: String,
    },
    #[error("{what}: {source}")]
    Instructions {
        what: String,
        #[source]
        source: PatchError,
    },
}

/// A loaded `--patch-generator`.
#[derive(Debug, Clone)]
pub enum PatchSource {
    /// Each subdir's instructions from a package's payload.
    Archive {
        path: PathBuf,
        members: BTreeMap<String, Vec<u8>>,
    },
    /// One instructions file for every subdir.
    File { path: PathBuf, bytes: Vec<u8> },
    /// A Python generator, run by `python`.
    Python { script: PathBuf, python: PathBuf },
}

impl PatchSource {
    /// Reads the generator (a package's instructions are read once, here).
    pub fn load(generator: &Path, python: Option<&Path>) -> Result<Self, PatchSourceError> {
        let shown = generator.display().to_string();
        let read_error = |source| PatchSourceError::Read {
            path: shown.clone(),
            source,
        };
        let name = generator.to_string_lossy();
        if name.ends_with(".py") {
            if !generator.is_file() {
                return Err(read_error(io::Error::new(
                    io::ErrorKind::NotFound,
                    "no such file",
                )));
            }
            let python = python.ok_or_else(|| PatchSourceError::NoPython {
                path: shown.clone(),
            })?;
            return Ok(Self::Python {
                script: generator.to_path_buf(),
                python: python.to_path_buf(),
            });
        }
        if name.ends_with(".conda") || name.ends_with(".tar.bz2") {
            let members = read_archive(generator).map_err(read_error)?;
            return Ok(Self::Archive {
                path: generator.to_path_buf(),
                members,
            });
        }
        let bytes = std::fs::read(generator).map_err(read_error)?;
        // Checked now, so a bad file fails before anything is written.
        Instructions::parse(&bytes).map_err(|source| PatchSourceError::Instructions {
            what: shown.clone(),
            source,
        })?;
        Ok(Self::File {
            path: generator.to_path_buf(),
            bytes,
        })
    }

    /// The instructions generated for `subdir`, or `None` when there are
    /// none (empty), given its unpatched `repodata_from_packages.json`.
    pub fn generate(
        &self,
        subdir: &str,
        from_packages: &[u8],
    ) -> Result<Option<Instructions>, PatchSourceError> {
        let (what, bytes) = match self {
            Self::Archive { path, members } => match members.get(subdir) {
                Some(bytes) => (
                    format!("{}: {subdir}/{PATCH_INSTRUCTIONS}", path.display()),
                    bytes.clone(),
                ),
                None => return Ok(None),
            },
            Self::File { path, bytes } => (path.display().to_string(), bytes.clone()),
            Self::Python { script, python } => (
                format!("{} ({subdir})", script.display()),
                run_python(python, script, subdir, from_packages)?,
            ),
        };
        let instructions = Instructions::parse(&bytes)
            .map_err(|source| PatchSourceError::Instructions { what, source })?;
        Ok((!instructions.is_empty()).then_some(instructions))
    }
}

/// Every `<subdir>/patch_instructions.json` in a `.tar.bz2` or in a
/// `.conda`'s `pkg-<stem>` component, by subdir (the last member wins).
fn read_archive(path: &Path) -> io::Result<BTreeMap<String, Vec<u8>>> {
    let file = std::fs::File::open(path)?;
    let name = path.to_string_lossy();
    if name.ends_with(".tar.bz2") {
        return read_tar(bzip2::read::MultiBzDecoder::new(io::BufReader::new(file)));
    }
    let mut zip = zip::ZipArchive::new(io::BufReader::new(file)).map_err(io::Error::other)?;
    let stem = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = stem.rsplit_once('.').map_or(stem.as_str(), |(s, _)| s);
    let wanted = format!("pkg-{stem}");
    let index = (0..zip.len())
        .find(|&i| {
            zip.name_for_index(i)
                .and_then(Result::ok)
                .is_some_and(|member| member.starts_with(&wanted))
        })
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("no {wanted} component in the .conda"),
            )
        })?;
    let member = zip.by_index(index).map_err(io::Error::other)?;
    let members = read_tar(zstd::stream::read::Decoder::new(member)?)?;
    Ok(members)
}

fn read_tar(reader: impl Read) -> io::Result<BTreeMap<String, Vec<u8>>> {
    let mut members = BTreeMap::new();
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries()? {
        let entry = entry?;
        let path = entry.path()?.to_string_lossy().into_owned();
        let Some((subdir, PATCH_INSTRUCTIONS)) = path.split_once('/') else {
            continue;
        };
        if subdir.contains('/') || !entry.header().entry_type().is_file() {
            continue;
        }
        let mut bytes = Vec::new();
        entry.take(MAX_MEMBER).read_to_end(&mut bytes)?;
        members.insert(subdir.to_owned(), bytes);
    }
    Ok(members)
}

/// Runs the generator as conda-index imports it (module `a_b`), feeding
/// it the repodata on stdin; its instructions come back as JSON.
fn run_python(
    python: &Path,
    script: &Path,
    subdir: &str,
    from_packages: &[u8],
) -> Result<Vec<u8>, PatchSourceError> {
    const DRIVER: &str = "import json, sys\n\
from importlib.util import module_from_spec, spec_from_file_location\n\
spec = spec_from_file_location('a_b', sys.argv[1])\n\
mod = module_from_spec(spec)\n\
spec.loader.exec_module(mod)\n\
repodata = json.load(sys.stdin.buffer)\n\
json.dump(mod._patch_repodata(repodata, sys.argv[2]), sys.stdout)\n";
    let failed = |detail: String| PatchSourceError::Python {
        path: script.display().to_string(),
        subdir: subdir.to_owned(),
        detail,
    };
    let mut child = Command::new(python)
        .arg("-c")
        .arg(DRIVER)
        .arg(script)
        .arg(subdir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(format!("cannot run {}: {e}", python.display())))?;
    let mut stdin = child.stdin.take();
    let input = from_packages.to_vec();
    let feeder = std::thread::spawn(move || {
        if let Some(stdin) = stdin.as_mut() {
            let _ = stdin.write_all(&input);
        }
    });
    let output = child
        .wait_with_output()
        .map_err(|e| failed(e.to_string()))?;
    let _ = feeder.join();
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: String = stderr
            .chars()
            .rev()
            .take(2000)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return Err(failed(format!("{} ({})", tail.trim(), output.status)));
    }
    Ok(output.stdout)
}

/// The instructions to apply to a subdir and the `patch_instructions.json`
/// to write there.
pub(crate) struct Resolved {
    pub apply: Option<Instructions>,
    /// Generated instructions to write (`None`: keep the file as it is).
    pub write: Option<Vec<u8>>,
    /// Whether the subdir's own file holds real (not no-op) instructions.
    pub kept_file: bool,
}

/// `patch_instructions.json` files known to patch nothing, by subdir.
#[derive(Default)]
pub(crate) struct NoopFiles(std::sync::Mutex<std::collections::HashMap<String, Vec<u8>>>);

impl NoopFiles {
    fn holds(&self, subdir: &str, bytes: &[u8]) -> bool {
        let known = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        known
            .get(subdir)
            .is_some_and(|known| known.as_slice() == bytes)
    }

    fn remember(&self, subdir: &str, bytes: Option<Vec<u8>>) {
        let mut known = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match bytes {
            Some(bytes) => known.insert(subdir.to_owned(), bytes),
            None => known.remove(subdir),
        };
    }
}

/// Decides a subdir's instructions: generated ones if any, else its own
/// `patch_instructions.json` (a no-op file, such as the one the shard
/// writer leaves, counts as none).
pub(crate) fn resolve(
    storage: &dyn Storage,
    subdir: &str,
    source: Option<&PatchSource>,
    from_packages: &[u8],
    style: JsonStyle,
    noop_files: &NoopFiles,
) -> Result<Resolved, PatchSourceError> {
    if let Some(instructions) = match source {
        Some(source) => source.generate(subdir, from_packages)?,
        None => None,
    } {
        let write = Some(instructions.to_file(style));
        let apply = (!instructions.is_noop()).then_some(instructions);
        return Ok(Resolved {
            apply,
            write,
            kept_file: false,
        });
    }
    let path = format!("{subdir}/{PATCH_INSTRUCTIONS}");
    let existing = storage
        .read(&path)
        .map_err(|source| PatchSourceError::Read {
            path: path.clone(),
            source,
        })?;
    let apply = match existing {
        Some(bytes) if noop_files.holds(subdir, &bytes) => None,
        Some(bytes) => {
            let instructions =
                Instructions::parse(&bytes).map_err(|source| PatchSourceError::Instructions {
                    what: path.clone(),
                    source,
                })?;
            let noop = instructions.is_noop();
            noop_files.remember(subdir, noop.then_some(bytes));
            (!noop).then_some(instructions)
        }
        None => None,
    };
    Ok(Resolved {
        kept_file: apply.is_some(),
        apply,
        write: None,
    })
}
