//! Differential tests against the conda-index 0.13.0 oracle.
//!
//! The goldens pin what conda-index wrote for a fixed set of real packages;
//! these tests instead build channels whose `info/index.json` and
//! `info/run_exports.json` hold odd but legal JSON text (non-ASCII, escapes,
//! characters above U+FFFF, control characters, floats in every spelling,
//! integers beyond 2^53, duplicate and unusual keys, keys conda strips),
//! index the same bytes with the oracle and with us, and require
//! `repodata.json`, `repodata_from_packages.json` and `run_exports.json` to be
//! byte-identical per subdir. Each odd value is a place where a JSON library
//! other than Python's would naturally diverge (float formatting, number
//! precision, escaping, key order), so this is where the byte-compatibility
//! promise is actually tested rather than assumed.

use std::fs;
use std::path::Path;

use artifact_upload_handler::generate::{
    generate_channel, write_package, ChannelSpec, Format, Member, PackageSpec,
};
use serde_json::json;

use crate::common::channel::{listed, listed_names};
use crate::common::{self, bz2_decompress, copy_tree, index, run_oracle, stderr, zst_decompress};

/// The metadata files both indexers must write identically in each subdir.
const OUTPUTS: [&str; 3] = [
    "repodata.json",
    "repodata_from_packages.json",
    "run_exports.json",
];

/// A package whose `info/index.json` is exactly `index_json`.
pub(crate) fn raw(
    name: &str,
    version: &str,
    build: &str,
    subdir: &str,
    format: Format,
    index_json: &str,
) -> PackageSpec {
    let mut spec = PackageSpec::new(name, version, build, subdir, format);
    spec.index_json_raw = Some(index_json.as_bytes().to_vec());
    spec.payload_bytes = 300;
    spec.seed = name.len() as u64 * 7919 + build.len() as u64;
    spec
}

