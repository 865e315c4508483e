//! What a token may do (issue 14.5): the operations, subdirs and package
//! names it is limited to, and when it expires, as written after its hash
//! on a token-file line:
//!
//! ```text
//! ci-mypkg 5e88…  ops=upload,delete subdirs=noarch,linux-64 names=mypkg-* expires=2027-01-01
//! ```
//!
//! Every field is optional and a missing one does not restrict, so the
//! old `NAME HASH` lines keep every right they had. `expires` is a date
//! (UTC): the token stops working at the start of that day.

use std::collections::BTreeSet;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// What a request does with the channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    Upload,
    Delete,
    Read,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Upload => "upload",
            Self::Delete => "delete",
            Self::Read => "read",
        })
    }
}

/// A token's limits; the default limits nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// `None`: every operation.
    pub ops: Option<BTreeSet<Op>>,
    /// `None`: every subdir.
    pub subdirs: Option<Vec<String>>,
    /// Package-name globs (`*` any run, `?` one character); `None`: all.
    pub names: Option<Vec<String>>,
    /// Seconds since the epoch from which the token is refused.
    pub expires: Option<u64>,
    /// `expires` as written, for messages.
    pub expires_text: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("expected KEY=VALUE, got {0:?}")]
    NotKeyValue(String),
    #[error("unknown key {0:?} (expected ops, subdirs, names or expires)")]
    UnknownKey(String),
    #[error("{0:?} given twice")]
    Repeated(String),
    #[error("unknown operation {0:?} (expected upload, delete or read)")]
    UnknownOp(String),
    #[error("{0} is empty")]
    Empty(&'static str),
    #[error("expires={0:?}: expected a date YYYY-MM-DD")]
    BadDate(String),
}

impl Scope {
    /// The scope the `KEY=VALUE` fields give.
    pub fn parse<'a>(fields: impl IntoIterator<Item = &'a str>) -> Result<Self, ScopeError> {
        let mut scope = Self::default();
        let mut seen = BTreeSet::new();
        for field in fields {
            let (key, value) = field
                .split_once('=')
                .ok_or_else(|| ScopeError::NotKeyValue(field.to_owned()))?;
            if !seen.insert(key.to_owned()) {
                return Err(ScopeError::Repeated(key.to_owned()));
            }
            let list = |what: &'static str| -> Result<Vec<String>, ScopeError> {
                let items: Vec<String> = value
                    .split(',')
                    .filter(|item| !item.is_empty())
                    .map(str::to_owned)
                    .collect();
                if items.is_empty() {
                    Err(ScopeError::Empty(what))
                } else {
                    Ok(items)
                }
            };
            match key {
                "ops" => {
                    let mut ops = BTreeSet::new();
                    for op in list("ops")? {
                        ops.insert(match op.as_str() {
                            "upload" => Op::Upload,
                            "delete" => Op::Delete,
                            "read" => Op::Read,
                            _ => return Err(ScopeError::UnknownOp(op)),
                        });
                    }
                    scope.ops = Some(ops);
                }
                "subdirs" => scope.subdirs = Some(list("subdirs")?),
                "names" => scope.names = Some(list("names")?),
                "expires" => {
                    scope.expires = Some(
                        parse_date(value).ok_or_else(|| ScopeError::BadDate(value.to_owned()))?,
                    );
                    scope.expires_text = Some(value.to_owned());
                }
                _ => return Err(ScopeError::UnknownKey(key.to_owned())),
            }
        }
        Ok(scope)
    }

    /// Whether the token may do `op` now; the reason if not.
    pub fn allows_op(&self, op: Op) -> Result<(), String> {
        if let Some(expires) = self.expires {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            if now >= expires {
                let date = self.expires_text.as_deref().unwrap_or("?");
                return Err(format!("this token expired on {date}"));
            }
        }
        match &self.ops {
            Some(ops) if !ops.contains(&op) => Err(format!("this token may not {op}")),
            _ => Ok(()),
        }
    }

    /// Whether the token may touch `subdir` (if known).
    pub fn allows_subdir(&self, subdir: &str) -> Result<(), String> {
        match &self.subdirs {
            Some(subdirs) if !subdirs.iter().any(|s| s == subdir) => Err(format!(
                "this token is limited to subdirs {}, not {subdir}",
                subdirs.join(",")
            )),
            _ => Ok(()),
        }
    }

    /// Whether the token may touch packages named `name`.
    pub fn allows_name(&self, name: &str) -> Result<(), String> {
        match &self.names {
            Some(globs) if !globs.iter().any(|glob| glob_matches(glob, name)) => Err(format!(
                "this token is limited to packages named {}, not {name}",
                globs.join(",")
            )),
            _ => Ok(()),
        }
    }

    /// [`Self::allows_subdir`] and [`Self::allows_name`].
    pub fn allows_package(&self, subdir: &str, name: &str) -> Result<(), String> {
        self.allows_subdir(subdir)?;
        self.allows_name(name)
    }

    /// Whether this limits nothing (an old `NAME HASH` line).
    pub fn is_unlimited(&self) -> bool {
        *self == Self::default()
    }
}

