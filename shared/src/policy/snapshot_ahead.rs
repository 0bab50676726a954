//! Snapshots ahead of time (pure): which availability zones need a new snapshot of a
//! serving base replica now, and which recorded snapshot a scale-up should clone.
//!
//! Why ahead of time: a snapshot taken when the alarm fires is on the alarm's path (3–4 s
//! on the local pool, minutes for a large EVS/Cinder volume under write load). Taken by
//! reconcile every `ops.snapshot_interval_secs`, the scale-up only clones and boots. The
//! cost is the snapshots' storage and the WAL a clone replays (it grows with the
//! snapshot's age: hence `ops.snapshot_max_age_secs`).

use crate::model::{ClusterState, Phase, Role, Snapshot};
use std::collections::{BTreeMap, BTreeSet};
use time::{Duration, OffsetDateTime};

/// Snapshot `extra` key: the availability zone of the replica it was taken of.
pub const EXTRA_AZ: &str = "az";
/// Snapshot `extra` key: who took it (`ahead`: reconcile, ahead of time; `scale-up`).
pub const EXTRA_ORIGIN: &str = "origin";
/// [`EXTRA_ORIGIN`] of a snapshot reconcile took ahead of time.
pub const ORIGIN_AHEAD: &str = "ahead";
/// Snapshot `extra` key: the scale-up operation that took it.
pub const EXTRA_OP: &str = "op";
/// Snapshot `extra` key: the primary's WAL position (`pg_lsn` text) just before the
/// snapshot was requested: a clone of it streams the WAL from about there.
pub const EXTRA_PRIMARY_LSN: &str = "primary_lsn";

/// The zone key of an availability zone (`""`: a provider without zones).
pub fn zone_key(az: Option<&str>) -> String {
    az.unwrap_or_default().to_string()
}

/// The zone of a recorded snapshot: the one recorded with it, else its source replica's
/// (snapshots recorded before zones were).
pub fn snapshot_zone(state: &ClusterState, s: &Snapshot) -> String {
    if let Some(az) = s.extra.get(EXTRA_AZ).and_then(|v| v.as_str()) {
        return az.to_string();
    }
    let source = s.source_replica.as_deref().and_then(|id| state.replica(id));
    zone_key(source.and_then(|r| r.az.as_deref()))
}

/// One snapshot to take now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// The zone key ([`zone_key`]).
    pub zone: String,
    /// The serving base replica to snapshot, and its volume.
    pub replica: String,
    pub volume_id: String,
}

/// The zones (of serving base replicas with a volume) whose newest recorded snapshot is
/// older than `interval` (or that have none), with the replica to snapshot in each: the
/// longest-serving base replica there (stable from tick to tick). Zones in `in_flight`
/// (a recorded intent being resumed) are left out. `interval` zero: nothing is ever due.
pub fn due(
    state: &ClusterState,
    now: OffsetDateTime,
    interval: Duration,
    in_flight: &BTreeSet<String>,
) -> Vec<Due> {
    if interval <= Duration::ZERO {
        return Vec::new();
    }
    let mut newest: BTreeMap<String, OffsetDateTime> = BTreeMap::new();
    for s in &state.snapshots {
        let zone = snapshot_zone(state, s);
        let e = newest.entry(zone).or_insert(s.created_at);
        *e = (*e).max(s.created_at);
    }
    let mut sources: BTreeMap<String, Due> = BTreeMap::new();
    let mut bases: Vec<_> = state
        .replicas
        .iter()
        .filter(|r| r.role == Role::Base && r.phase == Phase::Serving && r.volume_id.is_some())
        .collect();
    bases.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    for r in bases {
        let zone = zone_key(r.az.as_deref());
        sources.entry(zone.clone()).or_insert_with(|| Due {
            zone,
            replica: r.id.clone(),
            volume_id: r.volume_id.clone().expect("filtered"),
        });
    }
    sources
        .into_values()
        .filter(|d| !in_flight.contains(&d.zone))
        .filter(|d| newest.get(&d.zone).is_none_or(|t| now - *t >= interval))
        .collect()
}

/// Recorded snapshots a scale-up may clone, best first: no older than `max_age`; in the
/// wanted zone first (a clone lands in its snapshot's zone), then the freshest (less WAL
/// to replay).
pub fn usable<'a>(
    state: &'a ClusterState,
    now: OffsetDateTime,
    max_age: Duration,
    want_az: Option<&str>,
) -> Vec<&'a Snapshot> {
    let mut v: Vec<&Snapshot> = state
        .snapshots
        .iter()
        .filter(|s| now - s.created_at <= max_age)
        .collect();
    v.sort_by_key(|s| {
        let elsewhere = want_az.is_some_and(|az| snapshot_zone(state, s) != az);
        (elsewhere, std::cmp::Reverse(s.created_at))
    });
    v
}