/// Packages with hand-written index.json text, in both formats and both
/// subdirs. Each JSON text is a Rust raw string, so `\u00e9` below is the
/// six-character JSON escape while `é` is the raw UTF-8 character.
pub(crate) fn odd_packages() -> Vec<PackageSpec> {
    let mut specs = Vec::new();

    // Strings: raw non-ASCII, escaped non-ASCII, above U+FFFF raw and as a
    // surrogate-pair escape, control characters via escapes, DEL, quotes,
    // backslash, an escaped slash, and odd keys (upper case, spaces,
    // non-ASCII, emoji, empty). Key order must come out sorted by code point.
    let strings = r#"{"name":"odd-strings","version":"1.0","build":"py_0","build_number":0,"subdir":"noarch","noarch":"python","depends":["python >=3.8","caf\u00e9 >=1","中文","😀 1.*","\ud83d\ude00-esc"],"license":"MIT","summary":"café 中文 😀 \ud83d\ude00 \u00e9 \u4e2d","ctrl":"a\u0001b\tc\nd\re\u007ff\u001fg\b\f","quotes":"\"q\" \\ \/ </script>","del_raw":"x@DEL@y","ZZ":"upper","Name":"Upper-case Name","a b":"space in key","é":"non-ASCII key","😀":"emoji key","\ud83d\ude01":"escaped emoji key","":"empty key","~":"tilde","\u007f":"DEL key","Z":1,"z":2,"_":3,"-":4}"#;
    for (subdir, build) in [("noarch", "py_0"), ("linux-64", "h1_0")] {
        // A raw DEL (legal unescaped in JSON, unlike U+0000..U+001F).
        let text = strings
            .replace("@DEL@", "\u{7f}")
            .replace(r#""subdir":"noarch""#, &format!(r#""subdir":"{subdir}""#))
            .replace(r#""build":"py_0""#, &format!(r#""build":"{build}""#));
        for format in [Format::TarBz2, Format::Conda] {
            specs.push(raw("odd-strings", "1.0", build, subdir, format, &text));
        }
    }

    // Numbers: floats in every spelling Python re-renders with repr, and
    // integers beyond 2^53 that a f64 would round.
    //
    // Left out because conda-index 0.13.0 itself fails on them (the whole
    // run exits 1, so there is nothing to compare): floats that overflow to
    // infinity (`1e400`, a 400-digit mantissa) and `NaN`/`Infinity`, which
    // Python re-dumps as `Infinity` and SQLite's json() then rejects
    // ("malformed JSON"); integers of more than 4300 digits (Python 3.11's
    // int-string limit raises ValueError).
    let numbers = r#"{"name":"odd-numbers","version":"2.0","build":"h2_1","build_number":1,"subdir":"linux-64","depends":[],"timestamp":1700000000123,"f_1e16":1e16,"f_1E16":1E16,"f_1e-7":1e-7,"f_0.1":0.1,"f_1.0":1.0,"f_-0.0":-0.0,"f_1.5e300":1.5e300,"f_123456789.123":123456789.123,"f_1e15":1e15,"f_1e22":1e22,"f_0.0001":0.0001,"f_0.00001":0.00001,"f_2.5E-5":2.5E-5,"f_1E+2":1E+2,"f_1e0":1e0,"f_0e0":0e0,"f_-1.25":-1.25,"f_big_mantissa":12345678901234567.0,"f_max":1.7976931348623157e308,"f_min_sub":5e-324,"f_long":3.141592653589793238462643383279,"f_0.30000000000000004":0.30000000000000004,"f_100.0":100.0,"f_1e23":1e23,"f_2^53+1.0":9007199254740993.0,"f_0.1e1":0.1e1,"f_max_rounds":1.7976931348623158e308,"f_min_normal":2.2250738585072014e-308,"f_sub":2.2250738585072011e-308,"f_4.9e-324":4.9e-324,"f_123e-2":123e-2,"f_-1e-400":-1e-400,"f_400_zeros":0.0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000001,"i_2^53+1":9007199254740993,"i_30_digits":123456789012345678901234567890,"i_-0":-0,"i_-2^53-1":-9007199254740993,"i_0":0,"i_u64_max":18446744073709551615,"i_u64_max+1":18446744073709551616,"i_-2^63-1":-9223372036854775809,"list":[1,1.0,-0,-0.0,1e16,9007199254740993]}"#;
    for format in [Format::TarBz2, Format::Conda] {
        specs.push(raw(
            "odd-numbers",
            "2.0",
            "h2_1",
            "linux-64",
            format,
            numbers,
        ));
    }

    // Structure: nested objects and arrays, nulls, booleans, empty
    // containers, duplicate keys (the last wins, at every level, including a
    // duplicate spelled once raw and once escaped), and whitespace of every
    // kind JSON allows between tokens.
    let structure = "{\r\n\t\"name\" : \"odd-structure\" ,\n \"version\":\"3.0\",\"build\":\"h3_0\",\"build_number\":0,\"subdir\":\"noarch\",\"depends\":[ ],\"constrains\":[\"a <1\", \"b >=2\"],\"track_features\":\"\",\"features\":null,\"nested\":{\"b\":[1,[2,[3,[]]],{\"z\":null,\"y\":true,\"x\":false,\"w\":{}}],\"a\":{\"deeper\":{\"deepest\":[{},[],\"\",0]}}},\"empty_list\":[],\"empty_obj\":{},\"null\":null,\"true\":true,\"false\":false,\"dup\":1,\"dup\":{\"inner\":1,\"inner\":[2]},\"k\u{1F600}\":\"raw first\",\"k\\ud83d\\ude00\":\"escaped last\",\"depends\":[\"python\",\"python\"]\n}\n";
    for format in [Format::TarBz2, Format::Conda] {
        specs.push(raw(
            "odd-structure",
            "3.0",
            "h3_0",
            "noarch",
            format,
            structure,
        ));
    }

    // Keys conda strips (they must vanish) and keys it overrides with the
    // file's own digests and size (they must be replaced).
    let stripped = r#"{"name":"odd-stripped","version":"4.0","build":"h4_0","build_number":0,"subdir":"linux-64","depends":["libc"],"arch":"x86_64","platform":"linux","has_prefix":true,"mtime":1234567890,"ucs":4,"requires_features":{"blas":"mkl"},"binstar":{"channel":"main","owner_id":"x"},"target-triplet":"x86_64-conda-linux-gnu","machine":"x86_64","operatingsystem":"linux","size":1,"md5":"0123456789abcdef0123456789abcdef","sha256":"not-a-sha","fn":"kept-as-is.tar.bz2","url":"https://example.invalid/x","Arch":"kept: case matters","platform ":"kept: trailing space"}"#;
    for format in [Format::TarBz2, Format::Conda] {
        specs.push(raw(
            "odd-stripped",
            "4.0",
            "h4_0",
            "linux-64",
            format,
            stripped,
        ));
    }

    // A UTF-8 byte-order mark before the object (Python's json.loads on
    // bytes accepts it).
    let bom = "\u{feff}{\"name\":\"odd-bom\",\"version\":\"5.0\",\"build\":\"h5_0\",\"build_number\":0,\"subdir\":\"noarch\",\"depends\":[]}";
    specs.push(raw("odd-bom", "5.0", "h5_0", "noarch", Format::TarBz2, bom));

    specs.extend(run_exports_packages());
    specs
}

/// Packages with `info/run_exports.json`: generated from a value, and
/// written as raw text with the same oddities as the index.json above
/// (conda-index stores that text through SQLite's `json()` before Python
/// parses it, a different path from index.json's).
fn run_exports_packages() -> Vec<PackageSpec> {
    let index_json = |name: &str, build: &str, subdir: &str| {
        format!(
            r#"{{"name":"{name}","version":"1.0","build":"{build}","build_number":0,"subdir":"{subdir}","depends":[]}}"#
        )
    };
    let mut specs = Vec::new();
    let with_value = |name: &str, subdir: &str, format: Format, value: serde_json::Value| {
        let mut spec = raw(
            name,
            "1.0",
            "h0_0",
            subdir,
            format,
            &index_json(name, "h0_0", subdir),
        );
        spec.run_exports = Some(value);
        spec
    };
    let with_text = |name: &str, subdir: &str, format: Format, text: &str| {
        let mut spec = raw(
            name,
            "1.0",
            "h0_0",
            subdir,
            format,
            &index_json(name, "h0_0", subdir),
        );
        spec.extra_info_members.push(Member::file(
            "info/run_exports.json",
            text.as_bytes().to_vec(),
        ));
        spec
    };

    for (subdir, format) in [
        ("linux-64", Format::TarBz2),
        ("linux-64", Format::Conda),
        ("noarch", Format::Conda),
    ] {
        specs.push(with_value(
            "rx-lists",
            subdir,
            format,
            json!({
                "weak": ["rx-lists >=1.0,<2.0a0", "caf\u{e9} 1.*", "\u{1F600}", "a\u{1}b", "tab\there"],
                "strong": ["libstrong >=1.2.3,<1.3.0a0"],
                "weak_constrains": [],
                "strong_constrains": ["zz 9.*"],
                "noarch": ["python"]
            }),
        ));
    }
    specs.push(with_text(
        "rx-raw",
        "linux-64",
        Format::Conda,
        r#"{"weak":["caf\u00e9","中文","😀","\ud83d\ude00","q\"\\\/","c\u0001\u007f"],"strong":[],"weak":["dup: last wins","\ud83d\ude00 >=1"],"n1":1E16,"n2":1e-7,"n3":-0.0,"n4":123456789012345678901234567890,"n5":-0,"nested":{"b":[{}],"a":null,"B":true},"ZZ":[]}"#,
    ));
    specs.push(with_text(
        "rx-raw",
        "linux-64",
        Format::TarBz2,
        "{\r\n  \"strong\" : [ \"x >=1\" ] ,\n\t\"weak\":[]\r\n}\r\n",
    ));
    // Not here: a UTF-8 byte-order mark before run_exports.json. conda-index
    // hands those raw bytes to SQLite's json(), which rejects them
    // ("malformed JSON") and the whole run fails.
    // Falsy documents: written as `{}` by conda-index (`or {}`).
    specs.push(with_text("rx-empty-obj", "noarch", Format::TarBz2, "{}"));
    specs.push(with_text("rx-empty-list", "noarch", Format::Conda, "[]"));
    // Legal JSON that is not an object passes through as is.
    specs.push(with_text(
        "rx-list",
        "linux-64",
        Format::TarBz2,
        r#"["weak-as-list 1.*"]"#,
    ));
    specs.push(with_text(
        "rx-string",
        "noarch",
        Format::TarBz2,
        r#""just a string""#,
    ));
    specs
}

/// Writes `specs` under `root/<subdir>/` and makes sure every subdir of
/// `subdirs` exists (noarch is required by both indexers anyway).
pub(crate) fn write_channel(root: &Path, specs: &[PackageSpec], subdirs: &[&str]) {
    for subdir in subdirs {
        fs::create_dir_all(root.join(subdir)).unwrap();
    }
    for spec in specs {
        write_package(spec, &root.join(&spec.subdir)).unwrap();
    }
}

/// Indexes copies of `channel` with the oracle and with us, both with
/// `flags`, and requires identical metadata in every subdir of `subdirs`.
fn compare_with_oracle(channel: &Path, subdirs: &[&str], flags: &[&str]) {
    let oracle_dir = tempfile::tempdir().unwrap();
    let ours_dir = tempfile::tempdir().unwrap();
    copy_tree(channel, oracle_dir.path());
    copy_tree(channel, ours_dir.path());

    run_oracle(oracle_dir.path(), flags);
    let output = index(ours_dir.path(), flags);
    assert!(
        output.status.success(),
        "our index failed ({}): {}",
        output.status,
        stderr(&output)
    );

    for subdir in subdirs {
        for name in OUTPUTS {
            let oracle = read(&oracle_dir.path().join(subdir).join(name));
            let ours = read(&ours_dir.path().join(subdir).join(name));
            assert_same_bytes(
                &format!("{subdir}/{name} (flags {flags:?})"),
                &oracle,
                &ours,
            );
            check_compressed_copies(&ours_dir.path().join(subdir), name, &ours, flags);
            // The oracle's copies, as a check on the comparison itself.
            check_compressed_copies(&oracle_dir.path().join(subdir), name, &oracle, flags);
        }
    }
}

fn read(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()))
}

