//! Secrets locally: there is no API server to hold them, so each Secret the app references gets
//! its data from a source the user names at `berth up --secret NAME=PATH`, like `kubectl create
//! secret generic NAME --from-file=DIR` or `--from-env-file=FILE`:
//!
//! * a **directory**: every regular file in it is a key (the file's name) with its content;
//! * a **file**: `KEY=VALUE` lines (blank lines and `#` comments skipped), as an env file.
//!
//! Only the sources' paths are saved (`<home>/<app>/secrets.json`); the data is read again at
//! every start of a member, so it never lands in berth's own files. Members get it as on
//! Kubernetes: `env[].valueFrom.secretKeyRef` as variables, `config.secrets` mounts as files of
//! mode 0600 (owned by the member's user) in the member's directory at the mapped path. Error
//! messages name secrets and keys, never values.

use crate::error::SecretError;
use std::collections::BTreeMap;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use crate::plan::{MemberPlan, SecretEnv};

/// A Secret's data: key to value.
pub type SecretData = BTreeMap<String, Vec<u8>>;

/// The file (in the app's directory) that names each Secret's source.
pub const SOURCES_FILE: &str = "secrets.json";

/// The sources saved for the app whose directory is `app_dir`: Secret name to path.
pub fn sources(app_dir: &Path) -> BTreeMap<String, PathBuf> {
    std::fs::read_to_string(app_dir.join(SOURCES_FILE))
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default()
}

/// Parses a `--secret NAME=PATH` argument (the path made absolute).
///
/// # Errors
/// No `=`, an empty name, or a path that does not exist.
pub fn parse_source(arg: &str) -> Result<(String, PathBuf), SecretError> {
    let (name, path) = arg
        .split_once('=')
        .filter(|(n, p)| !n.is_empty() && !p.is_empty())
        .ok_or_else(|| SecretError::Argument {
            arg: arg.to_string(),
        })?;
    let no_source = |path: PathBuf| SecretError::NoSource {
        name: name.to_string(),
        path,
    };
    let path = std::path::absolute(path).map_err(|_| no_source(PathBuf::from(path)))?;
    if !path.exists() {
        return Err(no_source(path));
    }
    Ok((name.to_string(), path))
}

/// Reads a Secret's data from its source (a directory of key files, or an env file).
///
/// # Errors
/// The source cannot be read (the message names the Secret and the path, not the data).
pub fn read(name: &str, source: &Path) -> Result<SecretData, SecretError> {
    let err = |e: std::io::Error| SecretError::Read {
        name: name.to_string(),
        path: source.to_path_buf(),
        source: e,
    };
    if source.is_dir() {
        let mut data = SecretData::new();
        for entry in std::fs::read_dir(source).map_err(err)?.flatten() {
            let path = entry.path();
            let key = entry.file_name().to_string_lossy().into_owned();
            if path.is_file() && !key.starts_with('.') {
                data.insert(key, std::fs::read(&path).map_err(err)?);
            }
        }
        return Ok(data);
    }
    let text = std::fs::read_to_string(source).map_err(err)?;
    Ok(parse_env_file(&text))
}

/// `KEY=VALUE` lines; blank lines and `#` comments are skipped, a value is taken as written.
pub fn parse_env_file(text: &str) -> SecretData {
    text.lines()
        .map(str::trim_start)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.as_bytes().to_vec()))
        .collect()
}

