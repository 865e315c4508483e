//! The part of conda's `MatchSpec` that a record's `depends` entries use:
//! `name`, `name version`, `name version build`, `name=version=build`,
//! `channel::name`, and `name[version=..., build=...]` (conda 26.7's
//! `_parse_spec_str`). It matches records by name, version and build.

use super::version::{InvalidVersion, VersionSpec};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidMatchSpec {
    #[error("invalid match spec {0:?}: no package name found")]
    NoName(String),
    #[error("invalid match spec {0:?}: multiple brackets sections not allowed")]
    Brackets(String),
    #[error(transparent)]
    Version(#[from] InvalidVersion),
    #[error("invalid match spec {0:?}: bad build pattern")]
    Build(String),
}

/// A build string: exact, or a glob with `*`.
#[derive(Debug, Clone)]
enum BuildMatch {
    Exact(String),
    Glob(regex::Regex),
}

impl BuildMatch {
    fn parse(build: &str) -> Result<Self, InvalidMatchSpec> {
        if !build.contains('*') {
            return Ok(Self::Exact(build.to_owned()));
        }
        let pattern: Vec<String> = build.split('*').map(regex::escape).collect();
        regex::Regex::new(&format!("^(?:{})$", pattern.join(".*")))
            .map(Self::Glob)
            .map_err(|_| InvalidMatchSpec::Build(build.to_owned()))
    }

    fn matches(&self, build: &str) -> bool {
        match self {
            Self::Exact(exact) => exact == build,
            Self::Glob(re) => re.is_match(build),
        }
    }
}

/// What a spec asks of a record.
#[derive(Debug, Clone)]
pub struct MatchSpec {
    /// Lower-cased; `*` (or a glob) matches any name.
    pub name: String,
    version: Option<VersionSpec>,
    build: Option<BuildMatch>,
}

/// `_parse_version_plus_build`: the regex
/// `((?:.+?)[^><!,|]?)(?:(?<![=!|,<>~])(?:[ =])([^-=,|<>~]+?))?$`, tried
/// in the order Python's engine tries it.
fn version_plus_build(text: &str) -> (String, Option<String>) {
    let chars: Vec<char> = text.chars().collect();
    let n = chars.len();
    let build_at = |j: usize| -> Option<String> {
        // The separator at j, the build after it.
        let sep = *chars.get(j)?;
        let before = *chars.get(j.checked_sub(1)?)?;
        let build: String = chars.get(j + 1..)?.iter().collect();
        let ok = matches!(sep, ' ' | '=')
            && !"=!|,<>~".contains(before)
            && !build.is_empty()
            && !build.contains(['-', '=', ',', '|', '<', '>', '~']);
        ok.then_some(build)
    };
    let mut split = None;
    'search: for k in 1..=n {
        let mut ends = Vec::with_capacity(2);
        if chars.get(k).is_some_and(|c| !"><!,|".contains(*c)) {
            ends.push(k + 1);
        }
        ends.push(k);
        for j in ends {
            if let Some(build) = build_at(j) {
                split = Some((j, Some(build)));
                break 'search;
            }
            if j == n {
                split = Some((j, None));
                break 'search;
            }
        }
    }
    let (end, build) = split.unwrap_or((n, None));
    let version: String = chars.iter().take(end).filter(|c| **c != ' ').collect();
    (version, build.map(|b| b.trim().to_owned()))
}

/// `_sanitize_version_str`: `=1.2` means `1.2*`, `==1.2` means `1.2`.
fn sanitize_version(version: &str, build: Option<&str>) -> String {
    if version == "==" || version == "=" || !version.starts_with('=') {
        return version.to_owned();
    }
    let bare = version.trim_start_matches('=');
    if version.starts_with("==") && build.is_none() {
        return bare.to_owned();
    }
    if !bare.contains(['=', ',', '|']) {
        if build.is_none() && !bare.ends_with('*') {
            return format!("{bare}*");
        }
        return bare.to_owned();
    }
    version.to_owned()
}

/// `key=value` pairs inside `[...]`, quotes optional.
fn bracket_pairs(inner: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut rest = inner;
    while let Some(eq) = rest.find('=') {
        let key = rest
            .get(..eq)
            .unwrap_or("")
            .trim()
            .trim_start_matches(',')
            .trim();
        let after = rest.get(eq + 1..).unwrap_or("");
        let (value, next) = match after.chars().next() {
            Some(q @ ('"' | '\'')) => {
                let body = after.get(1..).unwrap_or("");
                let end = body.find(q).unwrap_or(body.len());
                (
                    body.get(..end).unwrap_or(""),
                    body.get(end + 1..).unwrap_or(""),
                )
            }
            _ => {
                let end = after.find([',', ' ']).unwrap_or(after.len());
                (
                    after.get(..end).unwrap_or(""),
                    after.get(end..).unwrap_or(""),
                )
            }
        };
        pairs.push((key.to_owned(), value.to_owned()));
        rest = next.trim_start_matches([',', ' ']);
    }
    pairs
}

