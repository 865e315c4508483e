//! `serve --config FILE` and `serve --print-config` (issue 14.6): every
//! option from TOML, flags and environment variables over it, the
//! effective configuration printed with secrets redacted, and a bad file
//! refused before anything starts.

use std::fs;
use std::process::Command;
use std::time::Duration;

use artifact_upload_handler::generate::Format;
use artifact_upload_handler::token::Token;

use crate::common;
use crate::common::channel::{listed, package, TOKEN};
use crate::common::served::{fails_to_start, post, Served};

/// `serve ARGS --print-config` with `env`, parsed as the TOML it is.
fn print_config(args: &[&str], env: &[(&str, &str)]) -> (toml::Table, String) {
    let output = Command::new(common::bin())
        .arg("serve")
        .args(args)
        .arg("--print-config")
        .envs(env.iter().copied())
        .env_remove("AUH_TOKEN_HASH")
        .output()
        .unwrap();
    let text = common::stdout(&output);
    assert!(output.status.success(), "{text}{}", common::stderr(&output));
    (text.parse().unwrap(), text)
}

/// The comment after `key`'s line: where its value came from.
fn source<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find(|line| line.starts_with(&format!("{key} = ")))
        .and_then(|line| line.rsplit_once("# "))
        .map_or("", |(_, source)| source.trim())
}

#[test]
fn flags_beat_the_environment_which_beats_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("serve.toml");
    fs::write(
        &file,
        "port = 1111\nmax_upload_size = 5000\nchannel-name = \"from-file\"\nprivate = true\n",
    )
    .unwrap();
    let config = file.to_str().unwrap();
    let (table, text) = print_config(
        &["--config", config, "--channel-name", "from-flag"],
        &[("AUH_PORT", "2222")],
    );
    assert_eq!(table["port"].as_integer(), Some(2222), "{text}");
    assert_eq!(source(&text, "port"), "environment AUH_PORT");
    assert_eq!(table["channel-name"].as_str(), Some("from-flag"));
    assert_eq!(source(&text, "channel-name"), "flag");
    assert_eq!(table["max-upload-size"].as_integer(), Some(5000));
    assert_eq!(source(&text, "max-upload-size"), "config file");
    assert_eq!(table["private"].as_bool(), Some(true));
    assert_eq!(table["idle-timeout"].as_integer(), Some(60));
    assert_eq!(source(&text, "idle-timeout"), "default");
    // The file can come from the environment too.
    let (table, _) = print_config(&[], &[("AUH_CONFIG", config)]);
    assert_eq!(table["port"].as_integer(), Some(1111));
}

