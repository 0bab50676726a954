//! Real servers on the OpenStack test cloud: the qemu compute (zone [`ZONE`]), Cinder's
//! RBD backend (volume type [`VOLUME_TYPE`]) and the guest network (`pgsurge-vms`, see
//! [`crate::netns`]), all made by `tests/openstack/up.sh`.
//!
//! - [`ensure_replica_image`]: the replica image (`infra/image/build.sh`) in Glance, the
//!   way an operator registers an AMI-style image: kernel (`aki`), initrd (`ari`) and the
//!   system disk (qcow2) naming both, plus the kernel command line.
//! - [`base_replica`]: a base replica made the way people make one: `pg_basebackup` of
//!   the primary onto a new RBD volume, then a server booted from the image with that
//!   volume attached, whose first boot turns it into a streaming standby.

use crate::netns::{GATEWAY, HOST_SIDE};
use crate::pg::{chown_postgres, pg_cmd, Pg};
use crate::vm::Image;
use pgsurge::cloud::openstack::request::{Request, ServiceType};
use pgsurge::cloud::openstack::OpenStack;
use pgsurge::cloud::{wait_ready, Cloud, CloudError, Metadata, Server, ServerRequest, Volume};
use pgsurge::node::InstanceParams;
use pgsurge::postgres::bootstrap::UserData;
use pgsurge::postgres::PostgresConfig;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Nova's zone of the qemu compute; Cinder's RBD backend is in the zone of the same name.
pub const ZONE: &str = "qemu";
/// The volume type of Cinder's RBD backend.
pub const VOLUME_TYPE: &str = "rbd";
/// The flavor for replica guests.
pub const FLAVOR: &str = "pgsurge.vm";
/// The guests' network.
pub const NETWORK: &str = "pgsurge-vms";
/// The RBD pool of Cinder's RBD backend (up.sh).
pub const RBD_POOL: &str = "pgsurge-volumes";

/// The test cloud's state directory (`$PGSURGE_OS_DIR`, default /tmp/pgsurge-openstack).
pub fn os_dir() -> PathBuf {
    PathBuf::from(
        std::env::var("PGSURGE_OS_DIR").unwrap_or_else(|_| "/tmp/pgsurge-openstack".into()),
    )
}

/// The ceph.conf of the test Ceph the RBD backend uses (up.sh's default).
pub fn ceph_conf() -> PathBuf {
    if let Ok(c) = std::env::var("CEPH_CONF") {
        return c.into();
    }
    crate::rgw::ceph_dir().join("ceph.conf")
}

/// A guest's serial console (the qemu driver writes it beside the instance).
pub fn console(server_id: &str) -> String {
    let p = os_dir()
        .join("state/nova/qemu-instances")
        .join(server_id)
        .join("console.log");
    std::fs::read_to_string(p).unwrap_or_default()
}

