//! Real Ceph RADOS Gateway for tests, started by the project's own `infra/s3/rgw-up.sh`.
//!
//! The script is idempotent: when the Justfile's `test` recipe already started RGW this
//! returns at once; under a bare `cargo test` it starts one (~20 s) that
//! `infra/s3/rgw-down.sh` stops. A missing package or a failed start is a test failure
//! with the script's message — never a skip.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// Connection details of the running gateway.
#[derive(Debug, Clone)]
pub struct Rgw {
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    /// A bucket the script created.
    pub bucket: String,
}

pub fn ceph_dir() -> PathBuf {
    if let Ok(d) = std::env::var("PGSURGE_CEPH_DIR") {
        return PathBuf::from(d);
    }
    let port = std::env::var("PGSURGE_S3_PORT").unwrap_or_else(|_| "22480".into());
    std::env::temp_dir().join(format!("pgsurge-ceph-{port}"))
}

/// Start (or find) the gateway; once per test process.
pub fn rgw() -> Rgw {
    static RGW: OnceLock<Rgw> = OnceLock::new();
    RGW.get_or_init(|| {
        let script = crate::workspace_root().join("infra/s3/rgw-up.sh");
        let out = Command::new("bash")
            .arg(&script)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "Ceph RGW did not start ({}): {}{}\nInstall the packages with `bash infra/local/deps.sh` (as root).",
            script.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let env_file = ceph_dir().join("env");
        let text = std::fs::read_to_string(&env_file)
            .unwrap_or_else(|e| panic!("{}: {e}", env_file.display()));
        let vars: HashMap<&str, &str> = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .collect();
        let get = |k: &str| {
            vars.get(k)
                .unwrap_or_else(|| panic!("{} lacks {k}", env_file.display()))
                .to_string()
        };
        Rgw {
            endpoint: get("PGSURGE_S3_ENDPOINT"),
            access_key: get("PGSURGE_S3_AK"),
            secret_key: get("PGSURGE_S3_SK"),
            bucket: get("PGSURGE_S3_BUCKETS")
                .split_whitespace()
                .next()
                .expect("a bucket")
                .to_string(),
        }
    })
    .clone()
}
