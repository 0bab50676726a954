//! instance-deleted: a server vanished (cloud event, or found gone by reconcile):
//! unregister it everywhere, delete its volume if it is ours, forget it.

use super::lease::with_lease;
use super::scale_down::{delete_replica_volume, forget};
use super::{refused, OpsError, Ports, Refusal, Report};
use crate::cloud::CloudError;
use crate::events::InstanceEvent;
use crate::failpoint;
use crate::model::resource_name;
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

/// The server is gone: out of every HAProxy, volume deleted, replica forgotten.
pub(crate) async fn forget_vanished(
    ports: &Ports,
    id: &str,
    volume: Option<&str>,
    now: OffsetDateTime,
    report: &mut Report,
) -> Result<(), OpsError> {
    let name = resource_name(&ports.cluster, id);
    let state = ports.state.load().await?.state;
    failpoint::hit("deleted.before_unregister");
    let rep = ports.fanout(&state).remove_server(&name).await;
    failpoint::hit("deleted.after_unregister");
    if !rep.all_ok() {
        tracing::warn!(replica = id, failed = ?rep.failed(), "some HAProxy nodes unreachable; reconcile removes it there");
    }
    if let Some(v) = volume {
        failpoint::hit("deleted.before_delete_volume");
        // By the id in the state, with no server left to vouch for it: only when the
        // volume's own labels say it is this surge replica's. Otherwise the replica stays
        // (refused, recorded), so status shows it and a human decides.
        match delete_replica_volume(ports, id, v).await {
            Ok(()) => {}
            Err(OpsError::Refused(why)) => return refused(ports, id, &why, now, report).await,
            Err(e) => return Err(e),
        }
        failpoint::hit("deleted.after_delete_volume");
    }
    // What the provider made beside the server (a DNS record): by name, since the
    // server that would tell more is gone. Before forgetting, so a failure here is
    // retried by the next reconcile rather than leaked.
    failpoint::hit("deleted.before_unpublish");
    ports.cloud.unpublish_server(&name).await?;
    failpoint::hit("deleted.after_unpublish");
    forget(ports, id, now).await?;
    report.did(format!(
        "{name}: server gone; unregistered, volume deleted, forgotten"
    ));
    Ok(())
}
