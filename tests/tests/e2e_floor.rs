//! Features that act on the local provider, end to end (fixture:
//! `pgsurge_tests::cluster::E2e`: real PostgreSQL, two real HAProxy nodes, the real
//! function binaries):
//!
//! - a `[[policy.schedule]]` window open now: the reconcile tick creates its replicas,
//!   they are verified and serve on both nodes, and further ticks add nothing;
//! - `min_replicas` above what serves: a tick scales up to it, and after a replica's
//!   server is lost, a tick replaces it (under a new name);
//! - an alarm's `flavor` parameter reaches the server the cloud makes (the local provider
//!   records it; it has no sizes to apply).

use pgsurge::model::resource_name;
use pgsurge::model::{Phase, Role};
use pgsurge_tests::cluster::{replica_port, E2e, CLUSTER};
use serde_json::{json, Value};

fn tick() -> Value {
    json!({"pgsurge": 1, "kind": "tick"})
}

/// Edit the test's config file (the functions read it on every invocation).
fn edit_config(env: &E2e, from: &str, to: &str) {
    let text = std::fs::read_to_string(env.cfg()).unwrap();
    assert!(text.contains(from), "{from:?} not in the e2e config");
    std::fs::write(env.cfg(), text.replacen(from, to, 1)).unwrap();
}

/// Every surge replica answers as a standby with the primary's rows.
fn serve(env: &E2e) {
    for r in env.surge_replicas() {
        let port = replica_port(&r);
        let rows =
            pgsurge_tests::pg::psql_at(port, "postgres", "select count(*) from pgbench_accounts");
        assert_eq!(rows, "200000", "replica {}", r.id);
        let standby = pgsurge_tests::pg::psql_at(port, "postgres", "select pg_is_in_recovery()");
        assert_eq!(standby, "t", "replica {}", r.id);
    }
}

fn ids(env: &E2e) -> Vec<String> {
    let mut v: Vec<String> = env.surge_replicas().into_iter().map(|r| r.id).collect();
    v.sort();
    v
}

#[test]
fn an_open_schedule_window_pre_scales_on_the_reconcile_tick_once() {
    // A window open at every minute: "now" is always inside it. Floor 3 = seed + 2.
    let env = E2e::start(
        "floor-window",
        23400,
        "[[policy.schedule]]\nname = \"peak\"\ncron = \"* * * * *\"\nduration_mins = 30\nmin_replicas = 3\n",
    );
    let first = env.invoke("reconcile", &tick());
    let text = first.to_string();
    assert!(text.contains("peak"), "the window's decision: {first}");
    let planned = ids(&env);
    assert_eq!(planned.len(), 2, "{first}");
    let ops = env.state().operations;
    assert_eq!(ops.len(), 1, "{ops:?}");
    // A second tick while they are still coming up adds nothing.
    env.invoke("reconcile", &tick());
    assert_eq!(ids(&env), planned);
    assert_eq!(env.state().operations.len(), 1);

    // They are verified and registered like an alarm's replicas, and serve.
    env.tick_until_serving(2);
    let seen = env.surge_everywhere();
    assert!(
        seen.agree_on(2),
        "pool, state and HAProxy disagree: {seen:?}"
    );
    serve(&env);
    // Ticks once they serve add nothing either.
    for _ in 0..2 {
        env.invoke("reconcile", &tick());
    }
    assert_eq!(ids(&env), planned);
    assert!(env.surge_everywhere().agree_on(2));
    env.delete_seed();
}

#[test]
fn reconcile_keeps_min_replicas_and_replaces_a_lost_replica() {
    let env = E2e::start("floor-min", 23500, "");
    // Only the seed serves; the floor goes to 2 (a config change, as an operator would).
    edit_config(&env, "min_replicas = 1", "min_replicas = 2");
    let answer = env.invoke("reconcile", &tick());
    assert!(
        answer.to_string().contains("min_replicas"),
        "the floor's decision: {answer}"
    );
    env.tick_until_serving(1);
    let before = env.surge_replicas();
    assert_eq!(before.len(), 1);
    serve(&env);

    // Its server is lost behind pgsurge's back; the next tick forgets it and replaces it.
    env.rt
        .block_on(async {
            use pgsurge::cloud::Cloud;
            env.cloud
                .delete_server(before[0].server_id.as_deref().unwrap())
                .await
        })
        .unwrap();
    env.invoke("reconcile", &tick());
    let after = env.surge_replicas();
    assert_eq!(after.len(), 1, "{after:?}");
    assert_ne!(after[0].id, before[0].id, "a new replica, not the lost one");
    env.tick_until_serving(1);
    let seen = env.surge_everywhere();
    assert!(seen.agree_on(1), "{seen:?}");
    assert!(!seen.h1.contains(&resource_name(CLUSTER, &before[0].id)));
    serve(&env);
    env.delete_seed();
}

#[test]
fn an_alarms_flavor_reaches_the_server() {
    let env = E2e::start("floor-flavor", 23600, "");
    edit_config(
        &env,
        "[policy]\n",
        "[policy]\nallowed_flavors = [\"m1.small\"]\n",
    );
    let alarm = json!({"pgsurge": 1, "kind": "alarm", "id": "fl-1", "name": "load",
        "state": "firing", "params": {"replicas": 1, "flavor": "m1.small", "cluster": CLUSTER}});
    let up = env.invoke("scale-up", &alarm);
    assert_eq!(up["decision"]["action"]["flavor"], "m1.small", "{up}");
    let replicas = env.surge_replicas();
    assert_eq!(replicas.len(), 1);
    let r = &replicas[0];
    assert!(
        matches!(r.phase, Phase::Booting | Phase::CatchingUp | Phase::Serving),
        "{r:?}"
    );
    assert_eq!(r.role, Role::Surge);
    // The local provider records the flavor with the server it made.
    let server = env
        .cloud
        .server_info(r.server_id.as_deref().unwrap())
        .unwrap();
    assert_eq!(server.flavor.as_deref(), Some("m1.small"));
    assert_eq!(
        env.cloud.server_info(&env.seed_srv.id).unwrap().flavor,
        None
    );
    env.tick_until_serving(1);
    serve(&env);
    env.delete_seed();
}
