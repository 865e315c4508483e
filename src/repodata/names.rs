//! The names a package is known by, each parsed once into a type that can
//! only hold a valid one (as uv parses a distribution's file name once):
//! a [`Subdir`] (CEP 26), a [`PackageFileName`] (what a channel may hold),
//! and a [`DistName`], the `<name>-<version>-<build>` an upload must have.
//!
//! A `DistName` follows conda's grammar so that a file name reads one way
//! only. A package name may contain `-` (`r-base`); a version or a build
//! string may not, so `numpy-2.0-1-0.conda` can only be package `numpy-2.0`,
//! version `1`, build `0`, and a package claiming to be `numpy` version
//! `2.0-1` is refused. The rules:
//!
//! - name (CEP 26): lowercase ASCII letters, digits, `-`, `_`, `.`; starts
//!   with a letter, a digit or one `_`; never two separators in a row; at
//!   most 64 characters (`_libgcc_mutex`, `python_abi`, `r-base`);
//! - version (CEP 26's characters, conda's `VersionOrder` rules): ASCII
//!   letters, digits, `.`, `_`, `+`, `!`; at most one `!` after a numeric
//!   epoch and one `+` before a local part; no empty component (`1..0`)
//!   except conda's trailing `_` (`1.0.1_`); at most 64 characters
//!   (`1.0.0rc1`, `2023.1`, `1!2.0`, `1.0+local`). conda compares versions
//!   case-insensitively and conda-build accepts capitals, so they are
//!   accepted too;
//! - build string (CEP 26): ASCII letters, digits, `_`, `.`, `+`; at most
//!   64 characters.
//!
//! This is for uploads only: `index` lists whatever conda-index lists.

use std::fmt;

use crate::package::PackageFormat;
use crate::storage::is_plain_name;

/// Longest package file name (CEP 26, and conda's limit).
pub const MAX_FILE_NAME: usize = 211;

/// Longest package name, version or build string (CEP 26).
pub const MAX_PART: usize = 64;

/// A channel subdir: `noarch` or `<platform>-<arch>` in lowercase letters
/// and digits (CEP 26).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subdir(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a subdir name (noarch or <platform>-<arch> in lowercase letters and digits, CEP 26)")]
pub struct SubdirError(pub String);

/// conda's `KNOWN_SUBDIRS` (`conda/base/constants.py`) with the platforms
/// conda-forge builds for that it does not list yet (`emscripten-wasm32`,
/// `wasi-wasm32`): names that mean a platform directory, not a channel,
/// even where CEP 26 would accept a channel name such as `my-channel` too.
pub const KNOWN_PLATFORMS: &[&str] = &[
    "noarch",
    "emscripten-wasm32",
    "wasi-wasm32",
    "freebsd-64",
    "linux-32",
    "linux-64",
    "linux-aarch64",
    "linux-armv6l",
    "linux-armv7l",
    "linux-ppc64",
    "linux-ppc64le",
    "linux-riscv64",
    "linux-s390x",
    "osx-64",
    "osx-arm64",
    "win-32",
    "win-64",
    "win-arm64",
    "zos-z",
];

impl Subdir {
    /// Whether `name` is one of conda's [`KNOWN_PLATFORMS`].
    pub fn is_known_platform(name: &str) -> bool {
        KNOWN_PLATFORMS.contains(&name)
    }

    pub fn parse(name: &str) -> Result<Self, SubdirError> {
        if Self::is_valid(name) {
            Ok(Self(name.to_owned()))
        } else {
            Err(SubdirError(name.to_owned()))
        }
    }

