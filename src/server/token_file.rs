//! The token file: one token per line, `NAME HASH [KEY=VALUE…]`, `#`
//! comments and blank lines allowed. The fields after the hash limit what
//! the token may do ([`Scope`]); a line without them keeps every right, as
//! the file's first format did. Read at start, and again on SIGHUP.

use std::fs;
use std::io;
use std::path::Path;
use std::sync::Arc;

use super::state::NamedToken;
use crate::token::{InvalidTokenHash, Scope, ScopeError, TokenHash};

#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("cannot read token file {path}")]
    Read {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{path}:{line}: expected `NAME HASH [ops=… subdirs=… names=… expires=…]`")]
    Shape { path: String, line: usize },
    #[error("{path}:{line}: {source}")]
    Hash {
        path: String,
        line: usize,
        source: InvalidTokenHash,
    },
    #[error("{path}:{line}: {source}")]
    Scope {
        path: String,
        line: usize,
        source: ScopeError,
    },
    #[error("token file {0} holds no tokens")]
    Empty(String),
}

/// Every token in the file at `path`.
pub fn read(path: &Path) -> Result<Vec<NamedToken>, TokenFileError> {
    let shown = || path.display().to_string();
    let text = fs::read_to_string(path).map_err(|source| TokenFileError::Read {
        path: shown(),
        source,
    })?;
    let mut tokens = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line_no = number + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.split_whitespace();
        let (Some(name), Some(hash)) = (parts.next(), parts.next()) else {
            return Err(TokenFileError::Shape {
                path: shown(),
                line: line_no,
            });
        };
        let hash = TokenHash::parse(hash).map_err(|source| TokenFileError::Hash {
            path: shown(),
            line: line_no,
            source,
        })?;
        let scope = Scope::parse(parts).map_err(|source| TokenFileError::Scope {
            path: shown(),
            line: line_no,
            source,
        })?;
        tokens.push(NamedToken {
            name: name.to_owned(),
            hash,
            scope: Arc::new(scope),
        });
    }
    if tokens.is_empty() {
        return Err(TokenFileError::Empty(shown()));
    }
    Ok(tokens)
}
