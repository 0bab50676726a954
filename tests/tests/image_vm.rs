//! The replica image booted for real (issue 14): built from the Ansible role (or reused
//! from the cache), the role's second run changes nothing, and pgsurge's local provider
//! with `servers = "vm"` boots a qemu VM from it for a scale-up — system disk the image
//! (copy-on-write overlay), data disk the clone of a snapshot of the seed replica, a
//! config drive with the user data scale-up wrote. The guest's first-boot unit makes
//! it a streaming standby of the host's primary (under a write load, streaming as a
//! role whose password only the image holds) and calls instance-ready back over HTTP;
//! nobody ticks, so only that callback can get it registered on both HAProxy nodes.
//! Networking: qemu user mode (the guest's network lives inside qemu; it reaches the
//! host's loopback at 10.0.2.2, HAProxy reaches it through a forward on 127.0.0.1).

use pgsurge::state::Phase;
use pgsurge_tests::cluster::{E2e, CLUSTER};
use pgsurge_tests::pg::psql_at;
use pgsurge_tests::{command, free_port, vm, wait_http_ok, Proc};
use serde_json::json;
use std::time::{Duration, Instant};

const CALLBACK_SECRET: &str = "image-vm-callback-secret";

#[test]
fn a_vm_from_the_image_becomes_a_serving_standby_and_calls_back() {
    let t = Instant::now();
    let (img, recap) = vm::image(true);
    eprintln!(
        "image: {} in {:.0} s ({})",
        img.image.display(),
        t.elapsed().as_secs_f64(),
        if img.cached { "cached" } else { "built" }
    );
    assert!(
        recap.contains("changed=0") && recap.contains("failed=0"),
        "the role's second run changed something:\n{recap}"
    );

    let ir_port = free_port();
    let extra = format!(
        "{}[node]\ncallback_url = \"http://127.0.0.1:{ir_port}/\"\n\
         [auth]\ntoken = \"image-vm-token\"\ncallback_secret = \"{CALLBACK_SECRET}\"\n",
        img.local_vm_toml()
    );
    let mut env = E2e::start("image-vm", 20700, &extra);
    // The VM streams as a role with a password the primary checks; only the image has it
    // (baked from tests/data/image/secrets.yml), the user data never does.
    env.primary.psql(
        "postgres",
        "create role vmrepl login replication password 'pgsurge-test-replication'",
    );
    env.primary
        .prepend_hba("host replication vmrepl 127.0.0.1/32 scram-sha-256");
    // The guest sees HAProxy and instance-ready as qemu's gateway: the base replica's
    // pg_hba.conf (copied by the snapshot) admits that network, as a cloud's would its VPC.
    let seed_hba = env
        .root
        .0
        .join("pool/volumes")
        .join(&env.seed_vol.id)
        .join("data/pg_hba.conf");
    let hba = std::fs::read_to_string(&seed_hba).unwrap();
    std::fs::write(&seed_hba, format!("host all all 10.0.2.0/24 trust\n{hba}")).unwrap();
    env.env.push(("PGSURGE_LOCAL__SERVERS".into(), "vm".into()));
    env.env
        .push(("PGSURGE_POSTGRES__REPLICATION_USER".into(), "vmrepl".into()));

    let ir_log = env.root.0.join("instance-ready.log");
    let log = std::fs::File::create(&ir_log).unwrap();
    let cfg = env.cfg().display().to_string();
    let mut cmd = command(
        "instance-ready",
        &["--config", &cfg, "serve", "--port", &ir_port.to_string()],
        &[],
    );
    cmd.stdout(log.try_clone().unwrap()).stderr(log);
    let _ir = Proc::spawn_cmd(&mut cmd);
    env.rt.block_on(wait_http_ok(
        &format!("http://127.0.0.1:{ir_port}/healthz"),
        30,
    ));
    let _load = env.primary.start_write_load(2, 10);

    let up = env.invoke(
        "scale-up",
        &json!({"pgsurge": 1, "kind": "alarm", "id": "vm-1", "name": "read-load",
                "state": "firing", "params": {"cluster": CLUSTER, "replicas": 1}}),
    );
    assert_eq!(up["status"], "accepted", "{up}");
    let booted = Instant::now();
    env.primary.psql(
        "postgres",
        "create table after_snapshot(x text); insert into after_snapshot values ('after')",
    );
    let r = env.surge_replicas().pop().expect("a surge replica");
    let server_dir = env
        .root
        .0
        .join("pool/servers")
        .join(r.server_id.as_ref().unwrap());

    let (mut t_pg, mut t_catching) = (None, None);
    let deadline = booted + Duration::from_secs(600);
    let serving = loop {
        let console = vm::console(&server_dir);
        if t_pg.is_none() && console.contains("pgsurge first-boot: PostgreSQL started") {
            t_pg = Some(booted.elapsed());
        }
        assert!(
            !console.contains("first boot failed"),
            "first boot failed:\n{console}"
        );
        let now = env.surge_replicas().pop().unwrap();
        if t_catching.is_none() && now.phase == Phase::CatchingUp {
            t_catching = Some(booted.elapsed());
        }
        if now.phase == Phase::Serving {
            break booted.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "not serving after 600 s (phase {:?}); console:\n{console}\ninstance-ready:\n{}",
            now.phase,
            std::fs::read_to_string(&ir_log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let console = vm::console(&server_dir);
    assert!(
        console.contains("instance-ready called back"),
        "{console}"
    );
    eprintln!(
        "VM timings: boot → PostgreSQL up {:?}, → catching up {:?}, → serving {:.1} s",
        t_pg, t_catching, serving.as_secs_f64()
    );

    // Reads through each HAProxy node reach the VM: a standby, at the guest's address,
    // with the row written after the snapshot.
    for h in [&env.h1, &env.h2] {
        let mut seen = Vec::new();
        let hit = (0..40).any(|_| {
            let got = psql_at(
                h.port,
                "postgres",
                "select inet_server_addr()::text || ' ' || pg_is_in_recovery() || ' ' \
                 || coalesce((select string_agg(x, ',') from after_snapshot), '-')",
            );
            seen.push(got.clone());
            got == "10.0.2.15 true after"
        });
        assert!(hit, "{} never reached the VM: {seen:?}", h.name);
    }
    drop(env);
    assert!(!server_dir.exists(), "the VM server was not deleted");
}
