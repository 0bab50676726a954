//! scale-up: alarm → decision → recorded operation → snapshot → N volumes + servers in parallel.
//!
//! Returns as soon as the servers are created: booting and catching up are
//! instance-ready's (and reconcile's) business.

use super::creating::{drive_creating, plan_replicas};
use super::decide::decide_and_record;
use super::draining::drive_draining;
use super::lease::with_lease;
use super::{OpsError, Ports, Report};
use crate::events::{Alarm, Direction};
use crate::failpoint;
use crate::policy::Action;
use time::OffsetDateTime;

pub async fn scale_up(
    ports: &Ports,
    alarms: &[Alarm],
    now: OffsetDateTime,
) -> Result<Report, OpsError> {
    let mut report = Report::default();
    let mut scaled_down = false;
    for alarm in alarms {
        let decision = decide_and_record(
            ports,
            "scale-up",
            alarm,
            Direction::ScaleUp,
            now,
            |state, d, op| {
                if let Action::ScaleUp { add, flavor, az } = &d.action {
                    plan_replicas(state, op, *add, flavor.as_deref(), az.clone(), now);
                }
            },
        )
        .await?;
        failpoint::hit("scale_up.after_decision");
        // A resolved alarm, with `policy.scale_down_on_resolved`, decides a scale-down.
        scaled_down |= matches!(decision.action, Action::ScaleDown { .. });
        report.decision = Some(decision);
    }
    with_lease(ports, "create", &mut report, || drive_creating(ports, now)).await?;
    if scaled_down {
        with_lease(ports, "remove", &mut report, || drive_draining(ports, now)).await?;
    }
    Ok(report)
}
