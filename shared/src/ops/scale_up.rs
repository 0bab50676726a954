//! scale-up: alarm → decision → recorded operation → snapshot → N volumes + servers in parallel.
//!
//! Returns as soon as the servers are created: booting and catching up are
//! instance-ready's (and reconcile's) business.

use super::decide::decide_and_record;
use super::lease::with_lease;
use super::{phase_metric, secs_between, OpsError, Ports, Report};
use crate::cloud::{
    self, ensure_server, ensure_snapshot, ensure_volume, resource_name, Metadata, ServerRequest,
    SnapshotRequest, Status, VolumeRequest, META_CLUSTER, META_OP, META_REPLICA, META_ROLE,
};
use crate::events::{Alarm, Direction};
use crate::failpoint;
use crate::policy::Action;
use crate::postgres::bootstrap::UserData;
use crate::state::{ClusterState, OpKind, Phase, Replica, Role, Snapshot};
use std::collections::BTreeMap;
use std::time::Duration;
use time::OffsetDateTime;

/// Metadata key: when pgsurge created the resource (RFC 3339), for the orphan grace period.
pub const META_CREATED: &str = "pgsurge_created_at";

pub async fn scale_up(
    ports: &Ports,
    alarms: &[Alarm],
    now: OffsetDateTime,
) -> Result<Report, OpsError> {
    let mut report = Report::default();
    let mut scaled_down = false;
    for alarm in alarms {
        let decision = decide_and_record(
            ports,
            "scale-up",
            alarm,
            Direction::ScaleUp,
            now,
            |state, d, op| {
                if let Action::ScaleUp { add, az, .. } = &d.action {
                    plan_replicas(state, op, *add, az.clone(), now);
                }
            },
        )
        .await?;
        failpoint::hit("scale_up.after_decision");
        // A resolved alarm, with `policy.scale_down_on_resolved`, decides a scale-down.
        scaled_down |= matches!(decision.action, Action::ScaleDown { .. });
        report.decision = Some(decision);
    }
    with_lease(ports, "create", &mut report, || drive_creating(ports, now)).await?;
    if scaled_down {
        with_lease(ports, "remove", &mut report, || {
            super::scale_down::drive_draining(ports, now)
        })
        .await?;
    }
    Ok(report)
}

/// Add the operation's replicas to the state, phase `creating`, before any cloud call.
fn plan_replicas(
    state: &mut ClusterState,
    op: &str,
    add: u32,
    az: Option<String>,
    now: OffsetDateTime,
) {
    let ids: Vec<String> = (1..=add).map(|i| format!("s{op}-{i}")).collect();
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
                extra: BTreeMap::new(),
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

fn metadata(ports: &Ports, replica: &str, op: &str, now: OffsetDateTime) -> Metadata {
    let mut m = Metadata::new();
    m.insert(META_CLUSTER.into(), ports.cluster.clone());
    m.insert(META_ROLE.into(), "surge".into());
    m.insert(META_REPLICA.into(), replica.into());
    m.insert(META_OP.into(), op.into());
    m.insert(META_CREATED.into(), rfc3339(now));
    m
}

pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
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
    let snapshot = pick_snapshot(
        ports,
        &current,
        creating[0].op_id.as_deref().unwrap_or("manual"),
        now,
        &mut report,
    )
    .await?;
    let jobs = creating
        .iter()
        .map(|r| create_replica(ports, r, &snapshot, now));
    for result in futures::future::join_all(jobs).await {
        match result {
            Ok(r) => report.absorb(r),
            Err(e) => report.later(format!("create failed, will retry: {e}")),
        }
    }
    Ok(report)
}

/// A fresh enough snapshot of ours, or a new one of a serving replica's volume.
async fn pick_snapshot(
    ports: &Ports,
    state: &ClusterState,
    op: &str,
    now: OffsetDateTime,
    report: &mut Report,
) -> Result<String, OpsError> {
    let max_age = time::Duration::seconds(ports.ops.snapshot_max_age_secs as i64);
    let mut known: Vec<&Snapshot> = state
        .snapshots
        .iter()
        .filter(|s| now - s.created_at <= max_age)
        .collect();
    known.sort_by_key(|s| std::cmp::Reverse(s.created_at));
    for s in known {
        match ports.cloud.get_snapshot(&s.id).await {
            Ok(snap) if snap.status == Status::Ready => return Ok(snap.id),
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
        .ok_or_else(|| OpsError::Refused("no serving replica with a volume to snapshot".into()))?;
    let started = OffsetDateTime::now_utc();
    let mut meta = Metadata::new();
    meta.insert(META_CLUSTER.into(), ports.cluster.clone());
    meta.insert(META_OP.into(), op.into());
    meta.insert(META_CREATED.into(), rfc3339(now));
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
    let (id, source_id) = (snap.id.clone(), source.id.clone());
    ports
        .state
        .update(now, |s| -> Result<_, std::convert::Infallible> {
            if !s.snapshots.iter().any(|x| x.id == id) {
                s.snapshots.push(Snapshot {
                    id: id.clone(),
                    source_replica: Some(source_id.clone()),
                    created_at: now,
                    extra: BTreeMap::new(),
                });
            }
            Ok(())
        })
        .await?;
    failpoint::hit("scale_up.after_snapshot_record");
    Ok(snap.id)
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
    let meta = metadata(ports, &r.id, &op, now);
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
        .map_err(|e| OpsError::Refused(format!("bootstrap parameters: {e}")))?
        .render();
    // Boot time counts from the server request, not from the invocation's start (which
    // also covered the snapshot and the clone).
    let boot_started = OffsetDateTime::now_utc();
    failpoint::hit("scale_up.before_server");
    let server = ensure_server(
        ports.cloud.as_ref(),
        &ServerRequest {
            name: name.clone(),
            volume_id: volume.id.clone(),
            flavor: None,
            az: r.az.clone(),
            metadata: meta,
            user_data: Some(user_data),
        },
    )
    .await?;
    failpoint::hit("scale_up.after_server");
    report.did(format!("server {name} ({})", server.id));
    let address = server
        .endpoint
        .as_ref()
        .map(|e| format!("{}:{}", e.host, e.port));
    let (id, vol, srv) = (r.id.clone(), volume.id.clone(), server.id.clone());
    ports
        .state
        .update(now, |s| -> Result<_, std::convert::Infallible> {
            if let Some(x) = s.replicas.iter_mut().find(|x| x.id == id) {
                if x.phase == Phase::Creating {
                    x.phase = Phase::Booting;
                }
                x.volume_id = Some(vol.clone());
                x.server_id = Some(srv.clone());
                if address.is_some() {
                    x.address = address.clone();
                }
                x.extra.insert(
                    "booting_since".into(),
                    serde_json::Value::String(rfc3339(boot_started)),
                );
            }
            Ok(())
        })
        .await?;
    failpoint::hit("scale_up.after_record");
    Ok(report)
}
