//! reconcile: the level-triggered repair loop. Compares state, cloud and every HAProxy
//! node and moves them toward each other. Safe to run any number of times.
//!
//! In order: replicas whose server vanished are cleaned up; `creating` replicas past
//! their deadline are rolled back, the others resumed, old snapshots rotate; pending
//! replicas are verified and registered; draining ones are finished; every HAProxy
//! node gets the desired set (this restores dynamic servers after an HAProxy reload);
//! resources tagged as ours but unknown to the state are deleted after a grace period
//! counted from when reconcile first saw them unknown. Each step holds the work lease of
//! its kind (see `lease.rs`).
//!
//! An absent state document is not an empty cluster: while resources labelled with the
//! cluster exist, reconcile refuses to run at all (see [`absent_state`]).

use super::creating::drive_creating;
use super::draining::drive_draining;
use super::lease::with_lease;
use super::meta::{labelled_surge, ours};
use super::replica_steps::{delete_volume_when_detached, forget_vanished, roll_back};
use super::requeue::{requeue_after, ReconcileOutcome};
use super::verifying::drive_pending;
use super::{refused, OpsError, Ports, Report};
use crate::cloud::{
    CloudError, Filter, Metadata, Server, Snapshot, Volume, META_CLUSTER, META_OP, META_REPLICA,
};
use crate::failpoint;
use crate::model::resource_name;
use crate::model::META_CREATED;
use crate::model::{ClusterState, Phase, Role, Timestamp};
use crate::policy::snapshot_ahead::snapshot_zone;
use std::time::Duration;
use time::OffsetDateTime;

/// One reconcile run: what it did, what it left pending, and when it wants to run again.
pub async fn reconcile(ports: &Ports, now: OffsetDateTime) -> Result<ReconcileOutcome, OpsError> {
    let report = converge(ports, now).await?;
    let state = ports.state.load().await?.state;
    let requeue_after = requeue_after(&state, &report.pending, &ports.ops, now);
    tracing::info!(
        actions = report.actions.len(),
        pending = ?report.pending,
        requeue_after_secs = requeue_after.map(|d| d.as_secs()),
        "reconciled"
    );
    Ok(ReconcileOutcome {
        report,
        requeue_after,
    })
}

async fn converge(ports: &Ports, now: OffsetDateTime) -> Result<Report, OpsError> {
    let mut report = Report::default();
    if let Some(why) = absent_state(ports).await? {
        // Return before any step: each takes a lease, and the lease's write would create
        // the document, after which the next tick would take the empty document for the
        // truth. With no document every other step has nothing to do anyway.
        tracing::error!(reason = %why, "reconcile refused");
        report.later(format!("refused: {why}"));
        return Ok(report);
    }
    // Each step under the lease of its kind of work, so it never runs beside a
    // scale-up / instance-ready / scale-down doing the same (see ops::lease).
    with_lease(ports, "remove", &mut report, || vanished(ports, now)).await?;
    report.absorb(super::scheduled::enforce_floor(ports, now).await?);
    with_lease(ports, "create", &mut report, || creations(ports, now)).await?;
    with_lease(ports, "register", &mut report, || {
        drive_pending(ports, now, Duration::ZERO)
    })
    .await?;
    with_lease(ports, "remove", &mut report, || drive_draining(ports, now)).await?;
    // Its own lease: a snapshot taken ahead never holds up an alarm's `create` work.
    with_lease(ports, "snapshot", &mut report, || {
        super::snapshot_ahead::keep_fresh(ports, now)
    })
    .await?;
    with_lease(ports, "reconcile", &mut report, || housekeeping(ports, now)).await?;
    Ok(report)
}

