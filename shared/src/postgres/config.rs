//! `[postgres]`: the primary, the replication role, TLS, and when a replica is caught up.

use super::tls::{PgTls, SslMode, UnknownSslMode};
use crate::check::{at_most, in_range, invalid, is_file, plain_name, Checked};
use crate::secret::Secret;
use serde::Deserialize;
use std::path::PathBuf;

/// The PostgreSQL primary, the role replicas stream as, and when a replica counts as caught up.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PostgresConfig {
    /// The primary as replicas reach it (`primary_conninfo`) and as pgsurge checks it.
    pub primary_host: String,
    pub primary_port: u16,
    /// Database pgsurge connects to for readiness checks.
    pub dbname: String,
    /// Role in the replicas' `primary_conninfo`; pgsurge also connects as it to check
    /// readiness (needs REPLICATION and `pg_monitor`; the local provider's snapshots also
    /// need EXECUTE on `pg_backup_start`/`pg_backup_stop`).
    pub replication_user: String,
    /// Its password; `None` for trust, `.pgpass` or certificate authentication.
    pub password: Option<Secret>,
    /// libpq `sslmode` towards the primary: pgsurge's own connections (readiness,
    /// standby proofs) and every replica's `primary_conninfo`. `disable`, `allow`,
    /// `prefer`, `require`, `verify-ca` or `verify-full` (see `postgres::tls`).
    pub sslmode: String,
    /// PEM file of the CA certificates pgsurge trusts for its own connections; required
    /// by `verify-ca` / `verify-full`, turns `require` into `verify-ca` (as in libpq).
    pub sslrootcert: Option<PathBuf>,
    /// `sslmode` of pgsurge's connections to replicas; empty = as `sslmode`. A clone
    /// carries its seed's certificate whatever its address, so `verify-full` fits
    /// replicas only when their certificates name each address: `verify-ca` usually does.
    pub replica_sslmode: String,
    /// `sslrootcert` in the replicas' `primary_conninfo`: a path on the replica's own
    /// file system (the image ships it). Empty = libpq's default (`~/.postgresql/root.crt`).
    pub primary_conninfo_sslrootcert: String,
    pub connect_timeout_secs: u64,
    /// A replica is caught up when its replay LSN is at most this many bytes behind the
    /// primary's current LSN...
    pub max_replay_lag_bytes: u64,
    /// ...and the last transaction it replayed committed at most this long ago
    /// (0 when it has replayed everything).
    pub max_replay_lag_secs: u64,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        PostgresConfig {
            primary_host: "127.0.0.1".into(),
            primary_port: 5432,
            dbname: "postgres".into(),
            replication_user: "pgsurge".into(),
            password: None,
            sslmode: "prefer".into(),
            sslrootcert: None,
            replica_sslmode: String::new(),
            primary_conninfo_sslrootcert: String::new(),
            connect_timeout_secs: 5,
            max_replay_lag_bytes: 16 * 1024 * 1024,
            max_replay_lag_secs: 10,
        }
    }
}

impl PostgresConfig {
    /// Checks for `[postgres]` that types alone cannot express (keys relative to it).
    pub fn validate(&self) -> Checked {
        let p = self;
        let host_ok = !p.primary_host.is_empty()
            && p.primary_host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'));
        if !host_ok {
            return Err(invalid(
                "primary_host",
                format!("{:?} is not a host name or IP address", p.primary_host),
            ));
        }
        in_range("primary_port", p.primary_port, 1..=u16::MAX)?;
        for (key, name) in [
            ("dbname", &p.dbname),
            ("replication_user", &p.replication_user),
        ] {
            if !plain_name(name) {
                return Err(invalid(
                    key,
                    format!("{name:?} must be 1-63 chars of a-z, 0-9, '_', '-', '.'"),
                ));
            }
        }
        if let Some(pw) = &p.password {
            if pw.is_empty() || pw.expose().contains(['\0', '\n', '\r']) {
                return Err(invalid(
                    "password",
                    "must be non-empty and contain no NUL or line breaks",
                ));
            }
        }
        let mode: SslMode = p
            .sslmode
            .parse()
            .map_err(|m: UnknownSslMode| invalid("sslmode", m.to_string()))?;
        let replica_mode: SslMode = match p.replica_sslmode.as_str() {
            "" => mode,
            m => m
                .parse()
                .map_err(|m: UnknownSslMode| invalid("replica_sslmode", m.to_string()))?,
        };
        if let Some(path) = &p.sslrootcert {
            is_file("sslrootcert", path)?;
        }
        // Read the CA file now: a wrong one fails here, not at the first readiness check.
        for (key, m) in [("sslmode", mode), ("replica_sslmode", replica_mode)] {
            PgTls::new(m, p.sslrootcert.as_deref()).map_err(|e| invalid(key, e.to_string()))?;
        }
        let cert = &p.primary_conninfo_sslrootcert;
        if !cert.is_empty()
            && (!cert.starts_with('/') || cert.contains(['\'', '\\', '\n', '\r', '\0']))
        {
            return Err(invalid(
                "primary_conninfo_sslrootcert",
                format!(
                    "{cert:?} must be an absolute path without quotes, backslashes or line breaks"
                ),
            ));
        }
        in_range("connect_timeout_secs", p.connect_timeout_secs, 1..=120)?;
        at_most(
            "max_replay_lag_bytes",
            p.max_replay_lag_bytes,
            1 << 40,
            "1 TiB",
        )?;
        at_most(
            "max_replay_lag_secs",
            p.max_replay_lag_secs,
            86_400,
            "one day",
        )
    }
}
