//! `[local]`: the local provider's pool, ports and binaries.

use crate::check::{absolute, in_range, invalid, ip_address, non_empty, plain_name, Checked};
use serde::Deserialize;
use std::path::PathBuf;

/// How the local provider clones files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CloneMode {
    /// Copy-on-write (FICLONE) when the pool's filesystem supports it, else a plain copy.
    Auto,
    /// Copy-on-write or fail.
    Reflink,
    /// Always a plain byte copy.
    Copy,
}

/// The local provider: volumes and snapshots are directories in a pool, servers are
/// `postgres` processes on loopback ports.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LocalConfig {
    /// The volume pool (absolute). On XFS with reflink=1 or btrfs, clones are copy-on-write.
    pub pool_dir: PathBuf,
    /// Servers get the lowest free port in `port_first..=port_last`.
    pub port_first: u16,
    pub port_last: u16,
    /// Address servers listen on.
    pub listen_host: String,
    /// PostgreSQL server binaries.
    pub pg_bin: PathBuf,
    /// OS user that owns the data directories and runs `postgres`.
    pub os_user: String,
    /// The replica bootstrap script (the one the cloud image runs).
    pub bootstrap_script: PathBuf,
    pub clone: CloneMode,
    /// How long the bootstrap script waits for PostgreSQL to start.
    pub start_timeout_secs: u64,
    /// How long a fast shutdown may take before the server is stopped immediately.
    pub stop_timeout_secs: u64,
    /// Before a snapshot, `CHECKPOINT` the primary and let the source replica replay it,
    /// so the snapshot's restartpoint is fresh and a clone replays only the WAL written
    /// since (as `pg_basebackup --checkpoint=fast` does). Needs `pg_checkpoint`.
    pub checkpoint_primary: bool,
    /// `process` (default): a PostgreSQL process per server; `vm`: a qemu VM from the
    /// replica image per server (`cloud::local::vm`, settings in `[local.vm]`).
    pub servers: crate::cloud::local::vm::ServerKind,
    pub vm: crate::cloud::local::vm::VmConfig,
}

impl Default for LocalConfig {
    fn default() -> Self {
        LocalConfig {
            pool_dir: "/var/lib/pgsurge/pool".into(),
            port_first: 6500,
            port_last: 6599,
            listen_host: "127.0.0.1".into(),
            pg_bin: "/usr/lib/postgresql/15/bin".into(),
            os_user: "postgres".into(),
            bootstrap_script: "infra/image/bootstrap-replica.sh".into(),
            clone: CloneMode::Auto,
            start_timeout_secs: 60,
            stop_timeout_secs: 30,
            checkpoint_primary: true,
            servers: Default::default(),
            vm: Default::default(),
        }
    }
}

impl LocalConfig {
    /// Checks for `[local]` that types alone cannot express (keys relative to it).
    pub fn validate(&self) -> Checked {
        let l = self;
        absolute("pool_dir", &l.pool_dir)?;
        in_range("port_first", l.port_first, 1024..=u16::MAX)?;
        in_range("port_last", l.port_last, l.port_first..=u16::MAX)?;
        ip_address("listen_host", &l.listen_host)?;
        absolute("pg_bin", &l.pg_bin)?;
        if !plain_name(&l.os_user) {
            return Err(invalid(
                "os_user",
                format!("{:?} is not a user name", l.os_user),
            ));
        }
        non_empty("bootstrap_script", &l.bootstrap_script)?;
        in_range("start_timeout_secs", l.start_timeout_secs, 1..=3600)?;
        in_range("stop_timeout_secs", l.stop_timeout_secs, 1..=3600)
    }
}
