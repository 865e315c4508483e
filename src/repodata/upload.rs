//! An upload's record, built once: its `index.json` is parsed a single
//! time into the fields a channel needs (name, version, build in conda's
//! grammar, a CEP 26 subdir), checked against the file name the client
//! gave, and turned into the record the index lists.

use serde_json::Value;

use super::names::{DistName, GrammarError, PackageFileName, Subdir, SubdirError};
use super::record::{parse_index_json, RecordError};
use super::IndexedPackage;
use crate::package::{Digests, InfoMembers};

/// What publishing needs to know about a verified upload.
#[derive(Debug, Clone)]
pub struct UploadRecord {
    pub dist: DistName,
    /// Where it goes: from `index.json`, never from the client.
    pub subdir: Subdir,
    pub digests: Digests,
    /// What the index lists.
    pub package: IndexedPackage,
}

/// Why an upload's metadata cannot be published.
#[derive(Debug, thiserror::Error)]
pub enum UploadRecordError {
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("info/index.json has no string {0:?}")]
    MissingField(&'static str),
    #[error("info/index.json: {0}")]
    Grammar(#[from] GrammarError),
    #[error("info/index.json: subdir {0}")]
    Subdir(#[from] SubdirError),
    #[error("file name {file:?} does not match index.json ({expected:?})")]
    FileNameMismatch { file: String, expected: String },
}

impl UploadRecord {
    /// Reads the info members of an upload named `file_name` whose bytes
    /// hash to `digests`.
    pub fn new(
        members: &InfoMembers,
        digests: &Digests,
        file_name: &PackageFileName,
    ) -> Result<Self, UploadRecordError> {
        let index = parse_index_json(&members.index_json)?;
        let field = |key: &'static str| match index.get(key) {
            Some(Value::String(text)) if !text.is_empty() => Ok(text.as_str()),
            _ => Err(UploadRecordError::MissingField(key)),
        };
        let dist = DistName::new(field("name")?, field("version")?, field("build")?)?;
        let subdir = Subdir::parse(field("subdir")?)?;
        let expected = dist.file_name(file_name.format());
        if expected != file_name.as_str() {
            return Err(UploadRecordError::FileNameMismatch {
                file: file_name.as_str().to_owned(),
                expected,
            });
        }
        let package = IndexedPackage::from_index(index, members, digests)?;
        Ok(Self {
            dist,
            subdir,
            digests: digests.clone(),
            package,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repodata::test_digests as digests;

    fn record(index_json: &str, file_name: &str) -> Result<UploadRecord, UploadRecordError> {
        let members = InfoMembers {
            index_json: index_json.as_bytes().to_vec(),
            ..InfoMembers::default()
        };
        UploadRecord::new(
            &members,
            &digests(),
            &PackageFileName::parse(file_name).unwrap(),
        )
    }

    #[test]
    fn one_parse_gives_the_fields_and_the_record() {
        let upload = record(
            r#"{"name":"r-base","version":"1!4.3+x","build":"h_0","subdir":"linux-64","arch":"x86_64"}"#,
            "r-base-1!4.3+x-h_0.conda",
        )
        .unwrap();
        assert_eq!(upload.dist.name(), "r-base");
        assert_eq!(upload.dist.version(), "1!4.3+x");
        assert_eq!(upload.subdir.as_str(), "linux-64");
        assert_eq!(upload.package.sha256, "s");
        assert_eq!(
            upload.package.record,
            r#"{"build":"h_0","md5":"m","name":"r-base","sha256":"s","size":7,"subdir":"linux-64","version":"1!4.3+x"}"#
        );
        assert_eq!(upload.package.run_exports, "{}");
    }

    #[test]
    fn a_file_name_reads_one_way() {
        // `numpy-2.0-1-0.conda` is package `numpy-2.0` version 1 ...
        let ok = r#"{"name":"numpy-2.0","version":"1","build":"0","subdir":"noarch"}"#;
        assert!(record(ok, "numpy-2.0-1-0.conda").is_ok());
        // ... never package `numpy` version `2.0-1`.
        let other = r#"{"name":"numpy","version":"2.0-1","build":"0","subdir":"noarch"}"#;
        assert!(matches!(
            record(other, "numpy-2.0-1-0.conda"),
            Err(UploadRecordError::Grammar(GrammarError::Version(..)))
        ));
    }

    #[test]
    fn refusals_are_typed() {
        let cases = [
            (r#"[1]"#, "a-1-0.conda"),
            (r#"{"name":"a","version":"1","build":"0"}"#, "a-1-0.conda"),
            (
                r#"{"name":"a","version":"1","build":"0","subdir":"../etc"}"#,
                "a-1-0.conda",
            ),
            (
                r#"{"name":"a<b","version":"1","build":"0","subdir":"noarch"}"#,
                "a<b-1-0.conda",
            ),
            (
                r#"{"name":"a","version":"1","build":"0","subdir":"noarch"}"#,
                "b-1-0.conda",
            ),
            (
                r#"{"name":"a","version":"1","build":"0","subdir":"noarch"}"#,
                "a-1-0.tar.bz2x.conda",
            ),
        ];
        let errors: Vec<String> = cases
            .iter()
            .map(|(json, name)| record(json, name).unwrap_err().to_string())
            .collect();
        assert_eq!(
            errors,
            [
                "info/index.json is not a JSON object",
                "info/index.json has no string \"subdir\"",
                "info/index.json: subdir \"../etc\" is not a subdir name (noarch or <platform>-<arch> in lowercase letters and digits, CEP 26)",
                "info/index.json: package name \"a<b\" is not a conda package name: only lowercase letters, digits, '-', '_' and '.' are allowed (CEP 26)",
                "file name \"b-1-0.conda\" does not match index.json (\"a-1-0.conda\")",
                "file name \"a-1-0.tar.bz2x.conda\" does not match index.json (\"a-1-0.conda\")",
            ]
        );
    }
}
