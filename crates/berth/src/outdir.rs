//! `berth render -o DIR`: carries out [`berth_k8s::render_dir`]'s plan. Everything is rendered
//! before the directory is touched, each file is replaced atomically (written beside it, then
//! renamed), and files of an earlier render that are no longer rendered are removed.

use std::path::Path;

use berth_k8s::render::{self, file_name};
use berth_k8s::render_dir::{self, MANIFEST};
use serde_json::Value;

use crate::commands::Failure;

/// Writes every object to its own file in `dir`, removing berth's files of an earlier render
/// that are no longer part of this one.
///
/// # Errors
/// Serialisation fails, the directory was not written by berth, or a write fails.
pub fn write_objects(dir: &Path, objects: &[Value]) -> Result<(), Failure> {
    let mut files = Vec::with_capacity(objects.len());
    for (i, object) in objects.iter().enumerate() {
        let text = render::to_yaml(std::slice::from_ref(object))
            .map_err(|e| format!("render failed: {e}"))?;
        files.push((file_name(i, object), text));
    }
    let (existing, previous) = read_dir(dir)?;
    let plan = render_dir::plan(&existing, previous.as_deref(), files)
        .map_err(|refusal| format!("{}: {refusal}", dir.display()))?;
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("{}: cannot create the directory: {e}", dir.display()))?;
    write_atomic(dir, MANIFEST, &plan.pending_manifest)?;
    for (name, text) in &plan.files {
        write_atomic(dir, name, text)?;
    }
    for name in &plan.remove {
        let path = dir.join(name);
        std::fs::remove_file(&path)
            .map_err(|e| format!("{}: cannot remove: {e}", path.display()))?;
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
fn read_dir(dir: &Path) -> Result<(Vec<String>, Option<String>), Failure> {
    let fail = |e: std::io::Error| format!("{}: cannot read the directory: {e}", dir.display());
    if !dir.exists() {
        return Ok((Vec::new(), None));
    }
    if !dir.is_dir() {
        return Err(format!("{}: not a directory", dir.display()));
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
        Err(e) => return Err(format!("{}: cannot read: {e}", manifest.display())),
    };
    Ok((names, previous))
}

/// Replaces `dir/name` with `text`: written to a hidden file beside it, then renamed over it.
fn write_atomic(dir: &Path, name: &str, text: &str) -> Result<(), Failure> {
    let path = dir.join(name);
    let temporary = dir.join(format!(".{name}.tmp"));
    std::fs::write(&temporary, text)
        .and_then(|()| std::fs::rename(&temporary, &path))
        .map_err(|e| format!("{}: cannot write: {e}", path.display()))
}
