//! Which tar members are safe for an installer to extract: the rules an
//! upload must pass before it is published, so that a channel never hands
//! its users a package that writes outside its prefix.
//!
//! We never extract anything ourselves; these rules protect the clients
//! (conda, mamba, pixi) that will. A member is refused when its name is
//! absolute or climbs out with `..`, when it is a symlink whose target
//! leaves the package, a hard link to such a path, a member stored under or
//! in place of an earlier symlink (the classic "symlink, then write through
//! it" trick), or a device or FIFO. Backslashes count as separators too,
//! since Windows clients treat them so.
//!
//! Link targets are checked twice: on their own, as written, and followed
//! through the package's other symlinks, as an installer's file system
//! follows them (`d/a -> ..` makes `t -> d/a/../x` point beside the prefix,
//! though each looks harmless alone). Hard links are followed when they are
//! made; symlinks once the whole package is known ([`MemberRules::finish`]),
//! since a later link can redirect an earlier one.
//!
//! Every installer writes a member over an earlier one of the same path, so
//! the last copy is what gets installed while a reader that stops at the
//! first (ours, for `info/index.json`) sees another: two members naming the
//! same path (`info/index.json`, `./info/index.json`, `info//index.json`)
//! are refused, in one tar or across a `.conda`'s two. Under `info/` names
//! are compared without case too, since macOS and Windows clients fold
//! case (elsewhere real packages do ship names differing only in case,
//! ncurses' terminfo). And `info/` belongs to the info archive alone:
//! rattler reads `info/index.json` from the `pkg-` archive too.

use std::collections::{HashMap, HashSet};
use std::io::Read;

use sha2::{Digest, Sha256};
use tar::{Entry, EntryType};

use super::PackageError;

/// Symlinks followed in a row before a path counts as a loop (Linux's
/// limit); a loop resolves nowhere, so it cannot lead outside.
const MAX_SYMLINK_HOPS: usize = 40;

/// The rules for the tar streams of one package (a `.conda` has two, which
/// are extracted into the same directory); remembers the symlinks.
#[derive(Default)]
pub(crate) struct MemberRules {
    /// Normalised member name → link target, for every symlink so far.
    symlinks: HashMap<Vec<u8>, Vec<u8>>,
    /// The path each member so far installs to (see [`install_key`]);
    /// directories apart, since making one twice is harmless (real
    /// packages list `info/` twice).
    /// Each path's content digest, where the walk read it (small `info/`
    /// files).
    files: HashMap<Vec<u8>, Option<[u8; 32]>>,
    directories: HashSet<Vec<u8>>,
    /// Checking the `pkg-` part of a `.conda` now.
    in_pkg_archive: bool,
    /// Every path a member other than a directory installs, normalised,
    /// in order: what was verified, for comparing with what clients
    /// extract.
    installed: Vec<Vec<u8>>,
}

impl MemberRules {
    /// The paths the members other than directories install, in order.
    pub(crate) fn into_installed(self) -> Vec<Vec<u8>> {
        self.installed
    }

    /// The members that follow come from a `.conda`'s `pkg-` archive.
    pub(crate) fn enter_pkg_archive(&mut self) {
        self.in_pkg_archive = true;
    }

    /// Refuses a second member at the same path, and `info/` in the `pkg-`
    /// archive. `content` is the member's bytes, when the walk read them: a
    /// second copy with the same bytes is what the first installs, and
    /// passes.
    pub(crate) fn check_unique<R: Read>(
        &mut self,
        entry: &Entry<'_, R>,
        content: Option<&[u8]>,
    ) -> Result<(), PackageError> {
        let name = entry.path_bytes();
        let shown = || String::from_utf8_lossy(&name).into_owned();
        let key = install_key(&name);
        if self.in_pkg_archive && is_info(&key) {
            return Err(PackageError::InfoInPkgArchive(shown()));
        }
        let kind = entry.header().entry_type();
        if kind == EntryType::XGlobalHeader {
            return Ok(());
        }
        if kind != EntryType::Directory {
            self.installed.push(normalised(&name));
        }
        let digest = content.map(|bytes| <[u8; 32]>::from(Sha256::digest(bytes)));
        let conflict = if kind == EntryType::Directory {
            self.directories.insert(key.clone());
            self.files
                .contains_key(&key)
                .then_some("is both a file and a directory")
        } else if let Some(earlier) = self.files.insert(key.clone(), digest) {
            (earlier.is_none() || earlier != digest).then_some(
                "names a path an earlier member already has, with other content (clients install the last copy)",
            )
        } else {
            self.directories
                .contains(&key)
                .then_some("is both a directory and a file")
        };
        if let Some(why) = conflict {
            return Err(PackageError::DuplicateMember {
                member: shown(),
                why,
            });
        }
        Ok(())
    }

