//! `pgsurge base add|list` with the local provider: the real binary, a real PostgreSQL 15
//! primary, a replica made in the local pool outside pgsurge's state (as people make
//! one), and a second, unrelated cluster. Each refusal is precise and leaves the state
//! store byte for byte as it was; the replica is recorded once, a second add writes
//! nothing.

use pgsurge::cloud::local::LocalCloud;
use pgsurge::cloud::{Cloud, Filter, Metadata, META_CLUSTER, META_REPLICA, META_ROLE};
use pgsurge::config::Config;
use pgsurge::model::resource_name;
use pgsurge_tests::cluster::one_port_config;
use pgsurge_tests::pg::{Pg, Scratch};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

const CLUSTER: &str = "basetest";

fn pgsurge(cfg: &Path, args: &[&str]) -> Output {
    Command::new(pgsurge_tests::bin("pgsurge"))
        .args(["--config", cfg.to_str().unwrap()])
        .args(args)
        .env_remove("PGSURGE_CONFIG")
        .output()
        .unwrap()
}

/// Every file of the state store, by path: "changes nothing" is checked byte for byte.
fn state_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.display().to_string(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn base_add_checks_postgres_cloud_and_state_then_records_once() {
    let root = Scratch::new("basetest");
    let primary = Pg::primary(&root.0, "primary");
    // an unrelated cluster: its standby is in recovery, but not of our primary
    let other = Pg::primary(&root.0, "other");
    let other_standby = Pg::replica_of(&other, &root.0, "other-standby");
    let cfg = root.0.join("pgsurge.toml");
    std::fs::write(
        &cfg,
        one_port_config(&root.0, CLUSTER, "local", primary.port),
    )
    .unwrap();

    // The replica people made: a pool volume + server, labelled as base "b1", not in the state.
    let config = Config::load(Some(&cfg)).unwrap();
    let cloud = LocalCloud::new(&config.local, &config.postgres).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let meta: Metadata = [
        (META_CLUSTER.to_string(), CLUSTER.to_string()),
        (META_ROLE.to_string(), "base".to_string()),
        (META_REPLICA.to_string(), "b1".to_string()),
    ]
    .into();
    let (vol, srv) = rt
        .block_on(cloud.create_seed(&resource_name(CLUSTER, "b1"), &meta))
        .unwrap();
    let ep = srv.endpoint.clone().unwrap();
    let address = format!("127.0.0.1:{}", ep.port);
    let state_dir = root.0.join("state");
    let before = state_files(&state_dir);

    let add = |id: &str, server: &str, volume: &str, address: &str| {
        pgsurge(
            &cfg,
            &[
                "base",
                "add",
                "--id",
                id,
                "--server",
                server,
                "--volume",
                volume,
                "--address",
                address,
            ],
        )
    };
    let refused = |out: Output, needle: &str| {
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            !out.status.success(),
            "accepted, expected {needle:?}: {err}"
        );
        assert!(err.contains(needle), "expected {needle:?} in: {err}");
        assert_eq!(
            state_files(&state_dir),
            before,
            "a refusal changed the state store ({needle})"
        );
    };
    let other_addr = format!("127.0.0.1:{}", other_standby.port);
    let primary_addr = format!("127.0.0.1:{}", primary.port);
    refused(
        add("b1", &srv.id, &vol.id, &other_addr),
        "belongs to another cluster: system identifier",
    );
    refused(
        add("b1", &srv.id, &vol.id, &primary_addr),
        "is not in recovery",
    );
    refused(
        add("b1", "nope", &vol.id, &address),
        "server nope not found",
    );
    refused(
        add("b1", &srv.id, "nope", &address),
        "volume nope not found",
    );
    refused(
        add("b2", &srv.id, &vol.id, &address),
        r#"labelled pgsurge_replica="b1", not "b2""#,
    );
    refused(add("b1", &srv.id, &vol.id, "localhost"), "invalid address");
    refused(add("B 1", &srv.id, &vol.id, &address), "invalid id");

    // Accepted: recorded as a serving base replica with what was given.
    let out = add("b1", &srv.id, &vol.id, &address);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let added: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(added["outcome"], "registered", "{added}");
    let state = rt.block_on(async {
        let repo = pgsurge::state::open(&config.state, CLUSTER, None)
            .await
            .unwrap();
        repo.load().await.unwrap().state
    });
    assert_eq!(state.replicas.len(), 1);
    let r = &state.replicas[0];
    assert_eq!(
        (r.id.as_str(), r.role.as_str(), r.phase.as_str()),
        ("b1", "base", "serving")
    );
    assert_eq!(r.server_id.as_deref(), Some(srv.id.as_str()));
    assert_eq!(r.volume_id.as_deref(), Some(vol.id.as_str()));
    assert_eq!(r.address.as_deref(), Some(address.as_str()));

    // Twice: nothing written.
    let recorded = state_files(&state_dir);
    assert_ne!(recorded, before);
    let out = add("b1", &srv.id, &vol.id, &address);
    assert!(out.status.success());
    let again: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(again["outcome"], "already-registered", "{again}");
    assert_eq!(state_files(&state_dir), recorded, "a second add wrote");
    // The same id as something else: refused, nothing written.
    let out = add("b1", &srv.id, &vol.id, &other_addr);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already recorded, differently"));
    assert_eq!(state_files(&state_dir), recorded);

    let list = pgsurge(&cfg, &["base", "list"]);
    assert!(list.status.success());
    let line: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(line["id"], "b1");
    assert_eq!(line["volume_id"], vol.id.as_str());

    rt.block_on(async {
        for s in cloud.list_servers(&Filter::default()).await.unwrap() {
            cloud.delete_server(&s.id).await.unwrap();
        }
        cloud.delete_volume(&vol.id).await.unwrap();
    });
}