/// `Some(why)` when no state document is stored while the cloud holds resources labelled
/// with this cluster. Read as an empty cluster, that would converge every HAProxy node to
/// the empty set and make every replica an orphan: a wrong bucket or prefix, a lifecycle
/// rule or a slip of the hand would empty the read tier. `status` reports the same.
pub(crate) async fn absent_state(ports: &Ports) -> Result<Option<String>, OpsError> {
    if ports.state.load().await?.version.is_some() {
        return Ok(None);
    }
    let filter = Filter {
        name: None,
        metadata: ours(ports),
    };
    let servers = ports.cloud.list_servers(&filter).await?;
    let volumes = ports.cloud.list_volumes(&filter).await?;
    if servers.is_empty() && volumes.is_empty() {
        // A new cluster: nothing to lose.
        return Ok(None);
    }
    Ok(Some(format!(
        "the state document {} is absent from {}, but the cloud holds {} server(s) and {} \
         volume(s) labelled {META_CLUSTER}={}: not converging HAProxy nodes and not deleting \
         orphans (an absent document is not an empty cluster); restore the document, or \
         check the state store's bucket and prefix",
        ports.state.key(),
        ports.state.describe(),
        servers.len(),
        volumes.len(),
        ports.cluster
    )))
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
        match roll_back(ports, r, now).await {
            Ok(()) => report.did(format!(
                "rolled back {} (creating for over {}s)",
                r.id, ports.ops.creating_deadline_secs
            )),
            Err(OpsError::Refused(why)) => refused(ports, &r.id, &why, now, &mut report).await?,
            Err(e) => return Err(e),
        }
    }
    report.absorb(drive_creating(ports, now).await?);
    report.absorb(rotate_snapshots(ports, now).await?);
    Ok(report)
}

/// Steps 4 and 5: every HAProxy node to the desired set (after a reload, or a node that was
/// down); resources labelled as our surge replicas, and snapshots scale-up took, unknown to
/// the state for longer than the grace period, are deleted.
async fn housekeeping(ports: &Ports, now: OffsetDateTime) -> Result<Report, OpsError> {
    let mut report = Report::default();
    let filter = Filter {
        name: None,
        metadata: ours(ports),
    };
    let servers = ports.cloud.list_servers(&filter).await?;
    let volumes = ports.cloud.list_volumes(&filter).await?;
    let snapshots = ports.cloud.list_snapshots(&filter).await?;
    let state = note_unknown(ports, &servers, &volumes, &snapshots, now).await?;
    let grace = time::Duration::seconds(ports.ops.orphan_grace_secs as i64);
    let past_grace = |kind: &str, id: &str| {
        state
            .unknown_since
            .get(&unknown_key(kind, id))
            .is_some_and(|t| now - t.0 >= grace)
    };
    // A server we do not know yet may be serving (the state was lost or replaced):
    // the desired set does not hold it, so convergence would take it out of HAProxy.
    // Not before its grace ends, like the server itself.
    let young: Vec<&str> = servers
        .iter()
        .filter(|s| {
            is_unknown(&state, "server", &s.id, &s.metadata) && !past_grace("server", &s.id)
        })
        .map(|s| s.name.as_str())
        .collect();
    let held = held_by_nodes(ports, &young).await;
    if !held.is_empty() {
        report.later(format!(
            "refused: not converging HAProxy nodes: they hold {} of server(s) labelled \
             {META_CLUSTER}={} that the state does not know, within their orphan grace \
             ({}s from when first seen unknown)",
            held.join(", "),
            ports.cluster,
            ports.ops.orphan_grace_secs
        ));
    } else {
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
    }
    let mut deleted = Vec::new();
    for s in &servers {
        if is_unknown(&state, "server", &s.id, &s.metadata) && past_grace("server", &s.id) {
            if let Some(why) = not_an_orphan(&ports.cluster, &s.metadata) {
                report.later(format!(
                    "server {} unknown to the state, left: {why}",
                    s.name
                ));
                continue;
            }
            failpoint::hit("reconcile.before_delete_orphan");
            ports.cloud.delete_server(&s.id).await?;
            failpoint::hit("reconcile.after_delete_orphan");
            deleted.push(unknown_key("server", &s.id));
            report.did(format!("deleted orphan server {}", s.name));
        }
    }
    for v in &volumes {
        if is_unknown(&state, "volume", &v.id, &v.metadata) && past_grace("volume", &v.id) {
            if let Some(why) = not_an_orphan(&ports.cluster, &v.metadata) {
                report.later(format!(
                    "volume {} unknown to the state, left: {why}",
                    v.name
                ));
                continue;
            }
            failpoint::hit("reconcile.before_delete_orphan");
            match delete_volume_when_detached(ports, &v.id).await {
                Ok(()) => {
                    failpoint::hit("reconcile.after_delete_orphan");
                    deleted.push(unknown_key("volume", &v.id));
                    report.did(format!("deleted orphan volume {}", v.name))
                }
                Err(e) => report.later(format!("orphan volume {}: {e}", v.name)),
            }
        }
    }
    // A snapshot that scale-up took but never recorded (killed in between, and no retry
    // came), or that only a lost document recorded, would be paid for forever.
    for snap in &snapshots {
        if !snapshot_unknown(&state, &snap.id, &snap.name) || !past_grace("snapshot", &snap.id) {
            continue;
        }
        if let Some(why) = not_an_orphan_snapshot(&ports.cluster, snap) {
            report.later(format!(
                "snapshot {} unknown to the state, left: {why}",
                snap.name
            ));
            continue;
        }
        failpoint::hit("reconcile.before_delete_orphan");
        match rotate_one(ports.cloud.as_ref(), &snap.id).await {
            Ok(Rotation::Gone) => {
                failpoint::hit("reconcile.after_delete_orphan");
                deleted.push(unknown_key("snapshot", &snap.id));
                report.did(format!("deleted orphan snapshot {}", snap.name));
            }
            Ok(Rotation::Pending(status)) => report.later(format!(
                "orphan snapshot {}: delete requested, still {status}",
                snap.name
            )),
            Err(e) => report.later(format!("orphan snapshot {}: {e}", snap.name)),
        }
    }
    if !deleted.is_empty() {
        ports
            .state
            .update(now, |s| -> Result<_, std::convert::Infallible> {
                s.unknown_since.retain(|k, _| !deleted.contains(k));
                Ok(())
            })
            .await?;
    }
    Ok(report)
}

