//! Cluster scoping: which of an event's alarms are for this cluster.
//!
//! One Alertmanager, Aodh or SMN topic commonly serves many clusters, and every
//! pgsurge deployment behind it receives every alarm. An alarm counts only when it names
//! this cluster (`cluster.name`) in its `cluster` parameter — the `pgsurge_cluster`
//! label or `pgsurge.cluster` annotation (Alertmanager), `pgsurge.cluster=<name>` in
//! the alarm name or reason (Aodh) or description (Cloud Eye; or a `pgsurge_cluster`
//! dimension), `params.cluster` (generic). One that names another cluster is ignored,
//! with the reason. One that names none is ignored unless `cluster.require_label =
//! false`: a wrongly accepted alarm creates servers in (or removes replicas from) the
//! wrong cluster, a wrongly ignored one is a missed scale visible in the answer.
//!
//! Pure: [`ClusterScope::apply`] splits an event; the receiver skips parameter limits
//! for alarms out of scope (another cluster's limits are not ours to enforce).

use super::{Alarm, Event, InstanceEvent};
use crate::events::ClusterConfig;

/// This cluster, as alarms must name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterScope {
    pub name: String,
    /// An alarm that names no cluster is ignored (true) or taken as ours (false).
    pub require_label: bool,
}

/// An event with the alarms of other clusters taken out.
#[derive(Debug, Clone, PartialEq)]
pub struct Scoped {
    /// The alarms for this cluster; the event unchanged when nothing in it is.
    pub event: Event,
    /// Whether anything in the event is for this cluster.
    pub in_scope: bool,
    /// Why each left-out alarm (or the instance event) was left out.
    pub ignored: Vec<String>,
}

impl ClusterScope {
    pub fn new(c: &ClusterConfig) -> Self {
        ClusterScope {
            name: c.name.clone(),
            require_label: c.require_label,
        }
    }

    /// Why `alarm` is not for this cluster; `None` when it is.
    pub fn refuses(&self, alarm: &Alarm) -> Option<String> {
        match alarm.params.cluster.as_deref() {
            Some(c) if c == self.name => None,
            Some(c) => Some(format!(
                "alarm {:?} is for cluster {c:?}, not {:?}",
                alarm.name, self.name
            )),
            None if !self.require_label => None,
            None => {
                // The usual near miss: Prometheus' own `cluster` label, which names the
                // Prometheus / Kubernetes cluster and is therefore not read.
                let hint = alarm
                    .resource
                    .get("cluster")
                    .map(|c| {
                        format!(
                            " (its `cluster` label {c:?} is not read: label it \
                             `pgsurge_cluster`)"
                        )
                    })
                    .unwrap_or_default();
                Some(format!(
                    "alarm {:?} names no cluster{hint}; with cluster.require_label = true \
                     an alarm must name {:?} (Alertmanager label pgsurge_cluster, \
                     pgsurge.cluster=<name> in an Aodh alarm name or Cloud Eye \
                     description, generic params.cluster)",
                    alarm.name, self.name
                ))
            }
        }
    }

    /// Why an instance event is not for this cluster: only when it names another one
    /// (without a name it is read against this cluster's state, which knows its servers).
    pub fn refuses_instance(&self, i: &InstanceEvent) -> Option<String> {
        match i.cluster.as_deref() {
            Some(c) if c != self.name => Some(format!(
                "instance event for cluster {c:?}, not {:?}",
                self.name
            )),
            _ => None,
        }
    }

    /// Split `event` into what is for this cluster and why the rest is not.
    pub fn apply(&self, event: Event) -> Scoped {
        match event {
            Event::Alarms { alarms } => {
                let mut ignored = Vec::new();
                let ours: Vec<Alarm> = alarms
                    .iter()
                    .filter(|a| match self.refuses(a) {
                        Some(why) => {
                            ignored.push(why);
                            false
                        }
                        None => true,
                    })
                    .cloned()
                    .collect();
                if ours.is_empty() {
                    Scoped {
                        event: Event::Alarms { alarms },
                        in_scope: false,
                        ignored,
                    }
                } else {
                    Scoped {
                        event: Event::Alarms { alarms: ours },
                        in_scope: true,
                        ignored,
                    }
                }
            }
            Event::Instance(i) => {
                let why = self.refuses_instance(&i);
                Scoped {
                    in_scope: why.is_none(),
                    ignored: why.into_iter().collect(),
                    event: Event::Instance(i),
                }
            }
            other => Scoped {
                event: other,
                in_scope: true,
                ignored: Vec::new(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{AlarmParams, AlarmState, InstanceKind, Source};

    fn alarm(name: &str, cluster: Option<&str>) -> Alarm {
        Alarm {
            source: Source::Generic,
            id: name.into(),
            name: name.into(),
            state: AlarmState::Firing,
            metric: None,
            value: None,
            threshold: None,
            resource: Default::default(),
            at: None,
            params: AlarmParams {
                cluster: cluster.map(str::to_string),
                ..Default::default()
            },
        }
    }

    fn scope(require_label: bool) -> ClusterScope {
        ClusterScope {
            name: "catalog".into(),
            require_label,
        }
    }

    #[test]
    fn only_this_clusters_alarms_count() {
        let event = Event::Alarms {
            alarms: vec![
                alarm("a", Some("billing")),
                alarm("b", Some("catalog")),
                alarm("c", None),
            ],
        };
        let s = scope(true).apply(event.clone());
        assert!(s.in_scope);
        assert_eq!(
            s.event,
            Event::Alarms {
                alarms: vec![alarm("b", Some("catalog"))]
            }
        );
        assert_eq!(s.ignored.len(), 2);
        assert!(s.ignored[0].contains("is for cluster \"billing\", not \"catalog\""));
        assert!(s.ignored[1].contains("names no cluster"));
        let open = scope(false).apply(event);
        assert_eq!(
            open.event,
            Event::Alarms {
                alarms: vec![alarm("b", Some("catalog")), alarm("c", None)]
            }
        );
        assert_eq!(open.ignored.len(), 1);
    }

    #[test]
    fn nothing_for_us_keeps_the_event_and_says_why() {
        let event = Event::Alarms {
            alarms: vec![alarm("a", Some("billing"))],
        };
        let s = scope(false).apply(event.clone());
        assert!(!s.in_scope);
        assert_eq!(s.event, event);
        let mut prom = alarm("p", None);
        prom.resource.insert("cluster".into(), "billing".into());
        let why = scope(true).refuses(&prom).unwrap();
        assert!(
            why.contains("`cluster` label \"billing\" is not read"),
            "{why}"
        );
    }

    #[test]
    fn instance_events_and_ticks() {
        let inst = |c: Option<&str>| {
            Event::Instance(InstanceEvent {
                source: Source::Generic,
                kind: InstanceKind::Deleted,
                server_id: Some("s".into()),
                replica_id: None,
                at: None,
                cluster: c.map(str::to_string),
            })
        };
        assert!(!scope(true).apply(inst(Some("billing"))).in_scope);
        assert!(scope(true).apply(inst(Some("catalog"))).in_scope);
        assert!(scope(true).apply(inst(None)).in_scope);
        assert!(scope(true).apply(Event::Tick).in_scope);
    }
}
