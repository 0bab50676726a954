//! The replica image for tests: built (or reused from the cache) by
//! `infra/image/build.sh` from the same Ansible role Packer runs, with this build's
//! `pgsurge` CLI as the first-boot step. Needs root and infra/local/deps.sh's packages
//! (mmdebstrap, ansible, qemu-system-x86, genisoimage); a missing one is a failure.

use crate::{bin, workspace_root};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Paths `build.sh` printed.
pub struct Image {
    pub root: PathBuf,
    pub image: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub cached: bool,
}

impl Image {
    /// `[local.vm]` for a config file.
    pub fn local_vm_toml(&self) -> String {
        format!(
            "[local.vm]\nimage = \"{}\"\nkernel = \"{}\"\ninitrd = \"{}\"\nmemory_mb = 1024\n",
            self.image.display(),
            self.kernel.display(),
            self.initrd.display()
        )
    }
}

pub fn require_tools() {
    for t in [
        "qemu-system-x86_64",
        "qemu-img",
        "mmdebstrap",
        "ansible-playbook",
        "genisoimage",
    ] {
        let ok = Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .stdout(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "{t} not found: run infra/local/deps.sh as root");
    }
}

/// Build or reuse the image; with `check_idempotent` also apply the role once more to
/// the cached root and return its `PLAY RECAP` lines.
pub fn image(check_idempotent: bool) -> (Image, String) {
    require_tools();
    let mut cmd = Command::new(workspace_root().join("infra/image/build.sh"));
    if check_idempotent {
        cmd.arg("--check-idempotent");
    }
    let out = cmd
        .arg(bin("pgsurge"))
        .env(
            "PGSURGE_IMAGE_SECRETS",
            workspace_root().join("tests/data/image/secrets.yml"),
        )
        .output()
        .expect("run infra/image/build.sh");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "build.sh failed:\n{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let get = |k: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("build.sh printed no {k}: {stdout}"))
            .to_string()
    };
    let recap = stderr
        .lines()
        .skip_while(|l| !l.starts_with("PLAY RECAP"))
        .collect::<Vec<_>>()
        .join("\n");
    (
        Image {
            root: get("ROOT").into(),
            image: get("IMAGE").into(),
            kernel: get("KERNEL").into(),
            initrd: get("INITRD").into(),
            cached: get("CACHED") == "yes",
        },
        recap,
    )
}

/// A VM server's serial console so far.
pub fn console(server_dir: &Path) -> String {
    std::fs::read_to_string(server_dir.join(pgsurge::cloud::local::vm::CONSOLE_LOG))
        .unwrap_or_default()
}
