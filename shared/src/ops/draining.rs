//! Draining replicas: every replica recorded `draining` / `deleting` taken out of every
//! HAProxy node, proven ours and a standby, deleted and forgotten — the resumable half of
//! scale-down that scale-up (a resolved alarm) and reconcile drive too.

use super::desired::split_address;
use super::meta::labelled_surge;
use super::replica_steps::{delete_replica_volume, forget};
use super::{
    phase_metric, refused, secs_between, update_replica, OpsError, Ports, Refusal, Report, Unproven,
};
use crate::balancer::drain::{self, DrainOptions};
use crate::balancer::BalancerError;
use crate::cloud::CloudError;
use crate::failpoint;
use crate::model::{resource_name, Endpoint};
use crate::model::{DeleteProof, Phase, Replica, Role};
use std::time::Duration;
use time::OffsetDateTime;

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
            Err(OpsError::Refused(why)) => refused(ports, &r.id, &why, now, &mut report).await?,
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
        return Err(Refusal::NotSurgeToRemove {
            replica: r.id.clone(),
            role: r.role.clone(),
        }
        .into());
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
        phase_metric("drain", secs_between(started, OffsetDateTime::now_utc()));
        if let Some(why) = still_routed(&rep.remove) {
            // A node that answered and still holds the server may send it reads: the
            // replica must outlive that. The state stays `draining`, so the next
            // scale-down or reconcile drains and removes it again, then deletes it.
            return Err(Refusal::StillRouted { name, why }.into());
        }
        if !rep.remove.all_ok() {
            tracing::warn!(replica = %r.id, failed = ?rep.remove.failed(), "unreachable HAProxy nodes still list the server; their repair removes it");
        }
        // Nodes only an agent reaches drain it on their own; delete only once they say so.
        if let Some(why) =
            super::agent_unregister::wait_out_of_rotation(ports, &name, state.revision).await?
        {
            return Err(Refusal::StillRouted { name, why }.into());
        }
    }
    let started = OffsetDateTime::now_utc();
    if let Some(server_id) = &r.server_id {
        match ports.cloud.get_server(server_id).await {
            Ok(server) => {
                // The cloud's own labels must say this is our surge replica: the state
                // alone may be wrong (a bad edit, a bug), and deleting a base replica
                // or anything else is not undoable.
                labelled_surge(&server.metadata, &ports.cluster, &r.id).map_err(|label| {
                    Refusal::ServerNotOurs {
                        name: name.clone(),
                        server_id: server_id.clone(),
                        replica: r.id.clone(),
                        cluster: ports.cluster.clone(),
                        label,
                    }
                })?;
                // The last line of defence: a server that is not in recovery is a primary
                // (or was promoted): refuse, whatever the state says.
                match standby_proof(ports, r, &server, &name).await {
                    Ok(()) => {}
                    // Proven before an earlier run stopped it (its PostgreSQL is down for
                    // good now): the proof stands; the labels were checked again above.
                    Err(why) if why.unreachable() && proven_for(r, server_id).is_some() => {
                        let at = proven_for(r, server_id).map(|p| p.at);
                        tracing::info!(replica = %r.id, server = %server_id, reason = %why, proven_at = ?at,
                            "cannot prove it is a standby again; proven before it was stopped: finishing the delete");
                    }
                    Err(why) => return Err(Refusal::from(why).into()),
                }
                failpoint::hit("scale_down.before_mark_deleting");
                mark_deleting(ports, &r.id, now).await?;
                failpoint::hit("scale_down.before_delete_server");
                ports.cloud.delete_server(server_id).await?;
                failpoint::hit("scale_down.after_delete_server");
            }
            // Already gone (a killed earlier run, or deleted by hand): what the provider
            // kept beside it (a DNS record) is found by name, not through the server.
            Err(CloudError::NotFound { .. }) => {
                failpoint::hit("scale_down.before_unpublish");
                ports
                    .cloud
                    .unpublish_server(&resource_name(&ports.cluster, &r.id))
                    .await?;
                failpoint::hit("scale_down.after_unpublish");
            }
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(volume_id) = &r.volume_id {
        failpoint::hit("scale_down.before_delete_volume");
        delete_replica_volume(ports, &r.id, volume_id).await?;
        failpoint::hit("scale_down.after_delete_volume");
    }
    phase_metric("delete", secs_between(started, OffsetDateTime::now_utc()));
    forget(ports, &r.id, now).await?;
    failpoint::hit("scale_down.after_forget");
    Ok(format!(
        "{name} drained, removed from HAProxy, server and volume deleted"
    ))
}

/// Pure: why the replica must not be deleted after this removal fan-out, if it must not.
///
/// A node that answered but refused the removal (sessions still attached, a rejected
/// command, ...) keeps routing to the server. A node that was *unavailable* (down,
/// not answering) routes nothing now, and the reconcile's repair removes the server
/// from it when it is back (the desired set no longer holds it), so it does not block.
pub(crate) fn still_routed(remove: &crate::balancer::fanout::Report) -> Option<String> {
    let blocking: Vec<String> = remove
        .nodes
        .iter()
        .filter_map(|n| match &n.result {
            Err(BalancerError::Unavailable { .. }) | Ok(_) => None,
            Err(e) => Some(format!("{}: {e}", n.node)),
        })
        .collect();
    (!blocking.is_empty()).then(|| {
        format!(
            "HAProxy node(s) still hold it after a failed removal ({})",
            blocking.join("; ")
        )
    })
}

/// The second proof: PostgreSQL on the server is in recovery (a standby).
async fn standby_proof(
    ports: &Ports,
    r: &Replica,
    server: &crate::cloud::Server,
    name: &str,
) -> Result<(), Unproven> {
    let endpoint = server
        .endpoint
        .clone()
        .or_else(|| {
            r.address
                .as_deref()
                .and_then(split_address)
                .map(|(host, port)| Endpoint { host, port })
        })
        .ok_or_else(|| Unproven::NoAddress { name: name.into() })?;
    let status = ports
        .pg
        .replica_status(&endpoint)
        .await
        .map_err(|e| Unproven::Unreachable {
            name: name.into(),
            error: e.to_string(),
        })?;
    if !status.in_recovery {
        return Err(Unproven::NotStandby { name: name.into() });
    }
    Ok(())
}

/// The proof recorded for this replica's server, when it is `deleting` (the proof is
/// recorded in the same write that marks it so, before the server is stopped).
fn proven_for(r: &Replica, server_id: &str) -> Option<DeleteProof> {
    r.delete_proof()
        .filter(|p| r.phase == Phase::Deleting && p.server_id == server_id)
}

/// `deleting`, with the proofs just given recorded in the same write: once the server is
/// stopped the standby proof cannot be given again, and a run killed after the stop must
/// still be able to finish (see [`DeleteProof`]).
async fn mark_deleting(ports: &Ports, id: &str, now: OffsetDateTime) -> Result<(), OpsError> {
    update_replica(ports, id, now, |x| {
        x.phase = Phase::Deleting;
        if let Some(server_id) = x.server_id.clone() {
            if x.delete_proof().map(|p| p.server_id) != Some(server_id.clone()) {
                x.set_delete_proof(Some(&DeleteProof { server_id, at: now }));
            }
        }
    })
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::fanout::{NodeReport, Report as FanReport};

    fn removal(results: Vec<(&str, Result<String, BalancerError>)>) -> FanReport {
        FanReport {
            op: "remove pgsurge-c-a".into(),
            nodes: results
                .into_iter()
                .map(|(node, result)| NodeReport {
                    node: node.into(),
                    result,
                    repaired: false,
                })
                .collect(),
            needs_repair: Vec::new(),
        }
    }

    #[test]
    fn a_reachable_node_that_kept_the_server_blocks_the_delete() {
        let busy = removal(vec![
            ("h1", Ok("removed".into())),
            (
                "h2",
                Err(BalancerError::Busy(
                    "pg/pgsurge-c-a: Server still has connections attached to it".into(),
                )),
            ),
        ]);
        let why = still_routed(&busy).expect("h2 still routes to it");
        assert!(why.contains("h2: busy") && !why.contains("h1"), "{why}");
        let rejected = removal(vec![(
            "h1",
            Err(BalancerError::Rejected("pg/pgsurge-c-a: no".into())),
        )]);
        assert!(still_routed(&rejected).is_some());
    }

    // ---- the whole resumable half, with doubles for the cloud, PostgreSQL and nodes ----

    use crate::balancer::{
        AdminState, Balancer, OperState, PutOutcome, Result as BResult, ServerSpec, ServerStatus,
    };
    use crate::cloud::{
        Cloud, Filter, Result as CResult, Server, ServerRequest, Snapshot, SnapshotRequest, Status,
        Volume, VolumeRequest,
    };
    use crate::postgres::{PgError, Postgres, PrimaryStatus, ReplicaStatus};
    use async_trait::async_trait;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    fn labels_of_a() -> crate::cloud::Metadata {
        use crate::cloud::{META_CLUSTER, META_REPLICA, META_ROLE};
        [
            (META_CLUSTER.to_string(), "c".to_string()),
            (META_ROLE.to_string(), "surge".to_string()),
            (META_REPLICA.to_string(), "a".to_string()),
        ]
        .into()
    }

    /// Holds surge replica `a`'s server and volume; records deletions.
    #[derive(Default)]
    struct TestCloud {
        deleted: Mutex<Vec<String>>,
    }

    fn unused<T>() -> CResult<T> {
        Err(CloudError::Fatal("not used by scale-down".into()))
    }

    #[async_trait]
    impl Cloud for TestCloud {
        fn kind(&self) -> &'static str {
            "test"
        }
        async fn create_snapshot(&self, _: &SnapshotRequest) -> CResult<Snapshot> {
            unused()
        }
        async fn get_snapshot(&self, _: &str) -> CResult<Snapshot> {
            unused()
        }
        async fn list_snapshots(&self, _: &Filter) -> CResult<Vec<Snapshot>> {
            unused()
        }
        async fn delete_snapshot(&self, _: &str) -> CResult<()> {
            unused()
        }
        async fn create_volume(&self, _: &VolumeRequest) -> CResult<Volume> {
            unused()
        }
        async fn get_volume(&self, id: &str) -> CResult<Volume> {
            Ok(Volume {
                id: id.into(),
                name: resource_name("c", "a"),
                status: Status::Ready,
                size_gb: 1,
                az: None,
                snapshot_id: None,
                metadata: labels_of_a(),
            })
        }
        async fn list_volumes(&self, _: &Filter) -> CResult<Vec<Volume>> {
            unused()
        }
        async fn delete_volume(&self, id: &str) -> CResult<()> {
            self.deleted.lock().unwrap().push(format!("volume {id}"));
            Ok(())
        }
        async fn create_server(&self, _: &ServerRequest) -> CResult<Server> {
            unused()
        }
        async fn get_server(&self, id: &str) -> CResult<Server> {
            Ok(Server {
                id: id.into(),
                name: resource_name("c", "a"),
                status: Status::Ready,
                az: None,
                metadata: labels_of_a(),
                volume_ids: vec!["vol-a".into()],
                endpoint: None,
                fault: None,
            })
        }
        async fn list_servers(&self, _: &Filter) -> CResult<Vec<Server>> {
            unused()
        }
        async fn delete_server(&self, id: &str) -> CResult<()> {
            self.deleted.lock().unwrap().push(format!("server {id}"));
            Ok(())
        }
    }

    /// Every replica it is asked about is a standby.
    struct Standby;

    #[async_trait]
    impl Postgres for Standby {
        async fn primary_status(&self) -> Result<PrimaryStatus, PgError> {
            Err(PgError::Query {
                endpoint: "primary".into(),
                message: "not used by scale-down".into(),
            })
        }
        async fn replica_status(&self, _: &Endpoint) -> Result<ReplicaStatus, PgError> {
            Ok(ReplicaStatus {
                in_recovery: true,
                system_identifier: 1,
                timeline: 1,
                replay_lsn: None,
                last_replay_age: None,
                replay_paused: false,
            })
        }
    }

    /// An HAProxy node holding `pgsurge-c-a` with no session: `busy` makes it refuse
    /// the removal (as a reachable node with sessions attached does), `down` makes it
    /// unreachable.
    struct TestNode {
        name: &'static str,
        busy: AtomicBool,
        down: bool,
        holds: AtomicBool,
    }

    impl TestNode {
        fn new(name: &'static str, busy: bool, down: bool) -> Arc<TestNode> {
            Arc::new(TestNode {
                name,
                busy: AtomicBool::new(busy),
                down,
                holds: AtomicBool::new(true),
            })
        }
        fn reach(&self) -> BResult<()> {
            if self.down {
                return Err(BalancerError::Unavailable {
                    node: self.name.into(),
                    message: "connection refused".into(),
                });
            }
            Ok(())
        }
    }

    #[async_trait]
    impl Balancer for TestNode {
        fn node(&self) -> &str {
            self.name
        }
        async fn put_server(&self, _: &ServerSpec) -> BResult<PutOutcome> {
            self.reach()?;
            Ok(PutOutcome::Unchanged)
        }
        async fn set_state(&self, _: &str, _: AdminState) -> BResult<()> {
            self.reach()
        }
        async fn remove_server(&self, name: &str) -> BResult<bool> {
            self.reach()?;
            if self.busy.load(Ordering::SeqCst) {
                return Err(BalancerError::Busy(format!(
                    "pg/{name}: Server still has connections attached to it"
                )));
            }
            Ok(self.holds.swap(false, Ordering::SeqCst))
        }
        async fn kill_sessions(&self, _: &str) -> BResult<()> {
            self.reach()
        }
        async fn list_servers(&self) -> BResult<Vec<ServerStatus>> {
            self.reach()?;
            Ok(if self.holds.load(Ordering::SeqCst) {
                vec![ServerStatus {
                    name: resource_name("c", "a"),
                    address: "127.0.0.1".into(),
                    port: 6001,
                    weight: 100,
                    check: true,
                    admin: AdminState::Drain,
                    oper: OperState::Up,
                    sessions: 0,
                    total_sessions: 9,
                }]
            } else {
                Vec::new()
            })
        }
    }

    #[tokio::test]
    async fn a_busy_reachable_node_keeps_the_replica_until_a_later_run_removes_it() {
        let now = OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
        let cloud = Arc::new(TestCloud::default());
        let busy = TestNode::new("h1", true, false);
        let down = TestNode::new("h2", false, true);
        let ports =
            crate::ops::testing::ports(cloud.clone(), vec![busy.clone(), down], Arc::new(Standby));
        ports
            .state
            .update(now, |s| -> Result<_, std::convert::Infallible> {
                s.replicas.push(Replica {
                    id: "a".into(),
                    role: Role::Surge,
                    phase: Phase::Draining,
                    server_id: Some("srv-a".into()),
                    volume_id: Some("vol-a".into()),
                    az: None,
                    address: Some("127.0.0.1:6001".into()),
                    created_at: now,
                    op_id: None,
                    since: Default::default(),
                    extra: Default::default(),
                });
                Ok(())
            })
            .await
            .unwrap();

        // h1 answers but keeps the server: nothing is deleted, the replica stays draining.
        let report = drive_draining(&ports, now).await.unwrap();
        assert!(cloud.deleted.lock().unwrap().is_empty(), "{report:?}");
        assert!(report.actions.is_empty(), "{report:?}");
        assert!(
            report.pending.len() == 1
                && report.pending[0].contains("h1: busy")
                && report.pending[0].contains("left draining"),
            "{report:?}"
        );
        let state = ports.state.load().await.unwrap().state;
        assert_eq!(state.replicas.len(), 1);
        assert_eq!(state.replicas[0].phase, Phase::Draining);

        // The sessions ended: the next run removes it from h1 and deletes the replica.
        // h2 is still down throughout: it does not block (it routes nothing; its
        // repair removes the server once it is back).
        busy.busy.store(false, Ordering::SeqCst);
        let report = drive_draining(&ports, now).await.unwrap();
        assert!(report.pending.is_empty(), "{report:?}");
        assert!(!busy.holds.load(Ordering::SeqCst));
        assert_eq!(
            *cloud.deleted.lock().unwrap(),
            ["server srv-a", "volume vol-a"]
        );
        assert!(ports.state.load().await.unwrap().state.replicas.is_empty());
    }

    #[test]
    fn a_down_node_or_a_clean_removal_does_not_block() {
        let down = removal(vec![
            ("h1", Ok("removed".into())),
            ("h2", Ok("was absent".into())),
            (
                "h3",
                Err(BalancerError::Unavailable {
                    node: "h3".into(),
                    message: "connection refused".into(),
                }),
            ),
        ]);
        assert_eq!(still_routed(&down), None);
    }
}
