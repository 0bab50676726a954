//! The reads behind `status`: the state document, this cluster's cloud resources and
//! every HAProxy node's backend, all at once. Read-only: no lease is taken and nothing
//! is written; a node that does not answer becomes an "unreachable" cell, not an error.

use super::{compare, NodeView, StatusReport, Views};
use crate::cloud::{CloudError, Filter, META_CLUSTER};
use crate::ops::{desired_set, OpsError, Ports};
use futures::future::join_all;
use time::OffsetDateTime;

/// Read the three views and compare them. Fails only when the state or the cloud cannot
/// be read (there is nothing to compare against then).
pub async fn gather(ports: &Ports, now: OffsetDateTime) -> Result<StatusReport, OpsError> {
    let loaded = ports.state.load().await?;
    let (state, state_absent) = (loaded.state, loaded.version.is_none());
    let ours = Filter {
        name: None,
        metadata: [(META_CLUSTER.to_string(), ports.cluster.clone())].into(),
    };
    let cloud = ports.cloud.as_ref();
    let nodes = join_all(ports.nodes.iter().map(|n| async move {
        NodeView {
            node: n.node().to_string(),
            servers: n.list_servers().await.map_err(|e| e.to_string()),
        }
    }));
    let (servers, volumes, snapshots, nodes) = futures::join!(
        cloud.list_servers(&ours),
        cloud.list_volumes(&ours),
        cloud.list_snapshots(&ours),
        nodes
    );
    let (mut servers, mut volumes, mut snapshots) = (servers?, volumes?, snapshots?);

    // What the state records but the listing did not show (a base replica made by people
    // may carry no pgsurge tag): looked up by id, so "missing" means missing.
    for r in &state.replicas {
        if let Some(id) = r.server_id.as_deref() {
            if !servers.iter().any(|s| s.id == id) {
                if let Some(s) = found(cloud.get_server(id).await)? {
                    servers.push(s);
                }
            }
        }
        if let Some(id) = r.volume_id.as_deref() {
            if !volumes.iter().any(|v| v.id == id) {
                if let Some(v) = found(cloud.get_volume(id).await)? {
                    volumes.push(v);
                }
            }
        }
    }
    for s in &state.snapshots {
        if !snapshots.iter().any(|c| c.id == s.id) {
            if let Some(c) = found(cloud.get_snapshot(&s.id).await)? {
                snapshots.push(c);
            }
        }
    }

    let desired = desired_set(&state, &ports.cluster, &ports.haproxy);
    Ok(compare(&Views {
        cluster: &ports.cluster,
        state: &state,
        servers: &servers,
        volumes: &volumes,
        snapshots: &snapshots,
        nodes: &nodes,
        desired: &desired,
        now,
        state_absent,
        operation_deadline: time::Duration::seconds(ports.ops.creating_deadline_secs as i64),
    }))
}

fn found<T>(r: Result<T, CloudError>) -> Result<Option<T>, CloudError> {
    match r {
        Ok(t) => Ok(Some(t)),
        Err(CloudError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}