/// Whether a clone of a recorded snapshot can still stream, from the primary, the WAL
/// written since the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalFit {
    /// Within the limit: clone it.
    Fits,
    /// More WAL since the snapshot (`since` bytes) than the limit: a clone could find the
    /// start of what it needs already removed on the primary and never catch up.
    TooMuch { since: u64, limit: u64 },
    /// No position was recorded with the snapshot (or the primary could not be read):
    /// judged by age alone, as before positions were recorded.
    Unknown,
}

/// [`WalFit`] of a snapshot recorded at primary position `recorded` (bytes), now that
/// the primary is at `current`, against `limit` bytes. Why a limit below the primary's
/// `wal_keep_size`: WAL goes on being written while the clone is made and boots, and the
/// clone asks for its first segment only then; half of it is the default margin
/// (`ops.snapshot_max_wal_mb`).
pub fn wal_fit(recorded: Option<u64>, current: Option<u64>, limit: u64) -> WalFit {
    match (recorded, current) {
        (Some(at), Some(now)) => {
            let since = now.saturating_sub(at);
            if since > limit {
                WalFit::TooMuch { since, limit }
            } else {
                WalFit::Fits
            }
        }
        _ => WalFit::Unknown,
    }
}

/// The WAL limit a snapshot's clone may need to stream: `configured` MiB if set, else
/// half of the primary's `wal_keep_size` (`wal_keep_bytes`).
pub fn wal_limit(configured_mb: Option<u64>, wal_keep_bytes: u64) -> u64 {
    match configured_mb {
        Some(mb) => mb.saturating_mul(1 << 20),
        None => wal_keep_bytes / 2,
    }
}

/// Where the snapshot a scale-up cloned came from (the operation record, the log, the
/// `pgsurge_scale_up_snapshots_total{source}` metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotSource {
    /// Taken ahead of time by reconcile.
    Ahead,
    /// Taken by an earlier scale-up, still young enough.
    Reused,
    /// None was fresh enough: this scale-up took it, on the alarm's path.
    Taken,
}

