//! `[local] servers = "vm"`: the local provider's servers as real VMs booted from the
//! replica image (`infra/image/build.sh`) — the cloud's boot path on one machine.
//!
//! A VM server is: a copy-on-write overlay of the image (`system.qcow2`, the base is
//! never written), the volume as a virtio disk whose serial is the volume id (an ext4
//! image of the volume's directory, label `pgdata`: PGDATA is its `data/`), and an
//! OpenStack config drive (iso9660, label `config-2`) holding the request's user data
//! and a `meta_data.json` with the server's id, name and metadata. The image's
//! first-boot unit does the rest, exactly as on a cloud.
//!
//! Network: qemu's user-mode network. The guest's private network exists only inside the
//! qemu process; the guest reaches this host's loopback at `host_alias` (10.0.2.2), and
//! the server's endpoint is a forward from `listen_host:<port>` to the guest's 5432. So
//! nothing here needs a bridge, a tap or root networking, and no traffic leaves loopback.
//! Loopback addresses in the user data (the primary, the callback URL) are rewritten to
//! `host_alias`: the address translation this "cloud" does.

use super::pool::{fatal, Kind, Pool, ServerInfo};
use super::{server, LocalCloud};
use crate::cloud::{CloudError, Result, Server, ServerRequest};
use crate::node::{InstanceParams, ParamsError};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerKind {
    /// A PostgreSQL process on this machine (the bootstrap script run by the provider).
    #[default]
    Process,
    /// A qemu VM from the replica image.
    Vm,
}

/// `[local.vm]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VmConfig {
    /// The raw system image, its kernel and initrd (`build.sh` prints all three).
    pub image: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub memory_mb: u32,
    pub qemu: PathBuf,
    /// This host's loopback as the guest sees it (qemu user networking's gateway).
    pub host_alias: String,
}

impl Default for VmConfig {
    fn default() -> Self {
        VmConfig {
            image: PathBuf::new(),
            kernel: PathBuf::new(),
            initrd: PathBuf::new(),
            memory_mb: 1024,
            qemu: "qemu-system-x86_64".into(),
            host_alias: "10.0.2.2".into(),
        }
    }
}

const QEMU_PID: &str = "qemu.pid";
pub const CONSOLE_LOG: &str = "console.log";

/// Whether the server in `dir` is a VM.
pub fn is_vm(dir: &Path) -> bool {
    dir.join(QEMU_PID).exists()
}

/// The qemu of the server in `dir`, if it runs (checked by its command line, never a
/// reused pid).
fn qemu_pid(dir: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(dir.join(QEMU_PID))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let needle = dir.display().to_string();
    String::from_utf8_lossy(&cmdline)
        .contains(&needle)
        .then_some(pid)
}

/// Running VM: `ready` (ACTIVE), as a cloud reports it; what PostgreSQL on it does is
/// instance-ready's to verify. Its qemu gone: `error`.
pub fn status(dir: &Path) -> crate::cloud::Status {
    match qemu_pid(dir) {
        Some(_) => crate::cloud::Status::Ready,
        None => crate::cloud::Status::Error,
    }
}

/// Power the VM off: SIGTERM (qemu exits), then SIGKILL after `timeout`.
pub async fn stop(dir: &Path, timeout: Duration) {
    let Some(pid) = qemu_pid(dir) else { return };
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    let end = tokio::time::Instant::now() + timeout;
    while super::server::pid_alive(pid) && tokio::time::Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if super::server::pid_alive(pid) {
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|a| a.is_loopback())
}

/// The user data as the guest must see it (pure): loopback addresses → `alias`.
pub fn for_guest(user_data: &str, alias: &str) -> std::result::Result<String, ParamsError> {
    let mut p = InstanceParams::parse(user_data)?;
    if p.bootstrap.get("PRIMARY_HOST").is_some_and(is_loopback) {
        p.bootstrap.set("PRIMARY_HOST", alias)?;
    }
    if let Some(c) = &mut p.callback {
        if let Ok(mut url) = reqwest::Url::parse(&c.url) {
            if url.host_str().is_some_and(is_loopback) && url.set_host(Some(alias)).is_ok() {
                c.url = url.to_string();
            }
        }
    }
    Ok(p.render())
}

