//! The command line as a user meets it: help, the summary line, the example
//! channel, `--subdir`, `--no-compact`, and the `--indexer conda` fallback.

use std::fs;
use std::process::Command;

use crate::common;

#[test]
fn help_explains_the_index_command() {
    let output = Command::new(common::bin())
        .args(["index", "--help"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = common::stdout(&output);
    for text in [
        "--zst",
        "--bz2",
        "--run-exports",
        "--no-compact",
        "--subdir",
        "--indexer",
        "--conda-exe",
        "Exit status",
    ] {
        assert!(help.contains(text), "help lacks {text}:\n{help}");
    }
}

/// The committed example channel's metadata is what `index` writes for it.
#[test]
fn example_channel_reproduces_its_committed_metadata() {
    let copy = tempfile::tempdir().unwrap();
    common::copy_tree(&common::example_channel(), copy.path());
    let before = common::snapshot(copy.path());
    for subdir in fs::read_dir(copy.path()).unwrap() {
        let subdir = subdir.unwrap().path();
        let _ = fs::remove_dir_all(subdir.join(".cache"));
    }
    let output = common::index(copy.path(), &[]);
    assert!(output.status.success(), "{}", common::stderr(&output));
    let after = common::snapshot(copy.path());
    for (path, (bytes, _)) in &before {
        if path.ends_with(".json") {
            assert_eq!(
                &after[path].0, bytes,
                "{path} differs from the committed one"
            );
        }
    }
    assert!(
        before.keys().any(|p| p.ends_with(".conda"))
            && before.keys().any(|p| p.ends_with(".tar.bz2"))
    );
}

#[test]
fn subdir_option_limits_the_run() {
    let channel = common::channel_copy("conda-verify");
    let output = common::index(channel.path(), &["--subdir", "win-64"]);
    assert!(output.status.success(), "{}", common::stderr(&output));
    assert!(channel.path().join("win-64/repodata.json").exists());
    assert!(!channel.path().join("osx-64/repodata.json").exists());
    assert!(!channel.path().join("linux-64/repodata.json").exists());
    assert!(
        common::stdout(&output).contains("indexed 2 packages in 1 subdirs"),
        "{}",
        common::stdout(&output)
    );
}

#[test]
fn no_compact_matches_golden_content() {
    let channel = common::channel_copy("conda-index-hotfix");
    assert!(common::index(channel.path(), &["--no-compact"])
        .status
        .success());
    let ours = fs::read_to_string(channel.path().join("osx-64/repodata.json")).unwrap();
    assert!(
        ours.starts_with("{\n  \"info\": {\n    \"subdir\": \"osx-64\"\n  },\n")
            && ours.ends_with("}\n")
    );
    let golden: serde_json::Value = serde_json::from_slice(
        &fs::read(common::golden().join("conda-index-hotfix/osx-64/repodata.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&ours).unwrap(),
        golden
    );
}

#[test]
fn conda_fallback_runs_conda_index_end_to_end() {
    let (script, venv) = common::oracle();
    let channel = common::channel_copy("conda-format-repo");
    let output = Command::new(common::bin())
        .args(["index", "--indexer", "conda", "--conda-exe"])
        .arg(&script)
        .arg(channel.path())
        .env("ORACLE_VENV", venv)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", common::stderr(&output));
    let golden = common::golden().join("conda-format-repo/linux-64/repodata.json");
    assert_eq!(
        fs::read(channel.path().join("linux-64/repodata.json")).unwrap(),
        fs::read(golden).unwrap()
    );
    assert!(
        !channel
            .path()
            .join(artifact_upload_handler::index::cache_path("linux-64"))
            .exists(),
        "the native indexer ran"
    );
}

#[test]
fn conda_fallback_reports_failures() {
    let channel = common::channel_copy("mamba-channel-a");
    let failing = Command::new(common::bin())
        .args(["index", "--indexer", "conda", "--conda-exe", "false"])
        .arg(channel.path())
        .output()
        .unwrap();
    assert_eq!(failing.status.code(), Some(1));
    assert!(
        common::stderr(&failing).contains("index exited with status 1"),
        "{}",
        common::stderr(&failing)
    );
    let missing = Command::new(common::bin())
        .args([
            "index",
            "--indexer",
            "conda",
            "--conda-exe",
            "/nonexistent/conda",
        ])
        .arg(channel.path())
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        common::stderr(&missing).contains("cannot run /nonexistent/conda"),
        "{}",
        common::stderr(&missing)
    );
}

#[test]
fn hash_token_matches_the_original_scheme() {
    use std::io::Write;
    let mut child = Command::new(common::bin())
        .arg("hash-token")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"mysecuretoken\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    // python3 -c 'import hashlib; print(hashlib.sha256(b"42679ad04d44c96ed27470c02bfb28c3mysecuretoken").hexdigest())'
    let python = Command::new("python3")
        .args(["-c", "import hashlib; print(hashlib.sha256(b'42679ad04d44c96ed27470c02bfb28c3mysecuretoken').hexdigest())"])
        .output()
        .unwrap();
    assert_eq!(common::stdout(&output), common::stdout(&python));

    let generated = Command::new(common::bin())
        .args(["hash-token", "--generate"])
        .output()
        .unwrap();
    let text = common::stdout(&generated);
    let token = text
        .lines()
        .next()
        .unwrap()
        .strip_prefix("token: ")
        .unwrap();
    let hash = text
        .lines()
        .nth(1)
        .unwrap()
        .strip_prefix("hash:  ")
        .unwrap();
    assert_eq!(
        artifact_upload_handler::token::Token::new(token)
            .hash()
            .to_string(),
        hash
    );
}
