//! What a reconcile run left, and when it wants to run again (as a kube-rs reconciler
//! answers `Action::requeue(after)`): the reconcile timer runs it anyway, so this is the
//! answer's statement of when the next run has something to do, for the log, the
//! response body and whoever schedules the ticks.

use super::config::OpsConfig;
use super::Report;
use crate::model::{ClusterState, Phase};
use serde::Serialize;
use std::time::Duration;
use time::OffsetDateTime;

/// The result of one reconcile run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReconcileOutcome {
    /// What was done and what was left pending (with why).
    #[serde(flatten)]
    pub report: Report,
    /// When the next run has something to do: `None` when nothing waits (the regular
    /// tick is enough), else the time until the earliest known due moment.
    #[serde(
        rename = "requeue_after_secs",
        serialize_with = "secs",
        skip_serializing_if = "Option::is_none"
    )]
    pub requeue_after: Option<Duration>,
}

impl From<Report> for ReconcileOutcome {
    /// The other flows' outcome: they never ask for a run sooner than the next event.
    fn from(report: Report) -> Self {
        ReconcileOutcome {
            report,
            requeue_after: None,
        }
    }
}

fn secs<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_u64(d.as_secs()),
        None => s.serialize_none(),
    }
}

/// Pure: when reconcile should run again after a run that left `state` and `pending`
/// items. The earliest of the moments still ahead that the state names — a `creating`
/// replica reaching its deadline (rolled back then), an unknown resource's orphan grace
/// ending (deleted then), a lease held by another run expiring (its work taken over
/// then) — and, when items are pending (a replica still catching up, a node to repair,
/// a refusal to look at again), one lease length. A moment already past is not one: the
/// run just made dealt with it, or left it pending.
pub fn requeue_after(
    state: &ClusterState,
    pending: &[String],
    ops: &OpsConfig,
    now: OffsetDateTime,
) -> Option<Duration> {
    let secs = |s: u64| time::Duration::seconds(s.try_into().unwrap_or(i64::MAX));
    let creating = state
        .replicas
        .iter()
        .filter(|r| r.phase == Phase::Creating)
        .map(|r| r.created_at + secs(ops.creating_deadline_secs));
    let orphans = state
        .unknown_since
        .values()
        .map(|t| t.0 + secs(ops.orphan_grace_secs));
    let leases = state.leases.values().map(|l| l.until);
    let retry = (!pending.is_empty()).then(|| now + secs(ops.lease_secs));
    let due = creating
        .chain(orphans)
        .chain(leases)
        .filter(|t| *t > now)
        .chain(retry)
        .min()?;
    // Whole seconds, rounded up: never an answer of "now" for a moment still ahead.
    let wait = (due - now).as_seconds_f64().ceil().max(1.0);
    Some(Duration::from_secs(wait as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Lease, Replica, Role, Timestamp};

    fn at(s: &str) -> OffsetDateTime {
        OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap()
    }

    fn replica(id: &str, phase: Phase, created: &str) -> Replica {
        Replica {
            id: id.into(),
            role: Role::Surge,
            phase,
            server_id: None,
            volume_id: None,
            az: None,
            address: None,
            created_at: at(created),
            op_id: None,
            since: Default::default(),
            extra: Default::default(),
        }
    }

    fn ops() -> OpsConfig {
        OpsConfig {
            creating_deadline_secs: 1800,
            orphan_grace_secs: 600,
            lease_secs: 30,
            ..OpsConfig::default()
        }
    }

    #[test]
    fn nothing_waiting_asks_for_no_earlier_run() {
        let mut s = ClusterState::new("c");
        s.replicas
            .push(replica("s1-1", Phase::Serving, "2026-12-06T10:00:00Z"));
        let now = at("2026-12-06T12:00:00Z");
        assert_eq!(requeue_after(&s, &[], &ops(), now), None);
    }

    #[test]
    fn the_earliest_due_moment_wins() {
        let now = at("2026-12-06T12:00:00Z");
        let mut s = ClusterState::new("c");
        // Rolled back at 12:20 (created 11:50 + 1800 s).
        s.replicas
            .push(replica("s1-1", Phase::Creating, "2026-12-06T11:50:00Z"));
        assert_eq!(
            requeue_after(&s, &[], &ops(), now),
            Some(Duration::from_secs(1200))
        );
        // An orphan first seen at 11:55 is deleted at 12:05: sooner.
        s.unknown_since
            .insert("server:x".into(), Timestamp(at("2026-12-06T11:55:00Z")));
        assert_eq!(
            requeue_after(&s, &[], &ops(), now),
            Some(Duration::from_secs(300))
        );
        // Something pending with no moment of its own: one lease length.
        let pending = vec!["not ready yet: s1-2".to_string()];
        assert_eq!(
            requeue_after(&s, &pending, &ops(), now),
            Some(Duration::from_secs(30))
        );
        // Another run's lease ends in 10 s: its work is ours then.
        s.leases.insert(
            "create".into(),
            Lease {
                holder: "other".into(),
                until: at("2026-12-06T12:00:10Z"),
            },
        );
        assert_eq!(
            requeue_after(&s, &pending, &ops(), now),
            Some(Duration::from_secs(10))
        );
    }

    #[test]
    fn a_moment_already_past_is_left_to_the_pending_retry() {
        let now = at("2026-12-06T12:00:00Z");
        let mut s = ClusterState::new("c");
        // Past its deadline and still here: its roll-back was refused, which is pending.
        s.replicas
            .push(replica("s1-1", Phase::Creating, "2026-12-06T09:00:00Z"));
        assert_eq!(requeue_after(&s, &[], &ops(), now), None);
        let pending = vec!["s1-1: refused: …".to_string()];
        assert_eq!(
            requeue_after(&s, &pending, &ops(), now),
            Some(Duration::from_secs(30))
        );
    }

    #[test]
    fn the_answer_body_carries_seconds_only_when_asked() {
        let mut o = ReconcileOutcome::from(Report::default());
        o.report.pending.push("p".into());
        let v = serde_json::to_value(&o).unwrap();
        assert_eq!(v["pending"][0], "p");
        assert!(v.get("requeue_after_secs").is_none(), "{v}");
        o.requeue_after = Some(Duration::from_secs(42));
        let v = serde_json::to_value(&o).unwrap();
        assert_eq!(v["requeue_after_secs"], 42);
    }
}
