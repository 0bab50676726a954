//! `pgsurge node first-boot`: what the replica image runs once at boot (unit
//! `pgsurge-first-boot.service`, ordered before anything that reads PostgreSQL).
//!
//! 1. the instance parameters: the OpenStack config drive (label `config-2`:
//!    `openstack/latest/user_data`, `meta_data.json`, `network_data.json`), else the
//!    metadata service — parsed by [`InstanceParams::parse`], the code scale-up writes
//!    them with;
//! 2. the server's metadata must name the same cluster and replica (a drive made for
//!    another cluster or server is refused);
//! 3. the data disk, by the volume's serial (`/dev/disk/by-id/virtio-<serial>`) or by
//!    the label `pgdata`, mounted at `/var/lib/pgsurge/volume` (PGDATA is its `data/`, the local pool's volume layout);
//! 4. the replication password from `/etc/pgsurge/replication.pass` (root, 0600, baked
//!    into the image at build time — never user data or metadata);
//! 5. `bootstrap-replica.sh` on those parameters (it starts PostgreSQL);
//! 6. instance-ready called back with the server's credential, with backoff.
//!
//! Any failure before step 6 stops here with an error on the console and calls nothing.

use super::params::{InstanceParams, ParamsError, DATA_LABEL};
use crate::model::{META_CLUSTER, META_REPLICA};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum FirstBootError {
    #[error("no instance parameters: no config drive labelled {label} and the metadata service at {url} did not answer: {why}")]
    NoParams {
        label: String,
        url: String,
        why: String,
    },
    #[error("instance parameters ({source_name}): {err}")]
    Params {
        source_name: String,
        err: ParamsError,
    },
    #[error("meta_data.json: {0}")]
    Meta(String),
    #[error("wrong server: {0}")]
    Identity(String),
    #[error("data disk of volume {volume} (serial {serial} or label {DATA_LABEL}) did not appear within {secs} s")]
    NoDisk {
        volume: String,
        serial: String,
        secs: u64,
    },
    #[error("replication password {path}: {why}")]
    Password { path: String, why: String },
    #[error("{what}: {why}")]
    Io { what: String, why: String },
    #[error("bootstrap-replica.sh failed ({0})")]
    Bootstrap(String),
    #[error(transparent)]
    Network(#[from] super::network::NetworkError),
    #[error("instance-ready callback to {url} failed: {why}")]
    Callback { url: String, why: String },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> FirstBootError {
    let what = what.into();
    move |e| FirstBootError::Io {
        what,
        why: e.to_string(),
    }
}

/// Where things are in the image (defaults) — a test may point them elsewhere.
#[derive(Debug, Clone)]
pub struct Layout {
    pub config_drive_label: String,
    pub metadata_url: String,
    pub dev_disk: PathBuf,
    pub run_dir: PathBuf,
    pub volume_mount: PathBuf,
    pub password_file: PathBuf,
    pub script: PathBuf,
    /// Where `node network` writes its systemd-networkd units (runtime, not persistent).
    pub networkd_dir: PathBuf,
    pub disk_wait: Duration,
    pub callback_deadline: Duration,
}

impl Default for Layout {
    fn default() -> Self {
        Layout {
            config_drive_label: "config-2".into(),
            metadata_url: "http://169.254.169.254/openstack/latest".into(),
            dev_disk: "/dev/disk".into(),
            run_dir: "/run/pgsurge".into(),
            volume_mount: "/var/lib/pgsurge/volume".into(),
            password_file: "/etc/pgsurge/replication.pass".into(),
            script: "/usr/local/lib/pgsurge/bootstrap-replica.sh".into(),
            networkd_dir: "/run/systemd/network".into(),
            disk_wait: Duration::from_secs(60),
            callback_deadline: Duration::from_secs(600),
        }
    }
}

/// What the cloud delivered.
pub struct Delivered {
    pub source_name: String,
    pub user_data: String,
    pub meta_data: serde_json::Value,
}

/// The parameters, checked against the server's own metadata (pure).
pub fn identify(d: &Delivered) -> Result<(InstanceParams, String), FirstBootError> {
    let p = InstanceParams::parse(&d.user_data).map_err(|err| FirstBootError::Params {
        source_name: d.source_name.clone(),
        err,
    })?;
    let uuid = d.meta_data["uuid"]
        .as_str()
        .ok_or_else(|| FirstBootError::Meta("no `uuid`".into()))?
        .to_string();
    let meta = &d.meta_data["meta"];
    for (key, want) in [(META_CLUSTER, &p.cluster), (META_REPLICA, &p.replica_id)] {
        match meta[key].as_str() {
            Some(v) if v == want => {}
            Some(v) => {
                return Err(FirstBootError::Identity(format!(
                    "the user data is for {want}, the server's metadata {key} says {v}"
                )))
            }
            None => {
                return Err(FirstBootError::Identity(format!(
                    "the server's metadata has no {key}"
                )))
            }
        }
    }
    Ok((p, uuid))
}

fn say(msg: &str) {
    // stdout is the console (the unit: StandardOutput=journal+console).
    println!("pgsurge first-boot: {msg}");
}

/// The whole first boot. Returns what it did, or the error (the unit then fails).
pub async fn run(l: &Layout) -> Result<(), FirstBootError> {
    let t0 = std::time::Instant::now();
    std::fs::create_dir_all(&l.run_dir).map_err(io("create /run/pgsurge"))?;
    let delivered = deliver(l).await?;
    say(&format!(
        "instance parameters from {}",
        delivered.source_name
    ));
    let (p, server_uuid) = identify(&delivered)?;
    say(&format!(
        "cluster {} replica {} server {server_uuid} volume {}",
        p.cluster, p.replica_id, p.volume_id
    ));
    let disk = find_disk(l, p.volume_serial())
        .await
        .ok_or_else(|| FirstBootError::NoDisk {
            volume: p.volume_id.clone(),
            serial: p.volume_serial().into(),
            secs: l.disk_wait.as_secs(),
        })?;
    mount(&disk, &l.volume_mount, &[])?;
    say(&format!(
        "data disk {} mounted at {}",
        disk.display(),
        l.volume_mount.display()
    ));
    let password = read_password(&l.password_file)?;
    let mut ud = p.bootstrap.clone();
    let bad = |e: crate::postgres::bootstrap::UserDataError| FirstBootError::Params {
        source_name: "bootstrap parameters".into(),
        err: e.into(),
    };
    ud.set_default("PGDATA", l.volume_mount.join("data").display().to_string())
        .map_err(bad)?;
    ud.set("REPLICATION_PASSWORD", password).map_err(bad)?;
    let env = l.run_dir.join("bootstrap.env");
    let _ = std::fs::remove_file(&env);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&env)
        .and_then(|mut f| f.write_all(ud.render().as_bytes()))
        .map_err(io(format!("write {}", env.display())))?;
    let status = tokio::process::Command::new(&l.script)
        .arg(&env)
        .status()
        .await
        .map_err(io(format!("run {}", l.script.display())))?;
    if !status.success() {
        return Err(FirstBootError::Bootstrap(status.to_string()));
    }
    say(&format!(
        "PostgreSQL started ({:.1} s after first-boot started)",
        t0.elapsed().as_secs_f64()
    ));
    match (&p.callback, p.callback_header()) {
        (Some(c), Some(header)) => {
            call_back(&c.url, &header, &p, &server_uuid, l.callback_deadline).await?;
            say(&format!(
                "instance-ready called back ({:.1} s)",
                t0.elapsed().as_secs_f64()
            ));
        }
        _ => say("no callback configured: instance-ready's timer will find this server"),
    }
    Ok(())
}

/// `pgsurge node network`: static addresses from the config drive's `network_data.json`
/// (see [`super::network`]). Runs before systemd-networkd; returns the units written
/// (none without a config drive or without a static network: DHCP applies then).
pub async fn configure_network(l: &Layout) -> Result<Vec<String>, FirstBootError> {
    let Some(dev) = config_drive(l).await else {
        say("no config drive: the image's DHCP unit configures the network");
        return Ok(Vec::new());
    };
    let at = l.run_dir.join("config-drive");
    std::fs::create_dir_all(&l.run_dir).map_err(io("create /run/pgsurge"))?;
    mount(&dev, &at, &["-o", "ro"])?;
    let path = at.join("openstack/latest/network_data.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            say("the config drive has no network_data.json: DHCP applies");
            return Ok(Vec::new());
        }
        Err(e) => return Err(io("config drive: network_data.json")(e)),
    };
    let doc: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| super::network::NetworkError::Malformed(e.to_string()))?;
    let units = super::network::units(&doc)?;
    let written = super::network::write_units(&l.networkd_dir, &units)?;
    for w in &written {
        say(&format!("static network unit {w}"));
    }
    Ok(written)
}