    /// Whether `name` would parse, without making one.
    pub fn is_valid(name: &str) -> bool {
        if name == "noarch" {
            return true;
        }
        let part = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        };
        matches!(name.split_once('-'), Some((platform, arch)) if part(platform) && part(arch))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Subdir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A file name a channel may hold as a package: a bare name (no path, not
/// hidden) of at most [`MAX_FILE_NAME`] characters ending in `.tar.bz2` or
/// `.conda`. Its stem is not parsed: see [`DistName`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PackageFileName {
    text: String,
    format: PackageFormat,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileNameError {
    #[error("invalid file name {0:?}: expected a bare <name>-<version>-<build>.tar.bz2 or .conda of at most {MAX_FILE_NAME} characters")]
    NotAPackage(String),
    #[error("invalid file name {file:?}: {source}")]
    Grammar {
        file: String,
        #[source]
        source: GrammarError,
    },
}

impl PackageFileName {
    pub fn parse(text: &str) -> Result<Self, FileNameError> {
        let bad = || FileNameError::NotAPackage(text.to_owned());
        if text.len() > MAX_FILE_NAME
            || !is_plain_name(text)
            || text.contains("..")
            || text.starts_with('.')
        {
            return Err(bad());
        }
        let format = PackageFormat::from_file_name(text).ok_or_else(bad)?;
        Ok(Self {
            text: text.to_owned(),
            format,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn format(&self) -> PackageFormat {
        self.format
    }

    /// The name without its extension: `<name>-<version>-<build>`.
    pub fn stem(&self) -> &str {
        self.format.stem(&self.text)
    }

    /// The stem read with conda's grammar, as an upload's name must be.
    pub fn dist(&self) -> Result<DistName, FileNameError> {
        DistName::parse(self.stem()).map_err(|source| FileNameError::Grammar {
            file: self.text.clone(),
            source,
        })
    }
}

impl fmt::Display for PackageFileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A package's name, version and build string, each in conda's grammar
/// (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DistName {
    name: String,
    version: String,
    build: String,
}

/// Why a name, version or build string is not in conda's grammar. The
/// offending text is shown escaped (`{:?}`), so it cannot forge log lines.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrammarError {
    #[error("{0:?} is not <name>-<version>-<build>")]
    NotThreeParts(String),
    #[error("package name {0:?} is not a conda package name: {1}")]
    Name(String, &'static str),
    #[error("version {0:?} is not a conda version: {1}")]
    Version(String, &'static str),
    #[error("build string {0:?} is not a conda build string: {1}")]
    Build(String, &'static str),
}

impl DistName {
    /// From the three fields (of `index.json`), each checked.
    pub fn new(name: &str, version: &str, build: &str) -> Result<Self, GrammarError> {
        check_name(name).map_err(|why| GrammarError::Name(name.to_owned(), why))?;
        check_version(version).map_err(|why| GrammarError::Version(version.to_owned(), why))?;
        check_build(build).map_err(|why| GrammarError::Build(build.to_owned(), why))?;
        Ok(Self {
            name: name.to_owned(),
            version: version.to_owned(),
            build: build.to_owned(),
        })
    }

    /// From `<name>-<version>-<build>`: the last two `-` split it, since
    /// neither a version nor a build string may contain one.
    pub fn parse(stem: &str) -> Result<Self, GrammarError> {
        let mut parts = stem.rsplitn(3, '-');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(build), Some(version), Some(name)) => Self::new(name, version, build),
            _ => Err(GrammarError::NotThreeParts(stem.to_owned())),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn build(&self) -> &str {
        &self.build
    }

    /// The file name of this package in `format`.
    pub fn file_name(&self, format: PackageFormat) -> String {
        format!("{self}{}", format.extension())
    }
}

impl fmt::Display for DistName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.name, self.version, self.build)
    }
}

fn is_separator(c: char) -> bool {
    matches!(c, '-' | '_' | '.')
}

fn check_name(name: &str) -> Result<(), &'static str> {
    check_length(name)?;
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || is_separator(c))
    {
        return Err("only lowercase letters, digits, '-', '_' and '.' are allowed (CEP 26)");
    }
    if name.starts_with(['-', '.']) {
        return Err("it must start with a letter, a digit or '_' (CEP 26)");
    }
    let mut previous = None;
    for c in name.chars() {
        if previous.is_some_and(is_separator) && is_separator(c) {
            return Err("two separators ('-', '_', '.') in a row (CEP 26)");
        }
        previous = Some(c);
    }
    Ok(())
}

fn check_version(version: &str) -> Result<(), &'static str> {
    check_length(version)?;
    if let Some(c) = version
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '!')))
    {
        return Err(if c == '-' {
            "'-' separates the version from the name and build, so it cannot be in one"
        } else {
            "only letters, digits, '.', '_', '+' and '!' are allowed"
        });
    }
    let rest = match version.split_once('!') {
        Some((epoch, rest)) => {
            if epoch.is_empty() || !epoch.bytes().all(|b| b.is_ascii_digit()) {
                return Err("the epoch before '!' must be a number");
            }
            if rest.contains('!') {
                return Err("more than one '!'");
            }
            rest
        }
        None => version,
    };
    let (public, local) = match rest.split_once('+') {
        Some((_, local)) if local.contains('+') => return Err("more than one '+'"),
        Some((public, local)) => (public, Some(local)),
        None => (rest, None),
    };
    for part in std::iter::once(public).chain(local) {
        // conda lets a version end in one `_` (openssl's convention).
        let part = if part.len() > 1 {
            part.strip_suffix('_').unwrap_or(part)
        } else {
            part
        };
        if part.split(['.', '_']).any(str::is_empty) {
            return Err("an empty component (two separators in a row, or one at an end)");
        }
    }
    Ok(())
}

fn check_build(build: &str) -> Result<(), &'static str> {
    check_length(build)?;
    if build
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '+'))
    {
        Ok(())
    } else {
        Err("only letters, digits, '_', '.' and '+' are allowed (CEP 26)")
    }
}

