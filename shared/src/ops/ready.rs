//! instance-ready / tick: verify each replica coming up ourselves, then register it in
//! every HAProxy node (see [`super::verifying`]).

use super::lease::with_lease;
use super::verifying::drive_pending;
use super::{OpsError, Ports, Report};
use std::time::Duration;
use time::OffsetDateTime;

/// Look at every replica still coming up; keep polling up to `wait` for those not
/// ready yet, then leave them for the next tick. Under the `register` lease.
pub async fn check_pending(
    ports: &Ports,
    now: OffsetDateTime,
    wait: Duration,
) -> Result<Report, OpsError> {
    let mut report = Report::default();
    with_lease(ports, "register", &mut report, || {
        drive_pending(ports, now, wait)
    })
    .await?;
    Ok(report)
}