    /// Checks one member's name, type and link target.
    pub(crate) fn check<R: Read>(&mut self, entry: &Entry<'_, R>) -> Result<(), PackageError> {
        let name = entry.path_bytes();
        let refuse = |why: String| PackageError::UnsafeMember {
            member: String::from_utf8_lossy(&name).into_owned(),
            why,
        };
        check_path(&name).map_err(|why| refuse(why.to_owned()))?;
        if let Some(link) = self.symlink_above(&name) {
            return Err(refuse(format!(
                "lies under the symlink {:?}",
                String::from_utf8_lossy(&link)
            )));
        }
        let kind = entry.header().entry_type();
        if kind != EntryType::Symlink && self.symlinks.contains_key(&normalised(&name)) {
            return Err(refuse(
                "replaces an earlier symlink, so it would be written through it".into(),
            ));
        }
        match kind {
            EntryType::Regular
            | EntryType::Continuous
            | EntryType::GNUSparse
            | EntryType::Directory
            | EntryType::XGlobalHeader => Ok(()),
            EntryType::Symlink => {
                // Real packages carry symlinks with empty targets (dangling,
                // and harmless: they cannot point anywhere).
                let target = link_target(entry).unwrap_or_default();
                check_symlink(&name, &target).map_err(|why| refuse(why.to_owned()))?;
                self.symlinks.insert(normalised(&name), target);
                Ok(())
            }
            EntryType::Link => {
                let target = link_target(entry)
                    .ok_or_else(|| refuse("is a hard link without a target".into()))?;
                check_path(&target).map_err(|why| refuse(format!("hard link target {why}")))?;
                // Installers make hard links with link(2) following symlinks.
                if self.leads_outside(b"", &target) {
                    return Err(refuse(
                        "is a hard link whose target leads outside the package through a symlink"
                            .into(),
                    ));
                }
                Ok(())
            }
            other => Err(refuse(format!(
                "is a {} (only files, directories and links belong in a package)",
                format!("{other:?}").to_lowercase()
            ))),
        }
    }

    /// Once every member has been checked: each symlink, followed through
    /// all the others, must still point inside the package.
    pub(crate) fn finish(&self) -> Result<(), PackageError> {
        for (name, target) in &self.symlinks {
            let dir = components(name)
                .collect::<Vec<_>>()
                .split_last()
                .map(|(_, dir)| dir.join(&b'/'))
                .unwrap_or_default();
            if self.leads_outside(&dir, target) {
                return Err(PackageError::UnsafeMember {
                    member: String::from_utf8_lossy(name).into_owned(),
                    why: "is a symlink that leads outside the package through another symlink"
                        .into(),
                });
            }
        }
        Ok(())
    }

    /// The first proper ancestor of `name` that is a symlink seen earlier.
    fn symlink_above(&self, name: &[u8]) -> Option<Vec<u8>> {
        if self.symlinks.is_empty() {
            return None;
        }
        let parts: Vec<&[u8]> = components(name).collect();
        (1..parts.len())
            .filter_map(|n| parts.get(..n))
            .map(|ancestor| ancestor.join(&b'/'))
            .find(|prefix| self.symlinks.contains_key(prefix))
    }

    /// Whether `target`, taken from the directory `dir` (a normalised
    /// name) with every symlink known so far followed, climbs above the
    /// package root.
    fn leads_outside(&self, dir: &[u8], target: &[u8]) -> bool {
        if self.symlinks.is_empty() {
            return false; // the lexical checks already covered it
        }
        let mut at: Vec<&[u8]> = components(dir).collect();
        let mut todo: Vec<&[u8]> = components(target).collect();
        todo.reverse();
        let mut hops = 0;
        while let Some(part) = todo.pop() {
            if part == b".." {
                if at.pop().is_none() {
                    return true;
                }
                continue;
            }
            at.push(part);
            if let Some(link) = self.symlinks.get(&at.join(&b'/')) {
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    return false;
                }
                if is_absolute(link) {
                    return true;
                }
                at.pop();
                todo.extend(components(link).rev());
            }
        }
        false
    }
}

