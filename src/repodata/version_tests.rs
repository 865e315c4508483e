//! conda's own test vectors (tests/models/test_version.py, conda 26.7).

use super::*;

fn vo(v: &str) -> VersionOrder {
    VersionOrder::parse(v).unwrap()
}

fn ver_eval(version: &str, spec: &str) -> bool {
    VersionSpec::parse(spec).unwrap().matches(version)
}

/// Every pair in `sorted` compares as its position says.
fn assert_sorted(sorted: &[&str]) {
    for (i, a) in sorted.iter().enumerate() {
        for (j, b) in sorted.iter().enumerate() {
            let (a_vo, b_vo) = (vo(a), vo(b));
            if a_vo == b_vo {
                continue; // equal versions may sit in either order
            }
            assert_eq!(a_vo.cmp(&b_vo), i.cmp(&j), "{a} vs {b}");
        }
    }
}

#[test]
fn version_order() {
    let versions = [
        "0.4",
        "0.4.0",
        "0.4.1a.vc11",
        "0.4.1.rc",
        "0.4.1.vc11",
        "0.4.1",
        "0.5*",
        "0.5a1",
        "0.5b3",
        "0.5C1",
        "0.5z",
        "0.5za",
        "0.5",
        "0.5_5",
        "0.5-5",
        "0.9.6",
        "0.960923",
        "1.0",
        "1.0.4a3",
        "1.0.4b1",
        "1.0.4",
        "1.1dev1",
        "1.1_",
        "1.1a1",
        "1.1.dev1",
        "1.1.a1",
        "1.1",
        "1.1.post1",
        "1.1.1dev1",
        "1.1.1rc1",
        "1.1.1",
        "1.1.1post1",
        "1.1post1",
        "2g6",
        "2.0b1pr0",
        "2.2be.ta29",
        "2.2be5ta29",
        "2.2beta29",
        "2.2.0.1",
        "3.1.1.6",
        "3.2.p.r0",
        "3.2.pr0",
        "3.2.pr.1",
        "5.5.kw",
        "11g",
        "14.3.1",
        "14.3.1.post26.g9d75ca2",
        "1996.07.12",
        "1!0.4.1",
        "1!3.1.1.6",
        "2!0.4.1",
    ];
    assert_sorted(&versions);
    for v in versions {
        assert_eq!(vo(v).to_string(), v.to_lowercase().replace('-', "_"));
    }
    assert_eq!(vo("0.4.1.rc"), vo("  0.4.1.RC  "));
    for bad in [
        "", "  ", "3.5&1", "5.5++", "5.5..mw", "!", "a!1.0", "a!b!1.0",
    ] {
        assert!(VersionOrder::parse(bad).is_err(), "{bad:?}");
    }
    assert_eq!(vo("  0.4.rc  "), vo("0.4.RC"));
    assert_eq!(vo("0.4"), vo("0.4.0"));
    assert_ne!(vo("0.4"), vo("0.4.1"));
    assert_eq!(vo("0.4.a1"), vo("0.4.0a1"));
    assert_ne!(vo("0.4.a1"), vo("0.4.1a1"));

    assert!(vo("0.4.1").startswith(&vo("0")));
    assert!(vo("0.4.1").startswith(&vo("0.4")));
    assert!(vo("0.4.1p1").startswith(&vo("0.4")));
    assert!(vo("0.4.1p1").startswith(&vo("0.4.1p")));
    assert!(!vo("0.4.1p1").startswith(&vo("0.4.1q1")));
    assert!(!vo("0.4").startswith(&vo("0.4.1")));
    assert!(vo("0.4.1+1.3").startswith(&vo("0.4.1")));
    assert!(vo("0.4.1+1.3").startswith(&vo("0.4.1+1")));
    assert!(!vo("0.4.1").startswith(&vo("0.4.1+1.3")));
    assert!(!vo("0.4.1+1").startswith(&vo("0.4.1+1.3")));
}

