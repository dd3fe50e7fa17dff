//! Leader election decisions on a `coordination.k8s.io` Lease, as a pure function of the lease
//! and the clock: who may hold it, and whether this replica should acquire, renew or wait.

use k8s_openapi::api::coordination::v1::LeaseSpec;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// What this replica should do with the lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseDecision {
    /// Take the lease (it is free or expired).
    Acquire,
    /// We hold it: renew it.
    Renew,
    /// Someone else holds a live lease.
    Wait {
        /// The holder.
        holder: String,
    },
}

/// Decides what `me` does with `lease` at `now`.
pub fn decide(lease: Option<&LeaseSpec>, me: &str, now: Timestamp) -> LeaseDecision {
    let Some(spec) = lease else {
        return LeaseDecision::Acquire;
    };
    let holder = spec.holder_identity.clone().unwrap_or_default();
    if holder == me {
        return LeaseDecision::Renew;
    }
    if holder.is_empty() || expired(spec, now) {
        return LeaseDecision::Acquire;
    }
    LeaseDecision::Wait { holder }
}

fn expired(spec: &LeaseSpec, now: Timestamp) -> bool {
    let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(15)));
    let renewed = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map(|t| t.0);
    renewed.is_none_or(|t| t + duration < now)
}

/// The lease spec `me` writes when acquiring (`acquired: true`) or renewing.
pub fn claim(
    previous: Option<&LeaseSpec>,
    me: &str,
    now: Timestamp,
    duration_seconds: i32,
    acquired: bool,
) -> LeaseSpec {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
    LeaseSpec {
        holder_identity: Some(me.to_string()),
        lease_duration_seconds: Some(duration_seconds),
        acquire_time: if acquired {
            Some(MicroTime(now))
        } else {
            previous.and_then(|p| p.acquire_time.clone())
        },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(if acquired && previous.is_some() {
            transitions + 1
        } else {
            transitions
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).unwrap()
    }

    #[test]
    fn a_free_or_expired_lease_is_acquired_a_live_one_waited_for() {
        assert_eq!(decide(None, "a", at(0)), LeaseDecision::Acquire);
        let held = claim(None, "b", at(0), 15, true);
        assert_eq!(
            decide(Some(&held), "a", at(10)),
            LeaseDecision::Wait { holder: "b".into() }
        );
        assert_eq!(decide(Some(&held), "a", at(16)), LeaseDecision::Acquire);
        assert_eq!(decide(Some(&held), "b", at(10)), LeaseDecision::Renew);
    }

    #[test]
    fn taking_over_counts_a_transition_renewing_does_not() {
        let first = claim(None, "a", at(0), 15, true);
        let renewed = claim(Some(&first), "a", at(5), 15, false);
        assert_eq!(renewed.lease_transitions, Some(0));
        assert_eq!(renewed.acquire_time, first.acquire_time);
        let taken = claim(Some(&renewed), "b", at(30), 15, true);
        assert_eq!(taken.lease_transitions, Some(1));
    }
}