/// `name.zst` / `name.bz2` exist when asked for and decompress to `json`.
fn check_compressed_copies(dir: &Path, name: &str, json: &[u8], flags: &[&str]) {
    type Decompress = fn(&[u8]) -> Vec<u8>;
    let copies: [(&str, Decompress); 2] = [("--zst", zst_decompress), ("--bz2", bz2_decompress)];
    for (flag, decompress) in copies {
        if !flags.contains(&flag) {
            continue;
        }
        let path = dir.join(format!("{name}.{}", &flag[2..]));
        let decompressed = decompress(&read(&path));
        assert_same_bytes(
            &format!("{} decompressed", path.display()),
            json,
            &decompressed,
        );
    }
}

/// Asserts `ours == oracle`; on failure shows both texts when short, else
/// the first differing offset with context.
pub(crate) fn assert_same_bytes(what: &str, oracle: &[u8], ours: &[u8]) {
    if oracle == ours {
        return;
    }
    let offset = oracle
        .iter()
        .zip(ours)
        .position(|(a, b)| a != b)
        .unwrap_or(oracle.len().min(ours.len()));
    let excerpt = |bytes: &[u8]| {
        let start = offset.saturating_sub(200);
        let end = (offset + 200).min(bytes.len());
        String::from_utf8_lossy(&bytes[start.min(end)..end]).into_owned()
    };
    if oracle.len() + ours.len() <= 16_000 {
        panic!(
            "{what} differs at byte {offset} (oracle {} bytes, ours {} bytes)\n--- oracle (conda-index 0.13.0):\n{}\n--- ours:\n{}\n--- around the difference:\noracle: {}\nours:   {}",
            oracle.len(),
            ours.len(),
            String::from_utf8_lossy(oracle),
            String::from_utf8_lossy(ours),
            excerpt(oracle),
            excerpt(ours),
        );
    }
    panic!(
        "{what} differs at byte {offset} (oracle {} bytes, ours {} bytes)\n--- oracle around it:\n{}\n--- ours around it:\n{}",
        oracle.len(),
        ours.len(),
        excerpt(oracle),
        excerpt(ours),
    );
}

