//! `pgsurge base add`: register an existing replica — made by people, on any provider —
//! as a base replica of this cluster, so scale-up has a serving volume to snapshot.
//!
//! Nothing is recorded until every check passed, in this order (the cheap and local
//! ones first):
//! 1. the request itself (id, `host:port`) — pure, [`BaseReplica::validate`];
//! 2. the state: the id is free, or already this very replica (adding twice changes
//!    nothing and writes nothing); no other replica records the same server, volume or
//!    address — pure, [`against_state`];
//! 3. the cloud: the server exists and runs, the volume exists and is attached to it, in
//!    the given zone if one was given; their labels, when they carry any, say this
//!    cluster, role `base` and this id (a base replica made by people may carry none:
//!    `status` and `reconcile` find it by the ids recorded here) — [`check_labels`] pure;
//! 4. PostgreSQL at the address: in recovery, with the primary's system identifier.
//!
//! Then one compare-and-swap adds it as `base`, `serving`, the checks of step 2 repeated
//! inside it so a concurrent add of the same or a conflicting replica is caught. pgsurge
//! never removes a base replica (scale-down proves `pgsurge_role=surge` first).

use super::desired::split_address;
use super::Ports;
use crate::cloud::{CloudError, Metadata, Status, META_CLUSTER, META_REPLICA, META_ROLE};
use crate::model::{ClusterState, Phase, Replica, Role};
use crate::postgres::PgError;
use crate::state::{StateError, UpdateError};
use serde::Serialize;
use std::collections::BTreeMap;
use time::OffsetDateTime;

