//! `hash-token`: turn a token into the salted hash the server is configured
//! with, or make a new random token.

use std::io::{self, IsTerminal, Read};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;

use crate::token::Token;

/// Print the hash of a token read on stdin (for `serve -t HASH` or a token
/// file), or with --generate a new random token and its hash.
///
/// Hashes are compatible with the original artifact-upload-handler.
#[derive(Debug, Args)]
pub struct HashTokenArgs {
    /// Make a new random token and print it (once) with its hash.
    #[arg(long)]
    generate: bool,
}

pub fn run(args: HashTokenArgs) -> ExitCode {
    match hash_token(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            super::report(&err);
            ExitCode::FAILURE
        }
    }
}

fn hash_token(args: &HashTokenArgs) -> anyhow::Result<()> {
    if args.generate {
        let token = Token::generate();
        println!("token: {}", token.expose());
        println!("hash:  {}", token.hash());
        return Ok(());
    }
    if io::stdin().is_terminal() {
        eprintln!("type the token, then press Enter:");
    }
    let mut input = String::new();
    io::stdin()
        .read_to_string(&mut input)
        .context("cannot read the token from stdin")?;
    // Only the line ending is dropped: spaces inside a token are part of it.
    let token = input.strip_suffix('\n').unwrap_or(&input);
    let token = token.strip_suffix('\r').unwrap_or(token);
    if token.is_empty() {
        bail!("no token on stdin");
    }
    println!("{}", Token::new(token).hash());
    Ok(())
}
