//! What the agent does to its node in one interval (pure), and doing it.
//!
//! The additions and state changes are [`balancer::plan`]'s, exactly as push and
//! reconcile compute them. Removal is where a local loop differs from one function run:
//! instead of sleeping through a drain, the agent drains a server that left the desired
//! set, and removes it on a later interval once its sessions have ended or the drain
//! deadline passed ([`drain::decide`], the push path's rule). Two more rules keep the
//! agent from fighting the functions on a `both` node:
//! * a server whose replica is still being registered (pending in the state) is left
//!   alone: instance-ready is putting it in;
//! * a server the desired set wants draining but that is already in maintenance is left
//!   there, and one that is absent is not added back: scale-down is removing it (a
//!   draining server takes no new sessions, so putting it back could only undo that).

use crate::balancer::{self, drain, Action, AdminState, DesiredSet, ServerStatus};
use crate::model::resource_name;
use crate::model::{ClusterState, Role};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// One step on the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// Put / set state / remove, as the push path does.
    Apply(Action),
    /// The drain deadline passed with sessions left: shut them down (then remove).
    Kill { name: String },
}

/// The steps for one interval, and the drains still waiting for sessions to end.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub steps: Vec<Step>,
    /// Servers draining with sessions left, before their deadline: name → sessions.
    pub waiting: BTreeMap<String, u64>,
}

/// The managed servers a function is registering right now (surge replicas in a
/// pending or unknown phase): not in the desired set yet, but not strays either.
pub fn in_flight(state: &ClusterState, cluster: &str) -> BTreeSet<String> {
    state
        .replicas
        .iter()
        .filter(|r| r.role == Role::Surge)
        .filter(|r| r.phase.is_pending() || matches!(r.phase, crate::model::Phase::Other(_)))
        .map(|r| resource_name(cluster, &r.id))
        .collect()
}

/// Pure: the steps that bring `current` to `desired`. `drain_age` is how long each
/// server has been draining as far as the agent knows (a server found draining that the
/// agent did not drain counts from now: the caller starts its clock).
pub fn decide(
    desired: &DesiredSet,
    current: &[ServerStatus],
    in_flight: &BTreeSet<String>,
    drain_age: &BTreeMap<String, Duration>,
    deadline: Duration,
) -> Decision {
    let by_name: BTreeMap<&str, &ServerStatus> =
        current.iter().map(|s| (s.name.as_str(), s)).collect();
    let mut d = Decision::default();
    // Draining in the desired set but not on the node: scale-down removed it already.
    let gone_draining = |name: &str| {
        !by_name.contains_key(name)
            && desired.servers.get(name).map(|d| d.state) == Some(AdminState::Drain)
    };
    for a in balancer::plan(desired, current) {
        match a {
            Action::Put { ref spec } if gone_draining(&spec.name) => {}
            Action::SetState { ref name, .. } if gone_draining(name) => {}
            Action::Remove { name } => {
                if in_flight.contains(&name) {
                    continue;
                }
                let cur = by_name[name.as_str()];
                if cur.admin == AdminState::Ready {
                    d.steps.push(Step::Apply(Action::SetState {
                        name,
                        state: AdminState::Drain,
                    }));
                    continue;
                }
                let age = drain_age.get(&name).copied().unwrap_or_default();
                match drain::decide(cur.sessions, age, deadline) {
                    drain::Step::Wait => {
                        d.waiting.insert(name, cur.sessions);
                    }
                    drain::Step::Remove => d.steps.push(Step::Apply(Action::Remove { name })),
                    drain::Step::Force => {
                        d.steps.push(Step::Kill { name: name.clone() });
                        d.steps.push(Step::Apply(Action::Remove { name }));
                    }
                }
            }
            Action::SetState {
                ref name,
                state: AdminState::Drain,
            } if by_name.get(name.as_str()).map(|s| s.admin) == Some(AdminState::Maint) => {}
            other => d.steps.push(Step::Apply(other)),
        }
    }
    // Every put before any state change: each new server's health check starts at its
    // put, so after a reload the checks of all servers run at once and the node is
    // whole after one check interval instead of one per server.
    d.steps
        .sort_by_key(|s| !matches!(s, Step::Apply(Action::Put { .. })));
    d
}

/// Servers in drain (or maintenance) that the desired set no longer holds: the ones
/// whose drain clock runs.
pub fn draining(desired: &DesiredSet, current: &[ServerStatus]) -> BTreeSet<String> {
    current
        .iter()
        .filter(|s| desired.is_managed(&s.name) && !desired.servers.contains_key(&s.name))
        .map(|s| s.name.clone())
        .collect()
}