#[test]
fn openssl_convention() {
    assert_sorted(&[
        "1.0.1dev",
        "1.0.1_",
        "1.0.1a",
        "1.0.1b",
        "1.0.1c",
        "1.0.1d",
        "1.0.1r",
        "1.0.1rc",
        "1.0.1rc1",
        "1.0.1rc2",
        "1.0.1s",
        "1.0.1",
        "1.0.1post.a",
        "1.0.1post.b",
        "1.0.1post.z",
        "1.0.1post.za",
        "1.0.2",
    ]);
}

#[test]
fn pep440() {
    let mut versions = vec![
        "1.0a1",
        "1.0a2.dev456",
        "1.0a12.dev456",
        "1.0a12",
        "1.0b1.dev456",
        "1.0b2",
        "1.0b2.post345.dev456",
        "1.0b2.post345",
        "1.0c1.dev456",
        "1.0c1",
        "1.0c3",
        "1.0rc2",
        "1.0.dev456",
        "1.0",
        "1.0.post456.dev34",
        "1.0.post456",
        "1.1.dev1",
        "1.2.r32+123456",
        "1.2.rev33+123456",
        "1.2+abc",
        "1.2+abc123def",
        "1.2+abc123",
        "1.2+123abc",
        "1.2+123abc456",
        "1.2+1234.abc",
        "1.2+123456",
    ];
    let with_epoch: Vec<String> = versions.iter().map(|v| format!("1!{v}")).collect();
    versions.extend(with_epoch.iter().map(String::as_str));
    assert_sorted(&versions);
    assert_sorted(&["0.3.0.dev", "0.3.3"]);
}

#[test]
fn ver_eval_cases() {
    assert!(ver_eval("1.7.0", "==1.7"));
    assert!(ver_eval("1.7.0", "<=1.7"));
    assert!(!ver_eval("1.7.0", "<1.7"));
    assert!(ver_eval("1.7.0", ">=1.7"));
    assert!(!ver_eval("1.7.0", ">1.7"));
    assert!(!ver_eval("1.6.7", ">=1.7"));
    assert!(!ver_eval("2013a", ">2013b"));
    assert!(ver_eval("2013k", ">2013b"));
    assert!(!ver_eval("3.0.0", ">2013b"));
    assert!(ver_eval("1.0.0", ">1.0.0a"));
    assert!(ver_eval("1.0.0", ">1.0.0*"));
    assert!(ver_eval("1.0", "1.0*"));
    assert!(ver_eval("1.0.0", "1.0*"));
    assert!(ver_eval("1.0", "1.0.0*"));
    assert!(!ver_eval("1.0.1", "1.0.0*"));
    assert!(ver_eval("2013a", "2013a*"));
    assert!(!ver_eval("2013a", "2013b*"));
    assert!(ver_eval("2013ab", "2013a*"));
    assert!(!ver_eval("1.3.4", "1.2.4*"));
    assert!(ver_eval("1.2.3+4.5.6", "1.2.3*"));
    assert!(ver_eval("1.2.3+4.5.6", "1.2.3+4*"));
    assert!(!ver_eval("1.2.3+4.5.6", "1.2.3+5*"));
    assert!(!ver_eval("1.2.3+4.5.6", "1.2.4+5*"));
    for spec in ["><2.4.5", "!!2.4.5", "!"] {
        assert!(VersionSpec::parse(spec).is_err(), "{spec}");
    }
}

