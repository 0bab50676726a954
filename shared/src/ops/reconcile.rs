//! reconcile: the level-triggered repair loop. Compares state, cloud and every HAProxy
//! node and moves them toward each other. Safe to run any number of times.
//!
//! In order: replicas whose server vanished are cleaned up; `creating` replicas past
//! their deadline are rolled back, the others resumed, old snapshots rotate; pending
//! replicas are verified and registered; draining ones are finished; every HAProxy
//! node gets the desired set (this restores dynamic servers after an HAProxy reload);
//! resources tagged as ours but unknown to the state are deleted after a grace period.
//! Each step holds the work lease of its kind (see `lease.rs`).

use super::deleted::forget_vanished;
use super::lease::with_lease;
use super::scale_down::{delete_volume_when_detached, drive_draining, forget};
use super::scale_up::{drive_creating, META_CREATED};
use super::{check_pending, OpsError, Ports, Report};
use crate::cloud::{CloudError, Filter, Metadata, META_CLUSTER};
use crate::failpoint;
use crate::state::{Phase, Role};
use std::time::Duration;
use time::OffsetDateTime;

pub async fn reconcile(ports: &Ports, now: OffsetDateTime) -> Result<Report, OpsError> {
    let mut report = Report::default();
    // Each step under the lease of its kind of work, so it never runs beside a
    // scale-up / instance-ready / scale-down doing the same (see ops::lease).
    with_lease(ports, "remove", &mut report, || vanished(ports, now)).await?;
    with_lease(ports, "create", &mut report, || creations(ports, now)).await?;
    report.absorb(check_pending(ports, now, Duration::ZERO).await?);
    with_lease(ports, "remove", &mut report, || drive_draining(ports, now)).await?;
    with_lease(ports, "reconcile", &mut report, || housekeeping(ports, now)).await?;
    Ok(report)
}

/// Step 1: servers gone behind our back: out of HAProxy, volume deleted, forgotten.
async fn vanished(ports: &Ports, now: OffsetDateTime) -> Result<Report, OpsError> {
    let mut report = Report::default();
    let state = ports.state.load().await?.state;
    for r in state.replicas.iter().filter(|r| r.role == Role::Surge) {
        if let Some(id) = &r.server_id {
            if let Err(CloudError::NotFound { .. }) = ports.cloud.get_server(id).await {
                forget_vanished(ports, &r.id, r.volume_id.as_deref(), now, &mut report).await?;
            }
        }
    }
    Ok(report)
}

/// Step 2: creations stuck past their deadline are rolled back (what exists, by name); the
/// others are resumed; old snapshots rotate (here, so never under a running clone).
async fn creations(ports: &Ports, now: OffsetDateTime) -> Result<Report, OpsError> {
    let mut report = Report::default();
    let state = ports.state.load().await?.state;
    let deadline = time::Duration::seconds(ports.ops.creating_deadline_secs as i64);
    for r in state
        .replicas
        .iter()
        .filter(|r| r.phase == Phase::Creating && now - r.created_at > deadline)
    {
        roll_back(ports, &r.id, now).await?;
        report.did(format!(
            "rolled back {} (creating for over {}s)",
            r.id, ports.ops.creating_deadline_secs
        ));
    }
    report.absorb(drive_creating(ports, now).await?);
    report.absorb(rotate_snapshots(ports, now).await?);
    Ok(report)
}

/// Steps 4 and 5: every HAProxy node to the desired set (after a reload, or a node that was
/// down); resources tagged as ours, unknown to the state and older than the grace
/// period are deleted.
async fn housekeeping(ports: &Ports, now: OffsetDateTime) -> Result<Report, OpsError> {
    let mut report = Report::default();
    let state = ports.state.load().await?.state;
    failpoint::hit("reconcile.before_haproxy");
    let rep = ports.fanout(&state).converge_all().await;
    failpoint::hit("reconcile.after_haproxy");
    if rep.all_ok() {
        report.did(format!(
            "HAProxy: {} node(s) match the desired set",
            rep.succeeded()
        ));
    } else {
        report.later(format!("HAProxy nodes to repair: {:?}", rep.failed()));
    }
    report.absorb(delete_orphans(ports, &state, now).await?);
    Ok(report)
}

/// Delete whatever exists of replica `id` (found by name) and forget it.
pub(crate) async fn roll_back(
    ports: &Ports,
    id: &str,
    now: OffsetDateTime,
) -> Result<(), OpsError> {
    let name = crate::cloud::resource_name(&ports.cluster, id);
    let by_name = Filter {
        name: Some(name),
        metadata: ours(ports),
    };
    failpoint::hit("reconcile.before_rollback");
    for s in ports.cloud.list_servers(&by_name).await? {
        ports.cloud.delete_server(&s.id).await?;
    }
    for v in ports.cloud.list_volumes(&by_name).await? {
        delete_volume_when_detached(ports, &v.id).await?;
    }
    // A DNS record made at ready outlives a server that was already gone.
    failpoint::hit("reconcile.before_unpublish");
    ports
        .cloud
        .unpublish_server(&crate::cloud::resource_name(&ports.cluster, id))
        .await?;
    failpoint::hit("reconcile.after_rollback");
    forget(ports, id, now).await
}