fn odd_channel() -> tempfile::TempDir {
    let channel = tempfile::tempdir().unwrap();
    write_channel(channel.path(), &odd_packages(), &["noarch", "linux-64"]);
    channel
}

#[test]
fn odd_index_json_matches_conda_index() {
    let channel = odd_channel();
    compare_with_oracle(
        channel.path(),
        &["noarch", "linux-64"],
        &["--zst", "--bz2", "--run-exports"],
    );
}

#[test]
fn odd_index_json_matches_conda_index_no_compact() {
    let channel = odd_channel();
    compare_with_oracle(
        channel.path(),
        &["noarch", "linux-64"],
        &["--zst", "--bz2", "--run-exports", "--no-compact"],
    );
}

#[test]
fn generated_channel_matches_conda_index() {
    let channel = tempfile::tempdir().unwrap();
    let subdirs = ["noarch", "linux-64", "osx-arm64", "win-64"];
    let spec = ChannelSpec {
        packages: 60,
        seed: 20_240_613,
        subdirs: subdirs.iter().map(|s| s.to_string()).collect(),
        payload_bytes: 1500,
        conda_fraction: 0.5,
        ..ChannelSpec::default()
    };
    generate_channel(channel.path(), &spec).unwrap();
    compare_with_oracle(
        channel.path(),
        &subdirs,
        &["--zst", "--bz2", "--run-exports"],
    );
}

