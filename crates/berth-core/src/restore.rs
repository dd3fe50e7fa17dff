//! Restoring a new app from a backup (`spec.restoreFrom`), decided once for both engines: which
//! part a backup restores into, whether the app may be restored at all, and, on Kubernetes, what
//! to do with each member waiting for its restore, given what was done so far.
//!
//! On Kubernetes every member of the restored part starts with an init container that waits
//! (see `berth_k8s::restore`). The operator asks [`steps`] what to do with the waiting members:
//! stream the verified backup into one and run its restore action ([`Step::Restore`]), or let
//! one start without restoring ([`Step::Release`]): a member restored before (its pod was
//! recreated), one added after the restore (it joins like any new member), or every member of
//! an app whose `restoreFrom` came after it already ran (a restore never overwrites a running
//! app's data). The outcome of each step goes back into the [`RestoreStatus`] with
//! [`restored`] or [`failed`]; the status is the memory, kept in the app's status.
//!
//! Each member is released right after its own restore, so no member starts before its data is
//! complete and verified, and `OrderedReady` parts (whose next pod is created only when the
//! previous one is ready) still restore every member.
//!
//! On the local engine every member is on one machine, so the backup is downloaded once: the
//! [`LocalStep`]s of [`local_steps`].

use crate::load::ValidatedApp;
use crate::spec::{BackupSpec, PartSpec, RestorePhase, RestoreStatus, StatefulAppStatus};

/// Transient failures (an unreachable store, a broken stream) are retried this many times in
/// all before the restore is `Failed`.
pub const MAX_ATTEMPTS: u32 = 5;

/// Why an app has no part to restore a backup into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PartError {
    /// No part declares how to restore.
    #[error("no part declares state.backup")]
    NoneDeclares,
    /// Several do, and a backup holds one part.
    #[error(
        "more than one part declares state.backup; restoring several parts is not supported yet"
    )]
    Several,
}

/// The part a backup restores into: the only one declaring `state.backup` (validation refuses a
/// `restoreFrom` otherwise), with its index and backup spec.
///
/// # Errors
/// No part, or several, declare `state.backup`.
pub fn restore_part(app: &ValidatedApp) -> Result<(usize, &PartSpec, &BackupSpec), PartError> {
    let mut declared = app
        .parts()
        .iter()
        .enumerate()
        .filter_map(|(i, p)| Some((i, p, p.state.backup.as_ref()?)));
    let first = declared.next().ok_or(PartError::NoneDeclares)?;
    match declared.next() {
        None => Ok(first),
        Some(_) => Err(PartError::Several),
    }
}

/// What to do with one waiting member (by ordinal).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    /// Stream the backup into it, verify it, run its restore action, then let it start.
    Restore(i32),
    /// Let it start as it is.
    Release(i32),
}

/// What one member's restore reads on the local engine (members by index, in start order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocalStep {
    /// The backup from the store, checked against its manifest; a checked copy is kept when
    /// `keep` (other members read it next).
    Download {
        /// The member.
        member: usize,
        /// Keep the checked copy.
        keep: bool,
    },
    /// The copy an earlier [`LocalStep::Download`] checked and kept.
    FromKept {
        /// The member.
        member: usize,
    },
}

/// How the local engine restores a part of `members` members: the backup is downloaded once,
/// into the first member (kept when others follow), and every other member reads that checked
/// copy, in order. No members: no steps.
pub fn local_steps(members: usize) -> Vec<LocalStep> {
    (0..members)
        .map(|member| match member {
            0 => LocalStep::Download {
                member,
                keep: members > 1,
            },
            _ => LocalStep::FromKept { member },
        })
        .collect()
}

/// Whether an app whose status is `status` (`None`: never written) is new enough to restore:
/// no member of it was ever seen ready. A `restoreFrom` added to an app that ran is skipped.
pub fn is_new_app(status: Option<&StatefulAppStatus>) -> bool {
    status.is_none_or(|s| s.parts.iter().all(|p| p.ready == 0))
}

/// The restore's first status, when the engine first sees `restoreFrom` on the app whose part
/// `part` has `replicas` members (the ones to restore): `Running` for a new app, `Skipped` for one that already ran members (its `restoreFrom` was added
/// later; restoring would overwrite live data).
pub fn start(url: &str, part: &str, replicas: i32, app_is_new: bool) -> RestoreStatus {
    RestoreStatus {
        url: url.to_string(),
        part: part.to_string(),
        replicas,
        phase: if app_is_new {
            RestorePhase::Running
        } else {
            RestorePhase::Skipped
        },
        message: (!app_is_new).then(|| {
            "restoreFrom was added to an app that already ran; it only applies when an app is created"
                .to_string()
        }),
        ..RestoreStatus::default()
    }
}