/// `*` matches any run of characters, `?` one; everything else itself.
fn glob_matches(glob: &str, text: &str) -> bool {
    let glob: Vec<char> = glob.chars().collect();
    let text: Vec<char> = text.chars().collect();
    // Iterative matching with one backtrack point (the last `*`).
    let (mut g, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match glob.get(g) {
            Some('*') => {
                star = Some((g, t));
                g += 1;
            }
            Some(&c) if c == '?' || Some(&c) == text.get(t) => {
                g += 1;
                t += 1;
            }
            _ => match star {
                Some((star_g, star_t)) => {
                    g = star_g + 1;
                    t = star_t + 1;
                    star = Some((star_g, star_t + 1));
                }
                None => return false,
            },
        }
    }
    glob.get(g..)
        .is_some_and(|rest| rest.iter().all(|&c| c == '*'))
}

/// `YYYY-MM-DD` as seconds since the epoch at the start of that day (UTC).
fn parse_date(text: &str) -> Option<u64> {
    let mut parts = text.split('-');
    let (year, month, day) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || year.len() != 4 || month.len() != 2 || day.len() != 2 {
        return None;
    }
    let (year, month, day): (i64, i64, i64) =
        (year.parse().ok()?, month.parse().ok()?, day.parse().ok()?);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if !(1..=days_in_month).contains(&day) {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days).ok().map(|d| d * 86_400)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_parse_and_old_lines_limit_nothing() {
        assert!(Scope::parse([]).unwrap().is_unlimited());
        let scope = Scope::parse([
            "ops=upload,delete",
            "subdirs=noarch,linux-64",
            "names=mypkg-*",
            "expires=2027-01-01",
        ])
        .unwrap();
        assert!(scope.allows_op(Op::Upload).is_ok());
        assert!(scope.allows_op(Op::Read).is_err());
        assert!(scope.allows_package("noarch", "mypkg-core").is_ok());
        assert!(scope.allows_package("osx-64", "mypkg-core").is_err());
        assert!(scope.allows_package("noarch", "other").is_err());
        for bad in ["ops=fly", "x=1", "ops", "expires=2027-13-01", "names="] {
            assert!(Scope::parse([bad]).is_err(), "{bad}");
        }
        assert!(Scope::parse(["ops=read", "ops=upload"]).is_err());
    }

    #[test]
    fn dates_and_globs() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("2000-03-01"), Some(951_868_800));
        assert_eq!(parse_date("2024-02-30"), None);
        let expired = Scope::parse(["expires=2001-01-01"]).unwrap();
        assert!(expired
            .allows_op(Op::Read)
            .unwrap_err()
            .contains("2001-01-01"));
        assert!(glob_matches("mypkg-*", "mypkg-"));
        assert!(glob_matches("*-core", "a-b-core"));
        assert!(glob_matches("a?c", "abc"));
        assert!(!glob_matches("a?c", "ac"));
        assert!(!glob_matches("mypkg-*", "mypkg"));
        assert!(glob_matches("*", "anything"));
    }
}
