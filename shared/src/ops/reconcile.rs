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

async fn roll_back(ports: &Ports, id: &str, now: OffsetDateTime) -> Result<(), OpsError> {
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
        match ports.cloud.delete_snapshot(id).await {
            Ok(()) => report.did(format!("rotated out snapshot {id}")),
            // Deleted by an earlier run that died before updating the state.
            Err(crate::cloud::CloudError::NotFound { .. }) => {}
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
