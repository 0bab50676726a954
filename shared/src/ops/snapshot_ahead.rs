//! reconcile's snapshots ahead of time: one fresh snapshot of a serving base replica per
//! availability zone, so that a scale-up only clones and boots (`ops.snapshot_interval_secs`;
//! which zones are due is decided by `policy::snapshot_ahead`, purely).
//!
//! Crash safety: the intent (name, source, zone) is recorded in the state document before
//! the snapshot is requested, under the `snapshot` work lease. A run killed after the
//! request leaves an intent; the next reconcile finds the snapshot by its name and labels
//! (`ensure_snapshot` adopts it), waits for it and records it, or drops the intent when the
//! source is gone and nothing was made. A snapshot with a recorded intent is not an
//! orphan; one whose intent was lost too is (its name and labels are scale-up's form, so
//! reconcile's orphan sweep deletes it after the grace period).

use super::meta::snapshot_labels;
use super::{phase_metric, secs_between, OpsError, Ports, Report};
use crate::cloud::{self, ensure_snapshot, CloudError, Filter, SnapshotRequest};
use crate::failpoint;
use crate::model::resource_name;
use crate::model::{ClusterState, Phase, Snapshot};
use crate::policy::snapshot_ahead::{
    due, wal_fit, wal_limit, SnapshotSource, WalFit, EXTRA_AZ, EXTRA_ORIGIN, EXTRA_PRIMARY_LSN,
    ORIGIN_AHEAD,
};
use crate::postgres::{Lsn, PrimaryStatus};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use time::OffsetDateTime;

/// `ClusterState::extra` key: snapshots being taken ahead, by zone key.
pub(crate) const EXTRA_INTENTS: &str = "snapshot_intents";

/// A snapshot reconcile has decided to take and may not have recorded yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Intent {
    /// The snapshot's name (`pgsurge-<cluster>-snap-<op>`) and its `pgsurge_op` label.
    pub name: String,
    pub op: String,
    /// The base replica snapshotted, and its volume.
    pub replica: String,
    pub volume_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub az: Option<String>,
    /// When it was decided: the snapshot's recorded age counts from here (a resumed
    /// request is younger than that, so the age is never understated).
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// The primary's WAL position when it was decided (before the request, so a clone's
    /// WAL to stream is never understated), recorded with the snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_lsn: Option<String>,
}

/// The recorded intents, by zone key. An unreadable entry (a bad edit) is ignored with a
/// warning: the snapshot it names, if any, is then an orphan for the sweep.
pub(crate) fn intents(state: &ClusterState) -> BTreeMap<String, Intent> {
    let Some(v) = state.extra.get(EXTRA_INTENTS) else {
        return BTreeMap::new();
    };
    serde_json::from_value(v.clone()).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "unreadable {EXTRA_INTENTS} in the state: ignored");
        BTreeMap::new()
    })
}

fn put_intents(state: &mut ClusterState, map: &BTreeMap<String, Intent>) {
    if map.is_empty() {
        state.extra.remove(EXTRA_INTENTS);
    } else {
        let v = serde_json::to_value(map).expect("intents serialise");
        state.extra.insert(EXTRA_INTENTS.into(), v);
    }
}

/// Whether a snapshot named `name` is one a recorded intent is taking (so not an orphan).
pub(crate) fn intended(state: &ClusterState, name: &str) -> bool {
    intents(state).values().any(|i| i.name == name)
}