impl SnapshotSource {
    pub fn as_str(self) -> &'static str {
        match self {
            SnapshotSource::Ahead => "ahead",
            SnapshotSource::Reused => "reused",
            SnapshotSource::Taken => "taken",
        }
    }

    /// A recorded snapshot's source, when scale-up operation `op` clones it (its own,
    /// taken by a run of it that was killed before it said so, is still `Taken`).
    pub fn of_recorded(s: &Snapshot, op: &str) -> SnapshotSource {
        let field = |k: &str| s.extra.get(k).and_then(|v| v.as_str());
        match (field(EXTRA_ORIGIN), field(EXTRA_OP)) {
            (Some(ORIGIN_AHEAD), _) => SnapshotSource::Ahead,
            (_, Some(o)) if o == op => SnapshotSource::Taken,
            _ => SnapshotSource::Reused,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wal_fit_compares_the_wal_since_the_snapshot_with_the_limit() {
        const MIB: u64 = 1 << 20;
        assert_eq!(
            wal_fit(Some(100 * MIB), Some(600 * MIB), 512 * MIB),
            WalFit::Fits
        );
        assert_eq!(
            wal_fit(Some(100 * MIB), Some(700 * MIB), 512 * MIB),
            WalFit::TooMuch {
                since: 600 * MIB,
                limit: 512 * MIB
            }
        );
        // A primary behind the recorded position (a restore, a new primary): nothing since.
        assert_eq!(wal_fit(Some(700 * MIB), Some(100 * MIB), 0), WalFit::Fits);
        assert_eq!(wal_fit(None, Some(1), 0), WalFit::Unknown);
        assert_eq!(wal_fit(Some(1), None, 0), WalFit::Unknown);
        // Unset: half of what the primary keeps; set: exactly that many MiB.
        assert_eq!(wal_limit(None, 1 << 30), 512 * MIB);
        assert_eq!(wal_limit(None, 0), 0);
        assert_eq!(wal_limit(Some(64), 1 << 30), 64 * MIB);
    }
    use crate::model::Replica;
    use serde_json::Value;

    fn t0() -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + Duration::days(20_000)
    }

    fn base(id: &str, az: Option<&str>, phase: Phase, age_h: i64) -> Replica {
        Replica {
            id: id.into(),
            role: Role::Base,
            phase,
            server_id: Some(format!("srv-{id}")),
            volume_id: Some(format!("vol-{id}")),
            az: az.map(str::to_string),
            address: None,
            created_at: t0() - Duration::hours(age_h),
            op_id: None,
            since: Default::default(),
            extra: BTreeMap::new(),
        }
    }

    fn snap(id: &str, source: &str, age: Duration, az: Option<&str>, ahead: bool) -> Snapshot {
        let mut extra = BTreeMap::new();
        if let Some(az) = az {
            extra.insert(EXTRA_AZ.into(), Value::String(az.into()));
        }
        if ahead {
            extra.insert(EXTRA_ORIGIN.into(), Value::String(ORIGIN_AHEAD.into()));
        }
        Snapshot {
            id: id.into(),
            source_replica: Some(source.into()),
            created_at: t0() - age,
            extra,
        }
    }

    fn state(replicas: Vec<Replica>, snapshots: Vec<Snapshot>) -> ClusterState {
        let mut s = ClusterState::new("c");
        s.replicas = replicas;
        s.snapshots = snapshots;
        s
    }

    const MIN15: Duration = Duration::minutes(15);

    #[test]
    fn off_when_the_interval_is_zero() {
        let s = state(vec![base("b", None, Phase::Serving, 1)], vec![]);
        assert!(due(&s, t0(), Duration::ZERO, &BTreeSet::new()).is_empty());
    }

    #[test]
    fn a_zone_without_a_snapshot_is_due_with_its_longest_serving_base() {
        let s = state(
            vec![
                base("young", Some("az1"), Phase::Serving, 1),
                base("old", Some("az1"), Phase::Serving, 5),
            ],
            vec![],
        );
        assert_eq!(
            due(&s, t0(), MIN15, &BTreeSet::new()),
            vec![Due {
                zone: "az1".into(),
                replica: "old".into(),
                volume_id: "vol-old".into()
            }]
        );
    }

    #[test]
    fn one_per_zone_and_only_where_the_newest_is_older_than_the_interval() {
        let s = state(
            vec![
                base("a", Some("az1"), Phase::Serving, 1),
                base("b", Some("az2"), Phase::Serving, 1),
                base("c", Some("az3"), Phase::Serving, 1),
            ],
            vec![
                // az1: the newest is fresh (an older stale one does not matter).
                snap("s1", "a", Duration::minutes(5), Some("az1"), true),
                snap("s0", "a", Duration::hours(3), Some("az1"), true),
                // az2: only a stale one; its zone comes from its source replica.
                snap("s2", "b", Duration::minutes(20), None, false),
                // az3: exactly one interval old: due.
                snap("s3", "c", MIN15, Some("az3"), true),
            ],
        );
        let zones: Vec<String> = due(&s, t0(), MIN15, &BTreeSet::new())
            .into_iter()
            .map(|d| d.zone)
            .collect();
        assert_eq!(zones, ["az2", "az3"]);
    }

    #[test]
    fn only_serving_base_replicas_with_a_volume_are_snapshotted() {
        let mut surge = base("s", None, Phase::Serving, 9);
        surge.role = Role::Surge;
        let mut no_volume = base("nv", Some("az2"), Phase::Serving, 9);
        no_volume.volume_id = None;
        let s = state(
            vec![
                surge,
                no_volume,
                base("booting", Some("az3"), Phase::Booting, 9),
            ],
            vec![],
        );
        assert!(due(&s, t0(), MIN15, &BTreeSet::new()).is_empty());
    }

    #[test]
    fn a_zone_with_an_intent_in_flight_is_not_due_again() {
        let s = state(vec![base("b", None, Phase::Serving, 1)], vec![]);
        let in_flight: BTreeSet<String> = [String::new()].into();
        assert!(due(&s, t0(), MIN15, &in_flight).is_empty());
        assert_eq!(due(&s, t0(), MIN15, &BTreeSet::new()).len(), 1);
    }

    #[test]
    fn scale_up_prefers_its_zone_then_the_freshest_and_never_a_stale_one() {
        let s = state(
            vec![
                base("a", Some("az1"), Phase::Serving, 1),
                base("b", Some("az2"), Phase::Serving, 1),
            ],
            vec![
                snap("old-az1", "a", Duration::minutes(30), Some("az1"), true),
                snap("new-az2", "b", Duration::minutes(1), Some("az2"), true),
                snap("stale", "b", Duration::hours(2), Some("az2"), false),
            ],
        );
        let ids = |v: Vec<&Snapshot>| v.into_iter().map(|s| s.id.clone()).collect::<Vec<_>>();
        let hour = Duration::hours(1);
        assert_eq!(ids(usable(&s, t0(), hour, None)), ["new-az2", "old-az1"]);
        assert_eq!(
            ids(usable(&s, t0(), hour, Some("az1"))),
            ["old-az1", "new-az2"]
        );
        assert!(usable(&s, t0(), Duration::seconds(10), None).is_empty());
    }

    #[test]
    fn the_source_says_who_took_a_recorded_snapshot() {
        let ahead = snap("a", "b", MIN15, None, true);
        let mut other = snap("o", "b", MIN15, None, false);
        other
            .extra
            .insert(EXTRA_OP.into(), Value::String("op1".into()));
        assert_eq!(
            SnapshotSource::of_recorded(&ahead, "op2"),
            SnapshotSource::Ahead
        );
        assert_eq!(
            SnapshotSource::of_recorded(&other, "op2"),
            SnapshotSource::Reused
        );
        assert_eq!(
            SnapshotSource::of_recorded(&other, "op1"),
            SnapshotSource::Taken
        );
        assert_eq!(SnapshotSource::Taken.as_str(), "taken");
    }
}