/// The Secrets a member (or one of its init containers) references without a source; optional
/// references are left out.
pub fn unsourced(plan: &MemberPlan, sources: &BTreeMap<String, PathBuf>) -> Vec<String> {
    let inits = plan.inits.iter().flat_map(|i| &i.secret_env);
    let env = plan.secret_env.iter().chain(inits).filter(|e| !e.optional);
    let mounts = plan.secret_mounts.iter().filter(|m| !m.optional);
    let mut names: Vec<String> = env
        .map(|e| e.secret.clone())
        .chain(mounts.map(|m| m.secret.clone()))
        .filter(|s| !sources.contains_key(s))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Loads the Secrets a member references, writes its mounted ones (files of mode 0600) and
/// returns its secret variables.
///
/// # Errors
/// A Secret or key that is not optional is missing, or a file cannot be written.
pub fn materialize(
    plan: &MemberPlan,
    secret_env: &[SecretEnv],
) -> Result<Vec<(String, String)>, SecretError> {
    let mut loader = Loader::new(plan);
    for mount in &plan.secret_mounts {
        match loader.load(&mount.secret)? {
            Some(data) => write_files(plan, &mount.dir, &data)?,
            None if mount.optional => {}
            None => {
                return Err(SecretError::Unsourced {
                    name: mount.secret.clone(),
                });
            }
        }
    }
    loader.variables(secret_env)
}

/// The member's secret variables (its main container's), without writing any file: what a
/// command run in its container (an exec probe, an action, a preStop hook) has in its
/// environment on Kubernetes.
///
/// # Errors
/// A Secret or key that is not optional is missing, or a source cannot be read.
pub fn variables(plan: &MemberPlan) -> Result<Vec<(String, String)>, SecretError> {
    Loader::new(plan).variables(&plan.secret_env)
}

/// The Secrets' data from the app's sources, each read once.
struct Loader {
    sources: BTreeMap<String, PathBuf>,
    cache: BTreeMap<String, Option<SecretData>>,
}

impl Loader {
    fn new(plan: &MemberPlan) -> Self {
        let app_dir = plan.dir.parent().unwrap_or(&plan.dir);
        Self {
            sources: sources(app_dir),
            cache: BTreeMap::new(),
        }
    }

    /// Secret `secret`'s data; `None` when it has no source.
    fn load(&mut self, secret: &str) -> Result<Option<SecretData>, SecretError> {
        if let Some(data) = self.cache.get(secret) {
            return Ok(data.clone());
        }
        let data = self
            .sources
            .get(secret)
            .map(|p| read(secret, p))
            .transpose()?;
        self.cache.insert(secret.to_string(), data.clone());
        Ok(data)
    }

    /// The values of `secret_env`.
    fn variables(
        &mut self,
        secret_env: &[SecretEnv],
    ) -> Result<Vec<(String, String)>, SecretError> {
        let mut env = Vec::new();
        for var in secret_env {
            let value = self
                .load(&var.secret)?
                .and_then(|d| d.get(&var.key).cloned());
            match value {
                Some(v) => env.push((var.name.clone(), String::from_utf8_lossy(&v).into_owned())),
                None if var.optional => {}
                None => {
                    return Err(SecretError::NoKey {
                        var: var.name.clone(),
                        name: var.secret.clone(),
                        key: var.key.clone(),
                        sourced: self.sources.contains_key(&var.secret),
                    });
                }
            }
        }
        Ok(env)
    }
}

/// Writes a Secret's keys as files of mode 0600 in `dir` (owned by the member's user),
/// removing files of keys it no longer has.
fn write_files(plan: &MemberPlan, dir: &Path, data: &SecretData) -> Result<(), SecretError> {
    let err = |p: &Path, e: std::io::Error| SecretError::Write {
        member: plan.name.clone(),
        path: p.to_path_buf(),
        source: e,
    };
    std::fs::create_dir_all(dir).map_err(|e| err(dir, e))?;
    for entry in std::fs::read_dir(dir).map_err(|e| err(dir, e))?.flatten() {
        let key = entry.file_name().to_string_lossy().into_owned();
        if !data.contains_key(&key) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    let owner = crate::runas::effective(plan.run_as);
    for (key, value) in data {
        let path = dir.join(key);
        let _ = std::fs::remove_file(&path);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| err(&path, e))?;
        std::io::Write::write_all(&mut &file, value).map_err(|e| err(&path, e))?;
        let mode = std::fs::Permissions::from_mode(0o600);
        std::fs::set_permissions(&path, mode).map_err(|e| err(&path, e))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&path, Some(uid), Some(gid)).map_err(|e| err(&path, e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_files_and_directories_are_sources() {
        let data = parse_env_file("# auth\nPASSWORD=s3cr=t\n\n  USER=postgres\n");
        assert_eq!(data["PASSWORD"], b"s3cr=t");
        assert_eq!(data["USER"], b"postgres");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("password"), "pw").unwrap();
        let read = read("auth", dir.path()).unwrap();
        assert_eq!(read["password"], b"pw");
        assert!(matches!(
            parse_source("auth"),
            Err(SecretError::Argument { .. })
        ));
        let missing = parse_source("auth=/no/such/dir").unwrap_err();
        assert_eq!(
            missing.to_string(),
            "--secret auth: /no/such/dir does not exist"
        );
        let no_key = SecretError::NoKey {
            var: "PGPASSWORD".into(),
            name: "auth".into(),
            key: "password".into(),
            sourced: false,
        };
        assert_eq!(
            no_key.to_string(),
            "env PGPASSWORD: secret `auth` has no key `password` (secret `auth` has no local \
             source: give it with `berth up --secret auth=DIR-or-ENV-FILE`)"
        );
    }
}