/// The reconcile step: finish the intents a killed run left, then take the snapshots that
/// are due. Each zone's failure is reported and left for the next tick.
pub(crate) async fn keep_fresh(ports: &Ports, now: OffsetDateTime) -> Result<Report, OpsError> {
    let mut report = Report::default();
    // Resumed even when the feature was turned off since: the snapshot may exist.
    for (zone, intent) in intents(&ports.state.load().await?.state) {
        if let Err(e) = finish(ports, &zone, &intent, now, &mut report).await {
            report.later(format!("snapshot {} ahead of time: {e}", intent.name));
        }
    }
    let interval = time::Duration::seconds(ports.ops.snapshot_interval_secs as i64);
    let state = ports.state.load().await?.state;
    let in_flight: BTreeSet<String> = intents(&state).into_keys().collect();
    let due = due(&state, now, interval, &in_flight);
    let primary = match due.is_empty() {
        true => None,
        false => primary_wal(ports).await,
    };
    // A snapshot scale-up would never clone (no WAL kept to stream from it) is only a cost.
    if let Some(why) = primary.as_ref().and_then(|p| never_cloned(ports, p)) {
        tracing::warn!(reason = %why, "no snapshot taken ahead of time");
        report.did(format!("no snapshot taken ahead of time: {why}"));
        return Ok(report);
    }
    let primary_lsn = primary.map(|p| p.current_lsn.to_string());
    for d in due {
        let op = format!("ahead-{}-{}", slug(&d.zone), now.unix_timestamp());
        let intent = Intent {
            name: resource_name(&ports.cluster, &format!("snap-{op}")),
            op,
            replica: d.replica.clone(),
            volume_id: d.volume_id.clone(),
            az: (!d.zone.is_empty()).then(|| d.zone.clone()),
            started_at: now,
            primary_lsn: primary_lsn.clone(),
        };
        let (recorded, _) = ports
            .state
            .update(now, |s| -> Result<_, std::convert::Infallible> {
                let mut map = intents(s);
                if map.contains_key(&d.zone) {
                    return Ok(false);
                }
                map.insert(d.zone.clone(), intent.clone());
                put_intents(s, &map);
                Ok(true)
            })
            .await?;
        if !recorded {
            continue;
        }
        failpoint::hit("snapshot_ahead.after_intent");
        if let Err(e) = finish(ports, &d.zone, &intent, now, &mut report).await {
            report.later(format!("snapshot {} ahead of time: {e}", intent.name));
        }
    }
    Ok(report)
}

/// Take (or adopt) the intent's snapshot, wait for it, record it and drop the intent.
async fn finish(
    ports: &Ports,
    zone: &str,
    intent: &Intent,
    now: OffsetDateTime,
    report: &mut Report,
) -> Result<(), OpsError> {
    let meta = snapshot_labels(ports, &intent.op, intent.started_at);
    let req = SnapshotRequest {
        name: intent.name.clone(),
        volume_id: intent.volume_id.clone(),
        metadata: meta.clone(),
        force: true,
    };
    let state = ports.state.load().await?.state;
    let source_serving = state.replica(&intent.replica).is_some_and(|r| {
        r.phase == Phase::Serving && r.volume_id.as_deref() == Some(&intent.volume_id)
    });
    if !source_serving {
        let by_name = Filter {
            name: Some(intent.name.clone()),
            metadata: meta,
        };
        if ports.cloud.list_snapshots(&by_name).await?.is_empty() {
            // Nothing was made and the source is no longer one to snapshot.
            drop_intent(ports, zone, &intent.name, now).await?;
            report.did(format!(
                "dropped the snapshot intent {}: replica {} no longer serves",
                intent.name, intent.replica
            ));
            return Ok(());
        }
    }
    let started = OffsetDateTime::now_utc();
    let snap = ensure_snapshot(ports.cloud.as_ref(), &req).await?;
    failpoint::hit("snapshot_ahead.after_snapshot");
    let cloud = ports.cloud.clone();
    let wait = Duration::from_secs(ports.ops.resource_wait_secs);
    let snap = match cloud::wait_ready(
        "snapshot",
        &snap.id,
        wait,
        || cloud.get_snapshot(&snap.id),
        |s| &s.status,
    )
    .await
    {
        Ok(s) => s,
        // It ended in error: delete it (best effort; the orphan sweep is the backstop once
        // the intent is gone) and let the next tick try afresh.
        Err(CloudError::Fatal(why)) => {
            if let Err(e) = ports.cloud.delete_snapshot(&snap.id).await {
                tracing::warn!(snapshot = %snap.id, error = %e, "could not delete a failed snapshot");
            }
            drop_intent(ports, zone, &intent.name, now).await?;
            return Err(OpsError::Cloud(CloudError::Fatal(why)));
        }
        Err(e) => return Err(e.into()),
    };
    phase_metric(
        "snapshot_ahead",
        secs_between(started, OffsetDateTime::now_utc()),
    );
    let mut extra = BTreeMap::new();
    extra.insert(EXTRA_ORIGIN.into(), Value::String(ORIGIN_AHEAD.into()));
    if let Some(az) = &intent.az {
        extra.insert(EXTRA_AZ.into(), Value::String(az.clone()));
    }
    if let Some(lsn) = &intent.primary_lsn {
        extra.insert(EXTRA_PRIMARY_LSN.into(), Value::String(lsn.clone()));
    }
    let record = Snapshot {
        id: snap.id.clone(),
        source_replica: Some(intent.replica.clone()),
        created_at: intent.started_at,
        extra,
    };
    ports
        .state
        .update(now, |s| -> Result<_, std::convert::Infallible> {
            s.record_snapshot(&record);
            let mut map = intents(s);
            if map.get(zone).is_some_and(|i| i.name == intent.name) {
                map.remove(zone);
                put_intents(s, &map);
            }
            Ok(())
        })
        .await?;
    failpoint::hit("snapshot_ahead.after_record");
    crate::metrics::global().inc(
        "pgsurge_snapshots_ahead_total",
        "Snapshots reconcile took ahead of time (ops.snapshot_interval_secs).",
        &[],
        1.0,
    );
    report.did(format!(
        "snapshot {} of replica {} ahead of time",
        intent.name, intent.replica
    ));
    Ok(())
}

