//! The functions end to end on the local provider: real PostgreSQL, two real HAProxy
//! nodes, the local state store, the real function binaries invoked with webhooks
//! (fixture: `pgsurge_tests::cluster::E2e`).
//!
//! - Alarm → two surge replicas cloned from a snapshot of the seed, verified and serving
//!   on both HAProxy nodes → scale-down alarm → back to the seed alone, nothing left in
//!   the pool, the state or HAProxy; `pgbench -S -C` through HAProxy throughout; every
//!   phase's duration pushed to a real VictoriaMetrics.
//! - 50 concurrent deliveries of one alarm make one operation; two different alarms at
//!   once stay within the policy's bounds.
//! - A server deleted behind pgsurge's back leaves every HAProxy node; a "surge"
//!   replica that is really a primary is never deleted.
//!
//! The crash matrix (every failpoint) is in `e2e_crash.rs`.

use pgsurge::cloud::Cloud;

use pgsurge::model::resource_name;
use pgsurge::model::{Phase, Role};
use pgsurge_tests::cluster::{managed_servers, replica_port, E2e, CLUSTER};
use pgsurge_tests::{free_port, wait_http_ok};
use serde_json::{json, Value};
use std::time::Duration;

fn alarm(id: &str, name: &str) -> Value {
    json!({"pgsurge": 1, "kind": "alarm", "id": id, "name": name, "state": "firing",
           "params": {"cluster": CLUSTER}})
}

/// A real VictoriaMetrics on loopback; returns its base URL.
fn victoria_metrics(env: &E2e) -> (pgsurge_tests::Proc, String) {
    let vm = "/usr/bin/victoria-metrics";
    assert!(
        std::path::Path::new(vm).exists(),
        "{vm} not found: install it with `apt-get install victoria-metrics` (`just deps` does, as root)"
    );
    let port = free_port();
    let proc = pgsurge_tests::Proc::spawn_cmd(
        std::process::Command::new(vm)
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .arg(format!(
                "-storageDataPath={}",
                env.root.0.join("vm").display()
            ))
            .arg("-retentionPeriod=1d")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    );
    let base = format!("http://127.0.0.1:{port}");
    env.rt.block_on(wait_http_ok(&format!("{base}/health"), 30));
    (proc, base)
}

/// Phases with at least one pushed `pgsurge_phase_duration_seconds` observation.
fn pushed_phases(env: &E2e, base: &str) -> Vec<String> {
    let url = format!("{base}/api/v1/export?match[]=pgsurge_phase_duration_seconds_count");
    let body = env
        .rt
        .block_on(async { reqwest::get(&url).await.unwrap().text().await.unwrap() });
    let mut phases: Vec<String> = body
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|s| s["metric"]["phase"].as_str().map(str::to_string))
        .collect();
    phases.sort();
    phases.dedup();
    phases
}