fn ours(ports: &Ports) -> Metadata {
    [(META_CLUSTER.to_string(), ports.cluster.clone())].into()
}

fn older_than_grace(meta: &Metadata, now: OffsetDateTime, grace: u64) -> bool {
    meta.get(META_CREATED)
        .and_then(|t| OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok())
        .map(|t| (now - t).whole_seconds() >= grace as i64)
        // No timestamp: not made by this code path; leave it to a human.
        .unwrap_or(false)
}

async fn delete_orphans(
    ports: &Ports,
    state: &crate::state::ClusterState,
    now: OffsetDateTime,
) -> Result<Report, OpsError> {
    let mut report = Report::default();
    let filter = Filter {
        name: None,
        metadata: ours(ports),
    };
    let grace = ports.ops.orphan_grace_secs;
    let known_servers: Vec<&str> = state
        .replicas
        .iter()
        .filter_map(|r| r.server_id.as_deref())
        .collect();
    let known_volumes: Vec<&str> = state
        .replicas
        .iter()
        .filter_map(|r| r.volume_id.as_deref())
        .collect();
    let known_replicas: Vec<&str> = state.replicas.iter().map(|r| r.id.as_str()).collect();
    let is_known = |meta: &Metadata| {
        meta.get(crate::cloud::META_REPLICA)
            .map(|r| known_replicas.contains(&r.as_str()))
            .unwrap_or(false)
    };
    for s in ports.cloud.list_servers(&filter).await? {
        if !known_servers.contains(&s.id.as_str())
            && !is_known(&s.metadata)
            && older_than_grace(&s.metadata, now, grace)
        {
            failpoint::hit("reconcile.before_delete_orphan");
            ports.cloud.delete_server(&s.id).await?;
            failpoint::hit("reconcile.after_delete_orphan");
            report.did(format!("deleted orphan server {}", s.name));
        }
    }
    for v in ports.cloud.list_volumes(&filter).await? {
        if !known_volumes.contains(&v.id.as_str())
            && !is_known(&v.metadata)
            && older_than_grace(&v.metadata, now, grace)
        {
            failpoint::hit("reconcile.before_delete_orphan");
            match delete_volume_when_detached(ports, &v.id).await {
                Ok(()) => {
                    failpoint::hit("reconcile.after_delete_orphan");
                    report.did(format!("deleted orphan volume {}", v.name))
                }
                Err(e) => report.later(format!("orphan volume {}: {e}", v.name)),
            }
        }
    }
    Ok(report)
}

async fn rotate_snapshots(ports: &Ports, now: OffsetDateTime) -> Result<Report, OpsError> {
    let mut report = Report::default();
    let state = ports.state.load().await?.state;
    let mut snaps = state.snapshots.clone();
    snaps.sort_by_key(|s| std::cmp::Reverse(s.created_at));
    let old: Vec<String> = snaps
        .iter()
        .skip(ports.ops.snapshot_keep)
        .map(|s| s.id.clone())
        .collect();
    for id in &old {
        failpoint::hit("reconcile.before_rotate");
        match rotate_one(ports.cloud.as_ref(), id).await {
            Ok(Rotation::Gone) => report.did(format!("rotated out snapshot {id}")),
            // Accepted but still there (Cinder deletes asynchronously; `error_deleting`):
            // stays in the state, so the next reconcile looks (and asks) again.
            Ok(Rotation::Pending(status)) => {
                report.later(format!("snapshot {id}: delete requested, still {status}"));
                continue;
            }
            // Volumes cloned from it may still depend on it (Cinder): try next time.
            Err(e) => {
                report.later(format!("snapshot {id}: {e}"));
                continue;
            }
        }
        failpoint::hit("reconcile.after_rotate");
        let id = id.clone();
        ports
            .state
            .update(now, |s| -> Result<_, std::convert::Infallible> {
                s.snapshots.retain(|x| x.id != id);
                Ok(())
            })
            .await?;
    }
    Ok(report)
}

/// What one rotation step found.
#[derive(Debug, PartialEq)]
enum Rotation {
    /// A look after the delete finds it no more: it may leave the state.
    Gone,
    /// The delete was accepted (or already under way) but the snapshot is still there,
    /// in this status.
    Pending(String),
}