// The tests below cover legal JSON that conda-index 0.13.0 indexes but that
// a stock `serde_json` parse refuses (so the package was left out when they
// were written). They are kept apart from the tests above so that each
// names one difference.

/// Indexes a small channel of `specs` (noarch and linux-64) both ways.
fn compare_small_channel(specs: &[PackageSpec]) {
    let channel = tempfile::tempdir().unwrap();
    write_channel(channel.path(), specs, &["noarch", "linux-64"]);
    compare_with_oracle(
        channel.path(),
        &["noarch", "linux-64"],
        &["--zst", "--bz2", "--run-exports"],
    );
}

fn index_json_with(name: &str, subdir: &str, extra: &str) -> String {
    format!(
        r#"{{"name":"{name}","version":"1.0","build":"h0_0","build_number":0,"subdir":"{subdir}","depends":[],{extra}}}"#
    )
}

/// Deliberate difference: `\ud800`-style escapes that do not form a pair.
/// Python decodes them to lone surrogates and conda-index writes them back,
/// but such a string is not Unicode, and strict JSON clients (rattler, pixi,
/// anything serde-based) then fail to parse the whole subdir's repodata. We
/// leave the package out with a warning instead.
#[test]
fn lone_surrogate_escapes_are_left_out() {
    let channel = tempfile::tempdir().unwrap();
    let text = index_json_with(
        "lone-surrogates",
        "noarch",
        r#""high":"\ud800","low":"x\udc00y""#,
    );
    let mut rx = raw(
        "lone-rx",
        "1.0",
        "h0_0",
        "noarch",
        Format::Conda,
        &index_json_with("lone-rx", "noarch", r#""x":1"#),
    );
    rx.extra_info_members.push(Member::file(
        "info/run_exports.json",
        br#"{"weak":["\ud800 >=1"]}"#.to_vec(),
    ));
    let specs = vec![
        raw(
            "lone-surrogates",
            "1.0",
            "h0_0",
            "noarch",
            Format::TarBz2,
            &text,
        ),
        rx,
        raw(
            "fine",
            "1.0",
            "h0_0",
            "noarch",
            Format::Conda,
            &index_json_with("fine", "noarch", r#""x":1"#),
        ),
    ];
    write_channel(channel.path(), &specs, &["noarch"]);
    let output = common::index(channel.path(), &["--run-exports"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = common::stderr(&output);
    assert!(
        stderr.contains(
            "left out noarch/lone-surrogates-1.0-h0_0.tar.bz2: info/index.json is not valid JSON"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "left out noarch/lone-rx-1.0-h0_0.conda: info/run_exports.json is not valid JSON"
        ),
        "{stderr}"
    );
    assert_eq!(
        listed_names(channel.path(), "noarch"),
        ["fine-1.0-h0_0.conda".to_owned()].into()
    );
    assert!(listed(channel.path(), "noarch", "fine-1.0-h0_0.conda").is_some());
}

/// Nesting deeper than serde_json's default limit of 128. conda-index
/// handles at least 450 levels (at 500 its process pool fails pickling the
/// record with a RecursionError, so that depth is not compared).
#[test]
fn deep_nesting_matches_conda_index() {
    let arrays = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    let objects = |n: usize| format!("{}1{}", r#"{"a":"#.repeat(n), "}".repeat(n));
    let mut specs = Vec::new();
    for (name, value) in [
        ("deep-arrays-130", arrays(130)),
        ("deep-arrays-300", arrays(300)),
        ("deep-objects-200", objects(200)),
    ] {
        let text = index_json_with(name, "noarch", &format!(r#""deep":{value}"#));
        specs.push(raw(name, "1.0", "h0_0", "noarch", Format::TarBz2, &text));
    }
    let mut spec = raw(
        "deep-rx",
        "1.0",
        "h0_0",
        "linux-64",
        Format::TarBz2,
        &index_json_with("deep-rx", "linux-64", r#""x":1"#),
    );
    spec.extra_info_members.push(Member::file(
        "info/run_exports.json",
        format!(r#"{{"weak":{}}}"#, arrays(130)).into_bytes(),
    ));
    specs.push(spec);
    compare_small_channel(&specs);
}
