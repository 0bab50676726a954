//! `packer validate` of the replica image's Packer template (infra/image/packer): the
//! openstack builder authenticates while validating, so against the OpenStack test
//! cloud (tests/openstack/up.sh; a clear failure when it is not up).

use pgsurge_tests::workspace_root;
use std::process::Command;

#[test]
fn packer_template_validates_against_the_test_cloud() {
    let os_dir =
        std::env::var("PGSURGE_OS_DIR").unwrap_or_else(|_| "/tmp/pgsurge-openstack".into());
    let clouds = std::path::Path::new(&os_dir).join("clouds.yaml");
    assert!(
        clouds.is_file(),
        "{} missing: start the OpenStack test cloud (tests/openstack/up.sh)",
        clouds.display()
    );
    let dir = workspace_root().join("infra/image/packer");
    let out = Command::new("packer")
        .args(["validate", "-var-file=example.vars.json", "replica.json"])
        .current_dir(&dir)
        .env("OS_CLIENT_CONFIG_FILE", &clouds)
        .env("OS_CLOUD", "pgsurge")
        .output()
        .expect("packer not found: run infra/local/deps.sh as root");
    assert!(
        out.status.success(),
        "packer validate: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
