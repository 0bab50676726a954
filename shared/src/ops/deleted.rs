//! instance-deleted: a server vanished (cloud event, or found gone by reconcile):
//! unregister it everywhere, delete its volume if it is ours, forget it.

use super::lease::with_lease;
use super::replica_steps::forget_vanished;
use super::{OpsError, Ports, Refusal, Report};
use crate::cloud::CloudError;
use crate::events::InstanceEvent;
use crate::model::Role;
use time::OffsetDateTime;

pub async fn instance_deleted(
    ports: &Ports,
    ev: &InstanceEvent,
    now: OffsetDateTime,
) -> Result<Report, OpsError> {
    let state = ports.state.load().await?.state;
    let replica = state
        .replicas
        .iter()
        .find(|r| {
            ev.replica_id.as_deref() == Some(r.id.as_str())
                || (ev.server_id.is_some() && ev.server_id == r.server_id)
        })
        .cloned();
    let mut report = Report::default();
    let Some(r) = replica else {
        report.did("no replica of ours has this server; nothing to do".to_string());
        return Ok(report);
    };
    if r.role != Role::Surge {
        return Err(Refusal::BaseReplicaGone {
            replica: r.id.clone(),
        }
        .into());
    }
    // Trust the cloud, not the event: only act when the server is really gone.
    if let Some(id) = &r.server_id {
        match ports.cloud.get_server(id).await {
            Err(CloudError::NotFound { .. }) => {}
            Ok(_) => {
                report.later(format!(
                    "server {id} still exists; ignoring the deletion event"
                ));
                return Ok(report);
            }
            Err(e) => return Err(e.into()),
        }
    }
    with_lease(ports, "remove", &mut report, || async {
        let mut done = Report::default();
        forget_vanished(ports, &r.id, r.volume_id.as_deref(), now, &mut done).await?;
        Ok(done)
    })
    .await?;
    Ok(report)
}
