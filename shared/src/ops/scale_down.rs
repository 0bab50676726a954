//! scale-down: decision → drain on every node → sessions end (bounded) → maint + remove
//! → prove it is a standby → delete server and volume → forget it.

use super::decide::decide_and_record;
use super::draining::drive_draining;
use super::lease::with_lease;
use super::{OpsError, Ports, Report};
use crate::events::{Alarm, Direction};
use crate::failpoint;
use time::OffsetDateTime;

pub async fn scale_down(
    ports: &Ports,
    alarms: &[Alarm],
    now: OffsetDateTime,
) -> Result<Report, OpsError> {
    let mut report = Report::default();
    for alarm in alarms {
        // The decision marks the chosen replicas `draining` in the same write.
        let decision = decide_and_record(
            ports,
            "scale-down",
            alarm,
            Direction::ScaleDown,
            now,
            |_, _, _| {},
        )
        .await?;
        failpoint::hit("scale_down.after_decision");
        report.decision = Some(decision);
    }
    with_lease(ports, "remove", &mut report, || drive_draining(ports, now)).await?;
    Ok(report)
}
