//! The repodata model: package records built from `info/index.json`, a
//! subdir's set of records, and their serialisation into `repodata.json` and
//! `run_exports.json`, byte-compatible with conda-index 0.13.0; the names a
//! package is known by ([`names`]), and an upload's record, built once
//! ([`UploadRecord`]).

pub mod json;
pub mod names;
pub mod patch;
mod record;
pub mod shards;
mod subdir;
pub mod tree;
mod upload;

pub use json::{to_python_json, JsonStyle};
pub use names::{DistName, FileNameError, GrammarError, PackageFileName, Subdir, SubdirError};
pub use record::{
    build_record, normalise_run_exports, parse_index_json, record_from, RecordError, STRIPPED_KEYS,
};
pub use subdir::{IndexedPackage, RepodataView, SubdirRepodata};
pub use upload::{UploadRecord, UploadRecordError};

/// Digests for records built in unit tests.
#[cfg(test)]
fn test_digests() -> crate::package::Digests {
    crate::package::Digests {
        md5: "m".into(),
        sha256: "s".into(),
        size: 7,
    }
}