/// What to do now with the members waiting for their restore (`waiting`, ordinals): each gets
/// at most one step, restores first and in ordinal order. The members to restore are those the
/// part had when the restore began; others (added since) are released to join. Nothing while a transient failure's retry time (`retry_at`,
/// unix seconds) is ahead of `now`, and nothing once the restore failed (its members stay
/// waiting: no member starts on partial or unverified data).
pub fn steps(status: &RestoreStatus, waiting: &[i32], now: i64) -> Vec<Step> {
    let mut waiting: Vec<i32> = waiting.to_vec();
    waiting.sort_unstable();
    waiting.dedup();
    let restorable = |o: &i32| *o < status.replicas && !status.restored.contains(o);
    let out: Vec<Step> = match status.phase {
        RestorePhase::Failed => Vec::new(),
        RestorePhase::Skipped | RestorePhase::Succeeded => {
            waiting.into_iter().map(Step::Release).collect()
        }
        RestorePhase::Running => {
            let retrying = status.retry_at.is_some_and(|at| at > now);
            let (restore, release): (Vec<i32>, Vec<i32>) =
                waiting.into_iter().partition(restorable);
            let restore = restore.into_iter().filter(|_| !retrying).map(Step::Restore);
            restore
                .chain(release.into_iter().map(Step::Release))
                .collect()
        }
    };
    out
}

/// The status after member `ordinal` was restored (and released) with data of `size` bytes and
/// `sha256`: `Succeeded` once every member to restore is.
pub fn restored(
    status: &RestoreStatus,
    ordinal: i32,
    size: u64,
    sha256: &str,
    now: i64,
) -> RestoreStatus {
    let mut next = status.clone();
    if !next.restored.contains(&ordinal) {
        next.restored.push(ordinal);
        next.restored.sort_unstable();
    }
    next.size = Some(size);
    next.sha256 = Some(sha256.to_string());
    next.retry_at = None;
    next.message = None;
    if (0..next.replicas).all(|o| next.restored.contains(&o)) {
        next.phase = RestorePhase::Succeeded;
        next.finished_at = Some(now);
    }
    next
}

/// Why a member's restore failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Nothing reached the member's volume and trying again may work: the store or the member
    /// was unreachable, or the stream broke before the restore action ran.
    Transient(String),
    /// Trying again cannot work, or could harm: no backup at that URL, data that does not match
    /// its manifest, or a restore action that failed (it may have written part of the data).
    Permanent(String),
}

/// What an engine knows about a failed restore step; [`Failure::of`] decides from it whether the
/// step may run again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    /// The cause may go away by itself: an unreachable store or member, a broken stream, a full
    /// scratch disk. Not a missing or corrupt backup, nor a restore action that failed.
    pub may_pass: bool,
    /// The step had reached the member: its restore action had begun to read the data, or its
    /// pod's process had the request and may still be at work.
    pub reached_member: bool,
}

impl Facts {
    /// The one rule for retrying a restore step: it runs again only for a cause that may pass,
    /// and only when it never reached the member. A restore action that began on part of the
    /// data would run again on what it already wrote, and a request the member's process got
    /// could be carried out twice at once.
    pub fn allow_retry(self) -> bool {
        self.may_pass && !self.reached_member
    }
}

impl Failure {
    /// The failure [`Facts::allow_retry`] makes of `facts`.
    pub fn of(reason: impl Into<String>, facts: Facts) -> Self {
        match facts.allow_retry() {
            true => Self::Transient(reason.into()),
            false => Self::Permanent(reason.into()),
        }
    }

    /// Whether the step must not run again.
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::Permanent(_))
    }
}

/// The status after a failed step at `now`: a transient failure is retried after a backoff
/// (2, 4, 8, ... seconds) up to [`MAX_ATTEMPTS`] in all; a permanent one, or the last attempt,
/// makes the restore `Failed` for good: delete the app (and its claims) to try again.
pub fn failed(status: &RestoreStatus, failure: &Failure, now: i64) -> RestoreStatus {
    let mut next = status.clone();
    next.attempts += 1;
    let (reason, transient) = match failure {
        Failure::Transient(reason) => (reason, true),
        Failure::Permanent(reason) => (reason, false),
    };
    if transient && next.attempts < MAX_ATTEMPTS {
        next.retry_at = Some(now + (1i64 << next.attempts.min(8)));
        next.message = Some(format!(
            "attempt {} of {MAX_ATTEMPTS} failed, retrying: {reason}",
            next.attempts
        ));
    } else {
        next.phase = RestorePhase::Failed;
        next.retry_at = None;
        next.finished_at = Some(now);
        next.message = Some(format!(
            "{reason}; no member started on this data. Delete the app and its \
             PersistentVolumeClaims, then create it again with a good restoreFrom"
        ));
    }
    next
}

#[cfg(test)]
mod tests;