#[test]
fn spec_match() {
    for (spec, expected) in [
        ("1.7.*", true),
        ("1.7.1", true),
        ("1.7.0", false),
        ("1.7", false),
        ("1.5.*", false),
        (">=1.5", true),
        ("!=1.5", true),
        ("!=1.7.1", false),
        ("==1.7.1", true),
        ("==1.7", false),
        ("==1.7.2", false),
        ("==1.7.1.0", true),
        ("1.7.*|1.8.*", true),
        (">1.7,<1.8", true),
        (">1.7.1,<1.8", false),
        ("^1.7.1$", true),
        (r"^1\.7\.1$", true),
        (r"^1\.7\.[0-9]+$", true),
        (r"^1\.8.*$", false),
        (r"^1\.[5-8]\.1$", true),
        (r"^[^1].*$", false),
        (r"^[0-9+]+\.[0-9+]+\.[0-9]+$", true),
        ("^$", false),
        ("^.*$", true),
        ("1.7.*|^0.*$", true),
        ("1.6.*|^0.*$", false),
        ("1.6.*|^0.*$|1.7.1", true),
        ("^0.*$|1.7.1", true),
        (r"1.6.*|^.*\.7\.1$|0.7.1", true),
        ("*", true),
        ("1.*.1", true),
        ("1.5.*|>1.7,<1.8", true),
        ("1.5.*|>1.7,<1.7.1", false),
        ("( (1.5|((1.6|1.7), 1.8), 1.9 |2.0))|2.1", false),
    ] {
        assert_eq!(ver_eval("1.7.1", spec), expected, "{spec}");
    }
    for spec in ["(1.5", "1.5)", "1.5||1.6", "^1.5"] {
        assert!(VersionSpec::parse(spec).is_err(), "{spec}");
    }
    for version in [
        "1.7.0",
        "1.7.0.post123",
        "1.7.0.post123.gabcdef9",
        "1.7.0.post123+gabcdef9",
    ] {
        assert!(ver_eval(version, version));
    }
}

#[test]
fn star_and_compound() {
    assert!(ver_eval("3.3.1", "=3.3"));
    assert!(ver_eval("3.3", "=3.3"));
    assert!(!ver_eval("3.4", "=3.3"));
    assert!(ver_eval("3.3.1", "3.3.*"));
    assert!(ver_eval("3.3", "3.3.*"));
    assert!(!ver_eval("3.4", "3.3.*"));
    assert!(ver_eval("3.3.1", "=3.3.*"));
    assert!(!ver_eval("3.4", "=3.3.*"));
    assert!(!ver_eval("3.3.1", "!=3.3.*"));
    assert!(ver_eval("3.4", "!=3.3.*"));
    assert!(ver_eval("3.4.1", "!=3.3.*"));
    assert!(ver_eval("3.3.1", "!=3.3"));
    assert!(!ver_eval("3.3.0.0", "!=3.3"));
    assert!(!ver_eval("3.3.0.0", "!=3.3.*"));

    let spec = ">=2.7, !=3.0.*, !=3.1.*, !=3.2.*, !=3.3.*";
    assert!(!ver_eval("2.6.8", spec));
    assert!(ver_eval("2.7.2", spec));
    assert!(!ver_eval("3.3", spec));
    assert!(!ver_eval("3.3.4", spec));
    assert!(ver_eval("3.4", spec));
    assert!(ver_eval("3.4a", spec));
}

#[test]
fn invalid_specs() {
    for spec in [
        "~",
        "^",
        "1.2+",
        "+1.2",
        "+1.2+",
        "++",
        "c +, 0/|0 *",
        "a[version=)|(",
        "a=)(=b",
        "==",
        "=",
        ">=",
        "<=",
        "~=3.3.2.*",
        "===3.3.2",
    ] {
        assert!(VersionSpec::parse(spec).is_err(), "{spec}");
    }
}

#[test]
fn compatible_release() {
    assert!(ver_eval("1.11.0", "~=1.10"));
    assert!(!ver_eval("1.11.0", "~=1.10.0"));
    assert!(!ver_eval("3.4.0", "~=3.3.2"));
    assert!(!ver_eval("3.3.1", "~=3.3.2"));
    assert!(ver_eval("3.3.2.0", "~=3.3.2"));
    assert!(ver_eval("3.3.3", "~=3.3.2"));
    assert!(ver_eval("2.2.0", "~=3.3.2|==2.2"));
    assert!(ver_eval("3.3.3", "~=3.3.2|==2.2"));
    assert!(!ver_eval("2.2.1", "~=3.3.2|==2.2"));
}
