//! Crash safety, for every failpoint: kill the function exactly there (the process
//! aborts, like `kill -9`), then let the next delivery, tick or the reconcile timer run,
//! and assert that the pool, the state and both HAProxy nodes agree on the intended set
//! of surge replicas — no duplicate, no leaked server, volume, snapshot or HAProxy entry
//! (checked after every scenario, snapshots included).
//!
//! One test walks `pgsurge::failpoint::ALL` (a unit test keeps that list equal to the
//! `failpoint::hit` calls in the source), a few failpoints per scale-up/scale-down
//! cycle. Leases are 2 s here so a killed holder's work is taken over quickly.
//! The function binaries need the `failpoints` feature: `cargo build --workspace --bins`.

use pgsurge::cloud::{Cloud, Filter, Metadata, META_CLUSTER, META_REPLICA, META_ROLE};

use pgsurge::failpoint::ALL;
use pgsurge::model::resource_name;
use pgsurge::model::Role;
use pgsurge_tests::cluster::{E2e, CLUSTER};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

const LEASE_SECS: u64 = 2;

fn alarm(id: &str) -> Value {
    json!({"pgsurge": 1, "kind": "alarm", "id": id, "name": "load", "state": "firing",
           "params": {"cluster": CLUSTER}})
}

fn tick() -> Value {
    json!({"pgsurge": 1, "kind": "tick"})
}

/// Failpoints of one group, in `ALL`'s order.
fn group(prefix: &str) -> VecDeque<&'static str> {
    ALL.iter()
        .copied()
        .filter(|p| p.starts_with(prefix))
        .collect()
}

/// After a kill, the dead invocation's work lease must run out before anyone resumes.
fn let_lease_lapse() {
    std::thread::sleep(Duration::from_millis(LEASE_SECS * 1000 + 300));
}

/// Kill `function` at `point`, retrying while the point is not reached yet (a replica
/// still booting is not registered, so `ready.*` needs it ready first).
fn kill_at(env: &E2e, function: &str, event: &Value, point: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        match env.try_invoke_killed_at(function, event, point) {
            Ok(()) => break,
            Err(why) if Instant::now() < deadline => {
                eprintln!("{point} not reached yet ({why}); again");
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(why) => panic!("{function} never reached {point}: {why}"),
        }
    }
    eprintln!("killed {function} at {point}");
    let_lease_lapse();
}

fn assert_agree(env: &E2e, n: usize, after: &str) {
    let seen = env.surge_everywhere();
    assert!(
        seen.agree_on(n),
        "after {after}: expected {n} surge replicas everywhere, got {seen:?}"
    );
}

/// Scale-down's failpoints in chains: the first kills the scale-down of a fresh alarm,
/// each next one the sender's retry of that same delivery (which resumes the removal
/// where the dead one stopped), so one cycle covers several points and a resumed removal
/// is killed again. The `unpublish` points are met only by a retry that finds the server
/// already deleted, hence after `after_delete_server`. The `local.delete_server.*` points
/// are inside the provider's server delete.
const DOWN_CHAINS: &[&[&str]] = &[
    &["scale_down.after_decision", "scale_down.before_drain"],
    &["scale_down.after_drain", "scale_down.before_mark_deleting"],
    // Inside the local provider's server delete (postmaster stopped / record removed):
    // the retry must finish the replica without a PostgreSQL to prove it a standby again.
    &[
        "scale_down.before_delete_server",
        "local.delete_server.after_stop",
        "local.delete_server.after_record",
    ],
    &[
        "scale_down.after_delete_server",
        "scale_down.before_unpublish",
        "scale_down.after_unpublish",
    ],
    &[
        "scale_down.before_delete_volume",
        "scale_down.after_delete_volume",
        "scale_down.after_forget",
    ],
];

fn ours() -> Filter {
    Filter {
        name: None,
        metadata: [(META_CLUSTER.to_string(), CLUSTER.to_string())].into(),
    }
}

