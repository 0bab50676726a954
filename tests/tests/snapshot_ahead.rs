//! Snapshots taken ahead of time (`ops.snapshot_interval_secs`), end to end on the local
//! provider with real PostgreSQL and two real HAProxy nodes (fixture: `E2e`):
//!
//! - reconcile snapshots the serving base replica; a second tick within the interval
//!   takes none; scale-up then clones that snapshot without taking one (the pool holds
//!   the same single snapshot) and records `source: ahead` in its operation; the clones
//!   serve on both nodes;
//! - a snapshot older than `ops.snapshot_max_age_secs` is not used: scale-up takes its
//!   own and records `source: taken`;
//! - a snapshot with more WAL written since it than a clone may stream
//!   (`ops.snapshot_max_wal_mb`, else half the primary's `wal_keep_size`) is not cloned
//!   either: scale-up takes its own and says why;
//! - a primary that keeps no WAL for standbys (`wal_keep_size = 0`) gets no snapshots
//!   ahead (none could be cloned): reconcile says so and takes one once WAL is kept;
//! - reconcile killed at each `snapshot_ahead.*` failpoint, then run again: the pool and
//!   the state hold the same snapshots (none leaked), no intent is left.
//!
//! The function binaries need the `failpoints` feature: `cargo build --workspace --bins`.

use pgsurge::cloud::{Cloud, Filter, META_CLUSTER};
use pgsurge::failpoint::ALL;
use pgsurge::postgres::Lsn;
use pgsurge_tests::cluster::{E2e, CLUSTER};
use serde_json::{json, Value};
use std::time::Duration;

fn alarm(id: &str) -> Value {
    json!({"pgsurge": 1, "kind": "alarm", "id": id, "name": "load", "state": "firing",
           "params": {"cluster": CLUSTER}})
}

fn tick() -> Value {
    json!({"pgsurge": 1, "kind": "tick"})
}

fn with_env(env: &mut E2e, pairs: &[(&str, &str)]) {
    env.env
        .extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
}

/// Snapshot ids in the pool (this cluster's), sorted.
fn pool_snapshots(env: &E2e) -> Vec<String> {
    let f = Filter {
        name: None,
        metadata: [(META_CLUSTER.to_string(), CLUSTER.to_string())].into(),
    };
    let mut v: Vec<String> = env
        .rt
        .block_on(env.cloud.list_snapshots(&f))
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    v.sort();
    v
}

fn state_snapshots(env: &E2e) -> Vec<String> {
    let mut v: Vec<String> = env.state().snapshots.into_iter().map(|s| s.id).collect();
    v.sort();
    v
}

/// The `snapshot` record of the operation `op` made (id, source, age).
fn op_snapshot(env: &E2e, alarm_id: &str) -> Value {
    let state = env.state();
    let op = state
        .operations
        .iter()
        .find(|o| o.alarm_id.as_deref().is_some_and(|a| a.contains(alarm_id)))
        .unwrap_or_else(|| panic!("no operation for {alarm_id}: {:?}", state.operations));
    op.extra
        .get("snapshot")
        .cloned()
        .unwrap_or_else(|| panic!("operation {} records no snapshot: {op:?}", op.id))
}

