//! `serve --config FILE`: every `serve` option from a TOML file (issue
//! 14.6), and `serve --print-config`, the effective configuration.
//!
//! A key is a flag's long name (`port`, `max-upload-size`, `token-hash`;
//! `_` may stand for `-`). The file's values become the flags' defaults
//! before the command line is parsed, so clap's own order of precedence
//! holds: a flag beats its environment variable, which beats the file,
//! which beats the built-in default. Values are checked by the flag's own
//! parser, and an error names the file and the key. Relative paths are
//! relative to the working directory, as on the command line.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches};

/// The flag naming the file, and its environment variable.
pub const CONFIG_FLAG: &str = "config";
const CONFIG_ENV: &str = "AUH_CONFIG";

/// Flags (long names) that are about this run, not configuration.
const NOT_CONFIGURABLE: &[&str] = &[CONFIG_FLAG, "print-config", "help", "quiet", "verbose"];

/// Flags (long names) whose values are secret, or close to it: never
/// printed.
const SECRET: &[&str] = &["token-hash"];

/// `cli` with the `serve` flags' defaults taken from the config file that
/// `args` (already starting with the subcommand) or `AUH_CONFIG` names,
/// and the ids of the flags the file set; unchanged without one.
pub fn apply(
    cli: clap::Command,
    args: &[OsString],
) -> anyhow::Result<(clap::Command, Vec<String>)> {
    if args.get(1).and_then(|a| a.to_str()) != Some("serve") {
        return Ok((cli, Vec::new()));
    }
    let Some(path) = config_path(args) else {
        return Ok((cli, Vec::new()));
    };
    let text = fs::read_to_string(&path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("config file {} is not valid TOML", path.display()))?;
    let mut defaults = Vec::new();
    {
        let serve = cli
            .find_subcommand("serve")
            .context("the serve subcommand is missing")?;
        for (key, value) in &table {
            let arg = configurable(serve, key).with_context(|| {
                format!(
                    "{}: unknown option `{key}` (keys are serve's long flag names)",
                    path.display()
                )
            })?;
            let values =
                strings(arg, value).with_context(|| format!("{}: `{key}`", path.display()))?;
            check(arg, &values).with_context(|| format!("{}: `{key}`", path.display()))?;
            defaults.push((arg.get_id().clone(), values));
        }
    }
    let ids = defaults.iter().map(|(id, _)| id.to_string()).collect();
    let cli = cli.mut_subcommand("serve", |mut serve| {
        for (id, values) in defaults {
            serve = serve.mut_arg(id, |arg| arg.default_values(values));
        }
        serve
    });
    Ok((cli, ids))
}

/// `--config FILE`, `--config=FILE`, or `AUH_CONFIG`.
fn config_path(args: &[OsString]) -> Option<PathBuf> {
    let flag = format!("--{CONFIG_FLAG}");
    let joined = format!("--{CONFIG_FLAG}=");
    let mut rest = args.iter().skip(2);
    while let Some(arg) = rest.next() {
        let Some(text) = arg.to_str() else { continue };
        if text == "--" {
            break;
        }
        if text == flag {
            return rest.next().map(PathBuf::from);
        }
        if let Some(path) = text.strip_prefix(&joined) {
            return Some(PathBuf::from(path));
        }
    }
    std::env::var_os(CONFIG_ENV).map(PathBuf::from)
}

/// The `serve` flag a key names, if it may be configured.
fn configurable<'a>(serve: &'a clap::Command, key: &str) -> Option<&'a Arg> {
    let key = key.replace('_', "-");
    serve.get_arguments().find(|arg| {
        arg.get_long()
            .is_some_and(|long| long == key && !NOT_CONFIGURABLE.contains(&long))
    })
}

/// A TOML value as the strings the flag would be given.
fn strings(arg: &Arg, value: &toml::Value) -> anyhow::Result<Vec<String>> {
    let many = arg.get_num_args().is_some_and(|n| n.max_values() > 1)
        || matches!(arg.get_action(), ArgAction::Append);
    let one = |value: &toml::Value| -> anyhow::Result<String> {
        Ok(match value {
            toml::Value::String(text) => text.clone(),
            toml::Value::Integer(number) => number.to_string(),
            toml::Value::Boolean(flag) => flag.to_string(),
            other => bail!("expected a string, a number or true/false, not {other}"),
        })
    };
    match value {
        toml::Value::Array(items) if many => items.iter().map(one).collect(),
        toml::Value::Array(_) => bail!("takes one value, not a list"),
        _ => Ok(vec![one(value)?]),
    }
}

