//! The cluster state document: one JSON object per cluster.
//!
//! Forward compatibility is the point of most of the code here. Functions of different
//! versions may run against the same document during a rollout, so an older reader must
//! neither choke on nor destroy what a newer writer added:
//! * unknown fields (top level and inside each entry) are kept in `extra` and written back;
//! * unknown phase / role / operation names are kept verbatim (`Other`) and treated
//!   conservatively (never removed, never counted as a surge replica);
//! * `schema_version` says which writer produced the document, `min_reader_version` the
//!   oldest reader that may still update it. A document this build cannot safely rewrite
//!   is refused ([`StateError::TooNew`]) rather than silently downgraded.

use super::StateError;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use std::collections::BTreeMap;
use time::OffsetDateTime;

/// The schema this build writes.
pub const SCHEMA_VERSION: u32 = 1;

/// How many decided alarm ids are remembered for de-duplication.
pub const DECIDED_ALARMS_KEPT: usize = 256;

/// Everything pgsurge knows about one cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterState {
    pub schema_version: u32,
    #[serde(default = "one")]
    pub min_reader_version: u32,
    pub cluster: String,
    /// Incremented by every successful write.
    #[serde(default)]
    pub revision: u64,
    /// Unique id of the write that produced this document: lets a writer whose
    /// response was lost (HTTP 5xx, timeout) recognise its own write on re-read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_id: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub updated_at: Option<OffsetDateTime>,
    #[serde(default)]
    pub replicas: Vec<Replica>,
    #[serde(default)]
    pub snapshots: Vec<Snapshot>,
    /// Operations started and not yet finished (scale-up / scale-down in progress).
    #[serde(default)]
    pub operations: Vec<Operation>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_scale_up_at: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_scale_down_at: Option<OffsetDateTime>,
    /// Alarm occurrences already decided (newest last), so a duplicate decides nothing.
    #[serde(default)]
    pub decided_alarms: Vec<DecidedAlarm>,
    /// Work leases by kind ("create", "register", "remove", "reconcile"): the invocation
    /// holding one is the only one doing that kind of cloud/HAProxy work (see ops::lease).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub leases: BTreeMap<String, Lease>,
    /// Fields written by a newer pgsurge: preserved untouched.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

fn one() -> u32 {
    1
}

/// A time-limited claim on one kind of work, renewed while the holder works.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    /// Who holds it: `<pid>-<random>` of the invocation (for humans and for release).
    pub holder: String,
    /// Void after this instant: a killed holder's work is taken over then.
    #[serde(with = "time::serde::rfc3339")]
    pub until: OffsetDateTime,
}

/// One PostgreSQL replica pgsurge knows about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Replica {
    /// Stable id, used in resource names (`pgsurge-<cluster>-<id>`).
    pub id: String,
    pub role: Role,
    pub phase: Phase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub az: Option<String>,
    /// host:port clients (HAProxy) reach it at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// The operation that created it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op_id: Option<String>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// A block-storage snapshot pgsurge made (or adopted) to clone replicas from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_replica: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// An operation in flight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Operation {
    pub id: String,
    pub kind: OpKind,
    /// Replicas this operation adds or removes in total.
    pub count: u32,
    /// Replicas already recorded for it (a scale-up lists them as it creates them).
    #[serde(default)]
    pub replicas: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alarm_id: Option<String>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// An alarm occurrence that has been decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecidedAlarm {
    pub id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// Defines a string-backed enum whose unknown values survive a round trip.
macro_rules! open_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vm])* $v,)+
            /// A value written by a newer pgsurge; kept verbatim.
            Other(String),
        }

        impl $name {
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$v => $s,)+
                    $name::Other(s) => s,
                }
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                match s {
                    $($s => $name::$v,)+
                    other => $name::Other(other.to_string()),
                }
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Ok($name::from(s.as_str()))
            }
        }
    };
}

open_enum!(
    /// Whether pgsurge may ever remove a replica.
    Role {
        /// Part of the permanent read tier: never removed by pgsurge.
        Base = "base",
        /// Added by pgsurge during a surge: the only kind scale-down removes.
        Surge = "surge",
    }
);

open_enum!(
    /// Where a replica is in its life.
    Phase {
        /// Volume clone / server create requested.
        Creating = "creating",
        /// Server booting, PostgreSQL starting.
        Booting = "booting",
        /// PostgreSQL up, replaying WAL; not yet in HAProxy.
        CatchingUp = "catching-up",
        /// Registered in HAProxy, taking reads.
        Serving = "serving",
        /// Drained in HAProxy, sessions finishing.
        Draining = "draining",
        /// Server and volume being deleted.
        Deleting = "deleting",
        /// Gave up; reconcile cleans it.
        Failed = "failed",
    }
);

open_enum!(
    /// What an operation does.
    OpKind {
        ScaleUp = "scale-up",
        ScaleDown = "scale-down",
    }
);