impl MatchSpec {
    pub fn parse(original: &str) -> Result<Self, InvalidMatchSpec> {
        let mut spec = original;
        if let Some(hash) = spec.find('#') {
            spec = spec.get(..hash).unwrap_or(spec);
        }
        if let Some((head, _)) = spec.split_once(" if ") {
            spec = head;
        }
        let mut text = spec.to_owned();
        let mut brackets = Vec::new();
        if let (Some(open), Some(close)) = (text.rfind('['), text.rfind(']')) {
            if open < close {
                let inner = text.get(open + 1..close).unwrap_or("").to_owned();
                brackets = bracket_pairs(&inner);
                text = format!(
                    "{}{}",
                    text.get(..open).unwrap_or(""),
                    text.get(close + 1..).unwrap_or("")
                );
            }
        }
        if let (Some(open), Some(close)) = (text.rfind('('), text.rfind(')')) {
            if open < close {
                text = format!(
                    "{}{}",
                    text.get(..open).unwrap_or(""),
                    text.get(close + 1..).unwrap_or("")
                );
            }
        }
        // channel::name or namespace:name
        let text = text.rsplit(':').next().unwrap_or(&text).to_owned();
        let name_end = text
            .find([' ', '=', '<', '>', '!', '~'])
            .unwrap_or(text.len());
        let name = text.get(..name_end).unwrap_or("");
        if name.is_empty() {
            return Err(InvalidMatchSpec::NoName(original.to_owned()));
        }
        // `([><!=~ ].+)?`: one character alone after the name is ignored.
        let rest = text.get(name_end..).unwrap_or("");
        let rest = if rest.chars().count() < 2 {
            ""
        } else {
            rest.trim()
        };
        let (mut version, mut build) = (None, None);
        if !rest.is_empty() {
            if rest.contains('[') {
                return Err(InvalidMatchSpec::Brackets(original.to_owned()));
            }
            let (v, b) = version_plus_build(rest);
            version = Some(sanitize_version(&v, b.as_deref()));
            build = b;
        }
        for (key, value) in brackets {
            match key.as_str() {
                "version" => version = Some(sanitize_version(&value, None)),
                "build" => build = Some(value),
                _ => {}
            }
        }
        Ok(Self {
            name: name.to_lowercase(),
            version: version.map(|v| VersionSpec::parse(&v)).transpose()?,
            build: build.map(|b| BuildMatch::parse(&b)).transpose()?,
        })
    }

    /// Whether the name is one exact name (not a glob).
    pub fn exact_name(&self) -> Option<&str> {
        (!self.name.contains('*')).then_some(self.name.as_str())
    }

    pub fn matches(&self, name: &str, version: &str, build: &str) -> bool {
        let name_ok = match self.exact_name() {
            Some(exact) => exact == name,
            None => BuildMatch::parse(&self.name).is_ok_and(|glob| glob.matches(name)),
        };
        name_ok
            && self.version.as_ref().is_none_or(|v| v.matches(version))
            && self.build.as_ref().is_none_or(|b| b.matches(build))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_plus_build_as_conda_splits_it() {
        for (input, version, build) in [
            ("=1.2.3 0", "=1.2.3", Some("0")),
            ("1.2.3=0", "1.2.3", Some("0")),
            (">=1.0 , < 2.0 py34_0", ">=1.0,<2.0", Some("py34_0")),
            (">=1.0 , < 2.0 =py34_0", ">=1.0,<2.0", Some("py34_0")),
            ("=1.2.3 ", "=1.2.3", None),
            (">1.8,<2|==1.7", ">1.8,<2|==1.7", None),
            ("* openblas_0", "*", Some("openblas_0")),
            ("* *", "*", Some("*")),
        ] {
            let (v, b) = version_plus_build(input);
            assert_eq!((v.as_str(), b.as_deref()), (version, build), "{input}");
        }
    }

    #[test]
    fn depends_entries_match_as_in_conda() {
        let m = |spec: &str, v: &str, b: &str| MatchSpec::parse(spec).unwrap().matches("x", v, b);
        assert!(m("x", "1.0", "0"));
        assert!(m("x >=1.0,<2.0a0", "1.5", "0"));
        assert!(!m("x >=1.0,<2.0a0", "2.0", "0"));
        assert!(m("x 2.7*", "2.7.18", "0"));
        assert!(!m("x 2.7*", "2.8", "0"));
        assert!(m("x 5.9", "5.9", "0"));
        assert!(!m("x 5.9", "5.9.1", "0"));
        assert!(m("x=1.2", "1.2.3", "0"));
        assert!(!m("x==1.2", "1.2.3", "0"));
        assert!(m("x 3.9.* *_cp39", "3.9.1", "0_cp39"));
        assert!(!m("x 3.9.* *_cp39", "3.9.1", "0_cp38"));
        assert!(m("x=1.0=py_0", "1.0", "py_0"));
        assert!(m("conda-forge::x >=1", "1.0", "0"));
        assert!(m("x[version='>=1.0', build=py*]", "1.1", "py_0"));
        assert!(!m("x[version='>=1.0']", "0.9", "0"));
        assert!(MatchSpec::parse("").is_err());
        assert!(MatchSpec::parse(">=1.0").is_err());
    }
}
