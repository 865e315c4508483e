//! Upload tokens: the original handler's hashing scheme, secret types that
//! never print themselves, and constant-time checks.
//!
//! The original stored only `hex(sha256(SALT + token))` with a fixed salt,
//! so hashes made for it keep working here unchanged. [`scope`] is what
//! a token may do. Plain tokens exist only
//! while a request is checked; only hashes are configured and stored.

use std::fmt;

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::package::hex;

pub mod scope;
pub use scope::{Op, Scope, ScopeError};

/// The original handler's constant salt.
pub const SALT: &str = "42679ad04d44c96ed27470c02bfb28c3";

/// A plain token as a client sends it. Its `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// A new random token: 32 bytes from the OS, as 64 hex digits.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(hex(&bytes))
    }

    /// The secret itself, for printing it once to its owner.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `hex(sha256(SALT + token))`, as the original computed it.
    pub fn hash(&self) -> TokenHash {
        let digest = Sha256::new()
            .chain_update(SALT)
            .chain_update(&self.0)
            .finalize();
        TokenHash(digest.into())
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// A salted token hash, as given with `-t` or in a token file.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenHash([u8; 32]);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a token hash is 64 hexadecimal digits (made with `hash-token`)")]
pub struct InvalidTokenHash;

impl TokenHash {
    /// Parses 64 hex digits (either case).
    pub fn parse(text: &str) -> Result<Self, InvalidTokenHash> {
        let text = text.trim();
        if text.len() != 64 || !text.is_ascii() {
            return Err(InvalidTokenHash);
        }
        let mut bytes = [0u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(text.as_bytes().chunks(2)) {
            let pair = std::str::from_utf8(pair).map_err(|_| InvalidTokenHash)?;
            *byte = u8::from_str_radix(pair, 16).map_err(|_| InvalidTokenHash)?;
        }
        Ok(Self(bytes))
    }

    /// Whether `token` hashes to this, compared in constant time.
    pub fn matches(&self, token: &Token) -> bool {
        self.0.ct_eq(&token.hash().0).into()
    }
}

impl fmt::Display for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_the_originals_salted_sha256() {
        // sha256("42679ad04d44c96ed27470c02bfb28c3" + "mysecuretoken"), as the
        // original's `hashlib.sha256((salt + token).encode()).hexdigest()`.
        let expected = hex(&Sha256::digest(format!("{SALT}mysecuretoken")));
        assert_eq!(Token::new("mysecuretoken").hash().to_string(), expected);
    }

    #[test]
    fn parse_and_match() {
        let token = Token::new("s3cret");
        let hash = TokenHash::parse(&token.hash().to_string().to_uppercase()).unwrap();
        assert!(hash.matches(&token));
        assert!(!hash.matches(&Token::new("s3cret ")));
        for bad in ["", "abc", &"g".repeat(64), &"é".repeat(32)] {
            assert_eq!(TokenHash::parse(bad), Err(InvalidTokenHash), "{bad:?}");
        }
    }

    #[test]
    fn secrets_do_not_print() {
        assert_eq!(format!("{:?}", Token::new("s3cret")), "Token(<redacted>)");
        let generated = Token::generate();
        assert_eq!(generated.expose().len(), 64);
        assert_ne!(generated, Token::generate());
    }
}
