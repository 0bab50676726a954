//! instance-ready and scale-down with an `agent`-only HAProxy node: the functions (real
//! binaries, local provider) never connect to it; a verified replica is recorded
//! `serving` only once the node's agent reports it ready, `pgsurge status` shows the
//! agent's view, and scale-down deletes a server only once the agent reports it gone.

use pgsurge::balancer::AdminState;
use pgsurge::model::{Phase, Role};
use pgsurge_tests::agent::{managed_in, ready_in};
use pgsurge_tests::cluster::{E2e, CLUSTER};
use serde_json::json;
use std::time::{Duration, Instant};

/// haproxy2 becomes agent-only; its agent follows the same state (local backend).
/// Returns the agent's config.
fn agent_only_h2(env: &E2e) -> String {
    let listen = pgsurge_tests::free_port();
    let text = std::fs::read_to_string(env.cfg()).unwrap();
    let h2_line = format!("runtime_api = \"{}\"\n", env.h2.socket.display());
    assert!(text.contains(&h2_line), "{text}");
    let text = text.replace(&h2_line, &format!("{h2_line}mode = \"agent\"\n"))
        + &format!(
            "[agent]\nnode = \"haproxy2\"\ninterval_ms = 1000\nlisten = \"127.0.0.1:{listen}\"\n"
        );
    std::fs::write(env.cfg(), &text).unwrap();
    text
}

#[test]
fn instance_ready_waits_for_every_agent_only_node() {
    let env = E2e::start("agent-ready", 24100, "");
    let text = agent_only_h2(&env);

    let up = env.invoke(
        "scale-up",
        &json!({"pgsurge": 1, "kind": "alarm", "id": "ag-1", "name": "read-load",
                "state": "firing", "params": {"cluster": CLUSTER}}),
    );
    assert_eq!(up["decision"]["action"]["add"], 2, "{up}");

    // No agent yet: verified replicas are asked for, never recorded serving.
    let tick = json!({"pgsurge": 1, "kind": "tick"});
    let t = Instant::now();
    loop {
        env.invoke("instance-ready", &tick);
        let surge: Vec<_> = env
            .state()
            .replicas
            .into_iter()
            .filter(|r| r.role == Role::Surge)
            .collect();
        assert!(
            surge.iter().all(|r| r.phase != Phase::Serving),
            "serving without the agent's report: {surge:?}"
        );
        if surge.len() == 2 && surge.iter().all(|r| r.since.agents_asked.is_some()) {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(120), "{surge:?}");
        std::thread::sleep(Duration::from_secs(1));
    }
    // The push node has them already; the agent-only node does not.
    let rt = &env.rt;
    assert_eq!(rt.block_on(ready_in(&env.h1, CLUSTER)).len(), 2);
    assert!(rt.block_on(managed_in(&env.h2, CLUSTER)).is_empty());
    env.invoke("instance-ready", &tick);
    assert!(env
        .surge_replicas()
        .iter()
        .all(|r| r.phase != Phase::Serving));

    // The agent starts: it adds them, reports them, and instance-ready records serving.
    let (_agent, _log) = pgsurge_tests::agent::spawn_agent(&env.root.0, "haproxy2", &text);
    env.tick_until_serving(2);
    let on_h2 = rt.block_on(ready_in(&env.h2, CLUSTER));
    assert_eq!(
        on_h2.len(),
        2,
        "serving recorded before the agent-only node had them: {on_h2:?}"
    );

    let out = pgsurge_tests::command(
        "pgsurge",
        &["--config", env.cfg().to_str().unwrap(), "status"],
        &[],
    )
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Agents:") && stdout.contains("haproxy2: revision"),
        "{stdout}"
    );
}

/// Scale-down cannot drain an agent-only node itself: with that node's agent stopped (its
/// HAProxy still routes to the replicas), it must not delete the servers — they stay
/// `draining`, the answer says why; once the agent is back it puts them in `drain` and
/// reports that, the next scale-down deletes them, and the agent removes them from its
/// node: nothing left anywhere.
#[test]
fn scale_down_deletes_only_what_every_agent_reports_drained() {
    let mut env = E2e::start("agent-down", 24200, "");
    // A short drain: the wait for the agent is the drain deadline plus a grace.
    env.env
        .push(("PGSURGE_HAPROXY__DRAIN_DEADLINE_SECS".into(), "2".into()));
    let text = agent_only_h2(&env);
    let agent = pgsurge_tests::agent::spawn_agent(&env.root.0, "haproxy2", &text);
    let up = env.invoke(
        "scale-up",
        &json!({"pgsurge": 1, "kind": "alarm", "id": "agd-1", "name": "read-load",
                "state": "firing", "params": {"cluster": CLUSTER}}),
    );
    assert_eq!(up["decision"]["action"]["add"], 2, "{up}");
    env.tick_until_serving(2);
    let rt = &env.rt;
    assert_eq!(rt.block_on(ready_in(&env.h2, CLUSTER)).len(), 2);

    // The agent stops; haproxy2 keeps routing to both replicas.
    drop(agent);
    let low = json!({"pgsurge": 1, "kind": "alarm", "id": "agd-2", "name": "read-load-low",
                     "state": "firing", "params": {"cluster": CLUSTER}});
    let down = env.invoke("scale-down", &low);
    assert_eq!(down["decision"]["action"]["action"], "scale-down", "{down}");
    let surge = env.surge_replicas();
    assert_eq!(
        surge.len(),
        2,
        "forgotten while an agent-only node routes to them: {down}"
    );
    assert!(
        surge.iter().all(|r| r.phase == Phase::Draining),
        "{surge:?}"
    );
    let seen = env.surge_everywhere();
    assert_eq!(
        seen.servers.len(),
        2,
        "a server deleted while haproxy2 (agent stopped) still routes to it: {seen:?}"
    );
    assert_eq!(rt.block_on(managed_in(&env.h2, CLUSTER)).len(), 2);
    assert!(
        down.to_string()
            .contains("agent-only HAProxy nodes have not reported it out of rotation"),
        "the answer does not say why: {down}"
    );

    // The agent is back: it takes them out of rotation; scale-down then deletes them.
    let _agent = pgsurge_tests::agent::spawn_agent(&env.root.0, "haproxy2", &text);
    let drained = || {
        let on_h2 = rt.block_on(managed_in(&env.h2, CLUSTER));
        on_h2.len() == 2 && on_h2.values().all(|(a, _)| *a == AdminState::Drain)
    };
    let t = Instant::now();
    while !drained() {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the agent never drained them"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let down = env.invoke("scale-down", &low);
    assert!(
        env.surge_replicas().is_empty(),
        "not deleted once the agent reported them drained: {down}"
    );
    // Forgotten: the agent removes them from its node within an interval or two.
    let t = Instant::now();
    while !rt.block_on(managed_in(&env.h2, CLUSTER)).is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the agent never removed them"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let seen = env.surge_everywhere();
    assert!(seen.agree_on(0), "something left behind: {seen:?}");
    env.delete_seed();
}