/// The config drive's device, once udev has made its link (it may not have yet this
/// early in boot).
async fn config_drive(l: &Layout) -> Option<PathBuf> {
    let dev = l.dev_disk.join("by-label").join(&l.config_drive_label);
    for _ in 0..20 {
        if dev.exists() {
            return Some(dev);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    None
}

async fn deliver(l: &Layout) -> Result<Delivered, FirstBootError> {
    if let Some(dev) = config_drive(l).await {
        let at = l.run_dir.join("config-drive");
        mount(&dev, &at, &["-o", "ro"])?;
        let base = at.join("openstack/latest");
        let read = |f: &str| {
            std::fs::read_to_string(base.join(f)).map_err(io(format!("config drive: {f}")))
        };
        let user_data = read("user_data")?;
        let meta_data = serde_json::from_str(&read("meta_data.json")?)
            .map_err(|e| FirstBootError::Meta(e.to_string()))?;
        // Read and checked here too; `node network` applied it before networking started.
        if let Ok(n) = read("network_data.json") {
            serde_json::from_str::<serde_json::Value>(&n)
                .map_err(|e| FirstBootError::Meta(format!("network_data.json: {e}")))?;
        }
        return Ok(Delivered {
            source_name: format!("config drive {}", dev.display()),
            user_data,
            meta_data,
        });
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| FirstBootError::Io {
            what: "HTTP client".into(),
            why: e.to_string(),
        })?;
    let get = |f: &str| {
        let url = format!("{}/{f}", l.metadata_url);
        let client = client.clone();
        async move {
            let r = client.get(&url).send().await.map_err(|e| e.to_string())?;
            if !r.status().is_success() {
                return Err(format!("{url}: {}", r.status()));
            }
            r.text().await.map_err(|e| e.to_string())
        }
    };
    let no = |why: String| FirstBootError::NoParams {
        label: l.config_drive_label.clone(),
        url: l.metadata_url.clone(),
        why,
    };
    let user_data = get("user_data").await.map_err(no)?;
    let meta = get("meta_data.json").await.map_err(no)?;
    Ok(Delivered {
        source_name: format!("metadata service {}", l.metadata_url),
        user_data,
        meta_data: serde_json::from_str(&meta).map_err(|e| FirstBootError::Meta(e.to_string()))?,
    })
}

async fn find_disk(l: &Layout, serial: &str) -> Option<PathBuf> {
    let candidates = [
        l.dev_disk.join("by-id").join(format!("virtio-{serial}")),
        l.dev_disk.join("by-label").join(DATA_LABEL),
    ];
    let deadline = tokio::time::Instant::now() + l.disk_wait;
    loop {
        if let Some(c) = candidates.iter().find(|c| c.exists()) {
            return Some(c.clone());
        }
        if tokio::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Mount `dev` at `at` unless something is mounted there already (a rerun).
fn mount(dev: &Path, at: &Path, opts: &[&str]) -> Result<(), FirstBootError> {
    std::fs::create_dir_all(at).map_err(io(format!("create {}", at.display())))?;
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let target = at.display().to_string();
    if mounts
        .lines()
        .any(|m| m.split(' ').nth(1) == Some(target.as_str()))
    {
        return Ok(());
    }
    let out = std::process::Command::new("mount")
        .args(opts)
        .arg(dev)
        .arg(at)
        .output()
        .map_err(io("run mount"))?;
    if !out.status.success() {
        return Err(FirstBootError::Io {
            what: format!("mount {} {target}", dev.display()),
            why: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// The password file must be root's alone: a file others can read is refused (someone
/// broke the image), never used.
fn read_password(path: &Path) -> Result<String, FirstBootError> {
    let bad = |why: String| FirstBootError::Password {
        path: path.display().to_string(),
        why,
    };
    let meta = std::fs::metadata(path).map_err(|e| bad(e.to_string()))?;
    if meta.uid() != 0 || meta.mode() & 0o077 != 0 {
        return Err(bad(format!(
            "must be owned by root with mode 0600 (uid {}, mode {:o})",
            meta.uid(),
            meta.mode() & 0o777
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let pw = text.trim_end_matches(['\n', '\r']).to_string();
    if pw.is_empty() {
        return Err(bad("empty".into()));
    }
    Ok(pw)
}

/// POST the generic `instance ready` event with the credential; retry on transport
/// errors and 5xx with backoff (1 s doubling to 30 s) until `deadline`. A 4xx is final:
/// the credential or the event was refused, and repeating it changes nothing.
async fn call_back(
    url: &str,
    header: &str,
    p: &InstanceParams,
    server_uuid: &str,
    deadline: Duration,
) -> Result<(), FirstBootError> {
    let fail = |why: String| FirstBootError::Callback {
        url: url.into(),
        why,
    };
    let body = serde_json::json!({
        "pgsurge": 1, "kind": "instance", "event": "ready",
        "replica_id": p.replica_id, "server_id": server_uuid, "cluster": p.cluster,
    });
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .map_err(|e| fail(e.to_string()))?;
    let end = tokio::time::Instant::now() + deadline;
    let mut wait = Duration::from_secs(1);
    loop {
        let why = match client
            .post(url)
            .header(crate::events::CALLBACK_HEADER, header)
            .json(&body)
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) if r.status().is_client_error() => {
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                return Err(fail(format!(
                    "{status}: {}",
                    text.chars().take(300).collect::<String>()
                )));
            }
            Ok(r) => format!("{}", r.status()),
            Err(e) => e.to_string(),
        };
        if tokio::time::Instant::now() + wait > end {
            return Err(fail(format!(
                "gave up after {} s: {why}",
                deadline.as_secs()
            )));
        }
        say(&format!("callback: {why}; again in {} s", wait.as_secs()));
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(30));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgres::bootstrap::UserData;

    fn delivered(cluster: &str, replica: &str) -> Delivered {
        let mut ud = UserData::default();
        ud.set("PRIMARY_HOST", "10.0.2.2").unwrap();
        let p = InstanceParams::for_server("main", "r3", "vol-1", ud, None).unwrap();
        Delivered {
            source_name: "test".into(),
            user_data: p.render(),
            meta_data: serde_json::json!({"uuid": "u-1",
                "meta": {META_CLUSTER: cluster, META_REPLICA: replica}}),
        }
    }

    #[test]
    fn identity_must_match_the_servers_metadata() {
        let (p, uuid) = identify(&delivered("main", "r3")).unwrap();
        assert_eq!((p.replica_id.as_str(), uuid.as_str()), ("r3", "u-1"));
        for d in [delivered("other", "r3"), delivered("main", "r4")] {
            assert!(matches!(identify(&d), Err(FirstBootError::Identity(_))));
        }
        let mut d = delivered("main", "r3");
        d.meta_data["meta"] = serde_json::json!({});
        assert!(matches!(identify(&d), Err(FirstBootError::Identity(_))));
        d.user_data = d.user_data.replace("PGSURGE_VOLUME_ID=vol-1\n", "");
        assert!(matches!(identify(&d), Err(FirstBootError::Params { .. })));
    }
}
