//! conda-index's optional outputs besides shards and patches:
//! `current_repodata.json` (`--current-repodata`, `-m`), against the
//! goldens made with conda-index 0.13.0 and real conda 26.7 (the oracle's
//! stub conda cannot make them); the `--no-write-monolithic` refusal; and
//! that turning the output off removes what an earlier run left.

use std::fs;

use crate::common::{self, index, stderr};
use crate::differential::assert_same_bytes;
use crate::shards::{fixture_channel, fixture_names, golden_extra};

const CURRENT: &str = "current_repodata.json";

/// Every golden `current_repodata.json` is byte-identical to ours (the
/// patched channel's comes from the run with the patch generator).
#[test]
fn current_repodata_equals_the_goldens_on_every_fixture_channel() {
    let mut compared = 0;
    for name in fixture_names() {
        let golden = golden_extra().join(&name);
        let (channel, _) = fixture_channel(&name);
        let output = index(channel.path(), &["--current-repodata"]);
        assert!(
            matches!(output.status.code(), Some(0 | 2)),
            "{name}: {}",
            stderr(&output)
        );
        for subdir in fs::read_dir(&golden).unwrap() {
            let subdir = subdir.unwrap().path();
            let Ok(expected) = fs::read(subdir.join(CURRENT)) else {
                continue;
            };
            let subdir_name = subdir.file_name().unwrap().to_str().unwrap();
            let ours = fs::read(channel.path().join(subdir_name).join(CURRENT))
                .unwrap_or_else(|e| panic!("{name}/{subdir_name}/{CURRENT}: {e}"));
            assert_same_bytes(&format!("{name}/{subdir_name}/{CURRENT}"), &expected, &ours);
            compared += 1;
        }
    }
    assert!(compared >= 20, "only {compared} goldens compared");
}