#[test]
fn scale_up_clones_the_snapshot_reconcile_took_ahead_and_never_a_stale_one() {
    let mut env = E2e::start("ahead", 24700, "");
    with_env(
        &mut env,
        &[
            ("PGSURGE_OPS__SNAPSHOT_INTERVAL_SECS", "600"),
            ("PGSURGE_OPS__SNAPSHOT_MAX_AGE_SECS", "3600"),
        ],
    );

    // The tick takes one, of the seed, and records it as taken ahead.
    let report = env.invoke("reconcile", &tick());
    let taken = pool_snapshots(&env);
    assert_eq!(taken.len(), 1, "one snapshot ahead: {report}");
    assert_eq!(state_snapshots(&env), taken);
    let recorded = env.state().snapshots[0].clone();
    assert_eq!(recorded.source_replica.as_deref(), Some("seed"));
    assert_eq!(recorded.extra.get("origin"), Some(&json!("ahead")));
    assert!(
        !env.state().extra.contains_key("snapshot_intents"),
        "the intent is dropped once recorded"
    );
    // Within the interval the next tick takes none.
    env.invoke("reconcile", &tick());
    assert_eq!(
        pool_snapshots(&env),
        taken,
        "not due again within the interval"
    );

    // The alarm's scale-up clones it: no snapshot on the alarm's path.
    env.invoke("scale-up", &alarm("fresh"));
    assert_eq!(pool_snapshots(&env), taken, "scale-up took no snapshot");
    let which = op_snapshot(&env, "fresh");
    assert_eq!(which["id"], json!(taken[0]), "{which}");
    assert_eq!(which["source"], json!("ahead"), "{which}");
    env.tick_until_serving(2);
    let seen = env.surge_everywhere();
    assert!(seen.agree_on(2), "{seen:?}");

    // Made stale (older than snapshot_max_age_secs): the next scale-up takes its own.
    env.edit_state(|s| {
        for snap in &mut s.snapshots {
            snap.created_at -= time::Duration::hours(2);
        }
    });
    env.invoke("scale-up", &alarm("stale"));
    let which = op_snapshot(&env, "stale");
    assert_eq!(which["source"], json!("taken"), "{which}");
    assert_ne!(which["id"], json!(taken[0]), "the stale snapshot was used");
    let now = pool_snapshots(&env);
    assert_eq!(now.len(), 2, "{now:?}");
    assert!(now.contains(&which["id"].as_str().unwrap().to_string()));
    env.tick_until_serving(4);
    let seen = env.surge_everywhere();
    assert!(seen.agree_on(4), "{seen:?}");
    env.delete_seed();
}

#[test]
fn reconcile_killed_while_snapshotting_ahead_converges_without_a_leaked_snapshot() {
    let mut env = E2e::start("ahead-crash", 24800, "");
    with_env(
        &mut env,
        &[
            // Due again a second after the last one, so every tick takes one.
            ("PGSURGE_OPS__SNAPSHOT_INTERVAL_SECS", "1"),
            ("PGSURGE_OPS__SNAPSHOT_MAX_AGE_SECS", "3600"),
            ("PGSURGE_OPS__SNAPSHOT_KEEP", "1"),
            ("PGSURGE_OPS__LEASE_SECS", "2"),
        ],
    );
    let points: Vec<&str> = ALL
        .iter()
        .copied()
        .filter(|p| p.starts_with("snapshot_ahead."))
        .collect();
    assert_eq!(points.len(), 3, "{points:?}");
    for point in points {
        std::thread::sleep(Duration::from_millis(1100));
        env.invoke_killed_at("reconcile", &tick(), point);
        // The dead run's `snapshot` lease must run out before the next takes over.
        std::thread::sleep(Duration::from_millis(2300));
        env.invoke("reconcile", &tick());
        let (pool, state) = (pool_snapshots(&env), state_snapshots(&env));
        assert_eq!(pool, state, "after a crash at {point}: pool vs state");
        assert!(!pool.is_empty(), "after {point}: no snapshot at all");
        assert!(
            !env.state().extra.contains_key("snapshot_intents"),
            "after {point}: an intent was left: {:?}",
            env.state().extra
        );
    }
    // Rotation (keep 1) trims what the kills left to one, in the pool and the state.
    std::thread::sleep(Duration::from_millis(1100));
    env.invoke("reconcile", &tick());
    env.invoke("reconcile", &tick());
    let (pool, state) = (pool_snapshots(&env), state_snapshots(&env));
    assert_eq!(pool, state);
    assert!(
        pool.len() <= 2,
        "rotation keeps 1 (+ the one just taken): {pool:?}"
    );
    env.delete_seed();
}

