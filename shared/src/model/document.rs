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
//!   is refused ([`DocumentError::TooNew`]) rather than silently downgraded.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use std::collections::BTreeMap;
use time::OffsetDateTime;

/// The schema this build writes.
pub const SCHEMA_VERSION: u32 = 1;

/// How many decided alarm ids are remembered for de-duplication.
pub const DECIDED_ALARMS_KEPT: usize = 256;

/// Why a stored document cannot be used by this build.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    #[error("state document `{key}` is not valid: {message}")]
    Corrupt { key: String, message: String },
    #[error(
        "state document `{key}` was written by a newer pgsurge and needs reader version \
         {needed}; this build reads version {have}: upgrade before it writes again"
    )]
    TooNew { key: String, needed: u32, have: u32 },
}

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
    /// Resources labelled with this cluster that the state did not know, by
    /// `<kind>:<id>` (`server:…`, `volume:…`), with when reconcile first saw them so.
    /// The orphan grace period runs from here, not from the resource's creation: a
    /// state document that was lost or replaced must not make every long-lived replica
    /// an orphan past its grace at once.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unknown_since: BTreeMap<String, Timestamp>,
    /// Fields written by a newer pgsurge: preserved untouched.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

fn one() -> u32 {
    1
}

/// An instant, serialised as RFC 3339 (a newtype so maps and options of it serialise).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Timestamp(#[serde(with = "time::serde::rfc3339")] pub OffsetDateTime);

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
    /// When it entered each phase on its way to serving. Declared before `extra`: a
    /// flattened struct takes its keys first, so they never also land in `extra`.
    #[serde(flatten)]
    pub since: PhaseTimes,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// When a replica entered the phases on its way to serving (phase durations, metrics).
///
/// The JSON keys (`booting_since`, `catching_up_since`, `serving_since`,
/// `agents_register_since`, RFC 3339) are
/// the ones earlier versions kept as untyped entries of the replica's `extra`, so a
/// document of either version loads with the same meaning, and an older reader keeps
/// them as unknown fields. A value that is not a valid time reads as absent, as the
/// older code read it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PhaseTimes {
    #[serde(
        rename = "booting_since",
        with = "lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub booting: Option<Timestamp>,
    #[serde(
        rename = "catching_up_since",
        with = "lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub catching_up: Option<Timestamp>,
    #[serde(
        rename = "serving_since",
        with = "lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub serving: Option<Timestamp>,
    /// When instance-ready, the replica verified, asked the agent-only HAProxy nodes to
    /// register it (`ops::agent_register`); it is in the desired set from then on.
    #[serde(
        rename = "agents_register_since",
        with = "lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub agents_asked: Option<Timestamp>,
}

impl PhaseTimes {
    /// Record that the replica entered `phase` at `at` (phases without a time: nothing).
    pub fn entered(&mut self, phase: &Phase, at: OffsetDateTime) {
        let slot = match phase {
            Phase::Booting => &mut self.booting,
            Phase::CatchingUp => &mut self.catching_up,
            Phase::Serving => &mut self.serving,
            _ => return,
        };
        *slot = Some(Timestamp(at));
    }
}

/// An optional RFC 3339 time that reads anything else (a hand edit) as absent: never a
/// load failure.
mod lenient {
    use super::Timestamp;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
        t.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
        let v = Option::<serde_json::Value>::deserialize(d)?;
        Ok(v.and_then(|v| serde_json::from_value(v).ok()))
    }
}

/// Scale-down's two proofs, recorded before the first destructive step: the cloud's
/// labels said this server is the cluster's surge replica of this id, and PostgreSQL on
/// it was in recovery. Stopping the server makes the second proof impossible to give
/// again (nothing answers), so a `deleting` replica carrying this record may be finished
/// without a live PostgreSQL; the labels, still readable, are checked again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteProof {
    /// The server the proofs were given for (a different id proves nothing).
    pub server_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// The last refusal to act on a replica, and how often it has been given in a row: a
/// refusal that repeats means reconcile cannot move the replica (`status` says so).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub reason: String,
    /// Times this same reason was given in a row.
    pub count: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub first_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub last_at: OffsetDateTime,
}

/// Keys in [`Replica::extra`] for the typed records below. Kept there rather than as
/// struct fields so documents of either version load and round-trip unchanged (an
/// older reader keeps them as unknown fields) and every `Replica { .. }` stays valid.
const DELETE_PROOF: &str = "delete_proof";
const REFUSAL: &str = "refusal";

impl Replica {
    fn typed<T: serde::de::DeserializeOwned>(&self, key: &str) -> Option<T> {
        // A malformed value (a bad hand edit) reads as absent: the conservative answer
        // for both records (no proof; no refusal history).
        self.extra
            .get(key)
            .and_then(|v| serde_json::from_value(v.clone()).ok())
    }