fn check_length(text: &str) -> Result<(), &'static str> {
    match text.len() {
        0 => Err("it is empty"),
        n if n > MAX_PART => Err("longer than 64 characters (CEP 26)"),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subdir_names_follow_cep_26() {
        for ok in [
            "noarch",
            "linux-64",
            "osx-arm64",
            "win-32",
            "linux-fake",
            "emscripten-wasm32",
        ] {
            assert_eq!(Subdir::parse(ok).unwrap().as_str(), ok);
        }
        for bad in [
            "",
            "linux",
            "Linux-64",
            "linux-64-x",
            "../etc",
            "linux-",
            "-64",
            "linux_64",
            ".cache",
            "a-b/c",
        ] {
            assert!(Subdir::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn package_file_names_are_bare_with_a_package_extension() {
        let name = PackageFileName::parse("r-base-4.3.1-h1_0.tar.bz2").unwrap();
        assert_eq!(name.format(), PackageFormat::TarBz2);
        assert_eq!(name.stem(), "r-base-4.3.1-h1_0");
        for bad in [
            "",
            "a-1-0.zip",
            "../a-1-0.conda",
            "a/b-1-0.conda",
            ".a-1-0.conda",
            "a..b-1-0.conda",
            "a\0-1-0.conda",
        ] {
            assert!(
                matches!(
                    PackageFileName::parse(bad),
                    Err(FileNameError::NotAPackage(_))
                ),
                "{bad:?}"
            );
        }
        let long = format!("{}-1-0.conda", "a".repeat(MAX_FILE_NAME));
        assert!(PackageFileName::parse(&long).is_err());
    }

    #[test]
    fn odd_but_legal_names_versions_and_builds_parse() {
        for (stem, name, version, build) in [
            (
                "_libgcc_mutex-0.1-conda_forge",
                "_libgcc_mutex",
                "0.1",
                "conda_forge",
            ),
            ("r-base-4.3.1-h1_0", "r-base", "4.3.1", "h1_0"),
            ("python_abi-3.12-4_cp312", "python_abi", "3.12", "4_cp312"),
            ("numpy-1.0.0rc1-py3", "numpy", "1.0.0rc1", "py3"),
            ("tzdata-2023.1-0", "tzdata", "2023.1", "0"),
            ("epoch-1!2.0-0", "epoch", "1!2.0", "0"),
            ("local-1.0+local-0", "local", "1.0+local", "0"),
            ("openssl-1.0.1_-0", "openssl", "1.0.1_", "0"),
            ("capital-1.0RC1-Py_3+cuda", "capital", "1.0RC1", "Py_3+cuda"),
            ("numpy-2.0-1-0", "numpy-2.0", "1", "0"),
        ] {
            let dist = DistName::parse(stem).unwrap_or_else(|e| panic!("{stem}: {e}"));
            assert_eq!(
                (dist.name(), dist.version(), dist.build()),
                (name, version, build)
            );
            assert_eq!(dist.to_string(), stem);
        }
    }

    #[test]
    fn names_outside_the_grammar_are_refused() {
        for (name, version, build) in [
            ("numpy", "2.0-1", "0"),
            ("a<b", "1", "0"),
            ("a>b", "1", "0"),
            ("a=b", "1", "0"),
            ("a!b", "1", "0"),
            ("a~b", "1", "0"),
            ("a b", "1", "0"),
            ("a/b", "1", "0"),
            ("a\nb", "1", "0"),
            ("a\u{1b}b", "1", "0"),
            ("Numpy", "1", "0"),
            ("-a", "1", "0"),
            (".a", "1", "0"),
            ("__a", "1", "0"),
            ("a--b", "1", "0"),
            ("a._b", "1", "0"),
            ("", "1", "0"),
            ("a", "", "0"),
            ("a", "1", ""),
            ("a", "1 0", "0"),
            ("a", "1\n", "0"),
            ("a", "<1", "0"),
            ("a", "1..0", "0"),
            ("a", ".1", "0"),
            ("a", "1!2!3", "0"),
            ("x", "a!1", "0"),
            ("a", "!1", "0"),
            ("a", "1+2+3", "0"),
            ("a", "1=2", "0"),
            ("a", "1", "py-0"),
            ("a", "1", "py 0"),
            ("a", "1", "0!"),
            ("a", "1", "0\n"),
        ] {
            assert!(
                DistName::new(name, version, build).is_err(),
                "{name:?} {version:?} {build:?}"
            );
        }
        let long = "a".repeat(MAX_PART + 1);
        assert!(DistName::new(&long, "1", "0").is_err());
        assert!(DistName::new("a", &long, "0").is_err());
        assert!(DistName::new("a", "1", &long).is_err());
        assert!(DistName::new(&"a".repeat(MAX_PART), "1", "0").is_ok());
        for stem in ["a-1", "a", "-1-0", "a--0", "a-1-"] {
            assert!(DistName::parse(stem).is_err(), "{stem}");
        }
    }

    #[test]
    fn refusals_escape_what_they_quote() {
        let err = DistName::new("a\nb", "1", "0").unwrap_err().to_string();
        assert!(!err.contains('\n'), "{err}");
        assert!(err.contains("\\n"), "{err}");
    }
}
