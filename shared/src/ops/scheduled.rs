//! The reconcile tick's own scaling: keep capacity at the floor in force — `min_replicas`,
//! or the minimum of a `[[policy.schedule]]` window that is open now.
//!
//! This is what makes a window pre-scale before a known peak, and what brings the read
//! tier back to `min_replicas` after a replica was lost (reconcile's first step forgets a
//! replica whose server vanished; this step, right after it, replaces it).
//!
//! Same shape as an alarm's scale-up, and the same code for the doing: the policy decides
//! on `Trigger::Tick`, and the decision, its operation and the replicas to create are
//! recorded in **one compare-and-swap**; reconcile's next step (`drive_creating`, under
//! the `create` lease) makes them, and any later run resumes them after a crash. A tick
//! never adds twice for one shortfall: the recorded operation and its `creating`
//! replicas count toward capacity, so the next tick (or a concurrent one, whose CAS
//! re-runs the decision on the document that now holds them) finds the floor met. Only a
//! real loss (a replica forgotten) opens a new shortfall, and that is the point.
//!
//! Not acted on here, on purpose:
//! * **A window's end.** The replicas a window added stay until a scale-down alarm (or
//!   `scale_down_on_resolved`) removes them: once the window is closed its minimum no
//!   longer holds them, and scale-down removes newest first. A tick does not know the
//!   load; removing capacity at a fixed minute would cut it under a peak that ran late.
//! * **Capacity above `max_replicas`** (the maximum lowered by hand): `pgsurge plan`
//!   shows the trim the policy would make, but removing serving replicas stays an
//!   alarm's decision, with its proofs, not a timer's.

use super::creating::plan_replicas;
use super::decide::action_name;
use super::{OpsError, Ports, Report};
use crate::model::{rfc3339, ClusterState, OpKind, Phase};
use crate::policy::{self, Action, Decision, Trigger};
use time::OffsetDateTime;

/// Operation `extra` key: which floor a tick's scale-up was for (`min_replicas`, or the
/// window), for `pgsurge status` and for humans reading the document.
const EXTRA_FLOOR: &str = "floor";

/// Decide on the tick and record a scale-up up to the floor; the creating is left to
/// reconcile's next step. See the module documentation.
pub(crate) async fn enforce_floor(ports: &Ports, now: OffsetDateTime) -> Result<Report, OpsError> {
    let mut report = Report::default();
    let (outcome, _) = ports
        .state
        .update(now, |state| -> Result<_, std::convert::Infallible> {
            Ok(decide_and_plan(state, now, &ports.policy))
        })
        .await?;
    match outcome {
        Outcome::Planned { decision, op } => {
            tracing::info!(function = "reconcile", action = ?decision.action, reason = %decision.reason, op = %op, "decision");
            crate::metrics::global().inc(
                "pgsurge_decisions_total",
                "Scaling decisions by function, action and alarm source.",
                &[
                    ("function", "reconcile"),
                    ("action", action_name(&decision.action)),
                    ("source", "tick"),
                ],
                1.0,
            );
            report.did(format!("operation {op}: {}", decision.reason));
            report.decision = Some(decision);
        }
        Outcome::NoSource(decision) => report.later(format!(
            "{}; but no serving replica with a volume to clone from: nothing recorded",
            decision.reason
        )),
        Outcome::Nothing => {}
    }
    Ok(report)
}

/// What one tick decided.
#[derive(Debug)]
enum Outcome {
    /// A scale-up recorded as operation `op`, its replicas `creating`.
    Planned { decision: Decision, op: String },
    /// Below the floor, but nothing serves to clone from (an empty or new cluster, a state
    /// document that lost its replicas): recording replicas that can never be made would
    /// only churn (roll back at the deadline, plan again), so nothing is recorded.
    NoSource(Decision),
    /// The floor is met (or the policy wants a trim, which a tick leaves alone).
    Nothing,
}

