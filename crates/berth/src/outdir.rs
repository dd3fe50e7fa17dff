//! `berth render -o DIR`: carries out [`berth_k8s::render_dir`]'s plan. Everything is rendered
//! before the directory is touched, each file is replaced atomically (written beside it, then
//! renamed), and files of an earlier render that are no longer rendered are removed.

use std::path::{Path, PathBuf};

use berth_k8s::render::{self, file_name};
use berth_k8s::render_dir::{self, DirRefusal, MANIFEST};
use serde_json::Value;

/// Why `render -o DIR` wrote nothing, or stopped part way (each file is still whole).
#[derive(Debug, thiserror::Error)]
pub enum OutDirError {
    /// An object could not be written as YAML.
    #[error("render failed: {source}")]
    Encode {
        /// The cause.
        #[source]
        source: serde_yaml_ng::Error,
    },
    /// The directory holds files berth did not write.
    #[error("{}: {source}", dir.display())]
    Refused {
        /// The directory.
        dir: PathBuf,
        /// What berth would have overwritten.
        #[source]
        source: DirRefusal,
    },
    /// The path exists but is not a directory.
    #[error("{}: not a directory", dir.display())]
    NotADirectory {
        /// The path given with `-o`.
        dir: PathBuf,
    },
    /// The directory could not be listed.
    #[error("{}: cannot read the directory: {source}", dir.display())]
    ReadDir {
        /// The directory.
        dir: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The manifest of an earlier render could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    ReadManifest {
        /// The manifest.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The directory could not be created.
    #[error("{}: cannot create the directory: {source}", dir.display())]
    CreateDir {
        /// The directory.
        dir: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file could not be written (or renamed into place).
    #[error("{}: cannot write: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file of an earlier render could not be removed.
    #[error("{}: cannot remove: {source}", path.display())]
    Remove {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Writes every object to its own file in `dir`, removing berth's files of an earlier render
/// that are no longer part of this one.
///
/// # Errors
/// Serialisation fails, the directory was not written by berth, or a write fails.
pub fn write_objects(dir: &Path, objects: &[Value]) -> Result<(), OutDirError> {
    let mut files = Vec::with_capacity(objects.len());
    for (i, object) in objects.iter().enumerate() {
        let text = render::to_yaml(std::slice::from_ref(object))
            .map_err(|source| OutDirError::Encode { source })?;
        files.push((file_name(i, object), text));
    }
    let (existing, previous) = read_dir(dir)?;
    let plan = render_dir::plan(&existing, previous.as_deref(), files).map_err(|source| {
        OutDirError::Refused {
            dir: dir.to_path_buf(),
            source,
        }
    })?;
    std::fs::create_dir_all(dir).map_err(|source| OutDirError::CreateDir {
        dir: dir.to_path_buf(),
        source,
    })?;
    write_atomic(dir, MANIFEST, &plan.pending_manifest)?;
    for (name, text) in &plan.files {
        write_atomic(dir, name, text)?;
    }
    for name in &plan.remove {
        let path = dir.join(name);
        std::fs::remove_file(&path).map_err(|source| OutDirError::Remove { path, source })?;
    }
    write_atomic(dir, MANIFEST, &plan.manifest)?;
    let removed = match plan.remove.len() {
        0 => String::new(),
        n => format!(", removed {n} no longer rendered"),
    };
    println!(
        "wrote {} objects to {}{removed}",
        plan.files.len(),
        dir.display()
    );
    Ok(())
}

/// The names of the directory's entries and its manifest's text (nothing when it does not
/// exist yet).
fn read_dir(dir: &Path) -> Result<(Vec<String>, Option<String>), OutDirError> {
    let fail = |source| OutDirError::ReadDir {
        dir: dir.to_path_buf(),
        source,
    };
    if !dir.exists() {
        return Ok((Vec::new(), None));
    }
    if !dir.is_dir() {
        return Err(OutDirError::NotADirectory {
            dir: dir.to_path_buf(),
        });
    }
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(fail)? {
        names.push(
            entry
                .map_err(fail)?
                .file_name()
                .to_string_lossy()
                .into_owned(),
        );
    }
    let manifest = dir.join(MANIFEST);
    let previous = match std::fs::read_to_string(&manifest) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(OutDirError::ReadManifest {
                path: manifest,
                source,
            });
        }
    };
    Ok((names, previous))
}

/// Replaces `dir/name` with `text`: written to a hidden file beside it, then renamed over it.
fn write_atomic(dir: &Path, name: &str, text: &str) -> Result<(), OutDirError> {
    let path = dir.join(name);
    let temporary = dir.join(format!(".{name}.tmp"));
    std::fs::write(&temporary, text)
        .and_then(|()| std::fs::rename(&temporary, &path))
        .map_err(|source| OutDirError::Write { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_where_the_directory_should_be_is_refused_and_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("out");
        std::fs::write(&path, "mine").unwrap();
        let error = write_objects(&path, &[]).unwrap_err();
        assert!(
            matches!(&error, OutDirError::NotADirectory { dir } if dir == &path),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            format!("{}: not a directory", path.display())
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "mine");
    }
}
