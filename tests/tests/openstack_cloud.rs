//! The OpenStack provider against a real OpenStack control plane: Keystone, Nova (fake
//! virt driver), Cinder (fake volume driver), Neutron and Glance APIs from Debian, started
//! by `tests/openstack/up.sh` (the `just test` recipe runs it, and `down.sh` afterwards).
//!
//! The fake drivers boot no VM and store no bytes, so these tests cover the cloud side:
//! snapshots, clones, boot from volume, metadata, tags, user data, idempotency, cleanup
//! and error paths. Each test uses its own cluster name, so they run in parallel and
//! every listing they assert on sees only their own resources.

use pgsurge::cloud::openstack::request::{Request, ServiceType};
use pgsurge::cloud::openstack::DnsZoneType;
use pgsurge::cloud::openstack::OpenStackConfig;
use pgsurge::cloud::openstack::{OpenStack, Source};
use pgsurge::cloud::{
    ensure_server, ensure_snapshot, ensure_volume, wait_ready, wait_server_ready, Cloud,
    CloudError, Filter, Metadata, Server, ServerRequest, Snapshot, SnapshotRequest, Status, Volume,
    VolumeRequest, META_CLUSTER, META_OP, META_REPLICA, META_ROLE,
};
use pgsurge::events::{validate_params, Event};
use pgsurge::model::resource_name;
use pgsurge::model::Endpoint;
use pgsurge::model::{Phase, Replica, Role};
use pgsurge::ops::Ports;
use pgsurge::policy::PolicyConfig;
use pgsurge::postgres::{LagBounds, PgError, Postgres, PrimaryStatus, ReplicaStatus};
use pgsurge::runtime::Credentials;
use pgsurge::secret::Secret;
use pgsurge::state::{MemoryStore, StateRepo};
use pgsurge_tests::os_volume::bootable_volume;
use serde_json::json;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const READY: Duration = Duration::from_secs(120);

fn os_dir() -> PathBuf {
    PathBuf::from(
        std::env::var("PGSURGE_OS_DIR").unwrap_or_else(|_| "/tmp/pgsurge-openstack".into()),
    )
}

/// The clouds.yaml up.sh wrote; a clear failure when the test cloud is not up.
fn clouds_yaml() -> PathBuf {
    let p = os_dir().join("clouds.yaml");
    assert!(
        p.exists(),
        "OpenStack test cloud not found ({} missing): start it as root with \
         `tests/openstack/up.sh` (the `just test` / `just test-openstack` recipes do), \
         or point PGSURGE_OS_DIR at its state directory",
        p.display()
    );
    p
}

/// Settings every replica gets on the test cloud (see tests/openstack/bootstrap.py).
fn config(cloud: &str, cluster: &str) -> OpenStackConfig {
    pgsurge_tests::os_image::ensure_test_image_once(&clouds_yaml());
    OpenStackConfig {
        cloud: cloud.into(),
        clouds_yaml: Some(clouds_yaml()),
        flavor: "m1.tiny".into(),
        // the system disk of every server; registered in Glance by the tests (os_image)
        image: pgsurge_tests::os_image::TEST_IMAGE_NAME.into(),
        network: "pgsurge-net".into(),
        security_groups: vec!["pgsurge-pg".into()],
        key_name: "pgsurge-key".into(),
        // one fake compute host: soft anti-affinity is satisfiable, hard is not
        server_group: format!("pgsurge-{cluster}"),
        server_group_policy: "soft-anti-affinity".into(),
        // a loaded 2-core machine running the whole control plane: Nova's create can take 20 s
        request_timeout_secs: 90,
        max_retries: 2,
        ..OpenStackConfig::default()
    }
}

async fn connect(cloud: &str, cluster: &str) -> OpenStack {
    OpenStack::connect(&config(cloud, cluster), None)
        .await
        .unwrap_or_else(|e| panic!("connect to test cloud {cloud}: {e}"))
}