    fn set_typed<T: Serialize>(&mut self, key: &str, value: Option<&T>) {
        match value.map(serde_json::to_value) {
            Some(Ok(v)) => {
                self.extra.insert(key.to_string(), v);
            }
            _ => {
                self.extra.remove(key);
            }
        }
    }

    /// The recorded proof that this replica may be deleted, if any.
    pub fn delete_proof(&self) -> Option<DeleteProof> {
        self.typed(DELETE_PROOF)
    }

    pub fn set_delete_proof(&mut self, proof: Option<&DeleteProof>) {
        self.set_typed(DELETE_PROOF, proof)
    }

    /// The last refusal recorded for this replica, if any.
    pub fn refusal(&self) -> Option<Refusal> {
        self.typed(REFUSAL)
    }

    /// Record that acting on it was refused for `reason` at `now` (counting repeats of
    /// the same reason; a new reason starts a new count).
    pub fn note_refusal(&mut self, reason: &str, now: OffsetDateTime) {
        let next = match self.refusal() {
            Some(r) if r.reason == reason => Refusal {
                count: r.count.saturating_add(1),
                last_at: now,
                ..r
            },
            _ => Refusal {
                reason: reason.to_string(),
                count: 1,
                first_at: now,
                last_at: now,
            },
        };
        self.set_typed(REFUSAL, Some(&next))
    }

