//! The steps on one replica that several flows take: roll it back, forget it, delete its
//! volume (proven ours, once detached), finish one whose server vanished.
//!
//! The flows (`scale_up`, `scale_down`, `ready`, `deleted`, `reconcile`) share these and
//! the phase drivers (`creating`, `draining`) instead of reaching into one another.

use super::meta::{labelled_surge, ours};
use super::{refused, OpsError, Ports, Refusal, Report};
use crate::cloud::{CloudError, Filter};
use crate::failpoint;
use crate::model::resource_name;
use crate::model::{Replica, Role};
use std::time::Duration;
use time::OffsetDateTime;

/// Delete whatever exists of replica `r` (found by name and cluster label) and forget
/// it. Only a surge replica, and only resources whose own labels say they are that
/// replica's: anything else is refused (`OpsError::Refused`) and left as it is.
pub(crate) async fn roll_back(
    ports: &Ports,
    r: &Replica,
    now: OffsetDateTime,
) -> Result<(), OpsError> {
    let name = crate::model::resource_name(&ports.cluster, &r.id);
    if r.role != Role::Surge {
        return Err(Refusal::NotSurgeToRollBack {
            name,
            role: r.role.clone(),
        }
        .into());
    }
    let by_name = Filter {
        name: Some(name.clone()),
        metadata: ours(ports),
    };
    let servers = ports.cloud.list_servers(&by_name).await?;
    let volumes = ports.cloud.list_volumes(&by_name).await?;
    // Every resource proven before any is deleted: half a roll-back of something that
    // is not ours would be worse than none.
    let proven = servers
        .iter()
        .map(|s| ("server", &s.id, &s.metadata))
        .chain(volumes.iter().map(|v| ("volume", &v.id, &v.metadata)));
    for (kind, id, meta) in proven {
        labelled_surge(meta, &ports.cluster, &r.id).map_err(|label| Refusal::RollBackNotOurs {
            name: name.clone(),
            kind,
            id: id.clone(),
            label,
        })?;
    }
    failpoint::hit("reconcile.before_rollback");
    for s in &servers {
        ports.cloud.delete_server(&s.id).await?;
    }
    for v in &volumes {
        delete_volume_when_detached(ports, &v.id).await?;
    }
    // A DNS record made at ready outlives a server that was already gone.
    failpoint::hit("reconcile.before_unpublish");
    ports.cloud.unpublish_server(&name).await?;
    failpoint::hit("reconcile.after_rollback");
    forget(ports, &r.id, now).await
}

/// Delete a replica's volume by the id the state records, only if the volume's own labels
/// say it is that surge replica's: the server that would have vouched for it may be gone
/// or never recorded, and the id in the state may be wrong. Already gone: done.
pub(crate) async fn delete_replica_volume(
    ports: &Ports,
    replica: &str,
    volume_id: &str,
) -> Result<(), OpsError> {
    let volume = match ports.cloud.get_volume(volume_id).await {
        Ok(v) => v,
        Err(CloudError::NotFound { .. }) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    labelled_surge(&volume.metadata, &ports.cluster, replica).map_err(|label| {
        Refusal::VolumeNotOurs {
            volume_id: volume_id.into(),
            volume_name: volume.name.clone(),
            replica: replica.into(),
            label,
        }
    })?;
    delete_volume_when_detached(ports, volume_id).await
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
