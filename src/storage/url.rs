//! What a channel argument (`index CHANNEL_DIR`, `serve -d`) names: a local
//! directory, or a key prefix in an S3 bucket, `s3://BUCKET/PREFIX`.
//!
//! Anything that looks like a URL but is not a valid `s3://` one is refused
//! rather than taken as a relative directory (`s3:/b` would otherwise
//! create a local folder named `s3:`).

use std::fmt;
use std::path::{Path, PathBuf};

use super::is_plain_name;

/// Where a channel lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelLocation {
    Local(PathBuf),
    S3(S3Location),
}

/// `s3://BUCKET/PREFIX`: the channel root is the key prefix `PREFIX/`
/// (the whole bucket when empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    /// `/`-separated plain names, no leading or trailing `/`; may be empty.
    pub prefix: String,
}

impl fmt::Display for S3Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "s3://{}", self.bucket)
        } else {
            write!(f, "s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("{url:?} is not a valid object-store URL: expected s3://BUCKET/PREFIX")]
    NotS3 { url: String },
    #[error("{url:?}: {bucket:?} is not a valid S3 bucket name (3-63 lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit)")]
    BadBucket { url: String, bucket: String },
    #[error("{url:?}: the prefix must be /-separated names without empty parts, `.`, `..`, backslashes or control characters")]
    BadPrefix { url: String },
    #[error("{url:?}: query strings and fragments are not allowed in an s3:// URL")]
    QueryOrFragment { url: String },
    #[error(
        "{scheme}:// channels are not supported (only local directories and s3://BUCKET/PREFIX)"
    )]
    UnsupportedScheme { scheme: String },
}

impl ChannelLocation {
    /// Reads a channel argument. A path that is not valid UTF-8 is a local
    /// directory.
    pub fn parse(arg: &Path) -> Result<Self, UrlError> {
        let Some(text) = arg.to_str() else {
            return Ok(Self::Local(arg.to_path_buf()));
        };
        if let Some(rest) = strip_prefix_ignore_case(text, "s3:") {
            return parse_s3(text, rest).map(Self::S3);
        }
        if let Some((scheme, _)) = text.split_once("://") {
            let is_scheme = !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
            if is_scheme {
                return Err(UrlError::UnsupportedScheme {
                    scheme: scheme.to_owned(),
                });
            }
        }
        Ok(Self::Local(arg.to_path_buf()))
    }
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| text.get(prefix.len()..))
        .flatten()
}

fn parse_s3(url: &str, after_scheme: &str) -> Result<S3Location, UrlError> {
    let not_s3 = || UrlError::NotS3 {
        url: url.to_owned(),
    };
    let rest = after_scheme.strip_prefix("//").ok_or_else(not_s3)?;
    if rest.contains(['?', '#']) {
        return Err(UrlError::QueryOrFragment {
            url: url.to_owned(),
        });
    }
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if !is_bucket_name(bucket) {
        return Err(UrlError::BadBucket {
            url: url.to_owned(),
            bucket: bucket.to_owned(),
        });
    }
    let prefix = prefix.strip_suffix('/').unwrap_or(prefix);
    let valid = prefix.is_empty()
        || prefix
            .split('/')
            .all(|part| is_plain_name(part) && !part.chars().any(char::is_control));
    if !valid {
        return Err(UrlError::BadPrefix {
            url: url.to_owned(),
        });
    }
    Ok(S3Location {
        bucket: bucket.to_owned(),
        prefix: prefix.to_owned(),
    })
}

/// S3's bucket naming rules (general purpose buckets).
fn is_bucket_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let edge_ok = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    (3..=63).contains(&bytes.len())
        && edge_ok(bytes.first())
        && edge_ok(bytes.last())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-'))
        && !name.contains("..")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ChannelLocation, UrlError> {
        ChannelLocation::parse(Path::new(text))
    }

    fn s3(bucket: &str, prefix: &str) -> ChannelLocation {
        ChannelLocation::S3(S3Location {
            bucket: bucket.into(),
            prefix: prefix.into(),
        })
    }

    #[test]
    fn s3_urls() {
        assert_eq!(parse("s3://chan/main").unwrap(), s3("chan", "main"));
        assert_eq!(parse("s3://chan/a/b/").unwrap(), s3("chan", "a/b"));
        assert_eq!(parse("s3://chan").unwrap(), s3("chan", ""));
        assert_eq!(parse("s3://chan/").unwrap(), s3("chan", ""));
        assert_eq!(parse("S3://my.bucket-1/x").unwrap(), s3("my.bucket-1", "x"));
        assert_eq!(
            parse("s3://chan/main").unwrap(),
            ChannelLocation::S3(S3Location {
                bucket: "chan".into(),
                prefix: "main".into()
            })
        );
        let ChannelLocation::S3(location) = parse("s3://chan/a/b").unwrap() else {
            panic!()
        };
        assert_eq!(location.to_string(), "s3://chan/a/b");
    }

    #[test]
    fn bad_s3_urls_are_refused() {
        for bad in [
            "s3:",
            "s3:/chan",
            "s3:chan/main",
            "s3://",
            "s3://Chan/x",
            "s3://ab/x",
            "s3://-chan/x",
            "s3://ch..an/x",
            "s3://chan//x",
            "s3://chan/a/../b",
            "s3://chan/./b",
            "s3://chan/a\\b",
            "s3://chan/a?x=1",
            "s3://chan/a#f",
            "gs://chan/x",
            "https://example.com/chan",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn paths_stay_local() {
        for local in ["channel", "./s3", "/srv/chan", "my-chan:1", "a/b://c"] {
            assert_eq!(
                parse(local).unwrap(),
                ChannelLocation::Local(local.into()),
                "{local:?}"
            );
        }
    }
}
