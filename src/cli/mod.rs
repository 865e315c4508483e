//! The command line: clap definitions, logging set-up, and dispatch to one
//! module per subcommand. Library errors become messages and exit statuses
//! here and nowhere else.

mod config_file;
mod generate;
mod hash_token;
mod index;
mod serve;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Publish conda packages to a channel and keep its metadata current.
#[derive(Debug, Parser)]
#[command(name = "artifact-upload-handler", version, propagate_version = true)]
pub struct Cli {
    /// Only print warnings and errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Print debug details.
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Serve(serve::ServeArgs),
    Index(index::IndexArgs),
    HashToken(hash_token::HashTokenArgs),
    Generate(generate::GenerateArgs),
}

/// Runs the command line; the exit status says how it went.
pub fn main() -> ExitCode {
    let args = with_default_command(std::env::args_os().collect());
    // A config file's values become the serve flags' defaults, so flags
    // and environment variables still override them.
    let (command, from_file) = match config_file::apply(Cli::command(), &args) {
        Ok(applied) => applied,
        Err(err) => {
            report(&err);
            return ExitCode::FAILURE;
        }
    };
    let matches = match command.clone().try_get_matches_from(&args) {
        Ok(matches) => matches,
        Err(err) => return usage_error(&err),
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(err) => return usage_error(&err.with_cmd(&command)),
    };
    init_logging(cli.quiet, cli.verbose);
    match cli.command {
        Command::Serve(args) if args.prints_config() => {
            let declared = Cli::command();
            if let (Some(serve), Some(matches)) = (
                declared.find_subcommand("serve"),
                matches.subcommand_matches("serve"),
            ) {
                print!("{}", config_file::print(serve, matches, &from_file));
            }
            ExitCode::SUCCESS
        }
        Command::Serve(args) => serve::run(args),
        Command::Index(args) => index::run(args),
        Command::HashToken(args) => hash_token::run(args),
        Command::Generate(args) => generate::run(args),
    }
}

/// The original handler had no subcommands: `artifact-upload-handler -d DIR
/// -p PORT ...` (and no arguments at all) mean `serve`.
fn with_default_command(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let first = args.get(1).and_then(|a| a.to_str()).map(str::to_owned);
    let is_global = |a: &str| {
        matches!(
            a,
            "-h" | "--help" | "-V" | "--version" | "-q" | "--quiet" | "-v" | "--verbose"
        )
    };
    match first {
        None => args.push("serve".into()),
        Some(a) if a.starts_with('-') && !is_global(&a) => args.insert(1, "serve".into()),
        _ => {}
    }
    args
}

/// `--help` and `--version` succeed; any other command-line error is fatal
/// (exit 1), keeping exit status 2 for "indexed, but packages left out".
fn usage_error(err: &clap::Error) -> ExitCode {
    let _ = err.print();
    if err.use_stderr() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Logs go to stderr; `AUH_LOG` (tracing's filter syntax) overrides the
/// level the flags choose.
fn init_logging(quiet: bool, verbose: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "warn",
        (_, true) => "debug",
        _ => "info",
    };
    let filter = EnvFilter::try_from_env("AUH_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .without_time()
        .init();
}

/// Prints an error and its chain of causes, the way a user reads them.
fn report(err: &anyhow::Error) {
    let mut message = format!("error: {err}");
    for cause in err.chain().skip(1) {
        message.push_str(&format!("\n  caused by: {cause}"));
    }
    eprintln!("{message}");
}