/// The last `n` lines of a guest's console, for failure messages.
pub fn console_tail(server_id: &str, n: usize) -> String {
    let c = console(server_id);
    let lines: Vec<&str> = c.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

async fn send_json(os: &OpenStack, what: &str, req: Request) -> Value {
    os.caller()
        .send(what, req)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"))
        .json(None)
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// One Glance image by exact name, created and uploaded unless it is already active.
async fn ensure_glance_image(
    admin: &OpenStack,
    name: &str,
    fields: Value,
    data: impl Fn() -> Vec<u8>,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let list = send_json(
            admin,
            "list images",
            Request::get(ServiceType::Image, "images").query("name", name),
        )
        .await;
        let found = list["images"].as_array().and_then(|a| a.first()).cloned();
        let Some(img) = found else {
            let mut body = fields.clone();
            body["name"] = json!(name);
            body["visibility"] = json!("public");
            send_json(
                admin,
                "create image",
                Request::post(ServiceType::Image, "images", body),
            )
            .await;
            continue;
        };
        let id = img["id"].as_str().expect("image id").to_string();
        match img["status"].as_str().unwrap_or("") {
            "active" => return id,
            "queued" => {
                let up =
                    Request::put_bytes(ServiceType::Image, format!("images/{id}/file"), data());
                match admin.caller().send("upload image", up).await {
                    Ok(_) | Err(CloudError::Conflict(_)) => {}
                    Err(e) => panic!("upload of image {name} to Glance failed: {e}"),
                }
            }
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "image {name} never became active in Glance: {img}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The replica image in Glance (as `admin`: public images); returns its name. Named by
/// the image file's size and mtime, so a rebuilt image is a new Glance image.
pub async fn ensure_replica_image(admin: &OpenStack, img: &Image) -> String {
    let meta = std::fs::metadata(&img.image).expect("image file");
    let mtime = meta
        .modified()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let tag = format!("{:x}-{:x}", meta.len(), mtime);
    admin
        .caller()
        .discover(&ServiceType::Image)
        .await
        .unwrap_or_else(|e| panic!("the test cloud's Glance does not answer: {e}"));
    let read = |p: &Path| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let kernel = ensure_glance_image(
        admin,
        &format!("pgsurge-replica-{tag}-kernel"),
        json!({"disk_format": "aki", "container_format": "aki"}),
        || read(&img.kernel),
    )
    .await;
    let initrd = ensure_glance_image(
        admin,
        &format!("pgsurge-replica-{tag}-initrd"),
        json!({"disk_format": "ari", "container_format": "ari"}),
        || read(&img.initrd),
    )
    .await;
    let name = format!("pgsurge-replica-{tag}");
    ensure_glance_image(
        admin,
        &name,
        json!({"disk_format": "qcow2", "container_format": "bare",
               "kernel_id": kernel, "ramdisk_id": initrd,
               "os_command_line": "root=/dev/vda rw console=ttyS0"}),
        || {
            // qcow2 holds only the written clusters: a fraction of the raw image to upload
            let q = tempfile::NamedTempFile::new().unwrap();
            let out = Command::new("qemu-img")
                .args(["convert", "-O", "qcow2", "-f", "raw"])
                .arg(&img.image)
                .arg(q.path())
                .output()
                .expect("qemu-img");
            assert!(
                out.status.success(),
                "qemu-img convert: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            read(q.path())
        },
    )
    .await;
    name
}

/// A base replica on the qemu compute.
pub struct BaseReplica {
    pub server: Server,
    pub volume: Volume,
    /// `host:port` of its PostgreSQL (the Neutron port's fixed address).
    pub address: String,
}

/// Create a volume of type rbd in [`ZONE`] as people do (not through pgsurge).
async fn rbd_volume(os: &OpenStack, name: &str, size_gb: u64, meta: &Metadata) -> Volume {
    let body = json!({"volume": {"size": size_gb, "name": name, "metadata": meta,
                                  "volume_type": VOLUME_TYPE, "availability_zone": ZONE}});
    let v = send_json(
        os,
        "create volume",
        Request::post(ServiceType::BlockStorage, "volumes", body),
    )
    .await;
    let id = v["volume"]["id"].as_str().expect("volume id").to_string();
    wait_ready(
        "volume",
        &id,
        Duration::from_secs(180),
        || os.get_volume(&id),
        |v: &Volume| &v.status,
    )
    .await
    .unwrap_or_else(|e| panic!("rbd volume {name}: {e}"))
}

fn run(what: &str, cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// psql against `host:port` as `postgres` (unaligned, tuples only); `Err` with its
/// message when it cannot connect or the query fails.
pub fn psql_host(host: &str, port: u16, sql: &str) -> Result<String, String> {
    let out = Command::new("psql")
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d"])
        .arg(format!(
            "host={host} port={port} user=postgres dbname=postgres connect_timeout=5"
        ))
        .args(["-c", sql])
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// A base replica of `primary` (on loopback; the guest reaches it through the relay at
/// the gateway address, port `primary.port`): `pg_basebackup` into an ext4 file system
/// (label `pgdata`, PGDATA its `data/`, the image's layout) written onto a new RBD
/// volume, then a server from `os`'s configured image with the volume attached and user
/// data naming `cluster`/`replica_id`. Returns once PostgreSQL answers at its address,
/// in recovery.
pub async fn base_replica(
    os: &OpenStack,
    scratch: &Path,
    primary: &Pg,
    pg: &PostgresConfig,
    cluster: &str,
    replica_id: &str,
) -> BaseReplica {
    let name = pgsurge::model::resource_name(cluster, &format!("base-{replica_id}"));
    let meta: Metadata = [
        (pgsurge::cloud::META_CLUSTER, cluster),
        (pgsurge::cloud::META_ROLE, "base"),
        (pgsurge::cloud::META_REPLICA, replica_id),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    // 1. The data: a base backup in the volume's layout, admitting this host's side of
    //    the guest network (HAProxy, the functions' checks, pgbench come from there).
    let root = scratch.join(format!("base-{replica_id}"));
    let data = root.join("data");
    std::fs::create_dir_all(&root).unwrap();
    chown_postgres(&root);
    pg_cmd(
        "pg_basebackup",
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &primary.port.to_string(),
            "-U",
            "postgres",
            "-D",
            data.to_str().unwrap(),
            "-X",
            "stream",
            "-c",
            "fast",
        ],
    );
    let hba = data.join("pg_hba.conf");
    let text = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(
        &hba,
        format!(
            "host all all {HOST_SIDE}/32 trust\nhost all all {}/24 trust\n{text}",
            GATEWAY
        ),
    )
    .unwrap();
    let size_gb = 2u64;
    let raw = scratch.join(format!("base-{replica_id}.raw"));
    run(
        "mkfs.ext4 (base volume)",
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", pgsurge::node::params::DATA_LABEL, "-d"])
            .arg(&root)
            .arg(&raw)
            .arg(format!("{size_gb}G")),
    );
    // 2. The volume: Cinder makes the RBD image; the bytes go straight into it.
    let volume = rbd_volume(os, &name, size_gb, &meta).await;
    run(
        "qemu-img convert (base volume onto RBD)",
        Command::new("qemu-img")
            .args(["convert", "-n", "-f", "raw", "-O", "raw"])
            .arg(&raw)
            .arg(format!(
                "rbd:{RBD_POOL}/volume-{}:conf={}",
                volume.id,
                ceph_conf().display()
            )),
    );
    std::fs::remove_file(&raw).ok();
    std::fs::remove_dir_all(&root).ok();
    // 3. The server: the image's first boot makes it a standby (no callback: a base
    //    replica is registered by `pgsurge base add`).
    let ud = UserData::for_replica(pg, &name).expect("user data");
    let params = InstanceParams::for_server(cluster, replica_id, &volume.id, ud, None)
        .expect("instance params");
    let req = ServerRequest {
        name: name.clone(),
        volume_id: volume.id.clone(),
        flavor: None,
        az: Some(ZONE.into()),
        metadata: meta,
        user_data: Some(params.render()),
    };
    let server = os
        .create_server(&req)
        .await
        .unwrap_or_else(|e| panic!("boot base replica {name}: {e}"));
    let server = wait_active(os, &server.id, Duration::from_secs(300)).await;
    let host = server
        .endpoint
        .as_ref()
        .map(|e| e.host.clone())
        .unwrap_or_else(|| panic!("server {} has no address: {server:?}", server.id));
    wait_standby(&server.id, &host, 5432, Duration::from_secs(600));
    BaseReplica {
        address: format!("{host}:5432"),
        server,
        volume,
    }
}

/// Poll until Nova says ACTIVE; panics on ERROR (with Nova's fault) or after `wait`.
pub async fn wait_active(os: &OpenStack, id: &str, wait: Duration) -> Server {
    let deadline = Instant::now() + wait;
    loop {
        let s = os.get_server(id).await.unwrap();
        match s.status {
            pgsurge::cloud::Status::Ready => return s,
            pgsurge::cloud::Status::Error => {
                let raw = send_json(
                    os,
                    "server",
                    Request::get(ServiceType::Compute, format!("servers/{id}")),
                )
                .await;
                panic!("server {id} went to ERROR: {}", raw["server"]["fault"]);
            }
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "server {id} not ACTIVE after {wait:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Poll until PostgreSQL at `host:port` answers and is in recovery; panics with the
/// guest's console after `wait`.
pub fn wait_standby(server_id: &str, host: &str, port: u16, wait: Duration) {
    let deadline = Instant::now() + wait;
    loop {
        match psql_host(host, port, "select pg_is_in_recovery()") {
            Ok(v) if v == "t" => return,
            Ok(v) => panic!("{host}:{port} answers but is not a standby (pg_is_in_recovery = {v})"),
            Err(e) => {
                let console = console(server_id);
                assert!(
                    !console.contains("first boot failed"),
                    "first boot of {server_id} failed:\n{}",
                    console_tail(server_id, 40)
                );
                assert!(
                    Instant::now() < deadline,
                    "no standby at {host}:{port} after {wait:?} ({e}); console:\n{}",
                    console_tail(server_id, 40)
                );
            }
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}
