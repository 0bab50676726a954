//! What every HAProxy node should hold, derived from the state (pure).

use crate::balancer::HaproxyConfig;
use crate::balancer::{AdminState, DesiredSet, ServerSpec};
use crate::model::resource_name;
use crate::model::{ClusterState, Phase, Role};

/// Serving surge replicas are `ready`, draining ones `drain`, and so are verified ones
/// whose registration the agents were asked for; nothing else is in HAProxy.
/// Base replicas belong to the operator's haproxy.cfg: they are never added or removed
/// here, even when the state knows their address (it needs it to snapshot them).
pub fn desired_set(state: &ClusterState, cluster: &str, h: &HaproxyConfig) -> DesiredSet {
    let mut set = DesiredSet::for_cluster(cluster);
    for r in state.replicas.iter().filter(|r| r.role == Role::Surge) {
        let admin = match r.phase {
            Phase::Serving => AdminState::Ready,
            Phase::Draining => AdminState::Drain,
            // Verified, and waiting for the agents to register it (agent-only nodes).
            _ if super::agent_register::requested(r) => AdminState::Ready,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Replica;

    fn replica(id: &str, role: Role, phase: Phase) -> Replica {
        Replica {
            id: id.into(),
            role,
            phase,
            server_id: None,
            volume_id: None,
            az: None,
            address: Some("10.0.0.7:5432".into()),
            created_at: time::OffsetDateTime::UNIX_EPOCH,
            op_id: None,
            since: Default::default(),
            extra: Default::default(),
        }
    }

    #[test]
    fn only_serving_and_draining_surge_replicas_are_desired() {
        let mut s = ClusterState::new("c");
        s.replicas = vec![
            replica("base", Role::Base, Phase::Serving),
            replica("a", Role::Surge, Phase::Serving),
            replica("b", Role::Surge, Phase::Draining),
            replica("c", Role::Surge, Phase::CatchingUp),
        ];
        let set = desired_set(&s, "c", &HaproxyConfig::default());
        let got: Vec<(&str, AdminState)> = set
            .servers
            .iter()
            .map(|(n, d)| (n.as_str(), d.state))
            .collect();
        assert_eq!(
            got,
            vec![
                ("pgsurge-c-a", AdminState::Ready),
                ("pgsurge-c-b", AdminState::Drain)
            ]
        );
        assert_eq!(set.servers["pgsurge-c-a"].spec.address, "10.0.0.7");
        assert_eq!(set.servers["pgsurge-c-a"].spec.port, 5432);
    }

    #[test]
    fn addresses_split_with_ipv6() {
        assert_eq!(split_address("[::1]:6432"), Some(("::1".into(), 6432)));
        assert_eq!(split_address("nope"), None);
    }
}