/// The primary's WAL position and `wal_keep_size`, best effort: recorded with a snapshot
/// and checked before one is cloned, but a primary that cannot be read now stops neither
/// a snapshot nor a scale-up (the replicas' readiness is proven against it later anyway).
pub(crate) async fn primary_wal(ports: &Ports) -> Option<PrimaryStatus> {
    match ports.pg.primary_status().await {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::warn!(error = %e, "primary not readable: no WAL position for the snapshot check");
            None
        }
    }
}

/// Why recorded snapshot `s` is not to be cloned, now that the primary is as `primary`
/// says: more WAL written since it than a clone may need to stream
/// (`policy::snapshot_ahead::wal_fit`). None: clone it (also when it recorded no position,
/// or the primary could not be read: judged by age alone).
pub(crate) fn too_much_wal(
    ports: &Ports,
    s: &Snapshot,
    primary: Option<&PrimaryStatus>,
) -> Option<String> {
    let p = primary?;
    let recorded = s
        .extra
        .get(EXTRA_PRIMARY_LSN)
        .and_then(|v| v.as_str())
        .and_then(|v| v.parse::<Lsn>().ok());
    let limit = wal_limit(ports.ops.snapshot_max_wal_mb, p.wal_keep_bytes);
    let WalFit::TooMuch { since, limit } =
        wal_fit(recorded.map(|l| l.0), Some(p.current_lsn.0), limit)
    else {
        return None;
    };
    Some(why_not_cloned(
        &s.id,
        since,
        limit,
        ports.ops.snapshot_max_wal_mb.is_some(),
        p.wal_keep_bytes,
    ))
}

/// Why no snapshot taken ahead could ever be cloned with the primary as `p` says: the
/// WAL a clone may stream is limited to nothing (`wal_keep_size = 0` and no
/// `ops.snapshot_max_wal_mb`, which config refuses at 0). None: snapshots ahead are of use.
fn never_cloned(ports: &Ports, p: &PrimaryStatus) -> Option<&'static str> {
    (wal_limit(ports.ops.snapshot_max_wal_mb, p.wal_keep_bytes) == 0).then_some(NO_WAL_KEPT)
}

/// What a primary at PostgreSQL's default `wal_keep_size = 0` means here, and the fix.
const NO_WAL_KEPT: &str = "the primary keeps no WAL for standbys (wal_keep_size = 0), so no \
     snapshot taken ahead is cloned: set wal_keep_size on the primary (half of it is the \
     limit), or ops.snapshot_max_wal_mb if the replicas restore WAL from an archive";

/// The words for [`too_much_wal`]'s refusal. A primary with `wal_keep_size = 0`
/// (PostgreSQL's default) and no configured limit refuses every snapshot taken ahead: say
/// so, and what to set, rather than "more than 0.0 MiB".
fn why_not_cloned(id: &str, since: u64, limit: u64, configured: bool, keep: u64) -> String {
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    // Config refuses a configured 0, so a zero limit is always the halved wal_keep_size.
    if limit == 0 {
        return format!("snapshot {id}: {NO_WAL_KEPT}");
    }
    let whence = match configured {
        true => "ops.snapshot_max_wal_mb".to_string(),
        false => format!("half the primary's wal_keep_size of {:.1} MiB", mib(keep)),
    };
    format!(
        "snapshot {id}: {:.1} MiB of WAL written on the primary since, more than the {:.1} MiB \
         a clone may have to stream ({whence})",
        mib(since),
        mib(limit)
    )
}

/// Operation `extra` key: the snapshot a scale-up cloned (`id`, `source`, `age_secs`).
pub(crate) const EXTRA_OP_SNAPSHOT: &str = "snapshot";