/// Run the steps in order on the node, stopping at the first error. Returns how many ran.
pub async fn execute(
    node: &dyn balancer::Balancer,
    steps: &[Step],
) -> (usize, Result<(), balancer::BalancerError>) {
    for (i, s) in steps.iter().enumerate() {
        let r = match s {
            Step::Apply(a) => balancer::execute(node, std::slice::from_ref(a)).await,
            Step::Kill { name } => node.kill_sessions(name).await,
        };
        if let Err(e) = r {
            return (i, Err(e));
        }
    }
    (steps.len(), Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::{OperState, ServerSpec};

    fn spec(name: &str) -> ServerSpec {
        ServerSpec {
            name: name.into(),
            address: "10.0.0.1".into(),
            port: 5432,
            weight: 100,
            check: true,
            slowstart_ms: 30_000,
        }
    }

    fn status(name: &str, admin: AdminState, sessions: u64) -> ServerStatus {
        let s = spec(name);
        ServerStatus {
            name: s.name,
            address: s.address,
            port: s.port,
            weight: s.weight,
            check: s.check,
            admin,
            oper: OperState::Up,
            sessions,
            total_sessions: 0,
        }
    }

    const DEADLINE: Duration = Duration::from_secs(120);

    fn run(
        desired: &DesiredSet,
        current: &[ServerStatus],
        in_flight: &[&str],
        age: &[(&str, u64)],
    ) -> Decision {
        decide(
            desired,
            current,
            &in_flight.iter().map(|s| s.to_string()).collect(),
            &age.iter()
                .map(|(n, s)| (n.to_string(), Duration::from_secs(*s)))
                .collect(),
            DEADLINE,
        )
    }

    #[test]
    fn missing_servers_are_put_with_their_slowstart_and_made_ready() {
        let mut d = DesiredSet::new("pgsurge-c-");
        d.insert(spec("pgsurge-c-a"), AdminState::Ready);
        let got = run(&d, &[status("base-1", AdminState::Ready, 3)], &[], &[]);
        assert_eq!(
            got.steps,
            vec![
                Step::Apply(Action::Put {
                    spec: spec("pgsurge-c-a")
                }),
                Step::Apply(Action::SetState {
                    name: "pgsurge-c-a".into(),
                    state: AdminState::Ready
                }),
            ]
        );
        assert!(
            matches!(&got.steps[0], Step::Apply(Action::Put { spec }) if spec.slowstart_ms == 30_000)
        );
        // Converged: nothing to do, the base server is never touched.
        let current = [
            status("base-1", AdminState::Ready, 3),
            status("pgsurge-c-a", AdminState::Ready, 0),
        ];
        assert_eq!(run(&d, &current, &[], &[]), Decision::default());
    }

    #[test]
    fn a_stray_is_drained_first_and_removed_only_without_sessions_or_past_the_deadline() {
        let d = DesiredSet::new("pgsurge-c-");
        let drain = |n: &str| {
            Step::Apply(Action::SetState {
                name: n.into(),
                state: AdminState::Drain,
            })
        };
        let remove = |n: &str| Step::Apply(Action::Remove { name: n.into() });
        // Ready: drained, never removed in the same interval, sessions or not.
        let got = run(&d, &[status("pgsurge-c-x", AdminState::Ready, 0)], &[], &[]);
        assert_eq!(got.steps, vec![drain("pgsurge-c-x")]);
        // Draining with sessions before the deadline: wait.
        let got = run(
            &d,
            &[status("pgsurge-c-x", AdminState::Drain, 2)],
            &[],
            &[("pgsurge-c-x", 119)],
        );
        assert!(got.steps.is_empty());
        assert_eq!(got.waiting.get("pgsurge-c-x"), Some(&2));
        // Sessions ended: removed.
        let got = run(&d, &[status("pgsurge-c-x", AdminState::Drain, 0)], &[], &[]);
        assert_eq!(got.steps, vec![remove("pgsurge-c-x")]);
        // Deadline passed with sessions: shut them down, then remove.
        let got = run(
            &d,
            &[status("pgsurge-c-x", AdminState::Drain, 2)],
            &[],
            &[("pgsurge-c-x", 120)],
        );
        assert_eq!(
            got.steps,
            vec![
                Step::Kill {
                    name: "pgsurge-c-x".into()
                },
                remove("pgsurge-c-x")
            ]
        );
    }

    #[test]
    fn the_agent_leaves_the_functions_work_in_progress_alone() {
        let mut d = DesiredSet::new("pgsurge-c-");
        // instance-ready is putting pgsurge-c-new in (its replica is still pending).
        let got = run(
            &d,
            &[status("pgsurge-c-new", AdminState::Maint, 0)],
            &["pgsurge-c-new"],
            &[],
        );
        assert!(got.steps.is_empty(), "{got:?}");
        // scale-down has put pgsurge-c-old in maint on its way out (still `draining`).
        d.insert(spec("pgsurge-c-old"), AdminState::Drain);
        let got = run(
            &d,
            &[status("pgsurge-c-old", AdminState::Maint, 0)],
            &[],
            &[],
        );
        assert!(got.steps.is_empty(), "{got:?}");
        // ... and has removed it already: it is not put back.
        let got = run(&d, &[], &[], &[]);
        assert!(got.steps.is_empty(), "{got:?}");
    }

    #[test]
    fn pending_replicas_are_in_flight() {
        use crate::model::{Phase, Replica};
        let mut s = ClusterState::new("c");
        let r = |id: &str, role, phase| Replica {
            id: id.into(),
            role,
            phase,
            server_id: None,
            volume_id: None,
            az: None,
            address: None,
            created_at: time::OffsetDateTime::UNIX_EPOCH,
            op_id: None,
            since: Default::default(),
            extra: Default::default(),
        };
        s.replicas = vec![
            r("a", Role::Surge, Phase::CatchingUp),
            r("b", Role::Surge, Phase::Serving),
            r("c", Role::Surge, Phase::Deleting),
            r("d", Role::Base, Phase::Booting),
        ];
        assert_eq!(
            in_flight(&s, "c").into_iter().collect::<Vec<_>>(),
            vec!["pgsurge-c-a".to_string()]
        );
    }
}
