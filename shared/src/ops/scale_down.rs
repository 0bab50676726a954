//! scale-down: decision → drain on every node → sessions end (bounded) → maint + remove
//! → prove it is a standby → delete server and volume → forget it.

use super::decide::decide_and_record;
use super::desired::split_address;
use super::lease::with_lease;
use super::{phase_metric, secs_between, OpsError, Ports, Report};
use crate::balancer::drain::{self, DrainOptions};
use crate::cloud::{resource_name, CloudError, Endpoint, META_CLUSTER, META_REPLICA, META_ROLE};
use crate::events::{Alarm, Direction};
use crate::failpoint;
use crate::state::{Phase, Replica, Role};
use std::time::Duration;
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

/// Finish every replica recorded as `draining`: the resumable half of scale-down.
pub(crate) async fn drive_draining(ports: &Ports, now: OffsetDateTime) -> Result<Report, OpsError> {
    let mut report = Report::default();
    let state = ports.state.load().await?.state;
    let draining: Vec<Replica> = state
        .replicas
        .iter()
        .filter(|r| matches!(r.phase, Phase::Draining | Phase::Deleting))
        .cloned()
        .collect();
    for r in draining {
        match remove_replica(ports, &r, now).await {
            Ok(done) => report.did(done),
            Err(e) => report.later(format!("{}: {e}", r.id)),
        }
    }
    Ok(report)
}

async fn remove_replica(
    ports: &Ports,
    r: &Replica,
    now: OffsetDateTime,
) -> Result<String, OpsError> {
    // Never touch the primary, nor anything we did not make.
    if r.role != Role::Surge {
        return Err(OpsError::Refused(format!(
            "{} is a {} replica; only surge replicas are removed",
            r.id,
            r.role.as_str()
        )));
    }
    let name = resource_name(&ports.cluster, &r.id);
    let state = ports.state.load().await?.state;
    let fan = ports.fanout(&state);
    if r.phase == Phase::Draining {
        let started = OffsetDateTime::now_utc();
        failpoint::hit("scale_down.before_drain");
        let opts = DrainOptions {
            deadline: Duration::from_secs(ports.haproxy.drain_deadline_secs),
            poll: Duration::from_millis(200),
        };
        let rep = drain::drain_and_remove(&fan, &name, opts).await;
        failpoint::hit("scale_down.after_drain");
        if !rep.remove.all_ok() {
            tracing::warn!(replica = %r.id, failed = ?rep.remove.failed(), "some HAProxy nodes still hold the server; reconcile removes it");
        }
        phase_metric("drain", secs_between(started, OffsetDateTime::now_utc()));
    }
    let started = OffsetDateTime::now_utc();
    if let Some(server_id) = &r.server_id {
        match ports.cloud.get_server(server_id).await {
            Ok(server) => {
                // The cloud's own labels must say this is our surge replica: the state
                // alone may be wrong (a bad edit, a bug), and deleting a base replica
                // or anything else is not undoable.
                let label = |k: &str| server.metadata.get(k).map(String::as_str);
                if label(META_CLUSTER) != Some(ports.cluster.as_str())
                    || label(META_ROLE) != Some("surge")
                    || label(META_REPLICA) != Some(r.id.as_str())
                {
                    return Err(OpsError::Refused(format!(
                        "{name}: server {server_id} is not labelled as surge replica {} of cluster {} in the cloud: refusing to delete it",
                        r.id, ports.cluster
                    )));
                }
                let endpoint = server
                    .endpoint
                    .clone()
                    .or_else(|| {
                        r.address
                            .as_deref()
                            .and_then(split_address)
                            .map(|(host, port)| Endpoint { host, port })
                    })
                    .ok_or_else(|| {
                        OpsError::Refused(format!("{name}: no address to verify it is a standby"))
                    })?;
                // The last line of defence: a server that is not in recovery is a primary
                // (or was promoted): refuse, whatever the state says.
                let status = ports.pg.replica_status(&endpoint).await.map_err(|e| {
                    OpsError::Refused(format!(
                        "{name}: cannot prove it is a standby, not deleting: {e}"
                    ))
                })?;
                if !status.in_recovery {
                    return Err(OpsError::Refused(format!(
                        "{name} is NOT in recovery (a primary?): refusing to delete it"
                    )));
                }
                mark_deleting(ports, &r.id, now).await?;
                failpoint::hit("scale_down.before_delete_server");
                ports.cloud.delete_server(server_id).await?;
                failpoint::hit("scale_down.after_delete_server");
            }
            Err(CloudError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(volume_id) = &r.volume_id {
        failpoint::hit("scale_down.before_delete_volume");
        delete_volume_when_detached(ports, volume_id).await?;
        failpoint::hit("scale_down.after_delete_volume");
    }
    phase_metric("delete", secs_between(started, OffsetDateTime::now_utc()));
    forget(ports, &r.id, now).await?;
    Ok(format!(
        "{name} drained, removed from HAProxy, server and volume deleted"
    ))
}

/// A volume cannot be deleted while its server still holds it: retry briefly.
pub(crate) async fn delete_volume_when_detached(
    ports: &Ports,
    volume_id: &str,
) -> Result<(), OpsError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(ports.ops.resource_wait_secs);
    loop {
        match ports.cloud.delete_volume(volume_id).await {
            Ok(()) => return Ok(()),
            Err(CloudError::Conflict(m)) | Err(CloudError::Transient(m))
                if tokio::time::Instant::now() < deadline =>
            {
                tracing::debug!(volume = volume_id, reason = %m, "volume busy; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

async fn mark_deleting(ports: &Ports, id: &str, now: OffsetDateTime) -> Result<(), OpsError> {
    ports
        .state
        .update(now, |s| -> Result<_, std::convert::Infallible> {
            if let Some(x) = s.replicas.iter_mut().find(|x| x.id == id) {
                x.phase = Phase::Deleting;
            }
            Ok(())
        })
        .await?;
    Ok(())
}

/// Drop the replica from the state and close operations that have nothing left.
pub(crate) async fn forget(ports: &Ports, id: &str, now: OffsetDateTime) -> Result<(), OpsError> {
    ports
        .state
        .update(now, |s| -> Result<_, std::convert::Infallible> {
            s.replicas.retain(|x| x.id != id);
            // The operation no longer waits for it: without this the policy counts it as
            // "decided but not recorded yet" (pending) for as long as a sibling lives,
            // and refuses every scale-down as "during a scale-up".
            for o in s
                .operations
                .iter_mut()
                .filter(|o| o.replicas.iter().any(|r| r == id))
            {
                o.replicas.retain(|r| r != id);
                o.count = o.count.saturating_sub(1);
            }
            let live: Vec<String> = s.replicas.iter().map(|r| r.id.clone()).collect();
            // An operation is done when none of its replicas is left.
            s.operations
                .retain(|o| o.replicas.iter().any(|r| live.contains(r)));
            Ok(())
        })
        .await?;
    Ok(())
}