/// Say which snapshot scale-up operation `op` clones and where it came from: the log, the
/// operation record (`snapshot`: id, source, age) and the metrics
/// (`pgsurge_scale_up_snapshots_total{source}`, `pgsurge_scale_up_snapshot_age_seconds`).
pub(crate) async fn say_which(
    ports: &Ports,
    op: &str,
    snapshot: &Snapshot,
    source: SnapshotSource,
    now: OffsetDateTime,
) -> Result<(), OpsError> {
    let age = (now - snapshot.created_at).max(time::Duration::ZERO);
    tracing::info!(
        op,
        snapshot = %snapshot.id,
        source = source.as_str(),
        age_secs = age.whole_seconds(),
        "scale-up clones this snapshot"
    );
    let record = serde_json::json!({
        "id": snapshot.id,
        "source": source.as_str(),
        "age_secs": age.whole_seconds(),
    });
    ports
        .state
        .update(now, |s| -> Result<_, std::convert::Infallible> {
            if let Some(o) = s.operations.iter_mut().find(|o| o.id == op) {
                // The first run's word stands: a resumed run that reuses the snapshot the
                // first one took must not relabel it `reused`.
                o.extra
                    .entry(EXTRA_OP_SNAPSHOT.to_string())
                    .or_insert_with(|| record.clone());
            }
            Ok(())
        })
        .await?;
    let m = crate::metrics::global();
    m.inc(
        "pgsurge_scale_up_snapshots_total",
        "Snapshots scale-up cloned, by source: ahead (reconcile's), reused (an earlier scale-up's), taken (on the alarm's path).",
        &[("source", source.as_str())],
        1.0,
    );
    m.observe(
        "pgsurge_scale_up_snapshot_age_seconds",
        "Age of the snapshot a scale-up cloned (WAL to replay grows with it).",
        &[],
        age.unsigned_abs(),
    );
    Ok(())
}

async fn drop_intent(
    ports: &Ports,
    zone: &str,
    name: &str,
    now: OffsetDateTime,
) -> Result<(), OpsError> {
    ports
        .state
        .update(now, |s| -> Result<_, std::convert::Infallible> {
            let mut map = intents(s);
            if map.get(zone).is_some_and(|i| i.name == name) {
                map.remove(zone);
                put_intents(s, &map);
            }
            Ok(())
        })
        .await?;
    Ok(())
}

/// A zone key as a name part: lowercase letters, digits and `-` (`any`: no zone).
fn slug(zone: &str) -> String {
    if zone.is_empty() {
        return "any".into();
    }
    zone.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intents_round_trip_through_the_state_and_vanish_when_empty() {
        let mut s = ClusterState::new("c");
        let i = Intent {
            name: "pgsurge-c-snap-ahead-az1-1".into(),
            op: "ahead-az1-1".into(),
            replica: "base".into(),
            volume_id: "vol".into(),
            az: Some("az1".into()),
            started_at: OffsetDateTime::UNIX_EPOCH,
            primary_lsn: Some("0/3000060".into()),
        };
        put_intents(&mut s, &[("az1".to_string(), i.clone())].into());
        let text = serde_json::to_string(&s).unwrap();
        let back: ClusterState = serde_json::from_str(&text).unwrap();
        assert_eq!(intents(&back).get("az1"), Some(&i));
        assert!(intended(&back, "pgsurge-c-snap-ahead-az1-1"));
        assert!(!intended(&back, "pgsurge-c-snap-other"));
        put_intents(&mut s, &BTreeMap::new());
        assert!(!s.extra.contains_key(EXTRA_INTENTS));
    }

    #[test]
    fn the_refusal_names_its_limit_and_the_fix_when_the_primary_keeps_no_wal() {
        let mib = 1u64 << 20;
        let halved = why_not_cloned("s1", 24 * mib, 16 * mib, false, 32 * mib);
        assert!(halved.contains("24.0 MiB"), "{halved}");
        assert!(halved.contains("more than the 16.0 MiB"), "{halved}");
        assert!(
            halved.contains("half the primary's wal_keep_size of 32.0 MiB"),
            "{halved}"
        );
        let set = why_not_cloned("s1", 24 * mib, 16 * mib, true, 0);
        assert!(set.contains("(ops.snapshot_max_wal_mb)"), "{set}");
        let none = why_not_cloned("s1", mib, 0, false, 0);
        assert!(none.starts_with("snapshot s1: "), "{none}");
        assert!(none.contains("wal_keep_size = 0"), "{none}");
        assert!(none.contains("set wal_keep_size"), "{none}");
        assert!(!none.contains("more than the 0.0 MiB"), "{none}");
    }

    #[test]
    fn zone_names_become_name_parts() {
        assert_eq!(slug(""), "any");
        assert_eq!(slug("eu-west-1a"), "eu-west-1a");
        assert_eq!(slug("AZ 1.b"), "az-1-b");
    }
}