/// `./a//b/` and `a/b` name the same member.
pub(crate) fn normalised(name: &[u8]) -> Vec<u8> {
    components(name).collect::<Vec<_>>().join(&b'/')
}

/// The path a member is installed to, as a client's file system tells
/// paths apart: normalised, and without case under `info/`.
fn install_key(name: &[u8]) -> Vec<u8> {
    let mut key = normalised(name);
    if is_info(&key) {
        key.make_ascii_lowercase();
    }
    key
}

/// Whether a normalised name is `info` or lies under it, in any case.
fn is_info(name: &[u8]) -> bool {
    components(name)
        .next()
        .is_some_and(|first| first.eq_ignore_ascii_case(b"info"))
}

fn link_target<R: Read>(entry: &Entry<'_, R>) -> Option<Vec<u8>> {
    let target = entry.link_name_bytes()?;
    (!target.is_empty()).then(|| target.into_owned())
}

fn components(path: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    path.split(|&b| b == b'/' || b == b'\\')
        .filter(|part| !part.is_empty() && *part != b".")
}

fn is_absolute(path: &[u8]) -> bool {
    let drive_letter = matches!(path, [letter, b':', ..] if letter.is_ascii_alphabetic());
    matches!(path.first(), Some(b'/' | b'\\')) || drive_letter
}

/// A member name (or hard link target) must stay inside the package.
fn check_path(path: &[u8]) -> Result<(), &'static str> {
    if is_absolute(path) {
        return Err("is an absolute path");
    }
    if components(path).any(|part| part == b"..") {
        return Err("climbs out of the package with `..`");
    }
    if components(path).next().is_none() {
        return Err("has an empty name");
    }
    Ok(())
}

/// A symlink's target, resolved from the link's own directory, must not
/// leave the package (`lib/libz.so -> libz.so.1` is fine,
/// `lib/x -> ../../etc/passwd` is not).
fn check_symlink(name: &[u8], target: &[u8]) -> Result<(), &'static str> {
    if is_absolute(target) {
        return Err("is a symlink to an absolute path");
    }
    let mut depth = components(name).count().saturating_sub(1);
    for part in components(target) {
        if part == b".." {
            depth = depth
                .checked_sub(1)
                .ok_or("is a symlink that points outside the package")?;
        } else {
            depth += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_inside_the_package_pass() {
        for ok in [
            &b"info/index.json"[..],
            b"./info/index.json",
            b"lib/python3.12/site-packages/x.py",
            b"bin/",
            b"a..b/c..",
        ] {
            assert_eq!(check_path(ok), Ok(()), "{}", String::from_utf8_lossy(ok));
        }
    }

    #[test]
    fn escaping_paths_are_refused() {
        for bad in [
            &b"../x"[..],
            b"a/../../x",
            b"/etc/passwd",
            b"\\\\server\\share",
            b"C:\\Windows\\x",
            b"lib\\..\\..\\x",
            b"./",
            b"",
        ] {
            assert!(check_path(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn members_under_an_earlier_symlink_are_refused() {
        let mut rules = MemberRules::default();
        rules
            .symlinks
            .insert(normalised(b"./lib/d/"), b"x".to_vec());
        assert_eq!(rules.symlink_above(b"lib/d/x"), Some(b"lib/d".to_vec()));
        assert_eq!(rules.symlink_above(b"lib/d//x/y"), Some(b"lib/d".to_vec()));
        assert_eq!(rules.symlink_above(b"lib/d"), None, "the link itself");
        assert_eq!(rules.symlink_above(b"lib/dx"), None);
    }

    #[test]
    fn symlinks_must_stay_inside() {
        assert_eq!(check_symlink(b"lib/libz.so", b"libz.so.1"), Ok(()));
        assert_eq!(check_symlink(b"lib/a/b", b"../../bin/x"), Ok(()));
        assert_eq!(check_symlink(b"bin/python", b"python3.12"), Ok(()));
        for (name, target) in [
            (&b"lib/x"[..], &b"../../etc/passwd"[..]),
            (b"x", b".."),
            (b"lib/x", b"/etc/passwd"),
            (b"a/b", b"c/../../../d"),
        ] {
            assert!(
                check_symlink(name, target).is_err(),
                "{} -> {}",
                String::from_utf8_lossy(name),
                String::from_utf8_lossy(target)
            );
        }
    }
}