    pub fn clear_refusal(&mut self) {
        self.extra.remove(REFUSAL);
    }
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
            unknown_since: BTreeMap::new(),
            extra: BTreeMap::new(),
        }
    }

    /// Parse a stored document, refusing ones this build may not update.
    pub fn from_slice(key: &str, bytes: &[u8]) -> Result<Self, DocumentError> {
        let doc: ClusterState =
            serde_json::from_slice(bytes).map_err(|e| DocumentError::Corrupt {
                key: key.to_string(),
                message: e.to_string(),
            })?;
        if doc.min_reader_version > SCHEMA_VERSION {
            return Err(DocumentError::TooNew {
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

    /// The replica `id`, to change it in an update (absent: a concurrent run forgot it).
    pub fn replica_mut(&mut self, id: &str) -> Option<&mut Replica> {
        self.replicas.iter_mut().find(|r| r.id == id)
    }

    /// Record a snapshot taken, once: a rerun that finds it recorded changes nothing.
    pub fn record_snapshot(&mut self, record: &Snapshot) {
        if !self.snapshots.iter().any(|x| x.id == record.id) {
            self.snapshots.push(record.clone());
        }
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
                DocumentError::TooNew {
                    needed: 4,
                    have: 1,
                    ..
                }
            ),
            "{err}"
        );
        let err = ClusterState::from_slice("k", b"{\"cluster\": 1}").unwrap_err();
        assert!(matches!(err, DocumentError::Corrupt { .. }), "{err}");
    }

    /// A document as 0dc29b6 wrote it (before proofs, refusals and first-seen times).
    const WRITTEN_BY_0DC29B6: &str = r#"{
      "schema_version": 1, "min_reader_version": 1, "cluster": "c", "revision": 4,
      "write_id": "w", "updated_at": "2026-11-25T09:00:00Z",
      "replicas": [
        {"id": "seed", "role": "base", "phase": "serving", "server_id": "s0",
         "volume_id": "v0", "address": "127.0.0.1:6000",
         "created_at": "2026-11-25T08:00:00Z"},
        {"id": "s1-1", "role": "surge", "phase": "deleting", "server_id": "s1",
         "volume_id": "v1", "created_at": "2026-11-25T08:30:00Z", "op_id": "1",
         "serving_since": "2026-11-25T08:31:00Z"}
      ],
      "snapshots": [], "operations": [], "decided_alarms": [],
      "leases": {"remove": {"holder": "1-a", "until": "2026-11-25T09:00:30Z"}}
    }"#;

    #[test]
    fn a_document_written_before_proofs_and_first_seen_times_still_loads() {
        let doc = ClusterState::from_slice("k", WRITTEN_BY_0DC29B6.as_bytes()).unwrap();
        assert!(doc.unknown_since.is_empty());
        let r = doc.replica("s1-1").unwrap();
        // Never proven (written by code that did not record proofs): refuses as before.
        assert_eq!(r.delete_proof(), None);
        assert_eq!(r.refusal(), None);
        assert_eq!(
            r.since.serving.map(|t| t.0),
            Some(
                OffsetDateTime::parse(
                    "2026-11-25T08:31:00Z",
                    &time::format_description::well_known::Rfc3339
                )
                .unwrap()
            )
        );
        // Rewritten unchanged: no new key appears until something is recorded.
        let back: Value = serde_json::from_slice(&doc.to_vec()).unwrap();
        assert!(back.get("unknown_since").is_none(), "{back}");
        assert!(back["replicas"][1].get("delete_proof").is_none(), "{back}");
    }

    /// Phase times as the code before typed fields wrote them (`extra` strings, by
    /// scale-up and instance-ready): they load into the typed fields with the same
    /// meaning, a bad one reads as absent (as before), and they are written back under
    /// the same keys, so that older code reads them as it always did.
    #[test]
    fn phase_times_written_as_extra_strings_load_typed_and_round_trip() {
        let old = r#"{
          "schema_version": 1, "min_reader_version": 1, "cluster": "c", "revision": 9,
          "replicas": [
            {"id": "s1-1", "role": "surge", "phase": "serving", "server_id": "s1",
             "created_at": "2026-11-25T08:30:00Z", "op_id": "1",
             "booting_since": "2026-11-25T08:30:05.5Z",
             "catching_up_since": "2026-11-25T08:30:40Z",
             "serving_since": "2026-11-25T08:31:00Z", "flavor": "m1.large",
             "agents_register_since": "2026-11-25T08:30:50Z"},
            {"id": "s1-2", "role": "surge", "phase": "booting",
             "created_at": "2026-11-25T08:30:00Z", "booting_since": "not a time"}
          ]
        }"#;
        let t = |s: &str| {
            Timestamp(
                OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap(),
            )
        };
        let doc = ClusterState::from_slice("k", old.as_bytes()).unwrap();
        let r = doc.replica("s1-1").unwrap();
        assert_eq!(
            r.since,
            PhaseTimes {
                booting: Some(t("2026-11-25T08:30:05.5Z")),
                catching_up: Some(t("2026-11-25T08:30:40Z")),
                serving: Some(t("2026-11-25T08:31:00Z")),
                agents_asked: Some(t("2026-11-25T08:30:50Z")),
            }
        );
        // Typed, so not also kept untyped; other unknown keys stay in `extra`.
        assert!(!r.extra.contains_key("booting_since"), "{:?}", r.extra);
        assert!(
            !r.extra.contains_key("agents_register_since"),
            "{:?}",
            r.extra
        );
        assert_eq!(r.extra["flavor"], "m1.large");
        assert_eq!(doc.replica("s1-2").unwrap().since, PhaseTimes::default());
        let back: Value = serde_json::from_slice(&doc.to_vec()).unwrap();
        let r0 = &back["replicas"][0];
        assert_eq!(r0["booting_since"], "2026-11-25T08:30:05.5Z");
        assert_eq!(r0["catching_up_since"], "2026-11-25T08:30:40Z");
        assert_eq!(r0["serving_since"], "2026-11-25T08:31:00Z");
        assert_eq!(r0["agents_register_since"], "2026-11-25T08:30:50Z");
        assert_eq!(r0["flavor"], "m1.large");
        // A phase with no time leaves the record alone; the others stamp their own.
        let mut since = PhaseTimes::default();
        since.entered(&Phase::Draining, t("2026-11-25T09:00:00Z").0);
        assert_eq!(since, PhaseTimes::default());
        since.entered(&Phase::CatchingUp, t("2026-11-25T09:00:00Z").0);
        assert_eq!(since.catching_up, Some(t("2026-11-25T09:00:00Z")));
    }

    #[test]
    fn proofs_refusals_and_first_seen_times_round_trip() {
        let t = |s: &str| {
            OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap()
        };
        let mut doc = ClusterState::from_slice("k", WRITTEN_BY_0DC29B6.as_bytes()).unwrap();
        doc.unknown_since
            .insert("server:x".into(), Timestamp(t("2026-11-25T09:01:00Z")));
        let r = &mut doc.replicas[1];
        let proof = DeleteProof {
            server_id: "s1".into(),
            at: t("2026-11-25T09:02:00Z"),
        };
        r.set_delete_proof(Some(&proof));
        r.note_refusal("cannot connect", t("2026-11-25T09:03:00Z"));
        r.note_refusal("cannot connect", t("2026-11-25T09:04:00Z"));
        let back = ClusterState::from_slice("k", &doc.to_vec()).unwrap();
        assert_eq!(back, doc);
        let r = back.replica("s1-1").unwrap();
        assert_eq!(r.delete_proof(), Some(proof));
        let refusal = r.refusal().unwrap();
        assert_eq!(
            (refusal.count, refusal.first_at, refusal.last_at),
            (2, t("2026-11-25T09:03:00Z"), t("2026-11-25T09:04:00Z"))
        );
        // Another reason starts a new count.
        let mut r = r.clone();
        r.note_refusal("labels differ", t("2026-11-25T09:05:00Z"));
        assert_eq!(r.refusal().unwrap().count, 1);
        r.clear_refusal();
        assert_eq!(r.refusal(), None);
        // A reader of 0dc29b6 sees the new records as unknown fields and keeps them:
        // they are plain JSON keys of the replica and of the document.
        let v: Value = serde_json::from_slice(&back.to_vec()).unwrap();
        assert_eq!(v["replicas"][1]["delete_proof"]["server_id"], "s1");
        assert_eq!(v["unknown_since"]["server:x"], "2026-11-25T09:01:00Z");
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
