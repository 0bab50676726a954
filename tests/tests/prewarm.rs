//! Pre-warm (`[ops.prewarm]`), end to end on the local provider with real PostgreSQL and
//! two real HAProxy nodes: instance-ready proves a clone caught up, loads the configured
//! relation with `pg_prewarm` within the budget, then registers it. Asserted on the
//! replica itself: `pg_buffercache` holds (nearly) every block of the relation, which a
//! freshly booted standby that only replayed WAL does not.

use pgsurge::model::Phase;
use pgsurge_tests::cluster::{replica_port, E2e, CLUSTER};
use pgsurge_tests::pg::psql_at;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const BUDGET_SECS: u64 = 30;

/// Blocks of `pgbench_accounts` in shared buffers of the server on `port`.
fn cached_blocks(port: u16) -> i64 {
    psql_at(
        port,
        "postgres",
        "select count(*) from pg_buffercache b join pg_database d on d.oid = b.reldatabase \
         where d.datname = 'postgres' and b.relfilenode = pg_relation_filenode('pgbench_accounts')",
    )
    .parse()
    .unwrap()
}

#[test]
fn a_caught_up_clone_is_prewarmed_within_budget_before_it_is_registered() {
    let env = E2e::start(
        "prewarm",
        24900,
        &format!(
            "[ops.prewarm]\nrelations = [\"postgres.pgbench_accounts\"]\nbudget_secs = {BUDGET_SECS}\n"
        ),
    );
    // On the primary: they replicate to the seed, so the snapshot carries them.
    env.primary.psql(
        "postgres",
        "create extension pg_prewarm; create extension pg_buffercache",
    );
    let blocks: i64 = env
        .primary
        .psql(
            "postgres",
            "select pg_relation_size('pgbench_accounts') / 8192",
        )
        .parse()
        .unwrap();
    assert!(blocks > 1000, "pgbench_accounts is {blocks} blocks");

    env.invoke(
        "scale-up",
        &json!({"pgsurge": 1, "kind": "alarm", "id": "warm", "name": "load", "state": "firing",
                "params": {"cluster": CLUSTER}}),
    );
    // instance-ready ticks until both serve; keep what each answer says it did.
    let mut actions: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let answer = env.invoke("instance-ready", &json!({"pgsurge": 1, "kind": "tick"}));
        if let Some(a) = answer["actions"].as_array() {
            actions.extend(a.iter().filter_map(Value::as_str).map(str::to_string));
        }
        let surge = env.surge_replicas();
        if surge.len() == 2 && surge.iter().all(|r| r.phase == Phase::Serving) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not serving: {surge:?} {actions:?}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }

    for r in env.surge_replicas() {
        let line = actions
            .iter()
            .find(|a| a.contains(&format!("prewarmed {}:", r.id)))
            .unwrap_or_else(|| panic!("no pre-warm of {} in {actions:?}", r.id));
        // "… prewarmed <id>: <blocks> blocks of 1/1 relation(s) in <secs>s, and registered …"
        let words: Vec<&str> = line.split_whitespace().collect();
        let at = words.iter().position(|w| *w == "blocks").unwrap();
        let loaded: i64 = words[at - 1].parse().unwrap();
        assert_eq!(loaded, blocks, "{line}");
        assert!(line.contains("of 1/1 relation(s)"), "{line}");
        let took = words.iter().position(|w| *w == "relation(s)").unwrap() + 2;
        let secs: f64 = words[took]
            .trim_end_matches([',', 's'])
            .parse()
            .unwrap_or_else(|e| panic!("{line}: {e}"));
        assert!(secs <= BUDGET_SECS as f64, "{line}");
        // In its shared buffers (shared_buffers 128 MB holds the whole relation).
        let cached = cached_blocks(replica_port(&r));
        assert!(
            cached * 10 >= blocks * 9,
            "{}: {cached} of {blocks} blocks cached after pre-warm",
            r.id
        );
    }
    // The seed, never pre-warmed (a standby that only replayed), does not hold them: the
    // check above can tell a pre-warmed replica from a cold one.
    let seed_port = env.seed_srv.endpoint.clone().unwrap().port;
    let cold = cached_blocks(seed_port);
    assert!(
        cold * 2 < blocks,
        "the seed holds {cold} of {blocks} blocks"
    );
    env.delete_seed();
}
