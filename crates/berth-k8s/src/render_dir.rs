//! `berth render -o DIR`: which files to write and which files of an earlier render to remove
//! (pure; the command line reads the directory and carries the plan out).
//!
//! berth records the files it wrote in a manifest, [`MANIFEST`], in the directory. A later render
//! into the same directory removes the files of that list that are no longer rendered, and
//! never touches any other file. A non-empty directory without a manifest was not written by
//! berth: rendering into it is refused, as is overwriting a file berth did not write.

use std::collections::BTreeSet;

use thiserror::Error;

/// The manifest's file name in the output directory.
pub const MANIFEST: &str = ".berth-render";

const MANIFEST_HEADER: &str = "# Files written by `berth render -o`; the next render into this \
directory removes those it no longer renders. Do not edit.\n";

/// What to do in the output directory, in this order: write [`Self::pending_manifest`] (so an
/// interrupted run still knows every file it may have written), write [`Self::files`], remove
/// [`Self::remove`], then write [`Self::manifest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirPlan {
    /// File name and content of every rendered object, in order.
    pub files: Vec<(String, String)>,
    /// Files of the earlier render that are no longer rendered.
    pub remove: Vec<String>,
    /// The manifest listing the earlier and the new files, written first.
    pub pending_manifest: String,
    /// The manifest listing the new files, written last.
    pub manifest: String,
}

/// Why berth will not write into a directory.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DirRefusal {
    /// The directory has files and no manifest: berth did not write it.
    #[error(
        "the directory is not empty and was not written by `berth render -o` (it has no {MANIFEST}); \
         render into a new or empty directory, or empty this one first"
    )]
    NotWrittenByBerth,
    /// A file berth would write exists but is not one berth wrote.
    #[error(
        "{0} exists and was not written by `berth render -o`; move it away or render into another directory"
    )]
    ForeignFile(String),
}

/// Plans a render into a directory.
///
/// `existing` names the entries of the directory (none when it does not exist yet),
/// `previous_manifest` is the text of its [`MANIFEST`] if it has one, and `files` the new
/// rendering, file name and content.
///
/// # Errors
/// The directory, or a file in it, was not written by berth.
pub fn plan(
    existing: &[String],
    previous_manifest: Option<&str>,
    files: Vec<(String, String)>,
) -> Result<DirPlan, DirRefusal> {
    let previous: BTreeSet<String> = match previous_manifest {
        Some(text) => parse_manifest(text),
        None if existing.is_empty() => BTreeSet::new(),
        None => return Err(DirRefusal::NotWrittenByBerth),
    };
    let new: Vec<String> = files.iter().map(|(name, _)| name.clone()).collect();
    if let Some(foreign) = new
        .iter()
        .find(|name| existing.contains(name) && !previous.contains(*name))
    {
        return Err(DirRefusal::ForeignFile(foreign.clone()));
    }
    let remove: Vec<String> = previous
        .iter()
        .filter(|name| !new.contains(name) && existing.contains(name))
        .cloned()
        .collect();
    let mut all: BTreeSet<String> = previous;
    all.extend(new.iter().cloned());
    Ok(DirPlan {
        files,
        remove,
        pending_manifest: manifest_text(all.iter()),
        manifest: manifest_text(new.iter()),
    })
}

/// The names a manifest lists. Lines that could name anything outside the directory, or the
/// manifest itself, are ignored.
fn parse_manifest(text: &str) -> BTreeSet<String> {
    text.lines()
        .map(str::trim)
        .filter(|line| is_plain_file_name(line))
        .map(str::to_string)
        .collect()
}

/// A name directly in the directory: no separators, not hidden (which also excludes `.`, `..`
/// and the manifest), not a comment.
fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && !name.starts_with('#')
        && !name.contains(['/', '\\'])
}

fn manifest_text<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let mut text = MANIFEST_HEADER.to_string();
    for name in names {
        text.push_str(name);
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(names: &[&str]) -> Vec<(String, String)> {
        names
            .iter()
            .map(|n| (n.to_string(), format!("{n}\n")))
            .collect()
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn a_new_or_empty_directory_gets_the_files_and_a_manifest() {
        let plan = plan(&[], None, files(&["00-a.yaml", "01-b.yaml"])).unwrap();
        assert!(plan.remove.is_empty());
        assert!(plan.manifest.ends_with("\n00-a.yaml\n01-b.yaml\n"));
        assert_eq!(plan.pending_manifest, plan.manifest);
    }

    #[test]
    fn files_no_longer_rendered_are_removed_and_others_kept() {
        let previous = manifest_text(names(&["00-a.yaml", "01-pdb.yaml", "02-gone.yaml"]).iter());
        let existing = names(&[MANIFEST, "00-a.yaml", "01-pdb.yaml", "kustomization.yaml"]);
        let plan = plan(&existing, Some(&previous), files(&["00-a.yaml"])).unwrap();
        assert_eq!(plan.remove, ["01-pdb.yaml"]);
        assert!(
            plan.pending_manifest
                .contains("01-pdb.yaml\n02-gone.yaml\n")
        );
        assert!(!plan.manifest.contains("pdb"));
    }

    #[test]
    fn a_directory_berth_did_not_write_is_refused() {
        let existing = names(&["notes.txt"]);
        assert_eq!(
            plan(&existing, None, files(&["00-a.yaml"])),
            Err(DirRefusal::NotWrittenByBerth)
        );
    }

    #[test]
    fn a_file_berth_did_not_write_is_never_overwritten() {
        let previous = manifest_text(names(&["00-a.yaml"]).iter());
        let existing = names(&[MANIFEST, "00-a.yaml", "01-b.yaml"]);
        assert_eq!(
            plan(
                &existing,
                Some(&previous),
                files(&["00-a.yaml", "01-b.yaml"])
            ),
            Err(DirRefusal::ForeignFile("01-b.yaml".into()))
        );
    }

    #[test]
    fn a_manifest_cannot_name_files_outside_the_directory() {
        let previous = "../../etc/passwd\n/abs\n.berth-render\n..\n# comment\n00-a.yaml\n";
        let existing = names(&[MANIFEST, "00-a.yaml"]);
        let plan = plan(&existing, Some(previous), files(&[])).unwrap();
        assert_eq!(plan.remove, ["00-a.yaml"]);
    }
}
