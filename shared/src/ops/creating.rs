//! Creating replicas: the recorded `creating` replicas made real (snapshot → volumes →
//! servers), the resumable half of scale-up that reconcile and the scheduled floor drive too.

use super::meta::{snapshot_labels, surge_labels};
use super::snapshot_ahead::{primary_wal, too_much_wal};
use super::{phase_metric, secs_between, update_replica, OpsError, Ports, Refusal, Report};
use crate::cloud::{
    self, ensure_server, ensure_snapshot, ensure_volume, Metadata, ServerRequest, SnapshotRequest,
    Status, VolumeRequest,
};
use crate::failpoint;
use crate::model::resource_name;
use crate::model::{ClusterState, OpKind, Phase, Replica, Role, Snapshot};
use crate::node::{InstanceParams, ParamsError};
use crate::policy::snapshot_ahead::{
    usable, SnapshotSource, EXTRA_AZ, EXTRA_OP, EXTRA_ORIGIN, EXTRA_PRIMARY_LSN,
};
use crate::postgres::bootstrap::UserData;
use std::collections::BTreeMap;
use std::time::Duration;
use time::OffsetDateTime;

/// Replica `extra` key: the flavor the decision asked for (absent: the provider's
/// configured one). Recorded with the replica, so a scale-up resumed by another run (or
/// by reconcile) boots the server with the flavor that was decided, not a default.
const EXTRA_FLAVOR: &str = "flavor";

/// The flavor recorded for a replica, if the decision named one.
fn flavor_of(r: &Replica) -> Option<String> {
    r.extra
        .get(EXTRA_FLAVOR)
        .and_then(|v| v.as_str())
        .map(str::to_string)
}

/// Add the operation's replicas to the state, phase `creating`, before any cloud call.
/// Shared by scale-up (an alarm's decision) and the reconcile tick's floor
/// (`scheduled.rs`): both record in the decision's own compare-and-swap.
pub(crate) fn plan_replicas(
    state: &mut ClusterState,
    op: &str,
    add: u32,
    flavor: Option<&str>,
    az: Option<String>,
    now: OffsetDateTime,
) {
    let ids: Vec<String> = (1..=add).map(|i| format!("s{op}-{i}")).collect();
    let mut extra = BTreeMap::new();
    if let Some(f) = flavor {
        extra.insert(EXTRA_FLAVOR.into(), serde_json::Value::String(f.into()));
    }
    for id in &ids {
        if state.replica(id).is_none() {
            state.replicas.push(Replica {
                id: id.clone(),
                role: Role::Surge,
                phase: Phase::Creating,
                server_id: None,
                volume_id: None,
                az: az.clone(),
                address: None,
                created_at: now,
                op_id: Some(op.to_string()),
                since: Default::default(),
                extra: extra.clone(),
            });
        }
    }
    if let Some(o) = state
        .operations
        .iter_mut()
        .find(|o| o.id == op && o.kind == OpKind::ScaleUp)
    {
        o.replicas = ids;
    }
}

/// Create everything recorded as `creating`: the resumable half of scale-up.
pub(crate) async fn drive_creating(ports: &Ports, now: OffsetDateTime) -> Result<Report, OpsError> {
    let mut report = Report::default();
    let current = ports.state.load().await?.state;
    // Only surge replicas are made here; a base replica recorded `creating` (a bad edit)
    // is not adopted as one. Past the creating deadline a replica is reconcile's to roll
    // back (or, refused, for a human), not to resume.
    let deadline = time::Duration::seconds(ports.ops.creating_deadline_secs as i64);
    let creating: Vec<Replica> = current
        .replicas
        .iter()
        .filter(|r| {
            r.phase == Phase::Creating && r.role == Role::Surge && now - r.created_at <= deadline
        })
        .cloned()
        .collect();
    if creating.is_empty() {
        return Ok(report);
    }
    let op = creating[0].op_id.as_deref().unwrap_or("manual");
    let az = creating[0].az.as_deref();
    let (snapshot, source) = pick_snapshot(ports, &current, op, az, now, &mut report).await?;
    super::snapshot_ahead::say_which(ports, op, &snapshot, source, now).await?;
    let jobs = creating
        .iter()
        .map(|r| create_replica(ports, r, &snapshot.id, now));
    for result in futures::future::join_all(jobs).await {
        match result {
            Ok(r) => report.absorb(r),
            Err(e) => report.later(format!("create failed, will retry: {e}")),
        }
    }
    Ok(report)
}