fn unknown_key(kind: &str, id: &str) -> String {
    format!("{kind}:{id}")
}

/// A labelled resource the state knows neither by id nor by the replica it names.
fn is_unknown(state: &ClusterState, kind: &str, id: &str, meta: &Metadata) -> bool {
    let recorded = state.replicas.iter().any(|r| {
        let rid = if kind == "server" {
            &r.server_id
        } else {
            &r.volume_id
        };
        rid.as_deref() == Some(id)
    });
    let named = meta
        .get(META_REPLICA)
        .is_some_and(|n| state.replica(n).is_some());
    !recorded && !named
}

/// A labelled snapshot the state does not record (nor an intent to take it ahead).
fn snapshot_unknown(state: &ClusterState, id: &str, name: &str) -> bool {
    !state.snapshots.iter().any(|s| s.id == id) && !super::snapshot_ahead::intended(state, name)
}

/// Record when each labelled resource was first seen unknown to the state (and forget
/// those no longer unknown). Returns the state as written.
async fn note_unknown(
    ports: &Ports,
    servers: &[Server],
    volumes: &[Volume],
    snapshots: &[Snapshot],
    now: OffsetDateTime,
) -> Result<ClusterState, OpsError> {
    let (_, written) = ports
        .state
        .update(now, |s| -> Result<_, std::convert::Infallible> {
            let unknown: Vec<String> = servers
                .iter()
                .filter(|x| is_unknown(s, "server", &x.id, &x.metadata))
                .map(|x| unknown_key("server", &x.id))
                .chain(
                    volumes
                        .iter()
                        .filter(|x| is_unknown(s, "volume", &x.id, &x.metadata))
                        .map(|x| unknown_key("volume", &x.id)),
                )
                .chain(
                    snapshots
                        .iter()
                        .filter(|x| snapshot_unknown(s, &x.id, &x.name))
                        .map(|x| unknown_key("snapshot", &x.id)),
                )
                .collect();
            s.unknown_since.retain(|k, _| unknown.contains(k));
            for k in unknown {
                s.unknown_since.entry(k).or_insert(Timestamp(now));
            }
            Ok(())
        })
        .await?;
    Ok(written.state)
}

/// Why an unknown labelled resource is still not deleted as an orphan, if it is not:
/// only what scale-up made (a creation time) and labels as a surge replica qualifies.
fn not_an_orphan(cluster: &str, meta: &Metadata) -> Option<String> {
    let replica = meta.get(META_REPLICA).map(String::as_str).unwrap_or("");
    if let Err(why) = labelled_surge(meta, cluster, replica) {
        return Some(format!("not labelled as a surge replica ({why})"));
    }
    // No timestamp: not made by scale-up; leave it to a human.
    if !meta.contains_key(META_CREATED) {
        return Some(format!(
            "no {META_CREATED} label: not made by pgsurge's scale-up"
        ));
    }
    None
}

