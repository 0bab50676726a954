//! One alarm → one recorded decision: the step scale-up and scale-down share.

use super::{OpsError, Ports};
use crate::events::{Alarm, Direction};
use crate::model::ClusterState;
use crate::policy::{self, Action, Decision, Trigger};
use time::OffsetDateTime;

/// Decide what `alarm` asks for, and record the decision together with whatever `plan`
/// adds to the state (scale-up: the replicas to create) in one compare-and-swap, so the
/// intent is durable before any cloud call. The operation id comes from the alarm, so a
/// duplicate delivery finds its operation already recorded and decides nothing new.
/// Then log it and count it (`pgsurge_decisions_total`).
pub(crate) async fn decide_and_record(
    ports: &Ports,
    function: &str,
    alarm: &Alarm,
    intent: Direction,
    now: OffsetDateTime,
    plan: impl Fn(&mut ClusterState, &Decision, &str),
) -> Result<Decision, OpsError> {
    // Keyed like the policy's duplicate check: a resolution is not its firing's op.
    let id = op_id(&policy::occurrence(alarm));
    let trigger = Trigger::Alarm { alarm, intent };
    let (decision, _) = ports
        .state
        .update(now, |state| -> Result<_, std::convert::Infallible> {
            let d = policy::decide(state, trigger, now, &ports.policy);
            policy::record(state, &d, now, &id);
            plan(state, &d, &id);
            Ok(d)
        })
        .await?;
    tracing::info!(function, alarm = %alarm.id, state = ?alarm.state, action = ?decision.action, reason = %decision.reason, "decision");
    crate::metrics::global().inc(
        "pgsurge_decisions_total",
        "Scaling decisions by function, action and alarm source.",
        &[
            ("function", function),
            ("action", action_name(&decision.action)),
            ("source", &source_name(alarm)),
        ],
        1.0,
    );
    Ok(decision)
}

/// The operation id for an alarm occurrence: the same alarm always maps to the same id,
/// so duplicate deliveries find the operation already recorded.
pub fn op_id(alarm_id: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(alarm_id.as_bytes());
    hex::encode(&digest[..6])
}

pub(crate) fn action_name(a: &Action) -> &'static str {
    match a {
        Action::ScaleUp { .. } => "scale-up",
        Action::ScaleDown { .. } => "scale-down",
        Action::Nothing => "nothing",
    }
}

fn source_name(a: &Alarm) -> String {
    serde_json::to_value(a.source)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}
