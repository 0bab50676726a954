//! What every HAProxy node should hold, derived from the state (pure).

use crate::balancer::{AdminState, DesiredSet, ServerSpec};
use crate::cloud::resource_name;
use crate::config::HaproxyConfig;
use crate::state::{ClusterState, Phase};

/// Serving replicas are `ready`, draining ones `drain`; nothing else is in HAProxy.
/// Only `pgsurge-<cluster>-*` servers are managed: base replicas declared in
/// haproxy.cfg are never touched.
pub fn desired_set(state: &ClusterState, cluster: &str, h: &HaproxyConfig) -> DesiredSet {
    let mut set = DesiredSet::for_cluster(cluster);
    for r in &state.replicas {
        let admin = match r.phase {
            Phase::Serving => AdminState::Ready,
            Phase::Draining => AdminState::Drain,
            _ => continue,
        };
        let Some((host, port)) = r.address.as_deref().and_then(split_address) else {
            continue;
        };
        set.insert(
            ServerSpec {
                name: resource_name(cluster, &r.id),
                address: host,
                port,
                weight: h.weight,
                check: h.check,
                slowstart_ms: h.slowstart_secs * 1000,
            },
            admin,
        );
    }
    set
}

/// `host:port` → parts (IPv6 hosts in brackets).
pub(crate) fn split_address(a: &str) -> Option<(String, u16)> {
    let (host, port) = a.rsplit_once(':')?;
    Some((
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port.parse().ok()?,
    ))
}