/// Why an unknown snapshot labelled with the cluster is not deleted as an orphan, if it
/// is not: only one scale-up took — its operation and creation labels, and the name
/// scale-up gives it (`<cluster>-snap-<op>`). An operator's own snapshot of a replica's
/// volume carries none of that.
fn not_an_orphan_snapshot(cluster: &str, snap: &Snapshot) -> Option<String> {
    let meta = &snap.metadata;
    if meta.get(META_CLUSTER).map(String::as_str) != Some(cluster) {
        return Some(format!("not labelled {META_CLUSTER}={cluster}"));
    }
    let Some(op) = meta.get(META_OP) else {
        return Some(format!(
            "no {META_OP} label: not taken by pgsurge's scale-up"
        ));
    };
    if !meta.contains_key(META_CREATED) {
        return Some(format!(
            "no {META_CREATED} label: not taken by pgsurge's scale-up"
        ));
    }
    let expected = resource_name(cluster, &format!("snap-{op}"));
    if snap.name != expected {
        return Some(format!(
            "named {}, not {expected} as scale-up names its snapshots",
            snap.name
        ));
    }
    None
}

/// The names in `names` that some reachable HAProxy node holds.
async fn held_by_nodes(ports: &Ports, names: &[&str]) -> Vec<String> {
    if names.is_empty() {
        return Vec::new();
    }
    let mut held = Vec::new();
    for n in &ports.nodes {
        // An unreachable node is the fan-out's business; it holds nothing we can see.
        if let Ok(list) = n.list_servers().await {
            for s in list {
                if names.contains(&s.name.as_str()) && !held.contains(&s.name) {
                    held.push(s.name);
                }
            }
        }
    }
    held.sort();
    held
}

async fn rotate_snapshots(ports: &Ports, now: OffsetDateTime) -> Result<Report, OpsError> {
    let mut report = Report::default();
    let state = ports.state.load().await?.state;
    let mut snaps = state.snapshots.clone();
    snaps.sort_by_key(|s| std::cmp::Reverse(s.created_at));
    // `snapshot_keep` per availability zone: a clone lands in its snapshot's zone.
    let mut kept: std::collections::BTreeMap<String, usize> = Default::default();
    let old: Vec<String> = snaps
        .iter()
        .filter(|s| {
            let n = kept.entry(snapshot_zone(&state, s)).or_default();
            *n += 1;
            *n > ports.ops.snapshot_keep
        })
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

    #[test]
    fn only_a_snapshot_scale_up_took_is_an_orphan() {
        let snap = |name: &str, meta: &[(&str, &str)]| Snapshot {
            id: "s1".into(),
            name: name.into(),
            volume_id: "v1".into(),
            status: Status::Ready,
            size_gb: 1,
            created_at: "2026-12-06T00:00:00Z".into(),
            az: None,
            metadata: meta
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        let full = [
            (META_CLUSTER, "c"),
            (META_OP, "op1"),
            (META_CREATED, "2026-12-06T00:00:00Z"),
        ];
        assert_eq!(
            not_an_orphan_snapshot("c", &snap("pgsurge-c-snap-op1", &full)),
            None
        );
        // Another cluster's, an operator's (no op / creation label), a renamed one.
        let other = [(META_CLUSTER, "d"), full[1], full[2]];
        assert!(not_an_orphan_snapshot("c", &snap("pgsurge-d-snap-op1", &other)).is_some());
        let no_op = [full[0], full[2]];
        let why = not_an_orphan_snapshot("c", &snap("pgsurge-c-snap-op1", &no_op)).unwrap();
        assert!(why.contains(META_OP), "{why}");
        let no_created = [full[0], full[1]];
        assert!(not_an_orphan_snapshot("c", &snap("pgsurge-c-snap-op1", &no_created)).is_some());
        let why = not_an_orphan_snapshot("c", &snap("nightly-backup", &full)).unwrap();
        assert!(why.contains("pgsurge-c-snap-op1"), "{why}");
    }
}