#[test]
fn alarm_to_serving_replicas_on_both_haproxy_nodes_and_back() {
    let mut env = E2e::start("e2e", 20400, "");
    let (_vm, vm_url) = victoria_metrics(&env);
    env.env
        .push(("PGSURGE_METRICS__PUSH_URL".into(), vm_url.clone()));
    // Reads through both nodes, new connection per transaction, the whole time.
    let load_started = std::time::Instant::now();
    let mut load: Vec<_> = [&env.h1, &env.h2]
        .iter()
        .map(|h| {
            pgsurge_tests::Proc::spawn_cmd(
                std::process::Command::new("pgbench")
                    .args(["-S", "-C", "-n", "-c", "2", "-R", "20", "-T", "75"])
                    .args(["-h", "127.0.0.1", "-p", &h.port.to_string()])
                    .args(["-U", "postgres", "postgres"])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped()),
            )
        })
        .collect();

    // Scale up through the real webhook path (generic alarm form).
    let up_alarm = alarm("e2e-1", "read-load");
    let up = env.invoke("scale-up", &up_alarm);
    assert_eq!(up["status"], "accepted", "{up}");
    assert_eq!(up["decision"]["action"]["action"], "scale-up", "{up}");
    assert_eq!(up["decision"]["action"]["add"], 2, "{up}");
    // A duplicate delivery of the same alarm decides nothing new.
    let dup = env.invoke("scale-up", &up_alarm);
    assert_ne!(dup["decision"]["action"]["action"], "scale-up", "{dup}");
    assert_eq!(env.state().replicas.len(), 3);

    // instance-ready ticks until both are verified and registered on both nodes.
    env.tick_until_serving(2);
    let seen = env.surge_everywhere();
    assert!(
        seen.agree_on(2),
        "pool, state and HAProxy disagree: {seen:?}"
    );
    // Each replica has the primary's rows.
    for r in &env.state().replicas {
        let port = replica_port(r);
        let rows =
            pgsurge_tests::pg::psql_at(port, "postgres", "select count(*) from pgbench_accounts");
        assert_eq!(rows, "200000", "replica {}", r.id);
    }
    std::thread::sleep(Duration::from_secs(5));

    // Scale down: drained, removed from both nodes, servers and volumes deleted.
    let down = env.invoke("scale-down", &alarm("e2e-2", "read-load-low"));
    assert_eq!(down["decision"]["action"]["action"], "scale-down", "{down}");
    let ids: Vec<String> = env.state().replicas.into_iter().map(|r| r.id).collect();
    assert_eq!(ids, ["seed"], "{down}");
    let seen = env.surge_everywhere();
    assert!(seen.agree_on(0), "something left behind: {seen:?}");
    // The load was still running when the scale-down finished: otherwise a slow box
    // could scale down after pgbench stopped and its 0 failed reads would prove nothing.
    let down_at = load_started.elapsed();
    for (h, p) in [&env.h1, &env.h2].iter().zip(load.iter_mut()) {
        assert!(
            p.running(),
            "pgbench via {} ended before the scale-down finished at {down_at:.1?}",
            h.name
        );
    }

    // Zero failed reads through both nodes (the load outlasted the scale-down).
    for p in load {
        let out = p.wait();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        eprintln!("pgbench through HAProxy:\n{text}");
        assert!(
            text.contains("number of failed transactions: 0 "),
            "failed reads:\n{text}"
        );
        assert!(!text.contains("aborted"), "a client aborted:\n{text}");
    }

    // Every phase of a replica's life reached VictoriaMetrics (pushed after each
    // invocation; searchable after VM's short flush).
    let want = [
        "boot", "catch-up", "clone", "delete", "drain", "register", "snapshot",
    ];
    let mut phases = Vec::new();
    for _ in 0..100 {
        phases = pushed_phases(&env, &vm_url);
        if want.iter().all(|w| phases.iter().any(|p| p == w)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(phases, want, "phase histograms pushed to VictoriaMetrics");
    env.delete_seed();
}

/// 50 deliveries of one alarm at once (a webhook sender retrying hard): one operation,
/// two replicas, no duplicate anywhere. Then two *different* alarms at once: the policy's
/// bound (max_replicas = 4 here: the seed + 3) holds whatever the interleaving.
#[test]
fn concurrent_deliveries_make_one_operation_and_bounds_hold() {
    let mut env = E2e::start("e2e-conc", 20500, "");
    env.env
        .push(("PGSURGE_POLICY__MAX_REPLICAS".into(), "4".into()));
    let same = alarm("storm-1", "read-load");
    std::thread::scope(|s| {
        let runs: Vec<_> = (0..50)
            .map(|_| s.spawn(|| env.invoke("scale-up", &same)))
            .collect();
        let answers: Vec<Value> = runs.into_iter().map(|r| r.join().unwrap()).collect();
        let decided = answers
            .iter()
            .filter(|a| a["decision"]["action"]["action"] == "scale-up")
            .count();
        assert_eq!(decided, 1, "exactly one delivery decides to scale up");
    });
    let state = env.state();
    assert_eq!(state.operations.len(), 1, "{:?}", state.operations);
    env.tick_until_serving(2);
    let seen = env.surge_everywhere();
    assert!(seen.agree_on(2), "after 50 deliveries: {seen:?}");

    // Two different alarms at once: at most one more replica fits under max_replicas.
    let (a, b) = (alarm("storm-2", "cpu"), alarm("storm-3", "connections"));
    std::thread::scope(|s| {
        let ra = s.spawn(|| env.invoke("scale-up", &a));
        let rb = s.spawn(|| env.invoke("scale-up", &b));
        let (ra, rb) = (ra.join().unwrap(), rb.join().unwrap());
        let added: u64 = [&ra, &rb]
            .iter()
            .filter(|x| x["decision"]["action"]["action"] == "scale-up")
            .map(|x| x["decision"]["action"]["add"].as_u64().unwrap())
            .sum();
        assert_eq!(added, 1, "the bound leaves room for one: {ra} {rb}");
    });
    env.tick_until_serving(3);
    let seen = env.surge_everywhere();
    assert!(seen.agree_on(3), "after two concurrent alarms: {seen:?}");
    assert_eq!(env.state().replicas.len(), 4, "max_replicas = 4 holds");

    // Back down through the first alarm's *resolved* notification, delivered where its
    // firing went (scale-up). By default it changes nothing ...
    let mut resolved = same.clone();
    resolved["state"] = json!("resolved");
    let ignored = env.invoke("scale-up", &resolved);
    assert_eq!(ignored["status"], "ignored", "{ignored}");
    assert_eq!(env.surge_replicas().len(), 3, "{ignored}");
    // ... and with policy.scale_down_on_resolved it scales down: nothing left.
    env.env.push((
        "PGSURGE_POLICY__SCALE_DOWN_ON_RESOLVED".into(),
        "true".into(),
    ));
    env.env
        .push(("PGSURGE_POLICY__SCALE_DOWN_STEP".into(), "3".into()));
    let down = env.invoke("scale-up", &resolved);
    assert_eq!(down["decision"]["action"]["action"], "scale-down", "{down}");
    let seen = env.surge_everywhere();
    assert!(seen.agree_on(0), "after the resolved alarm: {seen:?}");
    // The same resolved notification again decides nothing.
    let again = env.invoke("scale-up", &resolved);
    assert_eq!(again["decision"]["action"]["action"], "nothing", "{again}");
    env.delete_seed();
}

/// Someone deletes a surge server in the cloud console: the instance-deleted event takes
/// it out of every HAProxy node, deletes its volume and forgets it. A surge replica that
/// was promoted (a primary now), and a state record that mislabels the seed as a surge
/// replica, are never deleted. When the promoted one is then deleted by hand and its
/// event is lost, the reconcile timer cleans up.
#[test]
fn vanished_servers_leave_haproxy_and_a_primary_is_never_removed() {
    let env = E2e::start("e2e-vanish", 20600, "");
    env.invoke("scale-up", &alarm("v-1", "read-load"));
    env.tick_until_serving(2);
    let surge = env.surge_replicas();
    let (gone, promoted) = (surge[0].clone(), surge[1].clone());

    // 1. Deleted behind our back; the cloud's event arrives.
    let gone_name = resource_name(CLUSTER, &gone.id);
    env.rt
        .block_on(env.cloud.delete_server(gone.server_id.as_deref().unwrap()))
        .unwrap();
    assert!(managed_servers(&env.h1).contains(&gone_name));
    let ev =
        json!({"pgsurge": 1, "kind": "instance", "event": "deleted", "server_id": gone.server_id});
    let answer = env.invoke("instance-deleted", &ev);
    assert_eq!(answer["status"], "accepted", "{answer}");
    let seen = env.surge_everywhere();
    assert!(seen.agree_on(1), "after instance-deleted: {seen:?}");
    assert!(!seen.h1.contains(&gone_name) && !seen.h2.contains(&gone_name));

    // 2. The other surge replica is promoted (now a primary), and a bad edit labels the
    //    seed as a surge replica. A scale-down picks both and must delete neither.
    let port = replica_port(&promoted);
    pgsurge_tests::pg::psql_at(port, "postgres", "select pg_promote(true, 60)");
    let mislabelled = pgsurge::model::Replica {
        id: "mislabelled".into(),
        role: Role::Surge,
        phase: Phase::Serving,
        server_id: Some(env.seed_srv.id.clone()),
        volume_id: Some(env.seed_vol.id.clone()),
        az: None,
        address: Some(format!(
            "127.0.0.1:{}",
            env.seed_srv.endpoint.as_ref().unwrap().port
        )),
        created_at: time::OffsetDateTime::now_utc(),
        op_id: None,
        since: Default::default(),
        extra: Default::default(),
    };
    env.edit_state(|s| s.replicas.push(mislabelled.clone()));
    let down = env.invoke("scale-down", &alarm("v-2", "low"));
    let text = down.to_string();
    assert!(
        text.contains("NOT in recovery"),
        "promoted replica refused: {down}"
    );
    assert!(
        text.contains("not labelled"),
        "mislabelled seed refused: {down}"
    );
    env.rt.block_on(async {
        env.cloud
            .get_server(promoted.server_id.as_deref().unwrap())
            .await
            .expect("promoted server kept");
        env.cloud
            .get_volume(promoted.volume_id.as_deref().unwrap())
            .await
            .expect("promoted volume kept");
        env.cloud
            .get_server(&env.seed_srv.id)
            .await
            .expect("seed server kept");
        env.cloud
            .get_volume(&env.seed_vol.id)
            .await
            .expect("seed volume kept");
    });
    pgsurge_tests::pg::psql_at(port, "postgres", "create table i_am_a_primary (x int)");
    let ids: Vec<String> = env.state().replicas.into_iter().map(|r| r.id).collect();
    assert!(
        ids.contains(&promoted.id) && ids.contains(&"mislabelled".to_string()),
        "{ids:?}"
    );

    // 3. A human fixes the record and deletes the promoted server by hand; its event
    //    is lost. Reconcile: out of HAProxy, volume deleted, forgotten.
    env.edit_state(|s| s.replicas.retain(|r| r.id != "mislabelled"));
    env.rt
        .block_on(
            env.cloud
                .delete_server(promoted.server_id.as_deref().unwrap()),
        )
        .unwrap();
    env.invoke("reconcile", &json!({"pgsurge": 1, "kind": "tick"}));
    let seen = env.surge_everywhere();
    assert!(seen.agree_on(0), "after reconcile: {seen:?}");

    // 4. A new replica's server dies while booting (OpenStack: Nova puts it in ERROR):
    //    instance-ready rolls it back — server and volume deleted, forgotten — and
    //    registers the others.
    env.invoke("scale-up", &alarm("v-3", "read-load"));
    let booting = env.surge_replicas();
    assert!(booting.len() >= 2, "{booting:?}");
    let broken = booting[0].clone();
    let port = replica_port(&broken);
    let pids = std::process::Command::new("fuser")
        .arg(format!("{port}/tcp"))
        .output()
        .expect("fuser (psmisc)");
    let pids = String::from_utf8_lossy(&pids.stdout).into_owned();
    assert!(!pids.trim().is_empty(), "no process listens on {port}");
    for pid in pids.split_whitespace() {
        std::process::Command::new("kill")
            .args(["-9", pid])
            .status()
            .unwrap();
    }
    let answer = env.invoke("instance-ready", &json!({"pgsurge": 1, "kind": "tick"}));
    assert!(
        answer
            .to_string()
            .contains(&format!("rolled back {}", broken.id)),
        "{answer}"
    );
    env.tick_until_serving(booting.len() - 1);
    let seen = env.surge_everywhere();
    assert!(
        seen.agree_on(booting.len() - 1),
        "after the roll-back: {seen:?}"
    );
    env.rt.block_on(async {
        assert!(
            env.cloud
                .get_volume(broken.volume_id.as_deref().unwrap())
                .await
                .is_err(),
            "the broken replica's volume is deleted"
        );
    });
    env.delete_seed();
}

// ---- issue 12 §2: the two proofs on every destructive path ----

fn tick() -> Value {
    json!({"pgsurge": 1, "kind": "tick"})
}

/// Labels of a resource that names replica `replica` with role `role`, made by scale-up
/// long ago (so only the first-seen grace can keep it).
fn labels(role: &str, replica: &str) -> pgsurge::cloud::Metadata {
    use pgsurge::cloud::{META_CLUSTER, META_REPLICA, META_ROLE};
    [
        (META_CLUSTER.to_string(), CLUSTER.to_string()),
        (META_ROLE.to_string(), role.to_string()),
        (META_REPLICA.to_string(), replica.to_string()),
        (
            pgsurge::ops::META_CREATED.to_string(),
            "2026-01-01T00:00:00Z".to_string(),
        ),
    ]
    .into()
}

/// A replica record the way a bad edit or a bug could leave one.
fn record(id: &str, role: Role, phase: Phase) -> pgsurge::model::Replica {
    pgsurge::model::Replica {
        id: id.into(),
        role,
        phase,
        server_id: None,
        volume_id: None,
        az: None,
        address: None,
        created_at: time::OffsetDateTime::now_utc() - time::Duration::hours(2),
        op_id: None,
        since: Default::default(),
        extra: Default::default(),
    }
}

fn seed_intact(env: &E2e) {
    env.rt.block_on(async {
        env.cloud
            .get_server(&env.seed_srv.id)
            .await
            .expect("seed server kept");
        env.cloud
            .get_volume(&env.seed_vol.id)
            .await
            .expect("seed volume kept");
    });
    assert!(env.state().replica("seed").is_some(), "seed forgotten");
}

/// Reconcile's roll-back of a `creating` replica past its deadline deletes only a surge
/// replica, and only what the cloud labels as that replica: the seed (a base replica)
/// recorded `creating`, and a surge record whose name matches a volume labelled as a
/// base replica, are refused with the reason and left as they are.
#[test]
fn reconcile_rolls_back_only_a_surge_replica_the_cloud_labels_as_it() {
    let env = E2e::start("e2e-rollback", 23100, "");
    env.edit_state(|s| {
        let seed = s.replicas.iter_mut().find(|r| r.id == "seed").unwrap();
        seed.phase = Phase::Creating;
        seed.created_at -= time::Duration::hours(2);
        s.replicas
            .push(record("imposter", Role::Surge, Phase::Creating));
    });
    let imposter = env
        .rt
        .block_on(env.cloud.create_empty_volume(
            &resource_name(CLUSTER, "imposter"),
            &labels("base", "imposter"),
        ))
        .unwrap();
    let answer = env.invoke("reconcile", &tick());
    let exists = |r: Result<(), pgsurge::cloud::CloudError>| r.is_ok();
    let kept = env.rt.block_on(async {
        (
            exists(env.cloud.get_server(&env.seed_srv.id).await.map(drop)),
            exists(env.cloud.get_volume(&env.seed_vol.id).await.map(drop)),
            exists(env.cloud.get_volume(&imposter.id).await.map(drop)),
        )
    });
    assert_eq!(
        kept,
        (true, true, true),
        "(seed server, seed volume, base-labelled volume) kept: {answer}"
    );
    let text = answer.to_string();
    assert!(
        text.contains("a base replica is never rolled back"),
        "{answer}"
    );
    // Refusals are left pending, so reconcile asks to run again within one lease length
    // (`ops.lease_secs`, 30 s by default): sooner than a timer would, later than at once.
    assert!(
        !answer["pending"].as_array().unwrap().is_empty(),
        "{answer}"
    );
    assert!(
        answer["requeue_after_secs"]
            .as_u64()
            .is_some_and(|s| (1..=30).contains(&s)),
        "{answer}"
    );
    assert!(
        text.contains(&format!(
            "volume {} labelled pgsurge_role=\\\"base\\\"",
            imposter.id
        )),
        "{answer}"
    );
    let state = env.state();
    assert!(state.replica("imposter").is_some());
    let refusal = state.replica("seed").unwrap().refusal().unwrap();
    assert!(refusal.reason.contains("never rolled back"), "{refusal:?}");

    env.edit_state(|s| {
        s.replicas.retain(|r| r.id != "imposter");
        s.replicas[0].phase = Phase::Serving;
    });
    env.rt
        .block_on(env.cloud.delete_volume(&imposter.id))
        .unwrap();
    env.delete_seed();
}

/// instance-ready rolls back a replica whose server went into error only when it is a
/// surge replica: the seed recorded as booting, its postmaster dead (the local server
/// reads as `error`), is refused and kept.
#[test]
fn instance_ready_never_rolls_back_a_base_replica_whose_server_is_in_error() {
    let env = E2e::start("e2e-error", 23500, "");
    env.edit_state(|s| s.replicas[0].phase = Phase::Booting);
    let port = env.seed_srv.endpoint.as_ref().unwrap().port;
    let pids = std::process::Command::new("fuser")
        .arg(format!("{port}/tcp"))
        .output()
        .expect("fuser (psmisc)");
    let pids = String::from_utf8_lossy(&pids.stdout).into_owned();
    assert!(!pids.trim().is_empty(), "no process listens on {port}");
    for pid in pids.split_whitespace() {
        std::process::Command::new("kill")
            .args(["-9", pid])
            .status()
            .unwrap();
    }
    let answer = env.invoke("instance-ready", &tick());
    seed_intact(&env);
    let text = answer.to_string();
    assert!(
        text.contains("is in error") && text.contains("a base replica is never rolled back"),
        "{answer}"
    );
    env.delete_seed();
}

/// A state document that is absent is not an empty cluster: with labelled resources in
/// the cloud reconcile refuses everything (no HAProxy convergence, no orphan deletion, no
/// write) and `status` says why (exit 3). A document that starts again from nothing does
/// not make the replicas orphans at once either: their grace runs from when reconcile
/// first saw them unknown (recorded in the state), and HAProxy keeps serving them until
/// it ends.
#[test]
fn a_missing_state_document_is_not_an_empty_cluster() {
    let env = E2e::start("e2e-nostate", 23200, "");
    env.invoke("scale-up", &alarm("ns-1", "read-load"));
    env.tick_until_serving(2);
    let serving = env.surge_everywhere();
    assert!(serving.agree_on(2), "{serving:?}");

    // 1. The document disappears (a wrong prefix, a lifecycle rule, a slip of the hand).
    let doc = env.root.0.join("state").join(CLUSTER).join("state.json");
    std::fs::remove_file(&doc).unwrap();
    let answer = env.invoke("reconcile", &tick());
    let seen = env.surge_everywhere();
    assert_eq!(
        (&seen.servers, &seen.h1, &seen.h2),
        (&serving.servers, &serving.servers, &serving.servers),
        "nothing removed: {answer}"
    );
    let text = answer.to_string();
    assert!(
        text.contains("refused") && text.contains("is absent"),
        "{answer}"
    );
    assert!(!doc.exists(), "reconcile wrote a document: {answer}");
    let out = pgsurge_tests::command(
        "pgsurge",
        &["--config", env.cfg().to_str().unwrap(), "status"],
        &[],
    )
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(
        stdout.contains("no state document, but the cloud holds 3 server(s)"),
        "{stdout}"
    );

    // 2. A document starts again from nothing (here: only the seed), and a stray volume
    //    made by scale-up long ago appears. Nothing is deleted or unregistered yet: the
    //    grace (600 s) runs from now.
    env.edit_state(|s| {
        s.replicas.clear();
    });
    env.edit_state(|s| {
        let mut seed = record("seed", Role::Base, Phase::Serving);
        seed.server_id = Some(env.seed_srv.id.clone());
        seed.volume_id = Some(env.seed_vol.id.clone());
        seed.address = Some(format!(
            "127.0.0.1:{}",
            env.seed_srv.endpoint.as_ref().unwrap().port
        ));
        s.replicas = vec![seed];
    });
    let stray = env
        .rt
        .block_on(
            env.cloud
                .create_empty_volume(&resource_name(CLUSTER, "stray"), &labels("surge", "stray")),
        )
        .unwrap();
    let answer = env.invoke("reconcile", &tick());
    let seen = env.surge_everywhere();
    let stray_kept = env.rt.block_on(env.cloud.get_volume(&stray.id)).is_ok();
    assert_eq!(
        (&seen.h1, &seen.h2, &seen.servers, stray_kept),
        (&serving.servers, &serving.servers, &serving.servers, true),
        "(haproxy1, haproxy2, servers, stray volume) still there: {answer}"
    );
    assert!(
        answer.to_string().contains("not converging HAProxy"),
        "{answer}"
    );
    let first_seen = env.state().unknown_since;
    assert_eq!(
        first_seen.len(),
        6,
        "2 servers + 3 volumes + the snapshot only the lost document recorded: {first_seen:?}"
    );

    // 3. The grace ends: orphans out of HAProxy, deleted.
    env.edit_state(|s| {
        for t in s.unknown_since.values_mut() {
            t.0 -= time::Duration::hours(1);
        }
    });
    env.invoke("reconcile", &tick());
    let seen = env.surge_everywhere();
    // The scale-up's snapshot was recorded only in the lost document: an orphan too, it
    // is deleted with them (named and labelled as scale-up's, past its grace).
    assert!(seen.agree_on(0), "{seen:?}");
    assert!(seen.leaked_snapshots().is_empty(), "{seen:?}");
    assert!(env.rt.block_on(env.cloud.get_volume(&stray.id)).is_err());
    assert!(env.state().unknown_since.is_empty());
    env.delete_seed();
}

/// Scale-down, instance-deleted and reconcile (a vanished server) delete a volume by the
/// id the state records, with no server to vouch for it: only when the volume's own
/// labels say it is that surge replica's. Here each id points at a volume labelled as a
/// base replica: all three are refused and kept.
#[test]
fn a_volume_is_deleted_by_its_recorded_id_only_when_its_labels_say_so() {
    let env = E2e::start("e2e-volume", 23300, "");
    let base_volume = |name: &str| {
        env.rt
            .block_on(
                env.cloud
                    .create_empty_volume(&resource_name(CLUSTER, name), &labels("base", name)),
            )
            .unwrap()
    };
    let (for_event, for_vanished, for_draining) = (
        base_volume("keep-a"),
        base_volume("keep-b"),
        base_volume("keep-c"),
    );
    // The server is gone (instance-deleted; reconcile's vanished step).
    let mut gone = record("x-gone", Role::Surge, Phase::Booting);
    gone.server_id = Some("no-such-server-a".into());
    gone.volume_id = Some(for_event.id.clone());
    let mut vanished = record("x-vanished", Role::Surge, Phase::Booting);
    vanished.server_id = Some("no-such-server-b".into());
    vanished.volume_id = Some(for_vanished.id.clone());
    // No server recorded (scale-down's resumable half, in reconcile).
    let mut draining = record("x-draining", Role::Surge, Phase::Draining);
    draining.volume_id = Some(for_draining.id.clone());
    env.edit_state(|s| {
        s.replicas
            .extend([gone.clone(), vanished.clone(), draining.clone()])
    });
    let exists = |id: &str| env.rt.block_on(env.cloud.get_volume(id)).is_ok();

    let ev = json!({"pgsurge": 1, "kind": "instance", "event": "deleted", "server_id": "no-such-server-a"});
    let event = env.invoke("instance-deleted", &ev);
    let kept_by_event = exists(&for_event.id);
    let tick = env.invoke("reconcile", &tick());
    assert_eq!(
        (
            kept_by_event,
            exists(&for_vanished.id),
            exists(&for_draining.id)
        ),
        (true, true, true),
        "kept by (instance-deleted, reconcile of a vanished server, scale-down): {event}\n{tick}"
    );
    assert!(
        event
            .to_string()
            .contains("refusing to delete it as surge replica x-gone"),
        "{event}"
    );
    for id in ["x-vanished", "x-draining"] {
        assert!(
            tick.to_string()
                .contains(&format!("refusing to delete it as surge replica {id}")),
            "{tick}"
        );
    }
    let state = env.state();
    for id in ["x-gone", "x-vanished", "x-draining"] {
        assert!(state.replica(id).is_some(), "{id} forgotten");
    }
    env.edit_state(|s| s.replicas.retain(|r| !r.id.starts_with("x-")));
    for v in [for_event, for_vanished, for_draining] {
        env.rt.block_on(env.cloud.delete_volume(&v.id)).unwrap();
    }
    env.delete_seed();
}