#[test]
fn every_option_round_trips_through_a_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let hash = Token::new(TOKEN).hash().to_string();
    let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    let flags = [
        "-d",
        "/srv/my-channel",
        "-p",
        "8443",
        "--bind",
        "127.0.0.1",
        "-c",
        cert.to_str().unwrap(),
        "-k",
        key.to_str().unwrap(),
        "-t",
        &hash,
        "--max-upload-size",
        "123456",
        "--max-concurrent-uploads",
        "3",
        "--upload-queue-timeout",
        "7",
        "--zstd-level",
        "5",
        "--no-shards",
        "--allow-overwrite",
        "--metadata-max-age",
        "30",
        "--base-url",
        "https://cdn.example/ch",
    ];
    let (_, printed) = print_config(&flags, &[]);
    // Secrets are not printed.
    assert!(!printed.contains(&hash), "{printed}");
    assert!(printed.contains("token-hash = \"<redacted"), "{printed}");
    // What was printed, as a config file (the redacted hash put back),
    // gives the same configuration, every value now from the file.
    let file = dir.path().join("printed.toml");
    let restored: String = printed
        .lines()
        .map(|line| {
            if line.starts_with("token-hash = ") {
                format!("token-hash = [\"{hash}\"]")
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    fs::write(&file, restored).unwrap();
    let (again, text) = print_config(&["--config", file.to_str().unwrap()], &[]);
    let (first, _) = print_config(&flags, &[]);
    assert_eq!(again, first, "{text}");
    for (key, _) in &again {
        assert_eq!(source(&text, key), "config file", "{key}: {text}");
    }
    // Every serve option is in the printout (a new flag shows up here).
    let help = Command::new(common::bin())
        .args(["serve", "--help"])
        .output()
        .unwrap();
    for line in common::stdout(&help).lines() {
        // Flag lines only: `  -d, --write-dir <WRITE_DIR>`, `      --bind <BIND>`.
        let line = line.trim();
        if !line.starts_with('-') {
            continue;
        }
        let Some(long) = line.split("--").nth(1) else {
            continue;
        };
        let long = long.split([' ', '=', ',', '<']).next().unwrap();
        if [
            "help",
            "version",
            "config",
            "print-config",
            "quiet",
            "verbose",
            "",
        ]
        .contains(&long)
        {
            continue;
        }
        assert!(
            text.contains(&format!("{long} = ")) || text.contains(&format!("# {long} (not set)")),
            "--{long} is not in --print-config:\n{text}"
        );
    }
}

#[test]
fn serve_runs_from_a_config_file_alone() {
    let dir = tempfile::tempdir().unwrap();
    let channel = dir.path().join("team-channel");
    let file = dir.path().join("serve.toml");
    fs::write(
        &file,
        format!(
            "write-dir = {:?}\nport = 0\ninsecure-http = true\ntoken-hash = [{:?}]\n",
            channel.to_str().unwrap(),
            Token::new(TOKEN).hash().to_string()
        ),
    )
    .unwrap();
    let args = ["serve", "--config", file.to_str().unwrap()];
    let mut served = Served::start(dir.path(), &args, &[]);
    let client = reqwest::Client::new();
    let status = post(
        &client,
        &served.url,
        TOKEN,
        package("configured", "noarch", Format::Conda),
    );
    assert_eq!(status, 201, "{}", served.stderr());
    assert!(listed(&channel, "noarch", "configured-1.0-0.conda").is_some());
    served.signal("TERM");
    assert!(served.wait(Duration::from_secs(20)).success());
    assert!(served.stderr().contains("options from config file"));
}

#[test]
fn a_bad_config_file_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let channel = dir.path().join("channel");
    let write = |name: &str, text: String| {
        let path = dir.path().join(name);
        fs::write(&path, text).unwrap();
        path
    };
    let prefix = format!("write-dir = {:?}\n", channel.to_str().unwrap());
    let cases = [
        (
            write("unknown.toml", format!("{prefix}prot = 1\n")),
            "unknown option `prot`",
        ),
        (
            write("port.toml", format!("{prefix}port = \"high\"\n")),
            "`port`",
        ),
        (
            write("range.toml", format!("{prefix}zstd-level = 40\n")),
            "`zstd-level`",
        ),
        (
            write("list.toml", format!("{prefix}port = [1, 2]\n")),
            "takes one value",
        ),
        (
            write("syntax.toml", format!("{prefix}port = \n")),
            "is not valid TOML",
        ),
        (
            write("cert.toml", format!("{prefix}certfile = \"/c.pem\"\n")),
            "--certfile and --keyfile go together",
        ),
        (write("x", String::new()), "cannot read config file"),
    ];
    for (path, message) in cases {
        let shown = if message == "cannot read config file" {
            dir.path().join("missing.toml")
        } else {
            path.clone()
        };
        let stderr = fails_to_start(&["serve", "--config", shown.to_str().unwrap()]);
        assert!(stderr.contains(message), "{}: {stderr}", path.display());
        if message != "cannot read config file" {
            assert!(stderr.contains(&path.display().to_string()), "{stderr}");
        }
        assert!(
            !channel.exists(),
            "{}: the channel was touched",
            path.display()
        );
    }
}