/// A fresh enough snapshot of ours (in the replicas' zone first, then the freshest: see
/// `policy::snapshot_ahead::usable`), or a new one of a serving replica's volume; and
/// where it came from.
async fn pick_snapshot(
    ports: &Ports,
    state: &ClusterState,
    op: &str,
    az: Option<&str>,
    now: OffsetDateTime,
    report: &mut Report,
) -> Result<(Snapshot, SnapshotSource), OpsError> {
    let max_age = time::Duration::seconds(ports.ops.snapshot_max_age_secs as i64);
    let candidates = usable(state, now, max_age, az);
    // Young enough is not enough: its clone streams the WAL written since from the
    // primary, which may no longer keep the start of it.
    // Read only when there is something to judge; `None` = not read yet.
    let checked = match candidates.is_empty() {
        true => None,
        false => Some(primary_wal(ports).await),
    };
    let primary = checked.clone().flatten();
    for s in candidates {
        if let Some(why) = too_much_wal(ports, s, primary.as_ref()) {
            tracing::warn!(op, reason = %why, "recorded snapshot not cloned");
            report.did(format!("not cloned: {why}"));
            continue;
        }
        match ports.cloud.get_snapshot(&s.id).await {
            Ok(snap) if snap.status == Status::Ready => {
                return Ok((s.clone(), SnapshotSource::of_recorded(s, op)))
            }
            Ok(_) | Err(cloud::CloudError::NotFound { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    // Snapshot a serving replica: a base one first (it is the long-lived, warm one).
    let source = state
        .replicas
        .iter()
        .filter(|r| r.phase == Phase::Serving && r.volume_id.is_some())
        .min_by_key(|r| (r.role != Role::Base, r.created_at))
        .ok_or(Refusal::NoSnapshotSource)?;
    let started = OffsetDateTime::now_utc();
    // Read before the request: the WAL its clones stream starts about here. Read again
    // (the position moved while the candidates were judged) unless the primary already
    // failed to answer on this run: a second connect timeout would only delay the alarm.
    let primary_lsn = match checked {
        Some(None) => None,
        _ => primary_wal(ports).await,
    }
    .map(|p| p.current_lsn.to_string());
    let meta = snapshot_labels(ports, op, now);
    let req = SnapshotRequest {
        name: resource_name(&ports.cluster, &format!("snap-{op}")),
        volume_id: source.volume_id.clone().expect("filtered"),
        metadata: meta,
        force: true,
    };
    failpoint::hit("scale_up.before_snapshot");
    let snap = ensure_snapshot(ports.cloud.as_ref(), &req).await?;
    failpoint::hit("scale_up.after_snapshot");
    let cloud = ports.cloud.clone();
    let snap = cloud::wait_ready(
        "snapshot",
        &snap.id,
        Duration::from_secs(ports.ops.resource_wait_secs),
        || cloud.get_snapshot(&snap.id),
        |s| &s.status,
    )
    .await?;
    phase_metric("snapshot", secs_between(started, OffsetDateTime::now_utc()));
    report.did(format!("snapshot {} of replica {}", req.name, source.id));
    let mut extra = BTreeMap::new();
    extra.insert(EXTRA_ORIGIN.into(), "scale-up".into());
    extra.insert(EXTRA_OP.into(), op.into());
    if let Some(az) = &source.az {
        extra.insert(EXTRA_AZ.into(), az.as_str().into());
    }
    if let Some(lsn) = primary_lsn {
        extra.insert(EXTRA_PRIMARY_LSN.into(), lsn.into());
    }
    let record = Snapshot {
        id: snap.id.clone(),
        source_replica: Some(source.id.clone()),
        created_at: now,
        extra,
    };
    ports
        .state
        .update(now, |s| -> Result<_, std::convert::Infallible> {
            s.record_snapshot(&record);
            Ok(())
        })
        .await?;
    failpoint::hit("scale_up.after_snapshot_record");
    Ok((record, SnapshotSource::Taken))
}

/// Volume from the snapshot, then a server booted from it; each recorded as it lands.
async fn create_replica(
    ports: &Ports,
    r: &Replica,
    snapshot: &str,
    now: OffsetDateTime,
) -> Result<Report, OpsError> {
    let mut report = Report::default();
    let op = r.op_id.clone().unwrap_or_default();
    let name = resource_name(&ports.cluster, &r.id);
    let meta = surge_labels(ports, &r.id, &op, now);
    let started = OffsetDateTime::now_utc();
    failpoint::hit("scale_up.before_volume");
    let volume = ensure_volume(
        ports.cloud.as_ref(),
        &VolumeRequest {
            name: name.clone(),
            snapshot_id: snapshot.into(),
            size_gb: None,
            az: r.az.clone(),
            metadata: meta.clone(),
        },
    )
    .await?;
    failpoint::hit("scale_up.after_volume");
    let cloud = ports.cloud.clone();
    let volume = cloud::wait_ready(
        "volume",
        &volume.id,
        Duration::from_secs(ports.ops.resource_wait_secs),
        || cloud.get_volume(&volume.id),
        |v| &v.status,
    )
    .await?;
    phase_metric("clone", secs_between(started, OffsetDateTime::now_utc()));
    report.did(format!("volume {name} from snapshot {snapshot}"));
    let user_data = UserData::for_replica(&ports.bootstrap, &name)
        .map_err(ParamsError::from)
        .and_then(|ud| {
            InstanceParams::for_server(
                &ports.cluster,
                &r.id,
                &volume.id,
                ud,
                ports.callback.as_ref(),
            )
        })
        .map_err(|e| Refusal::Bootstrap(e.to_string()))?
        .render();
    // Boot time counts from the server request, not from the invocation's start (which
    // also covered the snapshot and the clone).
    let boot_started = OffsetDateTime::now_utc();
    let request = server_request(r, &name, &volume, meta, user_data);
    failpoint::hit("scale_up.before_server");
    let server = ensure_server(ports.cloud.as_ref(), &request).await?;
    failpoint::hit("scale_up.after_server");
    report.did(format!("server {name} ({})", server.id));
    let address = server
        .endpoint
        .as_ref()
        .map(|e| format!("{}:{}", e.host, e.port));
    let (id, vol, srv) = (r.id.clone(), volume.id.clone(), server.id.clone());
    let az = request.az.clone();
    update_replica(ports, &id, now, |x| {
        if x.phase == Phase::Creating {
            x.phase = Phase::Booting;
        }
        x.volume_id = Some(vol.clone());
        x.server_id = Some(srv.clone());
        // Where the replica really is: the clone's zone, whatever was asked.
        if az.is_some() {
            x.az = az.clone();
        }
        if address.is_some() {
            x.address = address.clone();
        }
        x.since.entered(&Phase::Booting, boot_started);
    })
    .await?;
    failpoint::hit("scale_up.after_record");
    Ok(report)
}

/// The server for replica `r`, booted from its clone `volume`.
///
/// Availability zone: the clone's. A server boots from (and attaches) its data volume,
/// and block storage does not attach across zones (Cinder's `cross_az_attach`, EVS), so
/// neither the alarm's `az` (it chose where the clone went: the volume request carries
/// it) nor `openstack.availability_zone` may send the server elsewhere. Only a provider
/// that reports no zone for the volume leaves it to the replica's requested zone.
/// Flavor: the one recorded with the replica by the decision (`None`: the provider's).
fn server_request(
    r: &Replica,
    name: &str,
    volume: &cloud::Volume,
    metadata: Metadata,
    user_data: String,
) -> ServerRequest {
    ServerRequest {
        name: name.to_string(),
        volume_id: volume.id.clone(),
        flavor: flavor_of(r),
        az: volume.az.clone().or_else(|| r.az.clone()),
        metadata,
        user_data: Some(user_data),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::{
        CloudError, Filter, Result as CResult, Server, Snapshot as CSnapshot, Volume,
    };
    use crate::model::Endpoint;
    use crate::postgres::{PgError, Postgres, PrimaryStatus, ReplicaStatus};
    use async_trait::async_trait;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    /// Clones land in `az-clone` (the snapshot's zone, whatever was asked); the first
    /// server create fails as a transient error (a run that died before the server).
    struct Zoned {
        volumes: Mutex<Vec<Volume>>,
        servers: Mutex<Vec<Server>>,
        server_requests: Mutex<Vec<ServerRequest>>,
        fail_next_server: AtomicBool,
    }

    fn unused<T>() -> CResult<T> {
        Err(CloudError::Fatal("not used by this test".into()))
    }

    #[async_trait]
    impl crate::cloud::Cloud for Zoned {
        fn kind(&self) -> &'static str {
            "zoned"
        }
        async fn create_snapshot(&self, _: &SnapshotRequest) -> CResult<CSnapshot> {
            unused()
        }
        async fn get_snapshot(&self, id: &str) -> CResult<CSnapshot> {
            Ok(CSnapshot {
                id: id.into(),
                name: "pgsurge-c-snap".into(),
                volume_id: "vol-base".into(),
                status: Status::Ready,
                size_gb: 1,
                created_at: String::new(),
                az: Some("az-clone".into()),
                metadata: Metadata::new(),
            })
        }
        async fn list_snapshots(&self, _: &Filter) -> CResult<Vec<CSnapshot>> {
            unused()
        }
        async fn delete_snapshot(&self, _: &str) -> CResult<()> {
            unused()
        }
        async fn create_volume(&self, req: &VolumeRequest) -> CResult<Volume> {
            let mut v = self.volumes.lock().unwrap();
            let vol = Volume {
                id: format!("vol-{}", v.len() + 1),
                name: req.name.clone(),
                status: Status::Ready,
                size_gb: 1,
                az: Some("az-clone".into()),
                snapshot_id: Some(req.snapshot_id.clone()),
                metadata: req.metadata.clone(),
            };
            v.push(vol.clone());
            Ok(vol)
        }
        async fn get_volume(&self, id: &str) -> CResult<Volume> {
            let v = self.volumes.lock().unwrap();
            v.iter()
                .find(|v| v.id == id)
                .cloned()
                .ok_or(CloudError::NotFound {
                    kind: "volume",
                    id: id.into(),
                })
        }
        async fn list_volumes(&self, f: &Filter) -> CResult<Vec<Volume>> {
            let v = self.volumes.lock().unwrap();
            Ok(v.iter()
                .filter(|v| f.matches(&v.name, &v.metadata))
                .cloned()
                .collect())
        }
        async fn delete_volume(&self, _: &str) -> CResult<()> {
            unused()
        }
        async fn create_server(&self, req: &ServerRequest) -> CResult<Server> {
            if self.fail_next_server.swap(false, Ordering::SeqCst) {
                return Err(CloudError::Transient("nova: 503".into()));
            }
            self.server_requests.lock().unwrap().push(req.clone());
            let s = Server {
                id: "srv-1".into(),
                name: req.name.clone(),
                status: Status::Pending,
                az: req.az.clone(),
                metadata: req.metadata.clone(),
                volume_ids: vec![req.volume_id.clone()],
                endpoint: None,
                fault: None,
            };
            self.servers.lock().unwrap().push(s.clone());
            Ok(s)
        }
        async fn get_server(&self, _: &str) -> CResult<Server> {
            unused()
        }
        async fn list_servers(&self, f: &Filter) -> CResult<Vec<Server>> {
            let s = self.servers.lock().unwrap();
            Ok(s.iter()
                .filter(|s| f.matches(&s.name, &s.metadata))
                .cloned()
                .collect())
        }
        async fn delete_server(&self, _: &str) -> CResult<()> {
            unused()
        }
    }

    struct NoPg;

    #[async_trait]
    impl Postgres for NoPg {
        async fn primary_status(&self) -> Result<PrimaryStatus, PgError> {
            Err(PgError::Query {
                endpoint: "primary".into(),
                message: "not used by this test".into(),
            })
        }
        async fn replica_status(&self, e: &Endpoint) -> Result<ReplicaStatus, PgError> {
            Err(PgError::Query {
                endpoint: format!("{}:{}", e.host, e.port),
                message: "not used by this test".into(),
            })
        }
    }

    fn ports(cloud: Arc<Zoned>) -> Ports {
        crate::ops::testing::ports(cloud, Vec::new(), Arc::new(NoPg))
    }

    #[tokio::test]
    async fn a_resumed_scale_up_boots_the_decided_flavor_in_the_clones_zone() {
        let now = OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
        let cloud = Arc::new(Zoned {
            volumes: Mutex::new(Vec::new()),
            servers: Mutex::new(Vec::new()),
            server_requests: Mutex::new(Vec::new()),
            fail_next_server: AtomicBool::new(true),
        });
        let ports = ports(cloud.clone());
        // What an alarm with pgsurge.flavor=m1.small and pgsurge.az=az-alarm records.
        ports
            .state
            .update(now, |s| -> Result<_, std::convert::Infallible> {
                s.snapshots.push(Snapshot {
                    id: "snap-1".into(),
                    source_replica: Some("base".into()),
                    created_at: now,
                    extra: BTreeMap::new(),
                });
                plan_replicas(s, "op1", 1, Some("m1.small"), Some("az-alarm".into()), now);
                Ok(())
            })
            .await
            .unwrap();

        // The first run clones, then the server create fails: the replica stays creating.
        let first = drive_creating(&ports, now).await.unwrap();
        assert!(first.pending.iter().any(|p| p.contains("503")), "{first:?}");
        assert!(cloud.server_requests.lock().unwrap().is_empty());

        // A later run (no alarm in hand: only the state) adopts the clone and boots it
        // with the decided flavor, in the clone's zone (not the alarm's).
        let second = drive_creating(&ports, now).await.unwrap();
        assert!(second.pending.is_empty(), "{second:?}");
        let reqs = cloud.server_requests.lock().unwrap().clone();
        assert_eq!(reqs.len(), 1, "{reqs:?}");
        assert_eq!(reqs[0].flavor.as_deref(), Some("m1.small"));
        assert_eq!(reqs[0].az.as_deref(), Some("az-clone"));
        assert_eq!(reqs[0].volume_id, "vol-1");
        assert_eq!(
            cloud.volumes.lock().unwrap().len(),
            1,
            "the clone was adopted"
        );
        let state = ports.state.load().await.unwrap().state;
        let r = &state.replicas[0];
        assert_eq!(r.phase, Phase::Booting);
        assert_eq!(
            r.az.as_deref(),
            Some("az-clone"),
            "the replica is where its clone is"
        );
    }

    #[test]
    fn without_a_decided_flavor_the_provider_chooses() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let mut s = ClusterState::new("c");
        plan_replicas(&mut s, "op2", 2, None, None, now);
        let vol = Volume {
            id: "v".into(),
            name: "n".into(),
            status: Status::Ready,
            size_gb: 1,
            az: None,
            snapshot_id: None,
            metadata: Metadata::new(),
        };
        let req = server_request(&s.replicas[1], "n", &vol, Metadata::new(), String::new());
        assert_eq!((req.flavor, req.az), (None, None));
        assert!(!s.replicas[1].extra.contains_key(EXTRA_FLAVOR));
    }
}