/// The pure half, run inside the compare-and-swap (and again on a lost race, on the
/// fresh document).
fn decide_and_plan(
    state: &mut ClusterState,
    now: OffsetDateTime,
    cfg: &policy::PolicyConfig,
) -> Outcome {
    let d = policy::decide(state, Trigger::Tick, now, cfg);
    let Action::ScaleUp { add, flavor, az } = &d.action else {
        return Outcome::Nothing;
    };
    let source = state
        .replicas
        .iter()
        .any(|r| r.phase == Phase::Serving && r.volume_id.is_some());
    if !source {
        return Outcome::NoSource(d);
    }
    // Unique for ever, not only per window: the revision differs on every write, and the
    // time keeps a recreated document (revision 0 again) from reusing a name. A reused
    // id would make `ensure_volume` adopt whatever an older replica of that name left.
    let (_, floor_why) = policy::floor(now, cfg);
    let key = format!(
        "tick: {floor_why} at revision {} ({})",
        state.revision,
        rfc3339(now)
    );
    let op = super::op_id(&key);
    policy::record(state, &d, now, &op);
    plan_replicas(state, &op, *add, flavor.as_deref(), az.clone(), now);
    if let Some(o) = state
        .operations
        .iter_mut()
        .find(|o| o.id == op && o.kind == OpKind::ScaleUp)
    {
        o.extra
            .insert(EXTRA_FLOOR.into(), serde_json::Value::String(floor_why));
    }
    Outcome::Planned { decision: d, op }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Replica, Role};
    use crate::policy::{PolicyConfig, ScheduleWindow};
    use std::collections::BTreeMap;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-25 09:00 UTC);

    fn serving_base() -> Replica {
        Replica {
            id: "base".into(),
            role: Role::Base,
            phase: Phase::Serving,
            server_id: Some("srv-base".into()),
            volume_id: Some("vol-base".into()),
            az: None,
            address: Some("10.0.0.5:5432".into()),
            created_at: NOW - time::Duration::days(30),
            op_id: None,
            since: Default::default(),
            extra: BTreeMap::new(),
        }
    }

    fn morning() -> PolicyConfig {
        PolicyConfig {
            min_replicas: 1,
            max_replicas: 10,
            schedule: vec![ScheduleWindow {
                name: "morning".into(),
                cron: "30 8 * * *".parse().unwrap(),
                duration_mins: 120,
                min_replicas: 4,
            }],
            ..PolicyConfig::default()
        }
    }

    /// Apply a tick to `s` as a write would (the revision moves on).
    fn tick(s: &mut ClusterState, now: OffsetDateTime, cfg: &PolicyConfig) -> Outcome {
        let out = decide_and_plan(s, now, cfg);
        s.revision += 1;
        out
    }

    #[test]
    fn an_open_window_plans_its_replicas_once() {
        let cfg = morning();
        let mut s = ClusterState::new("c");
        s.replicas.push(serving_base());
        let Outcome::Planned { decision, op } = tick(&mut s, NOW, &cfg) else {
            panic!("no scale-up");
        };
        assert!(decision.reason.contains("morning"), "{}", decision.reason);
        let creating: Vec<_> = s
            .replicas
            .iter()
            .filter(|r| r.phase == Phase::Creating)
            .collect();
        assert_eq!(creating.len(), 3);
        assert!(creating
            .iter()
            .all(|r| r.op_id.as_deref() == Some(op.as_str())));
        let o = &s.operations[0];
        assert_eq!((o.count, o.replicas.len()), (3, 3));
        assert!(o.extra[EXTRA_FLOOR].as_str().unwrap().contains("morning"));
        // The next ticks in the window add nothing: the planned replicas count.
        for later in [NOW, NOW + time::Duration::minutes(5)] {
            assert!(matches!(tick(&mut s, later, &cfg), Outcome::Nothing));
        }
        assert_eq!(s.replicas.len(), 4);
        assert_eq!(s.operations.len(), 1);
        // After the window: nothing either (removal is left to a scale-down alarm).
        let after = datetime!(2026-11-25 10:45 UTC);
        assert!(matches!(tick(&mut s, after, &cfg), Outcome::Nothing));
        assert_eq!(s.replicas.len(), 4);
    }

    #[test]
    fn a_lost_replica_is_replaced_under_a_new_operation() {
        let cfg = PolicyConfig {
            min_replicas: 2,
            ..morning()
        };
        let after = datetime!(2026-11-25 12:00 UTC);
        let mut s = ClusterState::new("c");
        s.replicas.push(serving_base());
        let Outcome::Planned { op: first, .. } = tick(&mut s, after, &cfg) else {
            panic!("no scale-up to min_replicas");
        };
        assert_eq!(s.replicas.len(), 2);
        // It served, then its server vanished and reconcile forgot it (and its operation).
        s.replicas.retain(|r| r.role == Role::Base);
        s.operations.clear();
        let Outcome::Planned { op: second, .. } = tick(&mut s, after, &cfg) else {
            panic!("the lost replica is not replaced");
        };
        assert_ne!(first, second, "a new name, never the lost replica's");
        assert_eq!(s.replicas.len(), 2);
    }

    #[test]
    fn nothing_is_recorded_without_a_replica_to_clone() {
        let cfg = morning();
        let mut s = ClusterState::new("c");
        let before = s.clone();
        let Outcome::NoSource(d) = tick(&mut s, NOW, &cfg) else {
            panic!("planned without a source");
        };
        assert!(matches!(d.action, Action::ScaleUp { add: 4, .. }), "{d:?}");
        s.revision = before.revision;
        assert_eq!(s, before, "the document is unchanged");
    }
}
