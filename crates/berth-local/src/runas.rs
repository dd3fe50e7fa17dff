//! Running a member as the user its spec names (`securityContext.runAsUser`/`runAsGroup`), as
//! Kubernetes does: when berth runs as root, the member's processes (the process itself, its
//! init containers, probes, hooks and actions) get that uid and gid before exec, its directory
//! tree is owned by that user, and the directories above it inside the berth home are made
//! traversable (`o+x`, not readable). When berth does not run as root it cannot switch users:
//! the field is ignored and `up` says so.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;

use nix::unistd::{Uid, User, geteuid};

use crate::error::RunAsError;
use crate::plan::{MemberPlan, RunAs};

/// The uid and gid a member's processes get: `None` when it names no user or berth is not root.
pub fn effective(run_as: Option<RunAs>) -> Option<(u32, u32)> {
    let run_as = run_as?;
    if !geteuid().is_root() {
        return None;
    }
    let gid = run_as.gid.unwrap_or_else(|| primary_group(run_as.uid));
    Some((run_as.uid, gid))
}

/// The user's primary group from the passwd database, else 0 (as container runtimes do).
fn primary_group(uid: u32) -> u32 {
    User::from_uid(Uid::from_raw(uid))
        .ok()
        .flatten()
        .map_or(0, |u| u.gid.as_raw())
}

/// A notice for a member whose `runAsUser` cannot be honoured (berth is not root).
pub fn ignored_notice(plan: &MemberPlan) -> Option<String> {
    let run_as = plan.run_as?;
    (!geteuid().is_root()).then(|| {
        format!(
            "note: {}: securityContext.runAsUser {} ignored: berth is not running as root, so \
             the member runs as uid {}",
            plan.name,
            run_as.uid,
            geteuid()
        )
    })
}

/// Gives the member's directory tree (its directories, config files, log) to its user and
/// makes the berth home and app directories above it traversable.
///
/// # Errors
/// A path cannot be changed, or a directory above the home is not searchable by the user.
pub fn prepare(plan: &MemberPlan) -> Result<(), RunAsError> {
    let Some((uid, gid)) = effective(plan.run_as) else {
        return Ok(());
    };
    let err = |path: &Path, source| RunAsError::File {
        member: plan.name.clone(),
        path: path.to_path_buf(),
        source,
    };
    let mut owned = vec![plan.dir.clone(), plan.dir.join("log")];
    owned.extend(plan.dirs.iter().cloned());
    owned.extend(plan.files.iter().map(|f| f.path.clone()));
    for path in owned.iter().filter(|p| p.exists()) {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(|e| err(path, e))?;
    }
    let app_dir = plan.dir.parent().unwrap_or(&plan.dir);
    let home = app_dir.parent().unwrap_or(app_dir);
    for dir in [app_dir, home] {
        let mode = std::fs::metadata(dir).map_err(|e| err(dir, e))?.mode();
        let traversable = std::fs::Permissions::from_mode((mode & 0o7777) | 0o001);
        std::fs::set_permissions(dir, traversable).map_err(|e| err(dir, e))?;
    }
    for dir in home.ancestors().skip(1) {
        if !searchable(dir, uid, gid) {
            return Err(RunAsError::Unreachable {
                member: plan.name.clone(),
                uid,
                dir: dir.to_path_buf(),
            });
        }
    }
    Ok(())
}

/// Whether `uid`/`gid` may search (traverse) directory `dir`.
fn searchable(dir: &Path, uid: u32, gid: u32) -> bool {
    let Ok(meta) = std::fs::metadata(dir) else {
        return false;
    };
    let mode = meta.mode();
    mode & 0o001 != 0
        || (meta.uid() == uid && mode & 0o100 != 0)
        || (meta.gid() == gid && mode & 0o010 != 0)
}

/// Sets the user and group a command runs as (when berth may).
pub fn apply(command: &mut tokio::process::Command, run_as: Option<RunAs>) {
    if let Some((uid, gid)) = effective(run_as) {
        command.uid(uid).gid(gid);
    }
}