/// Ask for the delete, then look: a snapshot leaves the state only once the cloud says
/// it is gone. Cinder answers 202 and deletes later; one that ends in `error_deleting`
/// would otherwise be dropped from the state while it still exists, untracked forever.
async fn rotate_one(cloud: &dyn crate::cloud::Cloud, id: &str) -> Result<Rotation, CloudError> {
    match cloud.delete_snapshot(id).await {
        // NotFound: deleted by an earlier run that died before updating the state
        Ok(()) | Err(CloudError::NotFound { .. }) => {}
        Err(e) => return Err(e),
    }
    match cloud.get_snapshot(id).await {
        Err(CloudError::NotFound { .. }) => Ok(Rotation::Gone),
        Ok(s) => Ok(Rotation::Pending(match s.status {
            crate::cloud::Status::Other(o) => o,
            other => format!("{other:?}").to_lowercase(),
        })),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::{
        Cloud, Result as CloudResult, Server, ServerRequest, Snapshot, SnapshotRequest, Status,
        Volume, VolumeRequest,
    };
    use async_trait::async_trait;
    use std::sync::Mutex;

    /// Snapshots only: what a delete turns a snapshot into (`None` = gone).
    struct Snaps {
        status: Mutex<Option<Status>>,
        after_delete: Option<Status>,
    }

    fn unused<T>() -> CloudResult<T> {
        Err(CloudError::Fatal("not used by this test".into()))
    }

    #[async_trait]
    impl Cloud for Snaps {
        fn kind(&self) -> &'static str {
            "snapshots-only"
        }
        async fn create_snapshot(&self, _: &SnapshotRequest) -> CloudResult<Snapshot> {
            unused()
        }
        async fn get_snapshot(&self, id: &str) -> CloudResult<Snapshot> {
            match self.status.lock().unwrap().clone() {
                None => Err(CloudError::NotFound {
                    kind: "snapshot",
                    id: id.into(),
                }),
                Some(status) => Ok(Snapshot {
                    id: id.into(),
                    name: "pgsurge-c-snap".into(),
                    volume_id: "v".into(),
                    status,
                    size_gb: 1,
                    created_at: String::new(),
                    az: None,
                    metadata: Metadata::new(),
                }),
            }
        }
        async fn list_snapshots(&self, _: &Filter) -> CloudResult<Vec<Snapshot>> {
            unused()
        }
        async fn delete_snapshot(&self, id: &str) -> CloudResult<()> {
            let mut s = self.status.lock().unwrap();
            if s.is_none() {
                return Err(CloudError::NotFound {
                    kind: "snapshot",
                    id: id.into(),
                });
            }
            *s = self.after_delete.clone();
            Ok(())
        }
        async fn create_volume(&self, _: &VolumeRequest) -> CloudResult<Volume> {
            unused()
        }
        async fn get_volume(&self, _: &str) -> CloudResult<Volume> {
            unused()
        }
        async fn list_volumes(&self, _: &Filter) -> CloudResult<Vec<Volume>> {
            unused()
        }
        async fn delete_volume(&self, _: &str) -> CloudResult<()> {
            unused()
        }
        async fn create_server(&self, _: &ServerRequest) -> CloudResult<Server> {
            unused()
        }
        async fn get_server(&self, _: &str) -> CloudResult<Server> {
            unused()
        }
        async fn list_servers(&self, _: &Filter) -> CloudResult<Vec<Server>> {
            unused()
        }
        async fn delete_server(&self, _: &str) -> CloudResult<()> {
            unused()
        }
    }

    fn cloud(now: Option<Status>, after_delete: Option<Status>) -> Snaps {
        Snaps {
            status: Mutex::new(now),
            after_delete,
        }
    }

    #[tokio::test]
    async fn an_accepted_delete_is_not_a_deleted_snapshot() {
        // Cinder took the delete (202) and then failed it: still there, in error_deleting
        let c = cloud(Some(Status::Ready), Some(Status::Error));
        assert_eq!(
            rotate_one(&c, "s1").await.unwrap(),
            Rotation::Pending("error".into())
        );
        // ... or is still working on it
        let c = cloud(Some(Status::Ready), Some(Status::Deleting));
        assert_eq!(
            rotate_one(&c, "s1").await.unwrap(),
            Rotation::Pending("deleting".into())
        );
    }

    #[tokio::test]
    async fn only_a_look_that_finds_nothing_drops_it() {
        // deleted at once (the local provider)
        let c = cloud(Some(Status::Ready), None);
        assert_eq!(rotate_one(&c, "s1").await.unwrap(), Rotation::Gone);
        // deleted by an earlier run that died before updating the state
        let c = cloud(None, None);
        assert_eq!(rotate_one(&c, "s1").await.unwrap(), Rotation::Gone);
    }
}