#[test]
fn current_repodata_of_a_patched_channel_lists_the_revoked_package() {
    let golden = golden_extra().join("conda-test-recipes-patched");
    let channel = common::channel_copy("conda-test-recipes");
    let generator = golden.join("patch_instructions.tar.bz2");
    let output = index(
        channel.path(),
        &[
            "--current-repodata",
            "--patch-generator",
            generator.to_str().unwrap(),
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let expected = fs::read(golden.join("noarch").join(CURRENT)).unwrap();
    let ours = fs::read(channel.path().join("noarch").join(CURRENT)).unwrap();
    assert_same_bytes("patched/noarch/current_repodata.json", &expected, &ours);
    let text = String::from_utf8(ours).unwrap();
    assert!(text.contains("\"revoked\":true"), "{text}");
}

/// `-m` keeps the pinned series too; with copies asked for, they are
/// written beside it; without the flag, a later run removes all three.
#[test]
fn pins_keep_older_versions_and_turning_it_off_removes_the_files() {
    let channel = common::channel_copy("conda-test-recipes");
    let noarch = channel.path().join("noarch");
    let output = index(channel.path(), &["--current-repodata"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let newest = fs::read_to_string(noarch.join(CURRENT)).unwrap();
    assert!(newest.contains("another_dependent-2.0-0.conda"), "{newest}");
    assert!(
        !newest.contains("another_dependent-1.0-0.conda"),
        "{newest}"
    );

    let pins = channel.path().join("pins.yaml");
    fs::write(&pins, "another_dependent:\n  - 1.0\n").unwrap();
    let output = index(
        channel.path(),
        &[
            "--current-repodata",
            "-m",
            pins.to_str().unwrap(),
            "--zst",
            "--bz2",
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let pinned = fs::read_to_string(noarch.join(CURRENT)).unwrap();
    assert!(pinned.contains("another_dependent-1.0-0.conda"), "{pinned}");
    assert!(pinned.contains("another_dependent-2.0-0.conda"), "{pinned}");
    let zst =
        zstd::decode_all(&fs::read(noarch.join("current_repodata.json.zst")).unwrap()[..]).unwrap();
    assert_eq!(zst, pinned.as_bytes());
    assert!(noarch.join("current_repodata.json.bz2").exists());

    let output = index(channel.path(), &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    for file in [
        CURRENT,
        "current_repodata.json.zst",
        "current_repodata.json.bz2",
    ] {
        assert!(!noarch.join(file).exists(), "{file} left behind");
    }
}

#[test]
fn no_write_monolithic_refuses_current_repodata_like_conda_index() {
    let channel = common::channel_copy("conda-test-recipes");
    let before = common::snapshot(channel.path());
    let output = index(
        channel.path(),
        &[
            "--no-write-monolithic",
            "--write-shards",
            "--current-repodata",
            "--run-exports",
        ],
    );
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output).trim(),
        "Error: Conflicting arguments: --current-repodata, --run-exports require(s) \
         --write-monolithic (the default setting)."
    );
    assert_eq!(common::snapshot(channel.path()), before);
}

#[test]
fn a_bad_pins_file_is_refused_before_anything_is_written() {
    let channel = common::channel_copy("conda-test-recipes");
    let pins = channel.path().join("pins.yaml");
    fs::write(&pins, "- just\n- a list\n").unwrap();
    let before = common::snapshot(channel.path());
    let output = index(
        channel.path(),
        &["--current-repodata", "-m", pins.to_str().unwrap()],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("pins.yaml"), "{}", stderr(&output));
    assert_eq!(common::snapshot(channel.path()), before);
}

/// rss.xml with the feed's own dates (the run time) masked; item dates
/// come from the packages and stay.
fn mask_feed_dates(rss: &str) -> String {
    rss.lines()
        .map(|line| {
            if line.starts_with("    <pubDate>") {
                "    <pubDate>(run time)</pubDate>"
            } else if line.starts_with("    <lastBuildDate>") {
                "    <lastBuildDate>(run time)</lastBuildDate>"
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// channeldata.json byte-identical and rss.xml identical but for its run
/// time, on every fixture channel with goldens; conda-verify's goldens
/// come from a run limited to the subdirs conda-index survives.
#[test]
fn channeldata_and_rss_equal_the_goldens_on_every_fixture_channel() {
    let mut compared = 0;
    for name in fixture_names() {
        let golden = golden_extra().join(&name);
        let Ok(expected) = fs::read(golden.join("channeldata.json")) else {
            continue;
        };
        let (channel, _) = fixture_channel(&name);
        // conda-index names the feed after the directory, which here is a
        // temporary one.
        let mut flags = vec!["--channeldata", "--run-exports", "-n", name.as_str()];
        if name == "conda-verify" {
            flags.extend([
                "--subdir", "linux-64", "--subdir", "noarch", "--subdir", "win-64",
            ]);
        }
        let output = index(channel.path(), &flags);
        assert!(
            matches!(output.status.code(), Some(0 | 2)),
            "{name}: {}",
            stderr(&output)
        );
        let ours = fs::read(channel.path().join("channeldata.json")).unwrap();
        assert_same_bytes(&format!("{name}/channeldata.json"), &expected, &ours);
        let expected_rss = fs::read_to_string(golden.join("rss.xml")).unwrap();
        let ours_rss = fs::read_to_string(channel.path().join("rss.xml")).unwrap();
        assert!(ours_rss.ends_with("</rss>\n"));
        assert_same_bytes(
            &format!("{name}/rss.xml"),
            mask_feed_dates(&expected_rss).as_bytes(),
            mask_feed_dates(&ours_rss).as_bytes(),
        );
        compared += 1;
    }
    assert_eq!(compared, 12);
}

/// A second run that changes nothing writes nothing (rss.xml included);
/// `--no-rss` writes channeldata.json alone; `--channel-name` names the
/// feed; --channeldata is refused with --no-write-monolithic.
#[test]
fn channeldata_reruns_rss_flags_and_refusal() {
    let channel = common::channel_copy("rattler");
    let output = index(channel.path(), &["--channeldata", "--no-rss", "-n", "mine"]);
    assert!(
        matches!(output.status.code(), Some(0 | 2)),
        "{}",
        stderr(&output)
    );
    assert!(channel.path().join("channeldata.json").exists());
    assert!(!channel.path().join("rss.xml").exists());
    let output = index(channel.path(), &["--channeldata", "-n", "mine"]);
    assert!(
        matches!(output.status.code(), Some(0 | 2)),
        "{}",
        stderr(&output)
    );
    let rss = fs::read_to_string(channel.path().join("rss.xml")).unwrap();
    assert!(rss.contains("<title>anaconda.org/mine</title>"), "{rss}");
    let before = common::snapshot(channel.path());
    let output = index(channel.path(), &["--channeldata", "-n", "mine"]);
    assert!(
        matches!(output.status.code(), Some(0 | 2)),
        "{}",
        stderr(&output)
    );
    assert_eq!(common::snapshot(channel.path()), before);

    let output = index(
        channel.path(),
        &["--no-write-monolithic", "--write-shards", "--channeldata"],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("--channeldata require(s) --write-monolithic"));
    assert_eq!(common::snapshot(channel.path()), before);
}

/// index.html with the times that are the run's own masked: the
/// `Last Modified` of the metadata files (they were just written) and
/// the `Updated:` line. Package rows keep their times.
fn mask_html_times(html: &str) -> String {
    let mut out = Vec::new();
    let mut metadata_row = false;
    for line in html.lines() {
        if let Some(name) = line.strip_prefix("      <td><a href=\"") {
            metadata_row = !(name.contains(".conda\"") || name.contains(".tar.bz2\""));
        }
        let masked = if line.starts_with("  <address>Updated: ") {
            let files = line.rsplit_once(" - ").map_or("", |(_, f)| f);
            format!("  <address>Updated: (run time) - {files}")
        } else if metadata_row && line.starts_with("      <td>20") {
            "      <td>(written now)</td>".to_owned()
        } else {
            line.to_owned()
        };
        out.push(masked);
    }
    out.join("\n")
}

/// Our index.html equals the oracle's (conda-index 0.13.0 writes it on
/// every run) for every fixture channel, with .bz2 copies and patches,
/// but for the run's own times; a run that changes nothing leaves it.
#[test]
fn index_html_equals_conda_index_on_every_fixture_channel() {
    let patch = golden_extra().join("conda-test-recipes-patched/patch_instructions.tar.bz2");
    let mut compared = 0;
    for name in fixture_names() {
        let (ours, subdirs) = fixture_channel(&name);
        let (theirs, _) = fixture_channel(&name);
        let mut flags = vec!["--bz2", "-n", "chan"];
        if name == "conda-test-recipes" {
            flags.extend(["--patch-generator", patch.to_str().unwrap()]);
        }
        let mut our_flags = flags.clone();
        our_flags.push("--index-html");
        let output = index(ours.path(), &our_flags);
        assert!(
            matches!(output.status.code(), Some(0 | 2)),
            "{name}: {}",
            stderr(&output)
        );
        let mut oracle_flags = flags.clone();
        for subdir in &subdirs {
            oracle_flags.extend(["--subdir", subdir.as_str()]);
        }
        crate::common::run_oracle(theirs.path(), &oracle_flags);
        for subdir in &subdirs {
            let read = |root: &std::path::Path| {
                fs::read_to_string(root.join(subdir).join("index.html"))
                    .unwrap_or_else(|e| panic!("{name}/{subdir}/index.html: {e}"))
            };
            let (expected, got) = (read(theirs.path()), read(ours.path()));
            assert_same_bytes(
                &format!("{name}/{subdir}/index.html"),
                mask_html_times(&expected).as_bytes(),
                mask_html_times(&got).as_bytes(),
            );
            compared += 1;
        }
    }
    assert!(compared >= 20, "only {compared} compared");

    let (channel, _) = fixture_channel("rattler");
    let output = index(channel.path(), &["--index-html"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let before = common::snapshot(channel.path());
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let output = index(channel.path(), &["--index-html"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(common::snapshot(channel.path()), before);
}
