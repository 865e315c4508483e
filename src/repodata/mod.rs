//! The repodata model: package records built from `info/index.json`, a
//! subdir's set of records, and their serialisation into `repodata.json` and
//! `run_exports.json`, byte-compatible with conda-index 0.13.0.

// Input reaches this code: it must fail with an error, never panic.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::string_slice,
        clippy::panic,
        clippy::unreachable,
        clippy::todo,
        clippy::unimplemented
    )
)]

pub mod json;
mod record;
mod subdir;

pub use json::{to_python_json, JsonStyle};
pub use record::{build_record, normalise_run_exports, RecordError, STRIPPED_KEYS};
pub use subdir::{IndexedPackage, SubdirRepodata};

/// CEP 26: a subdir is `<platform>-<arch>` in lowercase letters and digits,
/// or `noarch`.
pub fn is_valid_subdir(name: &str) -> bool {
    if name == "noarch" {
        return true;
    }
    let part = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    matches!(name.split_once('-'), Some((platform, arch)) if part(platform) && part(arch))
}

#[cfg(test)]
mod tests {
    use super::is_valid_subdir;

    #[test]
    fn subdir_names_follow_cep_26() {
        for ok in [
            "noarch",
            "linux-64",
            "osx-arm64",
            "win-32",
            "linux-fake",
            "emscripten-wasm32",
        ] {
            assert!(is_valid_subdir(ok), "{ok}");
        }
        for bad in [
            "",
            "linux",
            "Linux-64",
            "linux-64-x",
            "../etc",
            "linux-",
            "-64",
            "linux_64",
            ".cache",
            "a-b/c",
        ] {
            assert!(!is_valid_subdir(bad), "{bad}");
        }
    }
}
