//! The optional fallback: `CONDA_EXE index CHANNEL_DIR` (conda, or the
//! standalone conda-index) writes the metadata instead of the native indexer.
//!
//! [`CondaIndexer`] builds and checks one run; [`CondaChannel`] is the
//! server's use of it, where runs are serialised per channel and shared:
//! uploads that arrive while conda is running are all covered by the next
//! run, so a burst of uploads costs two runs, not one each.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// How to run `conda index`, and with which of conda-index's output flags.
#[derive(Debug, Clone, Default)]
pub struct CondaIndexer {
    pub exe: PathBuf,
    pub subdirs: Vec<String>,
    pub zst: bool,
    pub bz2: bool,
    pub run_exports: bool,
    pub no_compact: bool,
    /// conda-index's other output flags, passed as they are.
    pub write_shards: bool,
    pub no_write_monolithic: bool,
    pub update_only: bool,
    pub patch_generator: Option<PathBuf>,
    pub base_url: Option<String>,
    pub channel_name: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CondaIndexError {
    #[error("cannot run {exe}")]
    Spawn {
        exe: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{exe} index` exited with status {code}{detail}")]
    Failed {
        exe: String,
        code: i32,
        /// The end of its error output, when captured.
        detail: String,
    },
    #[error("`{exe} index` was killed by a signal ({status})")]
    Killed { exe: String, status: ExitStatus },
}

/// Most bytes of conda's error output quoted in an error.
const DETAIL_BYTES: usize = 2000;

impl CondaIndexer {
    /// `EXE index CHANNEL [--subdir S]... [--zst] [--bz2] [--run-exports] [--no-compact]`.
    pub fn command(&self, channel: &Path) -> Command {
        let mut command = Command::new(&self.exe);
        command.arg("index").arg(channel);
        for subdir in &self.subdirs {
            command.arg("--subdir").arg(subdir);
        }
        for (flag, set) in [
            ("--zst", self.zst),
            ("--bz2", self.bz2),
            ("--run-exports", self.run_exports),
            ("--no-compact", self.no_compact),
            ("--write-shards", self.write_shards),
            ("--no-write-monolithic", self.no_write_monolithic),
            ("--update-only", self.update_only),
        ] {
            if set {
                command.arg(flag);
            }
        }
        if let Some(path) = &self.patch_generator {
            command.arg("--patch-generator").arg(path);
        }
        for (flag, value) in [
            ("--base-url", &self.base_url),
            ("--channel-name", &self.channel_name),
        ] {
            if let Some(value) = value {
                command.arg(flag).arg(value);
            }
        }
        command
    }

    /// Runs it with the output captured (logged at debug level).
    pub fn run_captured(&self, channel: &Path) -> Result<(), CondaIndexError> {
        let mut command = self.command(channel);
        tracing::debug!("running {command:?}");
        let output = command
            .output()
            .map_err(|source| self.spawn_error(source))?;
        log_output(&output);
        self.check(output.status, &output.stderr)
    }

    pub fn spawn_error(&self, source: std::io::Error) -> CondaIndexError {
        CondaIndexError::Spawn {
            exe: self.exe.display().to_string(),
            source,
        }
    }

    /// Turns an exit status into success or an error quoting `stderr`.
    pub fn check(&self, status: ExitStatus, stderr: &[u8]) -> Result<(), CondaIndexError> {
        let exe = self.exe.display().to_string();
        match status.code() {
            Some(0) => Ok(()),
            Some(code) => {
                let text = String::from_utf8_lossy(stderr);
                let text = text.trim_end();
                let mut start = text.len().saturating_sub(DETAIL_BYTES);
                while !text.is_char_boundary(start) {
                    start += 1;
                }
                let tail = text.get(start..).unwrap_or_default();
                let detail = if tail.is_empty() {
                    String::new()
                } else {
                    format!(": {tail}")
                };
                Err(CondaIndexError::Failed { exe, code, detail })
            }
            None => Err(CondaIndexError::Killed { exe, status }),
        }
    }
}

fn log_output(output: &Output) {
    for stream in [&output.stdout, &output.stderr] {
        for line in String::from_utf8_lossy(stream).lines() {
            tracing::debug!("conda index: {line}");
        }
    }
}

/// A channel whose metadata `conda index` keeps, for the server.
pub struct CondaChannel {
    root: PathBuf,
    indexer: CondaIndexer,
    /// Bumped each time a package is placed.
    placed: AtomicU64,
    /// The `placed` count the last successful run covered; held while a
    /// run is going.
    covered: Mutex<u64>,
}

impl CondaChannel {
    pub fn new(root: impl Into<PathBuf>, indexer: CondaIndexer) -> Self {
        Self {
            root: root.into(),
            indexer,
            placed: AtomicU64::new(0),
            covered: Mutex::new(0),
        }
    }

    /// Returns once a `conda index` run that started after this call has
    /// succeeded, so every package placed before the call is listed.
    /// Blocking.
    pub fn refresh(&self) -> Result<(), CondaIndexError> {
        let mine = self.placed.fetch_add(1, Ordering::SeqCst) + 1;
        let mut covered = self.covered.lock().unwrap_or_else(PoisonError::into_inner);
        if *covered >= mine {
            return Ok(()); // a run that started after our placement covered us
        }
        let target = self.placed.load(Ordering::SeqCst);
        self.indexer.run_captured(&self.root)?;
        *covered = target;
        Ok(())
    }
}
