//! scale-down with `agent`-only HAProxy nodes: the functions cannot drain the replica
//! there; each node's agent puts it in `drain` when the state says `draining`, and
//! removes it once the state forgets it. The server may only be deleted once every
//! agent-only node reports it out of rotation with its sessions ended: a node whose
//! agent is silent, stopped or behind may still send it reads. So scale-down waits for those reports, as long as a drain may take plus a
//! grace for the agents' interval; past that the replica stays `draining` and the next
//! scale-down or reconcile tries again — a leak is visible and recoverable, a deleted
//! server under live reads is not.

use super::agent_status as status;
use super::{OpsError, Ports};
use crate::balancer::AdminState;
use std::time::Duration;

/// How long past the drain deadline an agent may take to report: two of its default 2 s
/// intervals. Kept short because scale-down removes its replicas one after the other
/// within one invocation's time budget; an agent slower than this (or stopped) only
/// defers the delete to the next scale-down or reconcile.
const GRACE: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(500);

/// Wait until every agent-only node reports `server` out of rotation (`drain`, `maint`
/// or absent), having followed the state at least to `revision` (the one that says
/// `draining`), with no session left on it — or, past the drain deadline, whatever
/// sessions remain (the push path cuts them at that point too). `None`: safe to delete
/// (or no agent-only node); `Some(why)`: not within the wait, naming each node and what
/// it last said.
pub async fn wait_out_of_rotation(
    ports: &Ports,
    server: &str,
    revision: u64,
) -> Result<Option<String>, OpsError> {
    let nodes = status::agent_only_nodes(&ports.haproxy);
    if nodes.is_empty() {
        return Ok(None);
    }
    let store = ports.state.store();
    let start = tokio::time::Instant::now();
    let drain_deadline = start + Duration::from_secs(ports.haproxy.drain_deadline_secs);
    let give_up = drain_deadline + GRACE;
    loop {
        let sessions_matter = tokio::time::Instant::now() < drain_deadline;
        let mut why = Vec::new();
        for n in &nodes {
            if let Some(said) = blocking(
                status::read(store.as_ref(), &ports.cluster, n).await?,
                server,
                revision,
                sessions_matter,
            ) {
                why.push(format!("{n}: {said}"));
            }
        }
        if why.is_empty() {
            return Ok(None);
        }
        if tokio::time::Instant::now() >= give_up {
            return Ok(Some(format!(
                "agent-only HAProxy nodes have not reported it out of rotation: {}",
                why.join("; ")
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Pure: what in one agent's report keeps `server` from being deleted, if anything.
fn blocking(
    report: Option<status::NodeStatus>,
    server: &str,
    revision: u64,
    sessions_matter: bool,
) -> Option<String> {
    let Some(s) = report else {
        return Some("its agent never reported".into());
    };
    let followed = s.revision.unwrap_or(0);
    if followed < revision || s.converged_at.is_none() {
        return Some(format!(
            "its agent last converged to revision {followed} (need {revision}), reported at {}",
            s.reported_at
        ));
    }
    match s.servers.get(server) {
        Some(AdminState::Ready) => Some("its agent still reports it ready".into()),
        _ => match s.draining_sessions.get(server) {
            Some(&n) if sessions_matter && n > 0 => Some(format!("{n} sessions still open")),
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use time::OffsetDateTime;

    fn report(rev: u64, admin: Option<AdminState>, sessions: u64) -> status::NodeStatus {
        status::NodeStatus {
            node: "h2".into(),
            cluster: "c".into(),
            revision: Some(rev),
            revision_written_at: None,
            converged_at: Some(OffsetDateTime::UNIX_EPOCH),
            reported_at: OffsetDateTime::UNIX_EPOCH,
            servers: admin.map(|a| ("s".to_string(), a)).into_iter().collect(),
            draining_sessions: (sessions > 0)
                .then(|| ("s".to_string(), sessions))
                .into_iter()
                .collect::<BTreeMap<_, _>>(),
            error: None,
            haproxy_pid: None,
            reloads: 0,
        }
    }

    #[test]
    fn only_an_up_to_date_report_out_of_rotation_lets_the_delete_go() {
        // Never reported, behind the draining revision, or still routing: blocks.
        assert!(blocking(None, "s", 5, true).is_some());
        assert!(blocking(Some(report(4, Some(AdminState::Drain), 0)), "s", 5, true).is_some());
        assert!(blocking(Some(report(5, Some(AdminState::Ready), 0)), "s", 5, false).is_some());
        // Drained with sessions: blocks until the drain deadline, not after.
        assert!(blocking(Some(report(5, Some(AdminState::Drain), 3)), "s", 5, true).is_some());
        assert!(blocking(Some(report(5, Some(AdminState::Drain), 3)), "s", 5, false).is_none());
        // Out of rotation and idle, or gone: fine.
        assert!(blocking(Some(report(6, Some(AdminState::Drain), 0)), "s", 5, true).is_none());
        assert!(blocking(Some(report(5, Some(AdminState::Maint), 0)), "s", 5, true).is_none());
        assert!(blocking(Some(report(5, None, 0)), "s", 5, true).is_none());
    }
}
