//! instance-ready with an `agent`-only HAProxy node: the functions (real binaries, local
//! provider) never connect to it; a verified replica is recorded `serving` only once
//! the node's agent reports it ready, and `pgsurge status` shows the agent's view.

use pgsurge::model::{Phase, Role};
use pgsurge_tests::agent::{managed_in, ready_in};
use pgsurge_tests::cluster::{E2e, CLUSTER};
use serde_json::json;
use std::time::{Duration, Instant};

#[test]
fn instance_ready_waits_for_every_agent_only_node() {
    let env = E2e::start("agent-ready", 24100, "");
    // haproxy2 becomes agent-only; its agent follows the same state (local backend).
    let listen = pgsurge_tests::free_port();
    let text = std::fs::read_to_string(env.cfg()).unwrap();
    let h2_line = format!("runtime_api = \"{}\"\n", env.h2.socket.display());
    assert!(text.contains(&h2_line), "{text}");
    let text = text.replace(&h2_line, &format!("{h2_line}mode = \"agent\"\n"))
        + &format!(
            "[agent]\nnode = \"haproxy2\"\ninterval_ms = 1000\nlisten = \"127.0.0.1:{listen}\"\n"
        );
    std::fs::write(env.cfg(), &text).unwrap();

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