#[test]
fn every_failpoint_killed_then_rerun_or_reconcile_converges_without_duplicates_or_leaks() {
    let mut env = E2e::start("e2e-crash", 20700, "");
    env.env.extend(
        [
            ("PGSURGE_OPS__LEASE_SECS", LEASE_SECS.to_string()),
            // A new snapshot every scale-up and only the newest kept, so rotation runs.
            ("PGSURGE_OPS__SNAPSHOT_MAX_AGE_SECS", "1".into()),
            ("PGSURGE_OPS__SNAPSHOT_KEEP", "1".into()),
            // Orphans are deleted as soon as reconcile sees them.
            ("PGSURGE_OPS__ORPHAN_GRACE_SECS", "0".into()),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    );
    // Scale-up's own points and the local provider's inside its server creation.
    let mut up: VecDeque<_> = ALL
        .iter()
        .copied()
        .filter(|p| p.starts_with("scale_up.") || p.starts_with("local.create_server."))
        .collect();
    let (mut ready, mut deleted) = (group("ready."), group("deleted."));
    let mut down: VecDeque<&[&str]> = DOWN_CHAINS.iter().copied().collect();
    let chained: Vec<&str> = DOWN_CHAINS.concat();
    assert_eq!(
        chained,
        ALL.iter()
            .copied()
            .filter(|p| p.starts_with("scale_down.") || p.starts_with("local.delete_server."))
            .collect::<Vec<_>>(),
        "the chains hold every scale-down failpoint once, in order"
    );
    // The OpenStack provider's own points need the OpenStack cloud: not in this matrix.
    let elsewhere = group("openstack.");
    let mut haproxy: VecDeque<_> = ["reconcile.before_haproxy", "reconcile.after_haproxy"].into();
    let mut orphan: VecDeque<_> = [
        "reconcile.before_delete_orphan",
        "reconcile.after_delete_orphan",
    ]
    .into();
    let mut rotate: VecDeque<_> = ["reconcile.before_rotate", "reconcile.after_rotate"].into();
    let mut ahead = group("snapshot_ahead.");
    let mut rollback: VecDeque<_> = [
        "reconcile.before_rollback",
        "reconcile.before_unpublish",
        "reconcile.after_rollback",
    ]
    .into();
    let planned: usize = [
        &up, &ready, &deleted, &haproxy, &orphan, &rotate, &rollback, &ahead,
    ]
    .iter()
    .map(|g| g.len())
    .sum::<usize>()
        + chained.len();
    assert_eq!(
        planned + elsewhere.len(),
        ALL.len(),
        "every failpoint has a scenario here"
    );

    let mut killed = Vec::new();
    let mut cycle = 0;
    while !down.is_empty()
        || [
            &up, &ready, &deleted, &haproxy, &orphan, &rotate, &rollback, &ahead,
        ]
        .iter()
        .any(|g| !g.is_empty())
    {
        cycle += 1;
        eprintln!("=== cycle {cycle}");

        // An orphan volume (ours by its labels, unknown to the state): reconcile
        // killed around its deletion, then reconcile again: gone.
        if let Some(point) = orphan.pop_front() {
            let name = resource_name(CLUSTER, &format!("stray-{cycle}"));
            let meta: Metadata = [
                (META_CLUSTER.to_string(), CLUSTER.to_string()),
                (META_ROLE.to_string(), "surge".to_string()),
                (META_REPLICA.to_string(), format!("stray-{cycle}")),
                (
                    pgsurge::ops::META_CREATED.to_string(),
                    "2026-01-01T00:00:00Z".to_string(),
                ),
            ]
            .into();
            env.rt
                .block_on(env.cloud.create_empty_volume(&name, &meta))
                .unwrap();
            kill_at(&env, "reconcile", &tick(), point);
            killed.push(point);
            env.invoke("reconcile", &tick());
            let left = env.rt.block_on(env.cloud.list_volumes(&ours())).unwrap();
            assert!(
                !left.iter().any(|v| v.name == name),
                "orphan volume left after a crash at {point}"
            );
            assert_agree(&env, 0, point);
        }

        // A snapshot taken ahead of time (reconcile, with the interval on for this
        // scenario only): killed around it, then reconcile again: pool and state agree,
        // no intent left.
        if let Some(point) = ahead.pop_front() {
            let on = (
                "PGSURGE_OPS__SNAPSHOT_INTERVAL_SECS".to_string(),
                "1".into(),
            );
            env.env.push(on.clone());
            std::thread::sleep(Duration::from_millis(1100));
            kill_at(&env, "reconcile", &tick(), point);
            killed.push(point);
            env.invoke("reconcile", &tick());
            env.env.retain(|e| *e != on);
            assert!(
                !env.state().extra.contains_key("snapshot_intents"),
                "an intent left after a crash at {point}"
            );
            assert_agree(&env, 0, point);
        }

        // A stuck creation: scale-up dies after making a volume; its replicas stay
        // `creating` past the deadline; reconcile, killed around the rollback, then run
        // again, removes what exists.
        if let Some(point) = rollback.pop_front() {
            let a = alarm(&format!("rollback-{cycle}"));
            kill_at(&env, "scale-up", &a, "scale_up.after_volume");
            env.edit_state(|s| {
                for r in s.replicas.iter_mut().filter(|r| r.role == Role::Surge) {
                    r.created_at -= time::Duration::hours(2);
                }
            });
            kill_at(&env, "reconcile", &tick(), point);
            killed.push(point);
            env.invoke("reconcile", &tick());
            assert_agree(&env, 0, point);
        }

        // Scale up (killed, the sender's retry of the same delivery killed again further
        // on — it resumes where the dead one stopped — then a retry that finishes).
        let a = alarm(&format!("up-{cycle}"));
        for _ in 0..2 {
            if let Some(point) = up.pop_front() {
                kill_at(&env, "scale-up", &a, point);
                killed.push(point);
            }
        }
        env.invoke("scale-up", &a);
        if let Some(point) = ready.pop_front() {
            kill_at(&env, "instance-ready", &tick(), point);
            killed.push(point);
        }
        env.tick_until_serving(2);
        assert_agree(&env, 2, &format!("cycle {cycle} scale-up"));

        // Snapshot rotation (this cycle's scale-up took a second snapshot).
        if let Some(point) = rotate.pop_front() {
            kill_at(&env, "reconcile", &tick(), point);
            killed.push(point);
            env.invoke("reconcile", &tick());
            let in_pool = env.rt.block_on(env.cloud.list_snapshots(&ours())).unwrap();
            let in_state = env.state().snapshots;
            assert_eq!(
                (in_pool.len(), in_state.len()),
                (1, 1),
                "snapshots after a crash at {point}: pool {in_pool:?} state {in_state:?}"
            );
            assert_eq!(in_pool[0].id, in_state[0].id);
            assert_agree(&env, 2, point);
        }

        // An HAProxy reload drops the dynamic servers; reconcile (killed, then again)
        // puts them back.
        if let Some(point) = haproxy.pop_front() {
            env.h2.reload();
            kill_at(&env, "reconcile", &tick(), point);
            killed.push(point);
            env.invoke("reconcile", &tick());
            assert_agree(&env, 2, point);
        }

        // A surge server deleted behind our back; instance-deleted killed, then the
        // event is delivered again.
        let mut left = 2;
        if let Some(point) = deleted.pop_front() {
            let victim = env
                .state()
                .replicas
                .into_iter()
                .find(|r| r.role == Role::Surge)
                .unwrap();
            let server = victim.server_id.clone().unwrap();
            env.rt.block_on(env.cloud.delete_server(&server)).unwrap();
            let ev =
                json!({"pgsurge": 1, "kind": "instance", "event": "deleted", "server_id": server});
            kill_at(&env, "instance-deleted", &ev, point);
            killed.push(point);
            env.invoke("instance-deleted", &ev);
            left = 1;
            assert_agree(&env, left, point);
        }

        // Scale down (killed, its retries killed further on, then the reconcile timer
        // finishes it).
        let d = alarm(&format!("down-{cycle}"));
        if let Some(chain) = down.pop_front() {
            for point in chain {
                kill_at(&env, "scale-down", &d, point);
                killed.push(point);
            }
            env.invoke("reconcile", &tick());
        } else {
            env.invoke("scale-down", &d);
        }
        assert_agree(&env, 0, &format!("cycle {cycle} scale-down (from {left})"));
        let ids: Vec<String> = env.state().replicas.into_iter().map(|r| r.id).collect();
        assert_eq!(ids, ["seed"], "cycle {cycle}");
    }

    killed.sort();
    let mut all: Vec<&str> = ALL
        .iter()
        .copied()
        .filter(|p| !elsewhere.contains(p))
        .collect();
    all.sort();
    assert_eq!(killed, all, "every failpoint was hit exactly once");
    // No lease left behind, no snapshot beyond the kept one.
    assert!(env.state().leases.is_empty(), "{:?}", env.state().leases);
    env.delete_seed();
}