/// What the operator says the replica is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BaseReplica {
    /// Replica id in the state (and in resource names, `pgsurge-<cluster>-<id>`).
    pub id: String,
    pub server_id: String,
    pub volume_id: String,
    /// `host:port` HAProxy (and the readiness checks) reach its PostgreSQL at.
    pub address: String,
    /// Availability zone; `None`: the volume's (or the server's), as the cloud reports it.
    pub az: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum BaseError {
    #[error("invalid {field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// The state already holds something that contradicts this replica.
    #[error("the state disagrees: {0}")]
    State(String),
    /// The cloud's view contradicts the request (missing, stopped, detached, labels).
    #[error("the cloud disagrees: {0}")]
    Cloud(String),
    /// PostgreSQL at the address is not a standby of this cluster.
    #[error("PostgreSQL at {address} {why}")]
    Postgres { address: String, why: String },
    #[error(transparent)]
    CloudCall(#[from] CloudError),
    #[error(transparent)]
    PgCall(#[from] PgError),
    #[error(transparent)]
    StateStore(#[from] StateError),
}

/// The outcome: recorded now, or already recorded exactly so (nothing written).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Added {
    Registered { replica: Replica },
    AlreadyRegistered { replica: Replica },
}

impl BaseReplica {
    /// The request on its own: an id usable in resource names, a `host:port` address.
    pub fn validate(&self) -> Result<(), BaseError> {
        let id_ok = !self.id.is_empty()
            && self.id.len() <= 40
            && self
                .id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !self.id.starts_with('-');
        if !id_ok {
            return Err(BaseError::Invalid {
                field: "id",
                message: format!(
                    "{:?}: 1 to 40 of a-z, 0-9 and '-', not starting with '-'",
                    self.id
                ),
            });
        }
        for (field, v) in [("server", &self.server_id), ("volume", &self.volume_id)] {
            if v.trim().is_empty() || v.trim() != v {
                return Err(BaseError::Invalid {
                    field,
                    message: format!("{v:?} is not an id"),
                });
            }
        }
        match split_address(&self.address) {
            Some((host, port)) if !host.is_empty() && port != 0 => Ok(()),
            _ => Err(BaseError::Invalid {
                field: "address",
                message: format!("{:?} is not host:port", self.address),
            }),
        }
    }

    fn replica(&self, az: Option<String>, now: OffsetDateTime) -> Replica {
        Replica {
            id: self.id.clone(),
            role: Role::Base,
            phase: Phase::Serving,
            server_id: Some(self.server_id.clone()),
            volume_id: Some(self.volume_id.clone()),
            az,
            address: Some(self.address.clone()),
            created_at: now,
            op_id: None,
            since: Default::default(),
            extra: BTreeMap::new(),
        }
    }
}

/// Step 2 (pure): `Some(existing)` when exactly this replica is already recorded as
/// base; `None` when the id is free and nothing else claims its server, volume or address.
pub fn against_state(state: &ClusterState, b: &BaseReplica) -> Result<Option<Replica>, BaseError> {
    if let Some(r) = state.replicas.iter().find(|r| r.id == b.id) {
        let same = r.role == Role::Base
            && r.server_id.as_deref() == Some(b.server_id.as_str())
            && r.volume_id.as_deref() == Some(b.volume_id.as_str())
            && r.address.as_deref() == Some(b.address.as_str())
            && (b.az.is_none() || r.az == b.az);
        return if same {
            Ok(Some(r.clone()))
        } else {
            Err(BaseError::State(format!(
                "replica {:?} is already recorded, differently: {} {}, server {}, volume {}, address {}",
                r.id,
                r.role.as_str(),
                r.phase.as_str(),
                r.server_id.as_deref().unwrap_or("-"),
                r.volume_id.as_deref().unwrap_or("-"),
                r.address.as_deref().unwrap_or("-"),
            )))
        };
    }
    for r in &state.replicas {
        for (what, theirs, ours) in [
            ("server", &r.server_id, &b.server_id),
            ("volume", &r.volume_id, &b.volume_id),
            ("address", &r.address, &b.address),
        ] {
            if theirs.as_deref() == Some(ours.as_str()) {
                return Err(BaseError::State(format!(
                    "{what} {ours} is already replica {:?}'s ({})",
                    r.id,
                    r.role.as_str()
                )));
            }
        }
    }
    Ok(None)
}

/// Step 3's labels (pure): a label that is present must say this cluster, `base` and
/// this id. `what` names the resource in the refusal.
pub fn check_labels(what: &str, meta: &Metadata, cluster: &str, id: &str) -> Result<(), BaseError> {
    for (key, want) in [
        (META_CLUSTER, cluster),
        (META_ROLE, "base"),
        (META_REPLICA, id),
    ] {
        if let Some(v) = meta.get(key) {
            if v != want {
                return Err(BaseError::Cloud(format!(
                    "{what} is labelled {key}={v:?}, not {want:?}"
                )));
            }
        }
    }
    Ok(())
}

/// Register `b` as a base replica of this cluster (see the module comment).
pub async fn add_base(
    ports: &Ports,
    b: &BaseReplica,
    now: OffsetDateTime,
) -> Result<Added, BaseError> {
    b.validate()?;
    let state = ports.state.load().await?.state;
    if let Some(replica) = against_state(&state, b)? {
        return Ok(Added::AlreadyRegistered { replica });
    }

    let cloud = ports.cloud.as_ref();
    let server = match cloud.get_server(&b.server_id).await {
        Err(CloudError::NotFound { .. }) => {
            return Err(BaseError::Cloud(format!(
                "server {} not found",
                b.server_id
            )))
        }
        other => other?,
    };
    let volume = match cloud.get_volume(&b.volume_id).await {
        Err(CloudError::NotFound { .. }) => {
            return Err(BaseError::Cloud(format!(
                "volume {} not found",
                b.volume_id
            )))
        }
        other => other?,
    };
    if server.status != Status::Ready {
        return Err(BaseError::Cloud(format!(
            "server {} is {:?}, not running",
            server.id, server.status
        )));
    }
    if !server.volume_ids.contains(&volume.id) {
        return Err(BaseError::Cloud(format!(
            "volume {} is not attached to server {} (attached: {:?})",
            volume.id, server.id, server.volume_ids
        )));
    }
    check_labels(
        &format!("server {}", server.id),
        &server.metadata,
        &ports.cluster,
        &b.id,
    )?;
    check_labels(
        &format!("volume {}", volume.id),
        &volume.metadata,
        &ports.cluster,
        &b.id,
    )?;
    // Clones of its snapshots land in the volume's zone: that is where the replica is.
    let az = match (&b.az, volume.az.as_ref().or(server.az.as_ref())) {
        (Some(want), Some(is)) if want != is => {
            return Err(BaseError::Cloud(format!(
                "volume {} is in zone {is:?}, not {want:?}",
                volume.id
            )))
        }
        (want, is) => want.clone().or_else(|| is.cloned()),
    };

    let (host, port) = split_address(&b.address).expect("validated");
    let endpoint = crate::model::Endpoint { host, port };
    let primary = ports.pg.primary_status().await?;
    let replica = ports.pg.replica_status(&endpoint).await?;
    if !replica.in_recovery {
        return Err(BaseError::Postgres {
            address: b.address.clone(),
            why: "is not in recovery (pg_is_in_recovery() = false): a primary, not a replica"
                .into(),
        });
    }
    if replica.system_identifier != primary.system_identifier {
        return Err(BaseError::Postgres {
            address: b.address.clone(),
            why: format!(
                "belongs to another cluster: system identifier {}, the primary's is {}",
                replica.system_identifier, primary.system_identifier
            ),
        });
    }

    let new = b.replica(az, now);
    let recorded = ports
        .state
        .update(now, |s| match against_state(s, b)? {
            // a concurrent `base add` of the very same replica won: write nothing
            Some(existing) => Err(Raced(Box::new(Ok(existing)))),
            None => {
                s.replicas.push(new.clone());
                Ok(())
            }
        })
        .await;
    match recorded {
        Ok(_) => {
            tracing::info!(replica = %b.id, server = %b.server_id, volume = %b.volume_id,
                address = %b.address, "base replica registered");
            Ok(Added::Registered { replica: new })
        }
        Err(UpdateError::Aborted(Raced(raced))) => match *raced {
            Ok(replica) => Ok(Added::AlreadyRegistered { replica }),
            Err(e) => Err(e),
        },
        Err(UpdateError::State(e)) => Err(e.into()),
    }
}

/// Why the compare-and-swap wrote nothing: the replica is there already, or a conflict
/// (boxed: the closure's error travels through every retry of the update loop).
struct Raced(Box<Result<Replica, BaseError>>);

impl From<BaseError> for Raced {
    fn from(e: BaseError) -> Self {
        Raced(Box::new(Err(e)))
    }
}

/// The base replicas the state records (for `pgsurge base list`).
pub fn base_replicas(state: &ClusterState) -> Vec<&Replica> {
    state
        .replicas
        .iter()
        .filter(|r| r.role == Role::Base)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> BaseReplica {
        BaseReplica {
            id: "b1".into(),
            server_id: "srv-1".into(),
            volume_id: "vol-1".into(),
            address: "10.0.0.5:5432".into(),
            az: None,
        }
    }

    fn state_with(r: Replica) -> ClusterState {
        let mut s = ClusterState::new("c");
        s.replicas.push(r);
        s
    }

    #[test]
    fn requests_are_validated_field_by_field() {
        assert!(spec().validate().is_ok());
        let bad = |f: fn(&mut BaseReplica), field: &str| {
            let mut b = spec();
            f(&mut b);
            match b.validate() {
                Err(BaseError::Invalid { field: got, .. }) => assert_eq!(got, field),
                other => panic!("{other:?}"),
            }
        };
        bad(|b| b.id = "B 1".into(), "id");
        bad(|b| b.id = String::new(), "id");
        bad(|b| b.server_id = " ".into(), "server");
        bad(|b| b.volume_id = String::new(), "volume");
        bad(|b| b.address = "10.0.0.5".into(), "address");
        bad(|b| b.address = "10.0.0.5:0".into(), "address");
        bad(|b| b.address = ":5432".into(), "address");
    }

    #[test]
    fn the_same_replica_twice_is_a_no_op_anything_else_a_refusal() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let s = state_with(spec().replica(Some("az1".into()), now));
        assert!(against_state(&s, &spec()).unwrap().is_some());
        let mut other_addr = spec();
        other_addr.address = "10.0.0.6:5432".into();
        assert!(matches!(
            against_state(&s, &other_addr),
            Err(BaseError::State(m)) if m.contains("differently")
        ));
        // another id, same volume: refused, naming the owner
        let mut other_id = spec();
        other_id.id = "b2".into();
        other_id.server_id = "srv-2".into();
        other_id.address = "10.0.0.6:5432".into();
        assert!(matches!(
            against_state(&s, &other_id),
            Err(BaseError::State(m)) if m.contains("volume vol-1") && m.contains("\"b1\"")
        ));
        // a surge replica of that id is not "the same"
        let mut surge = spec().replica(None, now);
        surge.role = Role::Surge;
        assert!(against_state(&state_with(surge), &spec()).is_err());
        assert!(against_state(&ClusterState::new("c"), &spec())
            .unwrap()
            .is_none());
    }

    #[test]
    fn labels_may_be_absent_but_never_say_otherwise() {
        let m = |pairs: &[(&str, &str)]| -> Metadata {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(check_labels("server s", &Metadata::new(), "c", "b1").is_ok());
        assert!(check_labels(
            "server s",
            &m(&[
                (META_CLUSTER, "c"),
                (META_ROLE, "base"),
                (META_REPLICA, "b1")
            ]),
            "c",
            "b1"
        )
        .is_ok());
        for (pairs, needle) in [
            (&[(META_CLUSTER, "d")][..], "pgsurge_cluster=\"d\""),
            (&[(META_ROLE, "surge")][..], "pgsurge_role=\"surge\""),
            (&[(META_REPLICA, "b2")][..], "pgsurge_replica=\"b2\""),
        ] {
            let e = check_labels("server s", &m(pairs), "c", "b1").unwrap_err();
            assert!(e.to_string().contains(needle), "{e}");
        }
    }
}
