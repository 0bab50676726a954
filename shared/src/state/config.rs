//! The `[state]` configuration section (documented in `config/pgsurge.example.toml`).

use crate::check::{in_range, invalid, non_empty, Checked};
use crate::secret::Secret;
use serde::Deserialize;
use std::path::PathBuf;

/// Where the cluster state lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StateBackend {
    /// A directory on this machine (the embedded default).
    Local,
    /// An S3-compatible object store.
    S3,
    /// Process memory: lost on exit. Tests and dry runs only.
    Memory,
}

/// How concurrent writers of an S3 store are kept from losing each other's updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Concurrency {
    /// The store's own conditional writes (`If-Match` / `If-None-Match`), probed at start.
    ConditionalWrites,
    /// A PostgreSQL advisory lock on the primary serialises writers.
    PostgresAdvisoryLock,
    /// No protection: the operator guarantees one writer at a time (e.g. one instance).
    SingleWriter,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StateConfig {
    pub backend: StateBackend,
    pub concurrency: Concurrency,
    /// How many read-decide-write rounds an update may lose before giving up.
    pub max_attempts: u32,
    /// Directory of the local backend.
    pub local_dir: PathBuf,
    pub s3: S3Config,
    pub postgres_lock: PgLockConfig,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            backend: StateBackend::Local,
            concurrency: Concurrency::ConditionalWrites,
            max_attempts: 16,
            local_dir: PathBuf::from("/var/lib/pgsurge/state"),
            s3: S3Config::default(),
            postgres_lock: PgLockConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    /// `https://host[:port]`; empty means AWS S3's regional endpoint.
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    /// Key prefix: documents live at `<prefix>/<cluster>/state.json`.
    pub prefix: String,
    /// Path-style addressing (`endpoint/bucket/key`): Ceph RGW, MinIO, most private clouds.
    pub path_style: bool,
    /// Allow plain `http://` endpoints (loopback tests, a trusted private network).
    pub allow_http: bool,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<Secret>,
    /// Temporary-credential token (`x-amz-security-token`).
    pub session_token: Option<Secret>,
    /// Per-request timeout.
    pub timeout_secs: u64,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            endpoint: String::new(),
            region: "us-east-1".into(),
            bucket: String::new(),
            prefix: "pgsurge".into(),
            path_style: true,
            allow_http: false,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            timeout_secs: 10,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PgLockConfig {
    /// libpq-style connection string to the primary (key=value or postgres:// URL).
    pub conninfo: Option<Secret>,
    /// How long a writer waits for the lock before giving up.
    pub timeout_secs: u64,
}

impl Default for PgLockConfig {
    fn default() -> Self {
        PgLockConfig {
            conninfo: None,
            timeout_secs: 10,
        }
    }
}

impl StateConfig {
    /// Checks for `[state]` that types alone cannot express (keys relative to it).
    pub fn validate(&self) -> Checked {
        let s = self;
        in_range("max_attempts", s.max_attempts, 1..=1000)?;
        if s.backend == StateBackend::Local {
            non_empty("local_dir", &s.local_dir)?;
        }
        if s.backend == StateBackend::S3 {
            let c = &s.s3;
            if c.bucket.is_empty() {
                return Err(invalid("s3.bucket", "is required with backend = \"s3\""));
            }
            if !c.endpoint.is_empty() {
                let lower = c.endpoint.to_ascii_lowercase();
                if lower.starts_with("http://") && !c.allow_http {
                    return Err(invalid(
                        "s3.endpoint",
                        "is plain http://; set state.s3.allow_http = true to allow it",
                    ));
                }
                if !lower.starts_with("http://") && !lower.starts_with("https://") {
                    return Err(invalid(
                        "s3.endpoint",
                        format!("{:?} is not an http(s) URL", c.endpoint),
                    ));
                }
            }
            if c.prefix.starts_with('/') || c.prefix.ends_with('/') || c.prefix.contains("..") {
                return Err(invalid(
                    "s3.prefix",
                    format!(
                        "{:?} must not start or end with '/' or contain '..'",
                        c.prefix
                    ),
                ));
            }
            if c.access_key_id.is_some() != c.secret_access_key.is_some() {
                return Err(invalid(
                    "s3.secret_access_key",
                    "access_key_id and secret_access_key go together",
                ));
            }
            in_range("s3.timeout_secs", c.timeout_secs, 1..=300)?;
        }
        if s.concurrency == Concurrency::PostgresAdvisoryLock {
            if s.backend != StateBackend::S3 {
                return Err(invalid(
                    "concurrency",
                    "postgres-advisory-lock applies to backend = \"s3\" only (local and memory always compare-and-swap)",
                ));
            }
            if s.postgres_lock
                .conninfo
                .as_ref()
                .is_none_or(Secret::is_empty)
            {
                return Err(invalid(
                    "postgres_lock.conninfo",
                    "is required with concurrency = \"postgres-advisory-lock\"",
                ));
            }
        }
        in_range(
            "postgres_lock.timeout_secs",
            s.postgres_lock.timeout_secs,
            1..=300,
        )
    }
}