impl Phase {
    /// Still coming up: counts toward capacity, so a second alarm does not add again.
    pub fn is_pending(&self) -> bool {
        matches!(self, Phase::Creating | Phase::Booting | Phase::CatchingUp)
    }

    /// Counts toward capacity: serving or on its way to serving. An unknown phase
    /// counts too (conservative: it may be serving under a newer pgsurge's name).
    pub fn counts_toward_capacity(&self) -> bool {
        self.is_pending() || matches!(self, Phase::Serving | Phase::Other(_))
    }
}

impl ClusterState {
    /// A fresh, empty document for `cluster`.
    pub fn new(cluster: &str) -> Self {
        ClusterState {
            schema_version: SCHEMA_VERSION,
            min_reader_version: 1,
            cluster: cluster.to_string(),
            revision: 0,
            write_id: None,
            updated_at: None,
            replicas: Vec::new(),
            snapshots: Vec::new(),
            operations: Vec::new(),
            last_scale_up_at: None,
            last_scale_down_at: None,
            decided_alarms: Vec::new(),
            leases: BTreeMap::new(),
            extra: BTreeMap::new(),
        }
    }

    /// Parse a stored document, refusing ones this build may not update.
    pub fn from_slice(key: &str, bytes: &[u8]) -> Result<Self, StateError> {
        let doc: ClusterState = serde_json::from_slice(bytes).map_err(|e| StateError::Corrupt {
            key: key.to_string(),
            message: e.to_string(),
        })?;
        if doc.min_reader_version > SCHEMA_VERSION {
            return Err(StateError::TooNew {
                key: key.to_string(),
                needed: doc.min_reader_version,
                have: SCHEMA_VERSION,
            });
        }
        Ok(doc)
    }

    pub fn to_vec(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a ClusterState always serialises")
    }

    /// Has this alarm occurrence been decided already?
    pub fn alarm_decided(&self, id: &str) -> bool {
        self.decided_alarms.iter().any(|a| a.id == id)
    }

    /// Remember a decided alarm occurrence (bounded: the oldest are forgotten first).
    pub fn remember_alarm(&mut self, id: &str, at: OffsetDateTime) {
        if self.alarm_decided(id) {
            return;
        }
        self.decided_alarms.push(DecidedAlarm {
            id: id.to_string(),
            at,
        });
        let excess = self
            .decided_alarms
            .len()
            .saturating_sub(DECIDED_ALARMS_KEPT);
        self.decided_alarms.drain(..excess);
    }

    pub fn replica(&self, id: &str) -> Option<&Replica> {
        self.replicas.iter().find(|r| r.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_and_values_survive_a_round_trip() {
        let newer = r#"{
          "schema_version": 3, "min_reader_version": 1, "cluster": "c", "revision": 7,
          "future_top": {"x": [1, 2]},
          "replicas": [{"id": "r1", "role": "canary", "phase": "hibernating",
                        "created_at": "2026-11-25T09:00:00Z", "gpu": true}],
          "operations": [{"id": "o", "kind": "rebalance", "count": 1,
                          "started_at": "2026-11-25T09:00:00Z"}]
        }"#;
        let doc = ClusterState::from_slice("k", newer.as_bytes()).unwrap();
        assert_eq!(doc.replicas[0].role, Role::Other("canary".into()));
        assert_eq!(doc.replicas[0].phase, Phase::Other("hibernating".into()));
        assert!(doc.replicas[0].phase.counts_toward_capacity());
        let back: Value = serde_json::from_slice(&doc.to_vec()).unwrap();
        assert_eq!(back["future_top"]["x"][1], 2);
        assert_eq!(back["replicas"][0]["gpu"], true);
        assert_eq!(back["replicas"][0]["role"], "canary");
        assert_eq!(back["operations"][0]["kind"], "rebalance");
        assert_eq!(back["schema_version"], 3);
    }

    #[test]
    fn a_document_for_newer_readers_only_is_refused() {
        let err = ClusterState::from_slice(
            "k",
            br#"{"schema_version": 5, "min_reader_version": 4, "cluster": "c"}"#,
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                StateError::TooNew {
                    needed: 4,
                    have: 1,
                    ..
                }
            ),
            "{err}"
        );
        let err = ClusterState::from_slice("k", b"{\"cluster\": 1}").unwrap_err();
        assert!(matches!(err, StateError::Corrupt { .. }), "{err}");
    }

    #[test]
    fn decided_alarms_are_bounded() {
        let mut s = ClusterState::new("c");
        let t = OffsetDateTime::UNIX_EPOCH;
        for i in 0..(DECIDED_ALARMS_KEPT + 10) {
            s.remember_alarm(&format!("a{i}"), t);
        }
        s.remember_alarm("a300", t);
        assert_eq!(s.decided_alarms.len(), DECIDED_ALARMS_KEPT);
        assert!(!s.alarm_decided("a0"));
        assert!(s.alarm_decided(&format!("a{}", DECIDED_ALARMS_KEPT + 9)));
    }
}
