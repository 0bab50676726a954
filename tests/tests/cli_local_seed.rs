//! `pgsurge local seed`: the real binary against a real PostgreSQL 15 primary. The seed
//! is a standby on a pool volume that serves the primary's rows, recorded in the state as
//! a serving base replica; a second seed is refused and changes nothing.

use pgsurge::cloud::local::LocalCloud;
use pgsurge::cloud::{Cloud, Filter};
use pgsurge::config::Config;
use pgsurge_tests::cluster::one_port_config;
use pgsurge_tests::pg::{psql_at, Pg, Scratch};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn seed(cfg: &Path) -> std::process::Output {
    Command::new(pgsurge_tests::bin("pgsurge"))
        .args(["--config", cfg.to_str().unwrap(), "local", "seed"])
        .env_remove("PGSURGE_CONFIG")
        .output()
        .unwrap()
}

#[test]
fn seed_makes_a_serving_base_replica_once() {
    let root = Scratch::new("seedtest");
    let primary = Pg::primary(&root.0, "primary");
    primary.psql(
        "postgres",
        "create table t as select generate_series(1, 1000) x",
    );
    let cfg = root.0.join("pgsurge.toml");
    std::fs::write(
        &cfg,
        one_port_config(&root.0, "seedtest", "local", primary.port),
    )
    .unwrap();

    let out = seed(&cfg);
    assert!(
        out.status.success(),
        "seed failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let made: Value = serde_json::from_slice(&out.stdout).unwrap();
    let port = made["port"].as_u64().unwrap() as u16;
    // A standby with the primary's rows.
    assert_eq!(psql_at(port, "postgres", "select pg_is_in_recovery()"), "t");
    assert_eq!(psql_at(port, "postgres", "select count(*) from t"), "1000");

    let config = Config::load(Some(&cfg)).unwrap();
    let cloud = LocalCloud::new(&config.local, &config.postgres).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let state = rt.block_on(async {
        let repo = pgsurge::state::open(&config.state, "seedtest", None)
            .await
            .unwrap();
        repo.load().await.unwrap().state
    });
    assert_eq!(state.replicas.len(), 1);
    let r = &state.replicas[0];
    assert_eq!(
        (r.id.as_str(), r.role.as_str(), r.phase.as_str()),
        ("seed", "base", "serving")
    );
    assert_eq!(r.server_id.as_deref(), made["server_id"].as_str());
    assert_eq!(r.address.as_deref(), made["address"].as_str());

    // Again: refused, nothing new in the pool or the state.
    let again = seed(&cfg);
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("already has a replica \"seed\""), "{err}");
    let (servers, volumes) = rt.block_on(async {
        (
            cloud.list_servers(&Filter::default()).await.unwrap(),
            cloud.list_volumes(&Filter::default()).await.unwrap(),
        )
    });
    assert_eq!((servers.len(), volumes.len()), (1, 1));

    rt.block_on(async {
        cloud.delete_server(&servers[0].id).await.unwrap();
        cloud.delete_volume(&volumes[0].id).await.unwrap();
    });
}

#[test]
fn seed_refuses_another_provider_before_touching_anything() {
    let root = Scratch::new("seedtest-none");
    let cfg = root.0.join("pgsurge.toml");
    std::fs::write(&cfg, one_port_config(&root.0, "seedtest", "none", 5432)).unwrap();
    let out = seed(&cfg);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`cloud.provider` must be \"local\""), "{err}");
    assert!(!root.0.join("pool").exists() && !root.0.join("state").exists());
}