#[test]
fn a_snapshot_the_primary_kept_too_little_wal_for_is_not_cloned() {
    let mut env = E2e::start("ahead-wal", 25000, "");
    with_env(
        &mut env,
        &[
            ("PGSURGE_OPS__SNAPSHOT_INTERVAL_SECS", "600"),
            ("PGSURGE_OPS__SNAPSHOT_MAX_AGE_SECS", "3600"),
            ("PGSURGE_OPS__SNAPSHOT_MAX_WAL_MB", "16"),
        ],
    );
    // Taken ahead, with the primary's position recorded.
    env.invoke("reconcile", &tick());
    let ahead = state_snapshots(&env);
    assert_eq!(ahead.len(), 1, "one snapshot ahead");
    let recorded = env.state().snapshots[0].extra["primary_lsn"].clone();
    let at: Lsn = recorded
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no primary position recorded: {recorded}"));

    // More than 16 MiB of WAL on the primary since.
    env.primary.psql(
        "postgres",
        "CREATE TABLE wal_burst AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 200000) g",
    );
    let now: Lsn = env.primary.current_lsn().parse().unwrap();
    let since = at.bytes_until(now);
    assert!(since > 16 << 20, "only {since} bytes of WAL written");

    let answer = env.invoke("scale-up", &alarm("old-wal"));
    let which = op_snapshot(&env, "old-wal");
    assert_eq!(which["source"], json!("taken"), "{which}");
    assert_ne!(
        which["id"],
        json!(ahead[0]),
        "the snapshot with too much WAL since was cloned"
    );
    let said = answer.to_string();
    assert!(
        said.contains("not cloned") && said.contains("ops.snapshot_max_wal_mb"),
        "scale-up does not say why: {said}"
    );
    // Its own snapshot records the position too, and its clones serve.
    let own = env
        .state()
        .snapshots
        .into_iter()
        .find(|s| json!(s.id) == which["id"])
        .expect("the snapshot taken is recorded");
    let own_at: Lsn = own.extra["primary_lsn"].as_str().unwrap().parse().unwrap();
    assert!(
        own_at >= now,
        "{own_at} recorded, the primary was at {now} before"
    );
    env.tick_until_serving(2);
    let seen = env.surge_everywhere();
    assert!(seen.agree_on(2), "{seen:?}");
    env.delete_seed();
}

#[test]
fn a_primary_that_keeps_no_wal_gets_no_snapshots_ahead_and_is_told_why() {
    let mut env = E2e::start("ahead-nowal", 25100, "");
    with_env(
        &mut env,
        &[
            ("PGSURGE_OPS__SNAPSHOT_INTERVAL_SECS", "600"),
            ("PGSURGE_OPS__SNAPSHOT_MAX_AGE_SECS", "3600"),
        ],
    );
    // PostgreSQL's default: no WAL kept for standbys, so no clone could stream from a
    // snapshot taken ahead (scale-up would refuse every one).
    let set = |v: &str| {
        env.primary.psql(
            "postgres",
            &format!("ALTER SYSTEM SET wal_keep_size = '{v}'"),
        );
        env.primary.psql("postgres", "SELECT pg_reload_conf()");
        std::thread::sleep(Duration::from_millis(300));
        env.primary.psql("postgres", "SHOW wal_keep_size")
    };
    assert_eq!(set("0").trim(), "0");
    let said = env.invoke("reconcile", &tick()).to_string();
    assert!(
        said.contains("no snapshot taken ahead of time") && said.contains("wal_keep_size = 0"),
        "reconcile does not say why it took none: {said}"
    );
    assert!(pool_snapshots(&env).is_empty(), "a snapshot was taken");
    assert!(state_snapshots(&env).is_empty(), "a snapshot was recorded");

    // The same tick with WAL kept takes one: the setting, nothing else, stopped it.
    assert_eq!(set("1GB").trim(), "1GB");
    env.invoke("reconcile", &tick());
    assert_eq!(pool_snapshots(&env).len(), 1, "none taken once WAL is kept");
    assert_eq!(pool_snapshots(&env), state_snapshots(&env));
    env.delete_seed();
}