/// Runs `values` through the flag's own parser (on a copy without its
/// relations to other flags), so the file gets the command line's checks.
fn check(arg: &Arg, values: &[String]) -> anyhow::Result<()> {
    let long = arg.get_long().unwrap_or_default().to_owned();
    let mut copy = Arg::new(arg.get_id().clone())
        .long(long.clone())
        .action(arg.get_action().clone())
        .value_parser(arg.get_value_parser().clone());
    if let Some(range) = arg.get_num_args() {
        copy = copy.num_args(range);
    }
    let takes_value = arg.get_action().takes_values();
    let mut argv = vec!["config".to_owned()];
    for value in values {
        if takes_value {
            argv.push(format!("--{long}={value}"));
        } else {
            match value.as_str() {
                "true" => argv.push(format!("--{long}")),
                "false" => {}
                other => bail!("expected true or false, not {other:?}"),
            }
        }
    }
    let command = clap::Command::new("config").arg(copy);
    if let Err(err) = command.try_get_matches_from(argv) {
        let message = err.kind().as_str().unwrap_or("invalid value").to_owned();
        let detail = err.to_string();
        let detail = detail
            .lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches("error: ");
        bail!("{message}: {detail}");
    }
    Ok(())
}

/// `serve --print-config`: every option as a TOML line that a config file
/// could hold, with where its value came from; secrets redacted. `serve`
/// is the command as declared (its order; `apply` moves the flags it
/// changes to the end).
pub fn print(serve: &clap::Command, matches: &ArgMatches, from_file: &[String]) -> String {
    let mut out = String::from(
        "# serve's effective configuration (flag > environment > config file > default)\n",
    );
    for arg in serve.get_arguments() {
        let id = arg.get_id().as_str();
        let Some(long) = arg.get_long() else { continue };
        if NOT_CONFIGURABLE.contains(&long) || arg.is_hide_set() {
            continue;
        }
        let source = match matches.value_source(id) {
            Some(ValueSource::CommandLine) => "flag".to_owned(),
            Some(ValueSource::EnvVariable) => {
                arg.get_env().map_or("environment".to_owned(), |env| {
                    format!("environment {}", env.to_string_lossy())
                })
            }
            Some(ValueSource::DefaultValue) if from_file.iter().any(|f| f == id) => {
                "config file".to_owned()
            }
            _ => "default".to_owned(),
        };
        let line = match value_of(arg, matches) {
            Some(_) if SECRET.contains(&long) => {
                let count = matches.get_raw(id).map_or(0, Iterator::count);
                format!("{long} = \"<redacted: {count} value(s)>\"")
            }
            Some(value) => format!("{long} = {value}"),
            None => format!("# {long} (not set)"),
        };
        let _ = writeln!(out, "{line:<60} # {source}");
    }
    out
}

/// The flag's value as TOML: numbers and booleans typed, paths and names
/// as strings, repeated flags as arrays.
fn value_of(arg: &Arg, matches: &ArgMatches) -> Option<toml::Value> {
    let id = arg.get_id().as_str();
    if !arg.get_action().takes_values() {
        return matches
            .try_get_one::<bool>(id)
            .ok()
            .flatten()
            .map(|b| toml::Value::Boolean(*b));
    }
    let raw: Vec<String> = matches
        .get_raw(id)?
        .map(|v| v.to_string_lossy().into_owned())
        .collect();
    let typed = |text: &String| match text.parse::<i64>() {
        Ok(number) if is_number(matches, id) => toml::Value::Integer(number),
        _ => toml::Value::String(text.clone()),
    };
    let many = arg.get_num_args().is_some_and(|n| n.max_values() > 1)
        || matches!(arg.get_action(), ArgAction::Append);
    if many {
        Some(toml::Value::Array(raw.iter().map(typed).collect()))
    } else {
        raw.first().map(typed)
    }
}

/// Whether the flag parses to an integer type.
fn is_number(matches: &ArgMatches, id: &str) -> bool {
    matches.try_get_one::<u64>(id).is_ok()
        || matches.try_get_one::<u32>(id).is_ok()
        || matches.try_get_one::<u16>(id).is_ok()
        || matches.try_get_one::<i32>(id).is_ok()
        || matches.try_get_one::<usize>(id).is_ok()
}