fn run(what: &str, cmd: &mut Command) -> Result<()> {
    let out = cmd
        .output()
        .map_err(|e| CloudError::Fatal(format!("{what}: {e}")))?;
    if !out.status.success() {
        return Err(CloudError::Fatal(format!(
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

impl LocalCloud {
    /// `create_server` for a VM: record, disks, boot; on failure nothing is left (no
    /// record, port or attachment). Returns once qemu runs; the guest boots on its own.
    pub(super) async fn create_vm_server(
        &self,
        req: &ServerRequest,
        info: ServerInfo,
        dir: &Path,
    ) -> Result<Server> {
        let id = info.id.clone();
        let volume_dir = self.pool.dir(Kind::Volume, &info.volume_id);
        let mut work = None;
        let result = (|| {
            let w = self.pool.work_dir(&id)?;
            work = Some(w.clone());
            Pool::write_meta(&w, &info)?;
            let cmd =
                self.prepare_vm(req, &id, info.port, &volume_dir, &info.volume_id, &w, dir)?;
            // Marks the server a VM before qemu writes its pid there.
            std::fs::write(w.join(QEMU_PID), "").map_err(|e| fatal(QEMU_PID, e))?;
            self.pool.publish(&w, Kind::Server, &id)?;
            start(cmd)
        })();
        if let Err(e) = result {
            if let Some(w) = work {
                let _ = std::fs::remove_dir_all(w);
            }
            stop(dir, Duration::from_secs(5)).await;
            let _ = self.pool.remove(Kind::Server, &id);
            server::release_port(&self.pool, info.port, &id);
            server::detach(&self.pool, &info.volume_id, &id);
            return Err(e);
        }
        tracing::info!(server = %id, name = %req.name, port = info.port, "VM started");
        Ok(self.server(info))
    }

    /// Make the VM's disks in `work` (the server's directory-to-be); the qemu command
    /// that boots it once `work` is renamed to `final_dir` ([`start`]).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn prepare_vm(
        &self,
        req: &ServerRequest,
        id: &str,
        port: u16,
        volume_dir: &Path,
        volume_id: &str,
        work: &Path,
        final_dir: &Path,
    ) -> Result<Command> {
        let vm = &self.cfg.vm;
        for (key, p) in [
            ("image", &vm.image),
            ("kernel", &vm.kernel),
            ("initrd", &vm.initrd),
        ] {
            if !p.is_file() {
                return Err(CloudError::Fatal(format!(
                    "`local.vm.{key}` {} is not a file (build it: infra/image/build.sh)",
                    p.display()
                )));
            }
        }
        let text = req.user_data.as_deref().unwrap_or_default();
        let user_data = for_guest(text, &vm.host_alias)
            .map_err(|e| CloudError::Fatal(format!("server {}: user data: {e}", req.name)))?;
        // Config drive.
        let drive = work.join("config-drive");
        let latest = drive.join("openstack/latest");
        std::fs::create_dir_all(&latest).map_err(|e| fatal(latest.display(), e))?;
        let meta = serde_json::json!({
            "uuid": id, "name": req.name, "hostname": req.name,
            "availability_zone": req.az, "meta": req.metadata,
        });
        let network = serde_json::json!({"links": [], "networks": [{"id": "net0", "type": "ipv4_dhcp", "link": "eth0"}], "services": []});
        for (f, body) in [
            ("user_data", user_data),
            ("meta_data.json", meta.to_string()),
            ("network_data.json", network.to_string()),
        ] {
            std::fs::write(latest.join(f), body).map_err(|e| fatal(f, e))?;
        }
        run(
            "genisoimage (config drive)",
            Command::new("genisoimage")
                .args(["-quiet", "-J", "-r", "-V", "config-2", "-o"])
                .arg(work.join("config-drive.iso"))
                .arg(&drive),
        )?;
        // The volume as a block device: an ext4 image of its directory (ownership kept).
        let bytes = dir_bytes(volume_dir);
        let size_mb = (bytes / (1 << 20)) * 2 + 512;
        run(
            "mkfs.ext4 (data disk)",
            Command::new("mkfs.ext4")
                .args(["-q", "-F", "-L", crate::node::params::DATA_LABEL, "-d"])
                .arg(volume_dir)
                .arg(work.join("data.raw"))
                .arg(format!("{size_mb}M")),
        )?;
        run(
            "qemu-img (system overlay)",
            Command::new("qemu-img")
                .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
                .arg(&vm.image)
                .arg(work.join("system.qcow2")),
        )?;
        // Paths on qemu's command line are the server's final directory (the work dir is
        // renamed into place before qemu starts).
        let serial: String = volume_id.chars().take(20).collect();
        let d = |f: &str| final_dir.join(f).display().to_string();
        let mut cmd = Command::new(&vm.qemu);
        cmd.args([
            "-accel", "tcg", "-cpu", "max", "-smp", "1", "-display", "none",
        ])
        .args(["-m", &vm.memory_mb.to_string()])
        .args(["-name", &format!("pgsurge-{id}")])
        .args(["-kernel", &vm.kernel.display().to_string()])
        .args(["-initrd", &vm.initrd.display().to_string()])
        .args(["-append", "root=/dev/vda rw console=ttyS0"])
        .args(["-serial", &format!("file:{}", d(CONSOLE_LOG))])
        // Every disk an explicit device, in this order: PCI slots follow the command line,
        // so the system disk is /dev/vda as the kernel's `root=` and the image's fstab
        // expect. (An `if=virtio` drive's device is created after all `-device`s, which
        // made the data disk vda.) The data disk's serial is on its device: qemu 10
        // refuses it on `-drive`.
        .args([
            "-drive",
            &format!("file={},if=none,id=system,format=qcow2", d("system.qcow2")),
        ])
        .args(["-device", "virtio-blk-pci,drive=system"])
        .args([
            "-drive",
            &format!("file={},if=none,id=data,format=raw", d("data.raw")),
        ])
        .args([
            "-device",
            &format!("virtio-blk-pci,drive=data,serial={serial}"),
        ])
        .args([
            "-drive",
            &format!(
                "file={},if=none,id=config,format=raw,readonly=on",
                d("config-drive.iso")
            ),
        ])
        .args(["-device", "virtio-blk-pci,drive=config"])
        .args([
            "-netdev",
            &format!("user,id=n0,hostfwd=tcp:{}:{port}-:5432", self.host),
        ])
        .args(["-device", "virtio-net-pci,netdev=n0"])
        .args(["-daemonize", "-pidfile", &d(QEMU_PID)]);
        Ok(cmd)
    }
}

/// Start a prepared VM (qemu daemonizes once the VM runs).
pub fn start(mut cmd: Command) -> Result<()> {
    run("qemu", &mut cmd)
}

fn dir_bytes(dir: &Path) -> u64 {
    fn walk(p: &Path) -> u64 {
        let Ok(m) = std::fs::symlink_metadata(p) else {
            return 0;
        };
        if m.is_dir() {
            std::fs::read_dir(p)
                .map(|r| r.flatten().map(|e| walk(&e.path())).sum())
                .unwrap_or(0)
        } else {
            m.len()
        }
    }
    walk(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgres::bootstrap::UserData;

    #[test]
    fn loopback_becomes_the_host_alias_for_the_guest() {
        let mut ud = UserData::default();
        ud.set("PRIMARY_HOST", "127.0.0.1").unwrap();
        let mint = crate::events::CallbackMint::from_config(
            Some("http://127.0.0.1:9000/ready"),
            Some(&crate::secret::Secret::new("k")),
        );
        let p = InstanceParams::for_server("c", "r1", "v1", ud, mint.as_ref()).unwrap();
        let g = InstanceParams::parse(&for_guest(&p.render(), "10.0.2.2").unwrap()).unwrap();
        assert_eq!(g.bootstrap.get("PRIMARY_HOST"), Some("10.0.2.2"));
        assert_eq!(g.callback.unwrap().url, "http://10.0.2.2:9000/ready");
        let mut ud = UserData::default();
        ud.set("PRIMARY_HOST", "db.example").unwrap();
        let p = InstanceParams::for_server("c", "r1", "v1", ud, None).unwrap();
        let g = InstanceParams::parse(&for_guest(&p.render(), "10.0.2.2").unwrap()).unwrap();
        assert_eq!(g.bootstrap.get("PRIMARY_HOST"), Some("db.example"));
    }
}
