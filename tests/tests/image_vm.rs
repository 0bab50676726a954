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

use pgsurge::model::Phase;
use pgsurge_tests::cluster::{E2e, CLUSTER};
use pgsurge_tests::pg::psql_at;
use pgsurge_tests::{command, free_port, vm, wait_http_ok, Proc};
use serde_json::json;
use std::time::{Duration, Instant};

const CALLBACK_SECRET: &str = "image-vm-callback-secret-0123456789";

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
         [auth]\ntoken = \"image-vm-token-0123456789\"\ncallback_secret = \"{CALLBACK_SECRET}\"\n",
        img.local_vm_toml()
    );
    let mut env = E2e::start("image-vm", 20700, &extra);
    // The VM streams as a role with a password the primary checks; only the image has it
    // (baked from tests/data/image/secrets.yml), the user data never does.
    env.primary.psql(
        "postgres",
        "create role vmrepl superuser login replication password 'pgsurge-test-replication'",
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
    let _ir = pgsurge_tests::serve_function("instance-ready", env.cfg(), ir_port, &ir_log);
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

    // Caught up as PostgreSQL itself defines it: the primary's walsender for the VM
    // (application_name = the guest's cluster_name, which ends in the replica id) has
    // left `catchup` for `streaming`.
    let caught_up = format!(
        "select count(*) from pg_stat_replication \
         where application_name like '%{}' and state = 'streaming'",
        r.id
    );
    let (mut t_pg, mut t_caught) = (None, None);
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
        if t_caught.is_none() && env.primary.psql("postgres", &caught_up) == "1" {
            t_caught = Some(booted.elapsed());
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
    assert!(
        t_caught.is_some(),
        "serving, but never streaming (caught up)"
    );
    // Serving is saved before instance-ready answers the guest, and the guest's console
    // (emulated, on a loaded box) lags: its line follows within moments.
    let until = Instant::now() + Duration::from_secs(120);
    while !vm::console(&server_dir).contains("instance-ready called back") {
        assert!(
            Instant::now() < until,
            "serving, but the guest never saw its callback answered:\n{}",
            vm::console(&server_dir)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // Nothing else invokes instance-ready here (no timer): the callback registered it.
    let ir = std::fs::read_to_string(&ir_log).unwrap();
    assert!(
        ir.lines().any(|l| l.contains("invocation finished")),
        "instance-ready log:\n{ir}"
    );
    eprintln!(
        "VM timings: boot → PostgreSQL up {:?}, → caught up {:?}, → serving {:.1} s",
        t_pg,
        t_caught,
        serving.as_secs_f64()
    );

    // Reads through each HAProxy node reach the VM: a standby, at the guest's address,
    // with the row written after the snapshot.
    for h in [&env.h1, &env.h2] {
        let mut seen = Vec::new();
        let hit = (0..40).any(|_| {
            let got = psql_at(
                h.port,
                "postgres",
                "select host(inet_server_addr()) || ' ' || pg_is_in_recovery() || ' ' \
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

/// Two VMs at once, each with something wrong that only the guest or instance-ready can
/// see: a config drive made for another cluster than the server's metadata says (first
/// boot fails loudly on the console and calls nothing), and a data disk of another
/// cluster (it boots and calls back; instance-ready refuses it: another system identifier).
#[test]
fn a_bad_config_drive_fails_loudly_and_a_foreign_disk_is_refused() {
    use pgsurge::cloud::local::LocalCloud;
    use pgsurge::cloud::{
        Cloud, Metadata, ServerRequest, SnapshotRequest, VolumeRequest, META_CLUSTER, META_REPLICA,
        META_ROLE,
    };
    use pgsurge::config::Config;
    use pgsurge::events::CallbackMint;
    use pgsurge::model::resource_name;
    use pgsurge::model::{Replica, Role};
    use pgsurge::node::InstanceParams;
    use pgsurge::postgres::bootstrap::UserData;
    use pgsurge::secret::Secret;

    let (img, _) = vm::image(false);
    let ir_port = free_port();
    let extra = format!(
        "{}[node]\ncallback_url = \"http://127.0.0.1:{ir_port}/\"\n\
         [auth]\ntoken = \"image-vm-token-0123456789\"\ncallback_secret = \"{CALLBACK_SECRET}\"\n",
        img.local_vm_toml()
    );
    let env = E2e::start("image-vm-bad", 20740, &extra);
    let mut config = Config::load(Some(env.cfg())).unwrap();
    config.local.servers = pgsurge::cloud::local::vm::ServerKind::Vm;
    let cloud = LocalCloud::new(&config.local, &config.postgres).unwrap();
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
    let mint = CallbackMint::from_config(
        Some(&format!("http://127.0.0.1:{ir_port}/")),
        Some(&Secret::new(CALLBACK_SECRET)),
    );
    // Another cluster's data directory: a primary of its own, stopped cleanly.
    let other = pgsurge_tests::pg::Pg::primary(&env.root.0, "other-cluster");
    other.stop();
    let hba = other.datadir.join("pg_hba.conf");
    let text = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(&hba, format!("host all all 10.0.2.0/24 trust\n{text}")).unwrap();

    let meta = |id: &str| -> Metadata {
        [
            (META_CLUSTER.to_string(), CLUSTER.to_string()),
            (META_ROLE.to_string(), "surge".to_string()),
            (META_REPLICA.to_string(), id.to_string()),
        ]
        .into()
    };
    let (wrong_drive, foreign) = env.rt.block_on(async {
        let snap = cloud
            .create_snapshot(&SnapshotRequest {
                name: "neg".into(),
                volume_id: env.seed_vol.id.clone(),
                metadata: meta("seed"),
                force: true,
            })
            .await
            .unwrap();
        let mut servers = Vec::new();
        for (id, cluster_in_user_data) in [("bad1", "another-cluster"), ("bad2", CLUSTER)] {
            let name = resource_name(CLUSTER, id);
            let vol = cloud
                .create_volume(&VolumeRequest {
                    name: name.clone(),
                    snapshot_id: snap.id.clone(),
                    size_gb: None,
                    az: None,
                    metadata: meta(id),
                })
                .await
                .unwrap();
            if id == "bad2" {
                let data = env.root.0.join("pool/volumes").join(&vol.id).join("data");
                std::fs::remove_dir_all(&data).unwrap();
                let st = std::process::Command::new("cp")
                    .arg("-a")
                    .arg(&other.datadir)
                    .arg(&data)
                    .status()
                    .unwrap();
                assert!(st.success());
            }
            let ud = UserData::for_replica(&config.postgres, &name).unwrap();
            let params =
                InstanceParams::for_server(cluster_in_user_data, id, &vol.id, ud, mint.as_ref())
                    .unwrap();
            let srv = cloud
                .create_server(&ServerRequest {
                    name,
                    volume_id: vol.id.clone(),
                    flavor: None,
                    az: None,
                    metadata: meta(id),
                    user_data: Some(params.render()),
                })
                .await
                .unwrap();
            servers.push((id, vol, srv));
        }
        let mut it = servers.into_iter();
        (it.next().unwrap(), it.next().unwrap())
    });
    // Both recorded as booting replicas, as scale-up records them.
    env.edit_state(|s| {
        for (id, vol, srv) in [&wrong_drive, &foreign] {
            let ep = srv.endpoint.clone().unwrap();
            s.replicas.push(Replica {
                id: id.to_string(),
                role: Role::Surge,
                phase: Phase::Booting,
                server_id: Some(srv.id.clone()),
                volume_id: Some(vol.id.clone()),
                az: None,
                address: Some(format!("{}:{}", ep.host, ep.port)),
                created_at: time::OffsetDateTime::now_utc(),
                op_id: None,
                since: Default::default(),
                extra: Default::default(),
            });
        }
    });
    let dir = |srv: &pgsurge::cloud::Server| env.root.0.join("pool/servers").join(&srv.id);
    let (bad_dir, foreign_dir) = (dir(&wrong_drive.2), dir(&foreign.2));
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let (a, b) = (vm::console(&bad_dir), vm::console(&foreign_dir));
        let done_a = a.contains("first boot failed");
        let done_b = b.contains("instance-ready called back") || b.contains("first boot failed");
        if done_a && done_b {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "600 s: bad drive console:\n{a}\nforeign disk console:\n{b}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let a = vm::console(&bad_dir);
    assert!(
        a.contains("wrong server") && a.contains("another-cluster"),
        "the failure is not named on the console:\n{a}"
    );
    assert!(!a.contains("PostgreSQL started"), "{a}");
    let b = vm::console(&foreign_dir);
    assert!(b.contains("instance-ready called back"), "{b}");
    let ir = std::fs::read_to_string(&ir_log).unwrap();
    // One invocation: the foreign disk's callback. The bad drive called nothing.
    let invocations = ir
        .lines()
        .filter(|l| l.contains("invocation finished") || l.contains("invocation failed"))
        .count();
    assert_eq!(invocations, 1, "instance-ready log:\n{ir}");
    // What instance-ready refused it for: another system identifier.
    let port = foreign.2.endpoint.as_ref().unwrap().port;
    let sysid = "select system_identifier from pg_control_system()";
    assert_ne!(
        psql_at(port, "postgres", sysid),
        env.primary.psql("postgres", sysid)
    );
    let state = env.state();
    let phase = |id: &str| {
        state
            .replicas
            .iter()
            .find(|r| r.id == id)
            .unwrap()
            .phase
            .clone()
    };
    assert_ne!(phase("bad2"), Phase::Serving);
    assert_ne!(phase("bad1"), Phase::Serving);
    for h in [&env.h1, &env.h2] {
        let servers = pgsurge_tests::cluster::managed_servers(h);
        assert!(
            servers.iter().all(|s| !s.contains("bad")),
            "{} registered {servers:?}",
            h.name
        );
    }
}
