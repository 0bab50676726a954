//! scale-down with `agent`-only HAProxy nodes: the functions cannot drain or remove the
//! replica there; each node's agent does it when the state says `draining` (slowly, by
//! the same drain rules as push). The server may only be deleted once every agent-only
//! node reports it gone: a node whose agent is silent, stopped or behind may still send
//! it reads. So scale-down waits for those reports, as long as a drain may take plus a
//! grace for the agents' interval; past that the replica stays `draining` and the next
//! scale-down or reconcile tries again — a leak is visible and recoverable, a deleted
//! server under live reads is not.

use super::agent_status as status;
use super::{OpsError, Ports};
use std::time::Duration;

/// How long past the drain deadline an agent may take to report (its interval is at most
/// a minute; two of its default 2 s intervals plus a slow state store fit well inside).
const GRACE: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(500);

/// Wait until every agent-only node reports `server` absent, having followed the state
/// at least to `revision` (the one that says `draining`). `None`: gone everywhere (or no
/// agent-only node); `Some(why)`: not within the wait, naming each node and what it last
/// said.
pub async fn wait_gone_everywhere(
    ports: &Ports,
    server: &str,
    revision: u64,
) -> Result<Option<String>, OpsError> {
    let nodes = status::agent_only_nodes(&ports.haproxy);
    if nodes.is_empty() {
        return Ok(None);
    }
    let store = ports.state.store();
    let deadline =
        tokio::time::Instant::now() + Duration::from_secs(ports.haproxy.drain_deadline_secs) + GRACE;
    loop {
        let gone =
            status::every_agent(store.as_ref(), &ports.cluster, &nodes, revision, server, |s| {
                s.is_none()
            })
            .await?;
        if gone {
            return Ok(None);
        }
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    let mut behind = Vec::new();
    for n in &nodes {
        let said = match status::read(store.as_ref(), &ports.cluster, n).await? {
            None => "its agent never reported".to_string(),
            Some(s) if s.revision.unwrap_or(0) < revision => format!(
                "its agent last followed revision {} (< {revision}), reported at {}",
                s.revision.unwrap_or(0),
                s.reported_at
            ),
            Some(s) => match s.servers.get(server) {
                Some(st) => format!("its agent still reports it {st:?}"),
                None => continue,
            },
        };
        behind.push(format!("{n}: {said}"));
    }
    Ok(Some(format!(
        "agent-only HAProxy nodes have not reported it removed: {}",
        behind.join("; ")
    )))
}
