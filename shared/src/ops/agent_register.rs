//! instance-ready with `agent`-only HAProxy nodes: the functions cannot put the replica
//! there, so they ask the agents through the state and wait for their reports.
//!
//! A verified replica gets the time `since.agents_asked` (its phase stays pending), which
//! puts it in the desired set; each agent adds it and reports it in its status object;
//! when every agent-only node reports it ready, instance-ready records `serving`. Without
//! agent-only nodes nothing changes (push registers it, as before).

use super::agent_status as status;
use super::{update_replica, OpsError, Ports};
use crate::balancer::AdminState;
use crate::model::{Replica, Timestamp};
use time::OffsetDateTime;

/// Has instance-ready asked the agents to register this (pending) replica?
pub fn requested(r: &Replica) -> bool {
    r.phase.is_pending() && r.since.agents_asked.is_some()
}

/// `true` when every agent-only node reports `server` ready (or there are none). The
/// first call marks the replica so the agents add it, and answers `false`.
pub async fn on_every_agent(
    ports: &Ports,
    r: &Replica,
    server: &str,
    now: OffsetDateTime,
) -> Result<bool, OpsError> {
    let nodes = status::agent_only_nodes(&ports.haproxy);
    if nodes.is_empty() {
        return Ok(true);
    }
    if r.since.agents_asked.is_none() {
        let id = r.id.clone();
        update_replica(ports, &id, now, |x| {
            if x.phase.is_pending() {
                x.since.agents_asked = Some(Timestamp(now));
            }
        })
        .await?;
        tracing::info!(replica = %r.id, agents = ?nodes, "verified: asked the agents to register it");
        return Ok(false);
    }
    let all = status::every_agent(
        ports.state.store().as_ref(),
        &ports.cluster,
        &nodes,
        0,
        server,
        |s| s == Some(AdminState::Ready),
    )
    .await?;
    if !all {
        tracing::info!(replica = %r.id, agents = ?nodes, "waiting for every agent to report it ready");
    }
    Ok(all)
}