fn meta(cluster: &str, role: &str, replica: &str, op: &str) -> Metadata {
    [
        (META_CLUSTER, cluster),
        (META_ROLE, role),
        (META_REPLICA, replica),
        (META_OP, op),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn ours(cluster: &str) -> Filter {
    Filter {
        name: None,
        metadata: [(META_CLUSTER.to_string(), cluster.to_string())].into(),
    }
}

/// A bootable 1 GiB "replica data volume" made the way people make one (not by pgsurge).
async fn base_volume(os: &OpenStack, cluster: &str) -> Volume {
    let name = resource_name(cluster, "base");
    let labels = meta(cluster, "base", "base", "setup");
    bootable_volume(os, &name, &labels, READY).await
}

/// Cinder's own word for a volume's state (the trait folds `in-use` into Ready).
async fn cinder_status(os: &OpenStack, id: &str) -> String {
    os.caller().volume_json(id).await.unwrap()["status"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A volume that is usable: `available`, or `in-use` when its server already exists.
async fn wait_volume(os: &OpenStack, id: &str) -> Volume {
    wait_ready(
        "volume",
        id,
        READY,
        || os.get_volume(id),
        |v: &Volume| &v.status,
    )
    .await
    .unwrap()
}

async fn wait_snapshot(os: &OpenStack, id: &str) -> Snapshot {
    wait_ready(
        "snapshot",
        id,
        READY,
        || os.get_snapshot(id),
        |s: &Snapshot| &s.status,
    )
    .await
    .unwrap()
}

async fn wait_server(os: &OpenStack, id: &str) -> Server {
    wait_server_ready(os, id, READY).await.unwrap()
}

fn user_data(cluster: &str, replica: &str) -> String {
    format!("#cloud-config\n# pgsurge bootstrap\nPGSURGE_CLUSTER={cluster}\nPGSURGE_REPLICA={replica}\nPRIMARY_HOST=10.99.0.1\n")
}

/// What a scale-up does on the cloud side: N clones of the snapshot, N servers booted from
/// them, all through the adopt-before-create helpers and in parallel. `stop_after` cuts
/// the run short after that many volumes (and servers) were requested: a function killed
/// mid-way.
async fn scale_up(
    os: &OpenStack,
    cluster: &str,
    snap: &Snapshot,
    replicas: &[&str],
    op: &str,
    stop_after: Option<(usize, usize)>,
) -> (Vec<Volume>, Vec<Server>) {
    let (nv, ns) = stop_after.unwrap_or((replicas.len(), replicas.len()));
    let vols = futures::future::join_all(replicas[..nv].iter().map(|r| async move {
        let req = VolumeRequest {
            name: resource_name(cluster, r),
            snapshot_id: snap.id.clone(),
            size_gb: None,
            az: None,
            metadata: meta(cluster, "surge", r, op),
        };
        let v = ensure_volume(os, &req).await.unwrap();
        wait_volume(os, &v.id).await
    }))
    .await;
    let servers =
        futures::future::join_all(replicas[..ns].iter().zip(&vols).map(|(r, v)| async move {
            let req = ServerRequest {
                name: resource_name(cluster, r),
                volume_id: v.id.clone(),
                flavor: None,
                az: None,
                metadata: meta(cluster, "surge", r, op),
                user_data: Some(user_data(cluster, r)),
            };
            let s = ensure_server(os, &req).await.unwrap();
            wait_server(os, &s.id).await
        }))
        .await;
    (vols, servers)
}

/// Delete servers (wait until gone), then volumes, snapshots; prove by listing that nothing
/// of this cluster is left.
async fn clean_up(os: &OpenStack, cluster: &str) {
    let servers = os.list_servers(&ours(cluster)).await.unwrap();
    for s in &servers {
        os.delete_server(&s.id).await.unwrap();
    }
    for s in &servers {
        os.wait_server_gone(&s.id, READY).await.unwrap();
    }
    for v in os.list_volumes(&ours(cluster)).await.unwrap() {
        // Nova detaches asynchronously: wait until the volume is `available`
        let deadline = Instant::now() + READY;
        while cinder_status(os, &v.id).await != "available" {
            assert!(
                Instant::now() < deadline,
                "volume {} never became available",
                v.id
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        match os.delete_volume(&v.id).await {
            // the base volume keeps its snapshots: it goes after them, below
            Ok(()) | Err(CloudError::Conflict(_)) => {}
            Err(e) => panic!("delete volume {}: {e}", v.id),
        }
    }
    for s in os.list_snapshots(&ours(cluster)).await.unwrap() {
        os.delete_snapshot(&s.id).await.unwrap();
    }
    // deletes are asynchronous: wait until every listing is empty
    let deadline = Instant::now() + READY;
    loop {
        let s = os.list_servers(&ours(cluster)).await.unwrap();
        let v = os.list_volumes(&ours(cluster)).await.unwrap();
        let n = os.list_snapshots(&ours(cluster)).await.unwrap();
        if s.is_empty() && v.is_empty() && n.is_empty() {
            return;
        }
        // a snapshot blocks its volume's delete until it is gone: retry stragglers
        for v in v.iter().filter(|v| v.status == Status::Ready) {
            let _ = os.delete_volume(&v.id).await;
        }
        assert!(
            Instant::now() < deadline,
            "left behind for {cluster}: servers {s:?} volumes {v:?} snapshots {n:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// An admin session for what a normal user may not do or see (reset status, user data).
async fn admin() -> OpenStack {
    connect("pgsurge-admin", "admin").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn snapshot_three_clones_three_servers_then_nothing_left() {
    let cluster = "it-main";
    let os = connect("pgsurge", cluster).await;
    let admin = admin().await;
    clean_up(&os, cluster).await; // a previous run killed half-way

    // the replica pgsurge snapshots: its data volume is attached to a running server
    let base = base_volume(&os, cluster).await;
    let replica = os
        .create_server(&ServerRequest {
            name: resource_name(cluster, "base"),
            volume_id: base.id.clone(),
            flavor: None,
            az: None,
            metadata: meta(cluster, "base", "base", "setup"),
            user_data: None,
        })
        .await
        .unwrap();
    wait_server(&os, &replica.id).await;
    assert_eq!(cinder_status(&os, &base.id).await, "in-use");

    // without force Cinder refuses to snapshot an attached volume, and makes nothing
    let mut sreq = SnapshotRequest {
        name: resource_name(cluster, "snap-1"),
        volume_id: base.id.clone(),
        metadata: meta(cluster, "surge", "snap-1", "op-1"),
        force: false,
    };
    let err = os.create_snapshot(&sreq).await.unwrap_err();
    assert!(
        matches!(&err, CloudError::Fatal(m) if m.contains("in-use") && m.contains("HTTP 400")),
        "{err}"
    );
    assert!(os.list_snapshots(&ours(cluster)).await.unwrap().is_empty());
    sreq.force = true;
    let snap = ensure_snapshot(&os, &sreq).await.unwrap();
    let snap = wait_snapshot(&os, &snap.id).await;
    assert_eq!(snap.volume_id, base.id);
    assert_eq!(snap.az, base.az, "a snapshot's AZ is its volume's");
    // adopt, not duplicate
    assert_eq!(ensure_snapshot(&os, &sreq).await.unwrap().id, snap.id);

    let started = Instant::now();
    let replicas = ["r1", "r2", "r3"];
    let (vols, servers) = scale_up(&os, cluster, &snap, &replicas, "op-1", None).await;
    eprintln!("3 clones + 3 servers ACTIVE in {:?}", started.elapsed());

    for (r, v) in replicas.iter().zip(&vols) {
        assert_eq!(v.name, resource_name(cluster, r));
        assert_eq!(v.snapshot_id.as_deref(), Some(snap.id.as_str()));
        assert_eq!(v.az, snap.az, "clone in the snapshot's AZ");
        assert_eq!(v.metadata, meta(cluster, "surge", r, "op-1"));
    }
    let group = admin
        .caller()
        .send(
            "server groups",
            Request::get(ServiceType::Compute, "os-server-groups").query("all_projects", "True"),
        )
        .await
        .unwrap()
        .json(Some("server_groups"))
        .unwrap();
    let group = group
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == format!("pgsurge-{cluster}"))
        .cloned()
        .expect("server group created");
    assert_eq!(group["policies"], json!(["soft-anti-affinity"]));
    for ((r, v), s) in replicas.iter().zip(&vols).zip(&servers) {
        assert_eq!(s.status, Status::Ready);
        assert_eq!(s.name, resource_name(cluster, r));
        assert_eq!(s.metadata, meta(cluster, "surge", r, "op-1"));
        assert_eq!(s.volume_ids, vec![v.id.clone()]);
        let ep = s.endpoint.as_ref().expect("server has an address");
        assert!(ep.host.starts_with("10.99.0."), "{ep:?}");
        assert_eq!(ep.port, 5432);
        // what Nova stored, read back as admin (user data is admin-only)
        let raw = admin
            .caller()
            .send(
                "server as admin",
                Request::get(ServiceType::Compute, format!("servers/{}", s.id)).microversion(2, 52),
            )
            .await
            .unwrap()
            .json(Some("server"))
            .unwrap();
        let ud = raw["OS-EXT-SRV-ATTR:user_data"]
            .as_str()
            .expect("user data");
        use base64::Engine;
        let ud = base64::engine::general_purpose::STANDARD
            .decode(ud)
            .unwrap();
        assert_eq!(String::from_utf8(ud).unwrap(), user_data(cluster, r));
        assert_eq!(raw["key_name"], "pgsurge-key");
        assert_eq!(raw["security_groups"], json!([{"name": "pgsurge-pg"}]));
        assert_eq!(
            raw["tags"],
            json!(["pgsurge_cluster=it-main", "pgsurge_role=surge"])
        );
        assert_eq!(
            raw["os-extended-volumes:volumes_attached"][0]["delete_on_termination"],
            false
        );
        assert!(group["members"].as_array().unwrap().contains(&json!(s.id)));
        // the data volume, attached beside the image's system disk
        assert_eq!(cinder_status(&os, &v.id).await, "in-use");
    }
    // the listing a scale-down would use: by cluster (tags server-side) and role (client)
    let mut f = ours(cluster);
    f.metadata.insert(META_ROLE.into(), "surge".into());
    let mut listed: Vec<String> = os
        .list_servers(&f)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    let mut want: Vec<String> = servers.iter().map(|s| s.id.clone()).collect();
    listed.sort();
    want.sort();
    assert_eq!(
        listed, want,
        "role=surge lists exactly our three servers, not the base"
    );

    // a volume attached by Nova cannot be deleted through Cinder: a precise conflict
    let err = os.delete_volume(&vols[0].id).await.unwrap_err();
    assert!(
        matches!(&err, CloudError::Conflict(m) if m.contains("in-use")),
        "{err}"
    );

    clean_up(&os, cluster).await;
    // and the proof, once more, by name as well
    for r in replicas {
        let by_name = Filter {
            name: Some(resource_name(cluster, r)),
            metadata: Metadata::new(),
        };
        assert!(os.list_servers(&by_name).await.unwrap().is_empty());
        assert!(os.list_volumes(&by_name).await.unwrap().is_empty());
    }
    // deletes are idempotent
    os.delete_server(&servers[0].id).await.unwrap();
    os.delete_volume(&vols[0].id).await.unwrap();
    os.delete_snapshot(&snap.id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn interrupted_scale_up_is_adopted_not_duplicated() {
    let cluster = "it-rerun";
    let os = connect("pgsurge", cluster).await;
    clean_up(&os, cluster).await;
    let base = base_volume(&os, cluster).await;
    let sreq = SnapshotRequest {
        name: resource_name(cluster, "snap-1"),
        volume_id: base.id.clone(),
        metadata: meta(cluster, "surge", "snap-1", "op-7"),
        force: false,
    };
    let snap = ensure_snapshot(&os, &sreq).await.unwrap();
    let snap = wait_snapshot(&os, &snap.id).await;
    let replicas = ["r1", "r2", "r3"];

    // first run: killed after two volumes and one server were requested
    let (vols1, servers1) = scale_up(&os, cluster, &snap, &replicas, "op-7", Some((2, 1))).await;
    let surge = {
        let mut f = ours(cluster);
        f.metadata.insert(META_ROLE.into(), "surge".into());
        f
    };
    assert_eq!(os.list_volumes(&surge).await.unwrap().len(), 2);
    assert_eq!(os.list_servers(&surge).await.unwrap().len(), 1);

    // a third, cancelled mid-flight: a future dropped while its requests are in the air
    let cancelled = tokio::time::timeout(
        Duration::from_millis(300),
        scale_up(&os, cluster, &snap, &replicas, "op-7", None),
    )
    .await;
    assert!(cancelled.is_err(), "the run was meant to be cut short");
    // the next invocation comes later (a retry, the reconcile timer): let whatever the
    // cancelled run had already sent finish on the cloud's side first
    tokio::time::sleep(Duration::from_secs(5)).await;

    // the rerun converges: adopts what exists, creates only what is missing
    let (vols2, servers2) = scale_up(&os, cluster, &snap, &replicas, "op-7", None).await;
    assert_eq!(vols2[0].id, vols1[0].id);
    assert_eq!(vols2[1].id, vols1[1].id);
    assert_eq!(servers2[0].id, servers1[0].id);
    let volumes = os.list_volumes(&surge).await.unwrap();
    let servers = os.list_servers(&surge).await.unwrap();
    assert_eq!(volumes.len(), 3, "no duplicate volumes: {volumes:?}");
    assert_eq!(servers.len(), 3, "no duplicate servers: {servers:?}");
    for r in replicas {
        let n = resource_name(cluster, r);
        assert_eq!(volumes.iter().filter(|v| v.name == n).count(), 1);
        assert_eq!(servers.iter().filter(|s| s.name == n).count(), 1);
    }
    for s in &servers2 {
        assert_eq!(s.status, Status::Ready);
    }
    clean_up(&os, cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quota_exceeded_is_typed_and_leaves_no_orphan() {
    // project pgsurge-quota: volumes = 2, instances = 1 (bootstrap.py)
    let cluster = "it-quota";
    // network, security group and key pair belong to the other project / user
    let cfg = OpenStackConfig {
        network: String::new(),
        security_groups: Vec::new(),
        key_name: String::new(),
        ..config("pgsurge-quota", cluster)
    };
    let os = OpenStack::connect(&cfg, None).await.unwrap();
    clean_up(&os, cluster).await;
    let base = base_volume(&os, cluster).await; // volume 1 of 2
    let snap = ensure_snapshot(
        &os,
        &SnapshotRequest {
            name: resource_name(cluster, "snap"),
            volume_id: base.id.clone(),
            metadata: meta(cluster, "surge", "snap", "op-q"),
            force: false,
        },
    )
    .await
    .unwrap();
    let snap = wait_snapshot(&os, &snap.id).await;
    let vreq = |r: &str| VolumeRequest {
        name: resource_name(cluster, r),
        snapshot_id: snap.id.clone(),
        size_gb: None,
        az: None,
        metadata: meta(cluster, "surge", r, "op-q"),
    };
    let v1 = ensure_volume(&os, &vreq("r1")).await.unwrap(); // volume 2 of 2
    let v1 = wait_volume(&os, &v1.id).await;
    let err = ensure_volume(&os, &vreq("r2")).await.unwrap_err();
    assert!(
        matches!(&err, CloudError::Quota(m) if m.contains("volumes") && m.contains("HTTP 413")),
        "{err}"
    );
    let vols = os.list_volumes(&ours(cluster)).await.unwrap();
    assert_eq!(vols.len(), 2, "the refused clone left nothing: {vols:?}");

    let sreq = |r: &str, vol: &str| ServerRequest {
        name: resource_name(cluster, r),
        volume_id: vol.to_string(),
        flavor: None,
        az: None,
        metadata: meta(cluster, "surge", r, "op-q"),
        user_data: None,
    };
    let s1 = ensure_server(&os, &sreq("r1", &v1.id)).await.unwrap(); // instance 1 of 1
    wait_server(&os, &s1.id).await;
    let err = ensure_server(&os, &sreq("r2", &base.id)).await.unwrap_err();
    assert!(
        matches!(&err, CloudError::Quota(m) if m.contains("Quota exceeded for instances")),
        "{err}"
    );
    let servers = os.list_servers(&ours(cluster)).await.unwrap();
    assert_eq!(
        servers.len(),
        1,
        "the refused boot left no server: {servers:?}"
    );
    assert_eq!(servers[0].id, s1.id);
    clean_up(&os, cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_flavor_and_errored_snapshot_fail_before_creating_anything() {
    let cluster = "it-bad";
    let os = connect("pgsurge", cluster).await;
    let admin = admin().await;
    clean_up(&os, cluster).await;
    let base = base_volume(&os, cluster).await;

    // a flavor that does not exist: refused before Nova is asked to boot
    let mut cfg = config("pgsurge", cluster);
    cfg.flavor = "m9.galactic".into();
    let bad = OpenStack::connect(&cfg, None).await.unwrap();
    let err = bad
        .create_server(&ServerRequest {
            name: resource_name(cluster, "r1"),
            volume_id: base.id.clone(),
            flavor: None,
            az: None,
            metadata: meta(cluster, "surge", "r1", "op-b"),
            user_data: None,
        })
        .await
        .unwrap_err();
    assert_eq!(
        err,
        CloudError::NotFound {
            kind: "flavor",
            id: "m9.galactic".into()
        }
    );
    assert!(os.list_servers(&ours(cluster)).await.unwrap().is_empty());

    // a network that does not exist: same
    let mut cfg = config("pgsurge", cluster);
    cfg.network = "no-such-net".into();
    let bad = OpenStack::connect(&cfg, None).await.unwrap();
    let err = bad
        .create_server(&ServerRequest {
            name: resource_name(cluster, "r1"),
            volume_id: base.id.clone(),
            flavor: None,
            az: None,
            metadata: meta(cluster, "surge", "r1", "op-b"),
            user_data: None,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            CloudError::NotFound {
                kind: "network",
                ..
            }
        ),
        "{err}"
    );
    assert!(os.list_servers(&ours(cluster)).await.unwrap().is_empty());

    // a snapshot that went into error
    let snap = ensure_snapshot(
        &os,
        &SnapshotRequest {
            name: resource_name(cluster, "snap"),
            volume_id: base.id.clone(),
            metadata: meta(cluster, "surge", "snap", "op-b"),
            force: false,
        },
    )
    .await
    .unwrap();
    wait_snapshot(&os, &snap.id).await;
    admin
        .caller()
        .send(
            "reset snapshot status",
            Request::post(
                ServiceType::BlockStorage,
                format!("snapshots/{}/action", snap.id),
                json!({"os-reset_status": {"status": "error"}}),
            ),
        )
        .await
        .unwrap();
    let err = wait_ready(
        "snapshot",
        &snap.id,
        READY,
        || os.get_snapshot(&snap.id),
        |s: &Snapshot| &s.status,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, CloudError::Fatal(m) if m.contains("went into error")),
        "{err}"
    );
    let err = ensure_volume(
        &os,
        &VolumeRequest {
            name: resource_name(cluster, "r1"),
            snapshot_id: snap.id.clone(),
            size_gb: None,
            az: None,
            metadata: meta(cluster, "surge", "r1", "op-b"),
        },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, CloudError::Fatal(m) if m.contains(&snap.id) && m.contains("state error")),
        "{err}"
    );
    let vols = os.list_volumes(&ours(cluster)).await.unwrap();
    assert_eq!(vols.len(), 1, "only the base volume: {vols:?}");

    // a snapshot that does not exist
    let err = os
        .create_volume(&VolumeRequest {
            name: resource_name(cluster, "r2"),
            snapshot_id: "00000000-0000-0000-0000-000000000000".into(),
            size_gb: None,
            az: None,
            metadata: Metadata::new(),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            CloudError::NotFound {
                kind: "snapshot",
                ..
            }
        ),
        "{err}"
    );
    clean_up(&os, cluster).await;
}

#[tokio::test]
async fn keystone_down_is_a_transient_error_naming_the_identity_service() {
    // a Keystone that does not answer: nothing listens on this port
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let yaml = dir.path().join("clouds.yaml");
    std::fs::write(
        &yaml,
        format!(
            "clouds:\n  down:\n    region_name: RegionOne\n    auth:\n      auth_url: http://127.0.0.1:{port}/v3\n      \
             username: pgsurge\n      password: pgsurge-pass\n      project_name: pgsurge\n      \
             user_domain_name: Default\n      project_domain_name: Default\n"
        ),
    )
    .unwrap();
    let cfg = OpenStackConfig {
        cloud: "down".into(),
        clouds_yaml: Some(yaml),
        flavor: "m1.tiny".into(),
        connect_timeout_secs: 2,
        request_timeout_secs: 5,
        ..OpenStackConfig::default()
    };
    let started = Instant::now();
    let err = OpenStack::connect(&cfg, None).await.unwrap_err();
    assert!(
        matches!(&err, CloudError::Transient(m) if m.contains("identity service") && m.contains(&port.to_string())),
        "{err}"
    );
    assert!(err.is_retryable());
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "bounded by the timeouts"
    );
    assert!(!err.to_string().contains("pgsurge-pass"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_auth_method_works_and_tokens_are_renewed() {
    // password (clouds.yaml)
    let os = connect("pgsurge", "it-auth").await;
    assert_eq!(os.source(), &Source::CloudsYaml("pgsurge".into()));
    os.list_volumes(&ours("it-auth")).await.unwrap();

    // application credential (clouds.yaml, auth_type v3applicationcredential)
    let app = connect("pgsurge-appcred", "it-auth").await;
    app.list_servers(&ours("it-auth")).await.unwrap();

    // wrong password: a precise, non-retryable error that does not repeat the secret
    let dir = tempfile::tempdir().unwrap();
    let yaml = dir.path().join("clouds.yaml");
    std::fs::write(
        &yaml,
        "clouds:\n  wrong:\n    region_name: RegionOne\n    auth:\n      auth_url: http://127.0.0.1:5000/v3\n      \
         username: pgsurge\n      password: not-the-pass-4711\n      project_name: pgsurge\n      \
         user_domain_name: Default\n      project_domain_name: Default\n",
    )
    .unwrap();
    let cfg = OpenStackConfig {
        cloud: "wrong".into(),
        clouds_yaml: Some(yaml),
        ..OpenStackConfig::default()
    };
    let err = OpenStack::connect(&cfg, None).await.unwrap_err();
    assert!(
        matches!(&err, CloudError::Fatal(m) if m.contains("authentication")),
        "{err}"
    );
    assert!(!err.to_string().contains("not-the-pass-4711"), "{err}");

    // the temporary token a FunctionGraph agency hands the function
    let admin = admin().await;
    let projects = admin
        .caller()
        .send(
            "projects",
            Request::get(ServiceType::Identity, "projects").query("name", "pgsurge"),
        )
        .await
        .unwrap()
        .json(Some("projects"))
        .unwrap();
    let project_id = projects[0]["id"].as_str().unwrap().to_string();
    let host = Credentials {
        auth_token: os.session_token(),
        ..Credentials::default()
    };
    let cfg = OpenStackConfig {
        use_host_token: true,
        auth_url: Some("http://127.0.0.1:5000/v3".into()),
        project_id: Some(project_id),
        ..OpenStackConfig::default()
    };
    let fg = OpenStack::connect(&cfg, Some(&host)).await.unwrap();
    assert_eq!(fg.source(), &Source::HostToken);
    fg.list_volumes(&ours("it-auth")).await.unwrap();

    // OS_* environment variables, like the openstack CLI: in a child process (this test
    // binary again, running only `os_env_child`), since setting the environment of a
    // multithreaded process races every other thread that reads it
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "os_env_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("PGSURGE_OS_ENV_CHILD", "1")
        .envs([
            ("OS_AUTH_URL", "http://127.0.0.1:5000/v3"),
            ("OS_USERNAME", "pgsurge"),
            ("OS_PASSWORD", "pgsurge-pass"),
            ("OS_PROJECT_NAME", "pgsurge"),
            ("OS_USER_DOMAIN_NAME", "Default"),
            ("OS_PROJECT_DOMAIN_NAME", "Default"),
            ("OS_REGION_NAME", "RegionOne"),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("OS_ENV_CHILD: connected from OS_* and listed"),
        "child with OS_* failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("1 passed"),
        "the child test did not run: {stdout}"
    );

    // renewal: revoke the session's token in Keystone; the next call gets 401, the SDK
    // re-authenticates and the call succeeds with a new token
    let before: Secret = os.session_token().expect("token");
    admin
        .caller()
        .send(
            "revoke token",
            Request::delete(ServiceType::Identity, "auth/tokens")
                .header("x-subject-token", before.expose()),
        )
        .await
        .unwrap();
    // services cache a validated token for 5 s (tests/openstack/up.sh): wait that out
    tokio::time::sleep(Duration::from_secs(6)).await;
    os.list_volumes(&ours("it-auth")).await.unwrap();
    let after = os.session_token().expect("token");
    // compared without printing: a failing assert must not put tokens in the test log
    assert!(
        before.expose() != after.expose(),
        "the session still holds the revoked token"
    );
}

/// Everything logged, at every level, by every crate, into memory.
#[derive(Clone, Default)]
struct LogBuf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuf {
    type Writer = LogBuf;
    fn make_writer(&'a self) -> LogBuf {
        self.clone()
    }
}

/// Runs `logs_child` alone in a child process: a subscriber scoped to one thread misses
/// events whose call sites other tests' threads registered first (tracing caches a call
/// site's interest), and a global one would mix in every other test's logs.
#[test]
fn no_password_secret_or_token_reaches_the_logs_even_at_trace() {
    clouds_yaml();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "logs_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("PGSURGE_LOGS_CHILD", "1")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success()
            && stdout.contains("LOGS_CHILD: no secret in")
            && stdout.contains("1 passed"),
        "child failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Everything at trace level from every crate into memory, through a password and an
/// application-credential login, a token renewal and a refused password; then no
/// password, secret or token may be found in it. A current-thread runtime, so the
/// subscriber installed for this thread sees every event, hyper's connection tasks too.
#[tokio::test(flavor = "current_thread")]
#[ignore = "run as a child process by no_password_secret_or_token_reaches_the_logs_even_at_trace"]
async fn logs_child() {
    assert_eq!(
        std::env::var("PGSURGE_LOGS_CHILD").as_deref(),
        Ok("1"),
        "only meaningful as the child of no_password_secret_or_token_reaches_the_logs_even_at_trace"
    );
    use tracing_subscriber::util::SubscriberInitExt;
    // Register the test image (another thread, its own runtime) before the capture starts:
    // the SDK's log callsites first hit on a thread with no subscriber would otherwise be
    // cached as uninteresting, and this thread's capture would see nothing.
    pgsurge_tests::os_image::ensure_test_image_once(&clouds_yaml());
    let buf = LogBuf::default();
    let _guard = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
        .with_writer(buf.clone())
        .with_ansi(false)
        .finish()
        .set_default();
    let yaml = std::fs::read_to_string(clouds_yaml()).unwrap();
    let value_of = |key: &str| -> Vec<String> {
        yaml.lines()
            .filter_map(|l| l.trim().strip_prefix(&format!("{key}:")))
            .map(|v| v.trim().to_string())
            .collect()
    };
    // (the admin's password is `admin`, too short to search a log for)
    let mut secrets: Vec<String> = value_of("password")
        .into_iter()
        .filter(|p| p.len() >= 8)
        .collect();
    secrets.extend(value_of("application_credential_secret"));
    assert!(secrets.contains(&"pgsurge-pass".to_string()), "{secrets:?}");
    assert!(
        secrets.contains(&"pgsurge-appcred-secret".to_string()),
        "{secrets:?}"
    );

    let os = connect("pgsurge", "it-logs").await;
    os.list_volumes(&ours("it-logs")).await.unwrap();
    let app = connect("pgsurge-appcred", "it-logs").await;
    app.list_servers(&ours("it-logs")).await.unwrap();
    secrets.push(app.session_token().unwrap().expose().to_string());
    // a renewal: revoke, wait out the services' token cache, call again
    let admin = admin().await;
    let first = os.session_token().unwrap();
    admin
        .caller()
        .send(
            "revoke token",
            Request::delete(ServiceType::Identity, "auth/tokens")
                .header("x-subject-token", first.expose()),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    os.list_volumes(&ours("it-logs")).await.unwrap();
    secrets.push(first.expose().to_string());
    secrets.push(os.session_token().unwrap().expose().to_string());
    secrets.push(admin.session_token().unwrap().expose().to_string());
    // a wrong password is in no log either
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("clouds.yaml");
    std::fs::write(
        &wrong,
        "clouds:\n  wrong:\n    region_name: RegionOne\n    auth:\n      auth_url: http://127.0.0.1:5000/v3\n      \
         username: pgsurge\n      password: wrong-pass-0815\n      project_name: pgsurge\n      \
         user_domain_name: Default\n      project_domain_name: Default\n",
    )
    .unwrap();
    let cfg = OpenStackConfig {
        cloud: "wrong".into(),
        clouds_yaml: Some(wrong),
        ..OpenStackConfig::default()
    };
    OpenStack::connect(&cfg, None).await.unwrap_err();
    secrets.push("wrong-pass-0815".into());

    let logs = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    // the capture works: the SDK's per-request lines and the token exchange are in it
    assert!(logs.contains("Sending request"), "nothing captured");
    assert!(logs.contains("auth/tokens"), "no token exchange captured");
    assert!(logs.contains("Received 401"), "no renewal captured");
    for (i, s) in secrets.iter().enumerate() {
        assert!(s.len() >= 8, "secret #{i} too short to search for");
        // by index: a failing assert must not print the secret itself
        assert!(!logs.contains(s.as_str()), "secret #{i} is in the logs");
    }
    // nor in Debug output
    for s in &secrets {
        assert!(!format!("{os:?} {app:?} {admin:?}").contains(s.as_str()));
    }
    println!(
        "LOGS_CHILD: no secret in {} bytes of trace logs ({} secrets checked)",
        logs.len(),
        secrets.len()
    );
}

/// Run by `every_auth_method_works_and_tokens_are_renewed` in a child process whose
/// environment holds the OS_* variables (ignored in a normal run: it needs that child's
/// environment).
#[tokio::test]
#[ignore = "run as a child process by every_auth_method_works_and_tokens_are_renewed"]
async fn os_env_child() {
    assert_eq!(
        std::env::var("PGSURGE_OS_ENV_CHILD").as_deref(),
        Ok("1"),
        "only meaningful as the child of every_auth_method_works_and_tokens_are_renewed"
    );
    let env = OpenStack::connect(&OpenStackConfig::default(), None)
        .await
        .unwrap();
    assert_eq!(env.source(), &Source::Env);
    env.list_volumes(&ours("it-auth")).await.unwrap();
    println!("OS_ENV_CHILD: connected from OS_* and listed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_records_follow_the_replica() {
    // Designate from Debian (API + central; records stay PENDING, no DNS server behind)
    let cluster = "it-dns";
    let cfg = OpenStackConfig {
        dns_zone: "db.pgsurge.test.".into(),
        dns_ttl: 30,
        ..config("pgsurge", cluster)
    };
    let os = OpenStack::connect(&cfg, None).await.unwrap();
    clean_up(&os, cluster).await;
    let name = resource_name(cluster, "r1");
    os.delete_dns_record(&name).await.unwrap(); // a previous run killed half-way
    let base = base_volume(&os, cluster).await;
    let snap = ensure_snapshot(
        &os,
        &SnapshotRequest {
            name: resource_name(cluster, "snap"),
            volume_id: base.id.clone(),
            metadata: meta(cluster, "surge", "snap", "op-d"),
            force: false,
        },
    )
    .await
    .unwrap();
    let snap = wait_snapshot(&os, &snap.id).await;
    let name2 = resource_name(cluster, "r2");
    os.delete_dns_record(&name2).await.unwrap();
    let (_, servers) = scale_up(&os, cluster, &snap, &["r1", "r2"], "op-d", None).await;
    let ip = servers[0].endpoint.as_ref().expect("address").host.clone();
    let zone_records = || async {
        let zone = os
            .caller()
            .zone_id("db.pgsurge.test.", DnsZoneType::Auto)
            .await
            .unwrap();
        let all = os
            .caller()
            .send(
                "all recordsets",
                Request::get(ServiceType::Dns, format!("zones/{zone}/recordsets")),
            )
            .await
            .unwrap()
            .json(Some("recordsets"))
            .unwrap();
        let mut names: Vec<String> = all
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["type"] == "A")
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect();
        names.sort();
        names
    };
    // reads write nothing: servers ACTIVE with addresses, looked at again, and still no
    // record anywhere in the zone (`pgsurge status` is read-only)
    let before = zone_records().await;
    for s in &servers {
        os.get_server(&s.id).await.unwrap();
    }
    os.list_servers(&ours(cluster)).await.unwrap();
    assert!(os.dns_records(&name).await.unwrap().is_empty());
    assert_eq!(zone_records().await, before, "a read changed Designate");
    // a base replica (made by people) never gets one, even on the ready path
    let mut base_server = servers[0].clone();
    base_server.name = resource_name(cluster, "base");
    base_server.metadata.insert(META_ROLE.into(), "base".into());
    os.publish_server(&base_server).await.unwrap();
    assert_eq!(zone_records().await, before);

    // the ready path makes the record; doing it again changes nothing
    for s in &servers {
        os.publish_server(s).await.unwrap();
        os.publish_server(s).await.unwrap();
    }
    let records = os.dns_records(&name).await.unwrap();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].name, format!("{name}.db.pgsurge.test."));
    assert_eq!(records[0].records, vec![ip]);
    assert_eq!(os.dns_records(&name2).await.unwrap().len(), 1);

    // both servers deleted behind our back (not through the provider): records stay
    for s in &servers {
        os.caller().delete_server(&s.id).await.unwrap();
    }
    for s in &servers {
        os.wait_server_gone(&s.id, READY).await.unwrap();
    }
    assert_eq!(os.dns_records(&name).await.unwrap().len(), 1);
    assert_eq!(os.dns_records(&name2).await.unwrap().len(), 1);
    // our delete of the gone server removes its record (found by the server id) ...
    os.delete_server(&servers[0].id).await.unwrap();
    assert!(os.dns_records(&name).await.unwrap().is_empty());
    // ... and instance-deleted / reconcile remove it by the replica's name
    os.unpublish_server(&name2).await.unwrap();
    assert!(os.dns_records(&name2).await.unwrap().is_empty());
    // idempotent
    os.delete_server(&servers[0].id).await.unwrap();
    os.unpublish_server(&name2).await.unwrap();
    assert_eq!(zone_records().await, before, "no record of ours left");
    clean_up(&os, cluster).await;
}

/// The zone lookup `openstack.dns_zone_type` chooses, on plain Designate: its `type`
/// filter is the zone kind (PRIMARY / SECONDARY), so the `type=private` listing Huawei
/// Cloud and SberCloud need is accepted and finds nothing here; `auto` (the default)
/// still finds the zone by the plain listing.
#[tokio::test]
async fn dns_zone_lookup_in_each_mode_on_plain_designate() {
    let os = connect("pgsurge", "it-zone").await;
    os.caller().discover(&ServiceType::Dns).await.unwrap();
    let zone = "db.pgsurge.test.";
    let auto = os.caller().zone_id(zone, DnsZoneType::Auto).await.unwrap();
    let public = os
        .caller()
        .zone_id(zone, DnsZoneType::Public)
        .await
        .unwrap();
    assert_eq!(auto, public);
    assert!(!auto.is_empty());
    assert_eq!(
        os.caller()
            .zone_id(zone, DnsZoneType::Private)
            .await
            .unwrap_err(),
        CloudError::NotFound {
            kind: "dns zone",
            id: zone.into()
        }
    );
    // The listing with the parameter really reached Designate and was answered.
    let private = os
        .caller()
        .send(
            "private zones",
            Request::get(ServiceType::Dns, "zones").query("type", "private"),
        )
        .await
        .unwrap()
        .json(Some("zones"))
        .unwrap();
    assert_eq!(private, json!([]));
}

/// Scale-up needs no PostgreSQL (readiness is instance-ready's; its snapshot WAL check is
/// best effort and skipped when the primary cannot be read).
struct NoPostgres;

#[async_trait::async_trait]
impl Postgres for NoPostgres {
    async fn primary_status(&self) -> Result<PrimaryStatus, PgError> {
        Err(PgError::Query {
            endpoint: "primary".into(),
            message: "not asked by scale-up".into(),
        })
    }
    async fn replica_status(&self, at: &Endpoint) -> Result<ReplicaStatus, PgError> {
        Err(PgError::Query {
            endpoint: format!("{}:{}", at.host, at.port),
            message: "not asked by scale-up".into(),
        })
    }
}

/// The whole scale-up (decision, snapshot, clone, boot) on the test cloud, for an alarm
/// asking for `m1.small` when `openstack.flavor` is `m1.tiny`, with an
/// `openstack.availability_zone` that does not exist: the server boots with the alarm's
/// flavor, in its clone's zone (Nova refuses the configured one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scale_up_boots_the_alarms_flavor_in_the_clones_zone() {
    let cluster = "it-flavor";
    let os = connect("pgsurge", cluster).await;
    clean_up(&os, cluster).await;
    let base = base_volume(&os, cluster).await;
    let zone = base.az.clone().expect("Cinder reports the volume's zone");
    let cfg = OpenStackConfig {
        availability_zone: "az-nowhere".into(),
        ..config("pgsurge", cluster)
    };
    let cloud = std::sync::Arc::new(OpenStack::connect(&cfg, None).await.unwrap());
    let now = time::OffsetDateTime::now_utc();
    let policy = PolicyConfig {
        allowed_flavors: vec!["m1.small".into()],
        configured_flavor: Some(cfg.flavor.clone()),
        scale_up_cooldown_secs: 0,
        ..PolicyConfig::default()
    };
    let ports = Ports {
        cluster: cluster.into(),
        cloud: cloud.clone(),
        nodes: Vec::new(),
        state: StateRepo::new(std::sync::Arc::new(MemoryStore::new()), cluster, 5),
        pg: std::sync::Arc::new(NoPostgres),
        policy,
        ops: Default::default(),
        lag: LagBounds {
            max_bytes: 0,
            max_age: Duration::ZERO,
        },
        haproxy: Default::default(),
        bootstrap: Default::default(),
        callback: None,
    };
    ports
        .state
        .update(now, |s| -> Result<(), std::convert::Infallible> {
            s.replicas.push(Replica {
                id: "base".into(),
                role: Role::Base,
                phase: Phase::Serving,
                server_id: None,
                volume_id: Some(base.id.clone()),
                az: None,
                address: Some("10.99.0.5:5432".into()),
                created_at: now,
                op_id: None,
                since: Default::default(),
                extra: Default::default(),
            });
            Ok(())
        })
        .await
        .unwrap();
    let body = json!({"pgsurge": 1, "kind": "alarm", "id": "it-flavor-1", "name": "load",
        "state": "firing", "params": {"replicas": 1, "flavor": "m1.small"}});
    let Event::Alarms { alarms } = pgsurge::events::parse(&body.to_string()).unwrap() else {
        panic!("not an alarm");
    };
    // As the receiver checks it: m1.small is allowed, a size nobody listed is not.
    validate_params(&alarms[0], &ports.policy.limits()).unwrap();
    let mut big = alarms[0].clone();
    big.params.flavor = Some("m1.xlarge".into());
    assert!(validate_params(&big, &ports.policy.limits()).is_err());

    let report = pgsurge::ops::scale_up(&ports, &alarms, now).await.unwrap();
    assert!(report.pending.is_empty(), "{report:?}");
    let state = ports.state.load().await.unwrap().state;
    let r = state
        .replicas
        .iter()
        .find(|r| r.role == Role::Surge)
        .expect("a surge replica");
    let server = wait_server(&os, r.server_id.as_deref().unwrap()).await;
    assert_eq!(server.az.as_deref(), Some(zone.as_str()));
    assert_eq!(
        r.az.as_deref(),
        Some(zone.as_str()),
        "the state says where it is"
    );
    // Nova's own word for the flavor (2.47+: the flavor is embedded, with its name).
    let v = os
        .caller()
        .send(
            "show server",
            Request::get(ServiceType::Compute, format!("servers/{}", server.id))
                .microversion(2, 52),
        )
        .await
        .unwrap()
        .json(Some("server"))
        .unwrap();
    assert_eq!(v["flavor"]["original_name"], "m1.small", "{v}");
    clean_up(&os, cluster).await;
}

/// A TCP forwarder in front of the test cloud's Keystone: lets a test take Keystone away
/// from one session only (the real one keeps serving everyone else). `stop` closes the
/// listener and every connection through it, pooled keep-alive ones included.
struct KeystoneProxy {
    port: u16,
    tasks: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl KeystoneProxy {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let tasks = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let t = tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let conn = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect("127.0.0.1:5000").await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                t.lock().unwrap().push(conn.abort_handle());
            }
        });
        tasks.lock().unwrap().push(accept.abort_handle());
        KeystoneProxy { port, tasks }
    }

    fn stop(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keystone_lost_mid_session_is_transient_naming_it_and_creates_nothing() {
    let cluster = "it-ksdown";
    let admin = admin().await;
    let proxy = KeystoneProxy::start().await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = dir.path().join("clouds.yaml");
    let auth_url = format!("http://127.0.0.1:{}/v3", proxy.port);
    std::fs::write(
        &yaml,
        format!(
            "clouds:\n  via-proxy:\n    region_name: RegionOne\n    auth:\n      auth_url: {auth_url}\n      \
             username: pgsurge\n      password: pgsurge-pass\n      project_name: pgsurge\n      \
             user_domain_name: Default\n      project_domain_name: Default\n"
        ),
    )
    .unwrap();
    let cfg = OpenStackConfig {
        cloud: "via-proxy".into(),
        clouds_yaml: Some(yaml),
        connect_timeout_secs: 2,
        request_timeout_secs: 30,
        max_retries: 1,
        ..config("pgsurge", cluster)
    };
    let os = OpenStack::connect(&cfg, None).await.unwrap();
    os.list_volumes(&ours(cluster)).await.unwrap();

    // mid-session: Keystone goes away, and the session's token stops being valid
    proxy.stop();
    let token = os.session_token().expect("token");
    admin
        .caller()
        .send(
            "revoke token",
            Request::delete(ServiceType::Identity, "auth/tokens")
                .header("x-subject-token", token.expose()),
        )
        .await
        .unwrap();
    // services cache a validated token for 5 s (tests/openstack/up.sh): wait that out
    tokio::time::sleep(Duration::from_secs(6)).await;

    let name = resource_name(cluster, "r1");
    let body = json!({"volume": {"size": 1, "name": name, "metadata": meta(cluster, "surge", "r1", "op-k")}});
    let err = os
        .caller()
        .send(
            "create volume",
            Request::post(ServiceType::BlockStorage, "volumes", body),
        )
        .await
        .unwrap_err();
    let says_keystone = |e: &CloudError| {
        matches!(e, CloudError::Transient(m)
            if m.contains("identity service (Keystone)") && m.contains(&auth_url))
    };
    assert!(says_keystone(&err), "{err}");
    // the same through the trait, a read this time (retried, then the same verdict)
    let err = os.list_volumes(&ours(cluster)).await.unwrap_err();
    assert!(says_keystone(&err), "{err}");
    assert!(!err.to_string().contains("pgsurge-pass"));
    // nothing was created: the admin's listing (all projects) has no such volume
    let all = admin
        .caller()
        .send(
            "all volumes",
            Request::get(ServiceType::BlockStorage, "volumes")
                .query("all_tenants", "1")
                .query("name", name.clone()),
        )
        .await
        .unwrap()
        .json(Some("volumes"))
        .unwrap();
    assert_eq!(all.as_array().unwrap().len(), 0, "{all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_nova_cannot_place_fails_with_novas_fault_and_leaves_nothing() {
    let cluster = "it-fault";
    let os = connect("pgsurge", cluster).await;
    let admin = admin().await;
    clean_up(&os, cluster).await;
    // a public flavor no host can take: 1 PB of ephemeral disk (Nova asks placement for
    // it even when booting from a volume; the fake host has 600 TB, and disk is not under
    // quota, unlike RAM and cores). Nova accepts the boot, the scheduler finds no valid
    // host, the server goes to ERROR with a fault.
    let flavor = "pgsurge-it-eph1pb";
    match admin
        .caller()
        .send(
            "create flavor",
            Request::post(
                ServiceType::Compute,
                "flavors",
                json!({"flavor": {"name": flavor, "ram": 512, "vcpus": 1, "disk": 1,
                                  "OS-FLV-EXT-DATA:ephemeral": 1_000_000}}),
            ),
        )
        .await
    {
        Ok(_) | Err(CloudError::Conflict(_)) => {} // a previous run made it
        Err(e) => panic!("create flavor: {e}"),
    }
    let base = base_volume(&os, cluster).await;
    let s = os
        .create_server(&ServerRequest {
            name: resource_name(cluster, "r1"),
            volume_id: base.id.clone(),
            flavor: Some(flavor.into()),
            az: None,
            metadata: meta(cluster, "surge", "r1", "op-f"),
            user_data: None,
        })
        .await
        .unwrap();
    let err = wait_server_ready(&os, &s.id, READY).await.unwrap_err();
    assert!(
        matches!(&err, CloudError::Fatal(m) if m.contains(&s.id) && m.contains("No valid host was found")),
        "{err}"
    );
    let seen = os.get_server(&s.id).await.unwrap();
    assert_eq!(seen.status, Status::Error);
    assert!(seen.fault.unwrap().contains("No valid host"));
    // The provider does not delete on its own (ops decides; see the report / README):
    // the delete ops would issue leaves no server and, once Nova let go of it, the volume
    // can go too; listings prove nothing of ours is left.
    clean_up(&os, cluster).await;
    assert!(os.list_servers(&ours(cluster)).await.unwrap().is_empty());
    assert!(os.list_volumes(&ours(cluster)).await.unwrap().is_empty());
}

/// A scripted HTTP service in front of which `Caller::send` is exercised: it plays a
/// minimal Keystone (version document, token with a catalog naming itself as the identity
/// service) and answers `/v3/t/<case>` from a script, counting the hits.
mod scripted {
    use axum::body::Body;
    use axum::http::{Request, Response, StatusCode};
    use std::collections::{HashMap, VecDeque};
    use std::sync::{Arc, Mutex};

    /// One scripted answer: status and headers.
    type Answer = (u16, Vec<(&'static str, &'static str)>);

    #[derive(Clone, Default)]
    pub struct Script {
        pub answers: Arc<Mutex<HashMap<String, VecDeque<Answer>>>>,
        pub hits: Arc<Mutex<HashMap<String, usize>>>,
    }

    impl Script {
        pub fn set(&self, case: &str, answers: &[(u16, &[(&'static str, &'static str)])]) {
            self.answers.lock().unwrap().insert(
                case.to_string(),
                answers.iter().map(|(s, h)| (*s, h.to_vec())).collect(),
            );
        }
        pub fn hits(&self, case: &str) -> usize {
            self.hits.lock().unwrap().get(case).copied().unwrap_or(0)
        }
    }

    pub async fn start(script: Script) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = axum::Router::new().fallback(move |req: Request<Body>| {
            let script = script.clone();
            async move { answer(&script, port, req) }
        });
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        port
    }

    fn json(status: u16, headers: &[(&str, &str)], body: serde_json::Value) -> Response<Body> {
        let mut b = Response::builder()
            .status(StatusCode::from_u16(status).unwrap())
            .header("content-type", "application/json");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Body::from(body.to_string())).unwrap()
    }

    fn answer(script: &Script, port: u16, req: Request<Body>) -> Response<Body> {
        let base = format!("http://127.0.0.1:{port}/v3/");
        let path = req.uri().path().to_string();
        if let Some(case) = path.strip_prefix("/v3/t/") {
            *script
                .hits
                .lock()
                .unwrap()
                .entry(case.to_string())
                .or_default() += 1;
            let next = script
                .answers
                .lock()
                .unwrap()
                .get_mut(case)
                .and_then(|q| q.pop_front());
            let (status, headers) = next.unwrap_or((599, Vec::new()));
            let body = serde_json::json!({"error": {"code": status, "message": format!("scripted {status}")}});
            return json(status, &headers, body);
        }
        let version = serde_json::json!({"id": "v3.14", "status": "stable",
            "links": [{"rel": "self", "href": base}]});
        if path.ends_with("/auth/tokens") && req.method() == axum::http::Method::POST {
            let token = serde_json::json!({"token": {
                "methods": ["password"],
                "expires_at": "2099-01-01T00:00:00.000000Z",
                "issued_at": "2026-01-01T00:00:00.000000Z",
                "user": {"id": "u1", "name": "scripted", "domain": {"id": "default", "name": "Default"}},
                "project": {"id": "p1", "name": "scripted", "domain": {"id": "default", "name": "Default"}},
                "catalog": [{"type": "identity", "name": "keystone", "id": "k1", "endpoints": [
                    {"id": "e1", "interface": "public", "region": "RegionOne", "region_id": "RegionOne", "url": base}
                ]}]
            }});
            return json(201, &[("x-subject-token", "scripted-token")], token);
        }
        if path == "/" {
            return json(
                300,
                &[],
                serde_json::json!({"versions": {"values": [version]}}),
            );
        }
        json(200, &[], serde_json::json!({"version": version}))
    }
}

#[tokio::test]
async fn caller_retries_transient_answers_only_and_never_resends_a_create_that_may_have_run() {
    let script = scripted::Script::default();
    let port = scripted::start(script.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = dir.path().join("clouds.yaml");
    std::fs::write(
        &yaml,
        format!(
            "clouds:\n  scripted:\n    region_name: RegionOne\n    auth:\n      auth_url: http://127.0.0.1:{port}/v3\n      \
             username: scripted\n      password: scripted-pass\n      project_name: scripted\n      \
             user_domain_name: Default\n      project_domain_name: Default\n"
        ),
    )
    .unwrap();
    let cfg = OpenStackConfig {
        cloud: "scripted".into(),
        clouds_yaml: Some(yaml),
        connect_timeout_secs: 2,
        request_timeout_secs: 5,
        max_retries: 4,
        ..OpenStackConfig::default()
    };
    let os = OpenStack::connect(&cfg, None).await.unwrap();
    let get = |case: &str| Request::get(ServiceType::Identity, format!("t/{case}"));
    let post = |case: &str| Request::post(ServiceType::Identity, format!("t/{case}"), json!({}));

    // 503, then 429 with Retry-After, then 200: success on the third attempt
    script.set(
        "flaky",
        &[(503, &[]), (429, &[("retry-after", "1")]), (200, &[])],
    );
    let started = Instant::now();
    let reply = os.caller().send("flaky", get("flaky")).await.unwrap();
    assert_eq!(reply.status.as_u16(), 200);
    assert_eq!(script.hits("flaky"), 3);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After honoured"
    );

    // client errors: one attempt each, a typed error
    script.set("bad", &[(400, &[]), (200, &[])]);
    let e = os.caller().send("bad", get("bad")).await.unwrap_err();
    assert!(
        matches!(&e, CloudError::Fatal(m) if m.contains("HTTP 400")),
        "{e}"
    );
    script.set("gone", &[(404, &[]), (200, &[])]);
    let e = os.caller().send("gone", get("gone")).await.unwrap_err();
    assert!(matches!(e, CloudError::NotFound { .. }), "{e}");
    script.set("busy", &[(409, &[]), (200, &[])]);
    let e = os.caller().send("busy", get("busy")).await.unwrap_err();
    assert!(matches!(e, CloudError::Conflict(_)), "{e}");
    script.set("full", &[(413, &[]), (200, &[])]);
    let e = os.caller().send("full", get("full")).await.unwrap_err();
    assert!(matches!(e, CloudError::Quota(_)), "{e}");
    for case in ["bad", "gone", "busy", "full"] {
        assert_eq!(script.hits(case), 1, "{case} was retried");
    }

    // a create answered 500 may have been carried out: not re-sent (ARCHITECTURE.md)
    script.set("create500", &[(500, &[]), (201, &[])]);
    let e = os
        .caller()
        .send("create500", post("create500"))
        .await
        .unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert_eq!(script.hits("create500"), 1);
    // ... a create turned away with 503 certainly was not: re-sent
    script.set("create503", &[(503, &[]), (201, &[])]);
    os.caller()
        .send("create503", post("create503"))
        .await
        .unwrap();
    assert_eq!(script.hits("create503"), 2);
    // a read that keeps failing gives up after max_retries
    let none: &[(&str, &str)] = &[];
    script.set("down", &[(502, none); 6]);
    let e = os.caller().send("down", get("down")).await.unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert_eq!(script.hits("down"), 5, "1 + max_retries (4)");
}

/// Run `op` (`delete-server <id>` / `delete-volume <id>`) in a child process with the
/// failpoint `point` armed: it must die there (abort, like `kill -9`).
fn killed_at(point: &str, op: &str) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "failpoint_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(pgsurge::failpoint::ENV, point)
        .env("PGSURGE_FAILPOINT_CHILD", op)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains(&format!("failpoint {point}: aborting")),
        "{op} did not die at {point} ({}): {}\n{stderr}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Issue 19, on OpenStack: the provider killed inside its multi-step deletes — after Nova
/// accepted a server delete (the server is not gone yet; Nova goes on and detaches the
/// volume), and before the volume's own delete request — leaves nothing a rerun cannot
/// finish: the server goes (a repeated delete is fine), the volume is deleted on the next
/// try, nothing of the cluster is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_inside_a_server_or_volume_delete_a_rerun_finishes_it() {
    let cluster = "it-killed";
    let os = connect("pgsurge", cluster).await;
    clean_up(&os, cluster).await;
    let base = base_volume(&os, cluster).await;
    let sreq = SnapshotRequest {
        name: resource_name(cluster, "snap-1"),
        volume_id: base.id.clone(),
        metadata: meta(cluster, "surge", "snap-1", "op-9"),
        force: false,
    };
    let snap = ensure_snapshot(&os, &sreq).await.unwrap();
    let snap = wait_snapshot(&os, &snap.id).await;
    let (vols, servers) = scale_up(&os, cluster, &snap, &["r1"], "op-9", None).await;
    let (vol, server) = (&vols[0], &servers[0]);

    killed_at(
        "openstack.delete_server.accepted",
        &format!("delete-server {}", server.id),
    );
    // The rerun: delete again (accepted or already gone), then the volume once detached.
    os.delete_server(&server.id).await.unwrap();
    os.wait_server_gone(&server.id, READY).await.unwrap();
    let deadline = Instant::now() + READY;
    while cinder_status(&os, &vol.id).await != "available" {
        assert!(
            Instant::now() < deadline,
            "volume {} never detached",
            vol.id
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    killed_at(
        "openstack.delete_volume.before_request",
        &format!("delete-volume {}", vol.id),
    );
    assert_eq!(
        cinder_status(&os, &vol.id).await,
        "available",
        "killed before the request: the volume is untouched"
    );
    os.delete_volume(&vol.id).await.unwrap();
    let deadline = Instant::now() + READY;
    while os.get_volume(&vol.id).await.is_ok() {
        assert!(Instant::now() < deadline, "volume {} never went", vol.id);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    clean_up(&os, cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run as a child process by killed_inside_a_server_or_volume_delete_a_rerun_finishes_it"]
async fn failpoint_child() {
    let op = std::env::var("PGSURGE_FAILPOINT_CHILD")
        .expect("only meaningful as the child of killed_inside_a_server_or_volume_delete_a_rerun_finishes_it");
    let os = connect("pgsurge", "it-killed").await;
    match op.split_once(' ') {
        Some(("delete-server", id)) => os.delete_server(id).await.unwrap(),
        Some(("delete-volume", id)) => os.delete_volume(id).await.unwrap(),
        _ => panic!("unknown operation {op:?}"),
    }
    println!("FAILPOINT_CHILD: {op} returned");
}

/// Cinder's attachments of a volume: (server id, device) pairs.
async fn cinder_attachments(os: &OpenStack, id: &str) -> Vec<(String, String)> {
    os.caller().volume_json(id).await.unwrap()["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["server_id"].as_str().unwrap_or("").to_string(),
                a["device"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// The original VM layout: the system disk from the replica image, the data volume (a
/// clone of a snapshot) attached beside it as a non-boot disk, in the clone's zone; Nova
/// and Cinder both record the attachment; deleting the server leaves the data volume
/// (pgsurge deletes it itself, after the detach); a missing image creates nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_boots_the_replica_image_with_its_data_volume_attached() {
    let cluster = "it-layout";
    let os = connect("pgsurge", cluster).await;
    let admin = admin().await;
    clean_up(&os, cluster).await;
    let base = base_volume(&os, cluster).await;
    let snap = ensure_snapshot(
        &os,
        &SnapshotRequest {
            name: resource_name(cluster, "snap"),
            volume_id: base.id.clone(),
            metadata: meta(cluster, "surge", "snap", "op-l"),
            force: false,
        },
    )
    .await
    .unwrap();
    let snap = wait_snapshot(&os, &snap.id).await;
    let (vols, servers) = scale_up(&os, cluster, &snap, &["r1"], "op-l", None).await;
    let (vol, server) = (&vols[0], &servers[0]);
    assert_eq!(server.volume_ids, vec![vol.id.clone()]);
    assert_eq!(server.az, vol.az, "the server is in its data volume's zone");

    // what Nova recorded, read back as admin: booted from the image, one attached volume
    // that is not deleted with the server, on a device that is not the root disk
    let raw = admin
        .caller()
        .send(
            "server as admin",
            Request::get(ServiceType::Compute, format!("servers/{}", server.id))
                .microversion(2, 79),
        )
        .await
        .unwrap()
        .json(Some("server"))
        .unwrap();
    assert_eq!(
        raw["image"]["id"],
        pgsurge_tests::os_image::TEST_IMAGE_ID,
        "booted from the configured image (by name, resolved to its id): {raw}"
    );
    assert_eq!(
        raw["os-extended-volumes:volumes_attached"],
        json!([{"id": vol.id, "delete_on_termination": false}])
    );
    let root = raw["OS-EXT-SRV-ATTR:root_device_name"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let attachments = admin
        .caller()
        .send(
            "volume attachments",
            Request::get(
                ServiceType::Compute,
                format!("servers/{}/os-volume_attachments", server.id),
            )
            .microversion(2, 79),
        )
        .await
        .unwrap()
        .json(Some("volumeAttachments"))
        .unwrap();
    let attachments = attachments.as_array().unwrap();
    assert_eq!(attachments.len(), 1, "{attachments:?}");
    assert_eq!(attachments[0]["volumeId"], json!(vol.id));
    assert_eq!(attachments[0]["delete_on_termination"], false);
    let device = attachments[0]["device"].as_str().unwrap_or("").to_string();
    assert!(
        !device.is_empty() && device != root,
        "the data volume is a second disk ({device:?}), not the root disk ({root:?})"
    );
    // Cinder's side: in use, attached to this server, on that device
    assert_eq!(cinder_status(&os, &vol.id).await, "in-use");
    assert_eq!(
        cinder_attachments(&os, &vol.id).await,
        vec![(server.id.clone(), device.clone())]
    );

    // delete order: the server, then (Nova detaches on its own time) the volume, which
    // survived its server
    os.delete_server(&server.id).await.unwrap();
    os.wait_server_gone(&server.id, READY).await.unwrap();
    let deadline = Instant::now() + READY;
    while cinder_status(&os, &vol.id).await != "available" {
        assert!(
            Instant::now() < deadline,
            "volume {} never detached",
            vol.id
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(cinder_attachments(&os, &vol.id).await.is_empty());
    assert_eq!(os.get_volume(&vol.id).await.unwrap().id, vol.id);
    os.delete_volume(&vol.id).await.unwrap();

    // an image Glance does not have: refused before Nova is asked, nothing created
    let missing = OpenStack::connect(
        &OpenStackConfig {
            image: "pgsurge-no-such-image".into(),
            ..config("pgsurge", cluster)
        },
        None,
    )
    .await
    .unwrap();
    let clone = ensure_volume(
        &os,
        &VolumeRequest {
            name: resource_name(cluster, "r2"),
            snapshot_id: snap.id.clone(),
            size_gb: None,
            az: None,
            metadata: meta(cluster, "surge", "r2", "op-l"),
        },
    )
    .await
    .unwrap();
    wait_volume(&os, &clone.id).await;
    let err = missing
        .create_server(&ServerRequest {
            name: resource_name(cluster, "r2"),
            volume_id: clone.id.clone(),
            flavor: None,
            az: None,
            metadata: meta(cluster, "surge", "r2", "op-l"),
            user_data: None,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CloudError::NotFound { kind: "image", id } if id == "pgsurge-no-such-image"),
        "{err}"
    );
    assert!(os.list_servers(&ours(cluster)).await.unwrap().is_empty());
    assert_eq!(cinder_status(&os, &clone.id).await, "available");
    clean_up(&os, cluster).await;
}

/// `base add` on OpenStack (through the library, as the CLI calls it): a replica people
/// made — a server booted from the image with its data volume attached — whose PostgreSQL
/// is a real local standby standing in for the server's. Refusals change nothing; once
/// registered, scale-up snapshots that base's volume and boots a surge server from the
/// image with the clone attached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_base_added_on_openstack_is_what_scale_up_snapshots() {
    use pgsurge::ops::base::{add_base, Added, BaseError, BaseReplica};
    let cluster = "it-base";
    let os = connect("pgsurge", cluster).await;
    clean_up(&os, cluster).await;
    let root = pgsurge_tests::pg::Scratch::new("it-base");
    let primary = pgsurge_tests::pg::Pg::primary(&root.0, "primary");
    let standby = pgsurge_tests::pg::Pg::replica_of(&primary, &root.0, "standby");

    // the replica as people made it: labelled base, its data volume attached
    let base = base_volume(&os, cluster).await;
    let server = os
        .create_server(&ServerRequest {
            name: resource_name(cluster, "base"),
            volume_id: base.id.clone(),
            flavor: None,
            az: None,
            metadata: meta(cluster, "base", "base", "setup"),
            user_data: None,
        })
        .await
        .unwrap();
    let server = wait_server(&os, &server.id).await;
    // a volume that is not the server's (labelled, so clean_up finds it)
    let loose = os
        .caller()
        .send(
            "create loose volume",
            Request::post(
                ServiceType::BlockStorage,
                "volumes",
                json!({"volume": {"size": 1, "name": resource_name(cluster, "loose"),
                                  "metadata": meta(cluster, "base", "loose", "setup")}}),
            ),
        )
        .await
        .unwrap()
        .json(Some("volume"))
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_volume(&os, &loose).await;

    let cloud = std::sync::Arc::new(connect("pgsurge", cluster).await);
    let ports = Ports {
        cluster: cluster.into(),
        cloud: cloud.clone(),
        nodes: Vec::new(),
        state: StateRepo::new(std::sync::Arc::new(MemoryStore::new()), cluster, 5),
        pg: std::sync::Arc::new(pgsurge::postgres::PgClient::new(
            &pgsurge::postgres::PostgresConfig {
                primary_port: primary.port,
                replication_user: "postgres".into(),
                sslmode: "disable".into(),
                ..Default::default()
            },
        )),
        policy: PolicyConfig {
            configured_flavor: Some("m1.tiny".into()),
            scale_up_cooldown_secs: 0,
            ..PolicyConfig::default()
        },
        ops: Default::default(),
        lag: LagBounds {
            max_bytes: 0,
            max_age: Duration::ZERO,
        },
        haproxy: Default::default(),
        bootstrap: Default::default(),
        callback: None,
    };
    let spec = BaseReplica {
        id: "base".into(),
        server_id: server.id.clone(),
        volume_id: base.id.clone(),
        address: format!("127.0.0.1:{}", standby.port),
        az: None,
    };
    let now = time::OffsetDateTime::now_utc();
    let revision = || async { ports.state.load().await.unwrap().state.revision };
    let before = revision().await;

    // refusals, each precise, none writing
    let at_primary = BaseReplica {
        address: format!("127.0.0.1:{}", primary.port),
        ..spec.clone()
    };
    let e = add_base(&ports, &at_primary, now).await.unwrap_err();
    assert!(e.to_string().contains("is not in recovery"), "{e}");
    let other_id = BaseReplica {
        id: "b2".into(),
        ..spec.clone()
    };
    let e = add_base(&ports, &other_id, now).await.unwrap_err();
    assert!(
        matches!(&e, BaseError::Cloud(m) if m.contains(r#"pgsurge_replica="base", not "b2""#)),
        "{e}"
    );
    let gone = BaseReplica {
        server_id: "00000000-0000-0000-0000-000000000000".into(),
        ..spec.clone()
    };
    let e = add_base(&ports, &gone, now).await.unwrap_err();
    assert!(e.to_string().contains("not found"), "{e}");
    let e = add_base(
        &ports,
        &BaseReplica {
            volume_id: loose.clone(),
            ..spec.clone()
        },
        now,
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("is not attached to server"), "{e}");
    let wrong_zone = BaseReplica {
        az: Some("az-nowhere".into()),
        ..spec.clone()
    };
    let e = add_base(&ports, &wrong_zone, now).await.unwrap_err();
    assert!(e.to_string().contains("not \"az-nowhere\""), "{e}");
    assert_eq!(revision().await, before, "a refusal wrote the state");

    // accepted, in the volume's zone; twice changes nothing
    let added = add_base(&ports, &spec, now).await.unwrap();
    let Added::Registered { replica } = &added else {
        panic!("{added:?}")
    };
    assert_eq!(replica.az, base.az);
    let after = revision().await;
    assert!(after > before);
    let again = add_base(&ports, &spec, now).await.unwrap();
    assert!(
        matches!(again, Added::AlreadyRegistered { .. }),
        "{again:?}"
    );
    assert_eq!(revision().await, after, "a second add wrote");

    // scale-up: the snapshot is of the base's volume, the surge server boots the image
    let body = json!({"pgsurge": 1, "kind": "alarm", "id": "it-base-1", "name": "load",
        "state": "firing", "params": {"replicas": 1}});
    let Event::Alarms { alarms } = pgsurge::events::parse(&body.to_string()).unwrap() else {
        panic!("not an alarm");
    };
    let report = pgsurge::ops::scale_up(&ports, &alarms, now).await.unwrap();
    assert!(report.pending.is_empty(), "{report:?}");
    let state = ports.state.load().await.unwrap().state;
    assert_eq!(state.snapshots.len(), 1, "{state:?}");
    assert_eq!(state.snapshots[0].source_replica.as_deref(), Some("base"));
    let snap = os.get_snapshot(&state.snapshots[0].id).await.unwrap();
    assert_eq!(
        snap.volume_id, base.id,
        "scale-up snapshotted the base's volume"
    );
    let surge = state
        .replicas
        .iter()
        .find(|r| r.role == Role::Surge)
        .expect("a surge replica");
    let s = wait_server(&os, surge.server_id.as_deref().unwrap()).await;
    let clone = os
        .get_volume(surge.volume_id.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(clone.snapshot_id.as_deref(), Some(snap.id.as_str()));
    assert_eq!(s.volume_ids, vec![clone.id.clone()]);
    let raw = os
        .caller()
        .send(
            "show server",
            Request::get(ServiceType::Compute, format!("servers/{}", s.id)).microversion(2, 52),
        )
        .await
        .unwrap()
        .json(Some("server"))
        .unwrap();
    assert_eq!(raw["image"]["id"], pgsurge_tests::os_image::TEST_IMAGE_ID);
    drop(standby);
    clean_up(&os, cluster).await;
}
