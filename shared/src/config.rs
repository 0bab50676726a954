//! Configuration: one typed document, from a TOML file plus environment overrides.
//!
//! Loaded and validated before any side effect; every error names the key at fault.
//!
//! Sources, later wins:
//! 1. built-in defaults (every key has one, so an empty file is valid);
//! 2. the TOML file given by `--config` or `PGSURGE_CONFIG`;
//! 3. environment variables `PGSURGE_<SECTION>__<KEY>` (double underscore between
//!    levels), e.g. `PGSURGE_AUTH__TOKEN`, `PGSURGE_RUNTIME__TIMEOUT_SECS=120`.
//!    Values are read as TOML scalars when they parse as one, else as strings.
//!
//! The documented example is `config/pgsurge.example.toml`; a test loads it.

use crate::secret::Secret;
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    /// A key has the wrong type, is unknown, or fails validation.
    #[error("`{key}`: {message}")]
    Key { key: String, message: String },
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Key {
        key: key.to_string(),
        message: message.into(),
    }
}

/// The whole configuration. Sections are added as the library grows.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub cluster: ClusterConfig,
    pub runtime: RuntimeConfig,
    pub auth: AuthConfig,
    pub postgres: PostgresConfig,
    pub local: LocalConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// Short name used in every resource name (`pgsurge-<name>-<replica>`) and state key.
    pub name: String,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            name: "main".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Largest accepted event body; larger ones get 413 / PayloadTooLarge.
    pub max_body_bytes: usize,
    /// Deadline for hosts that do not give one (CLI, HTTP, FunctionGraph without RUNTIME_TIMEOUT).
    pub timeout_secs: u64,
    /// HTTP host port when neither `--port` nor `PORT` is given (FunctionGraph HTTP functions use 8000).
    pub http_port: u16,
    /// HTTP host bind address.
    pub http_bind: String,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            max_body_bytes: 256 * 1024,
            timeout_secs: 60,
            http_port: 8000,
            http_bind: "127.0.0.1".into(),
        }
    }
}

/// How webhooks that arrive over HTTP (HTTP host, API-gateway envelopes) prove who sent them.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Shared token expected in `token_header` (or `Authorization: Bearer <token>`).
    pub token: Option<Secret>,
    /// Header that carries the token.
    pub token_header: String,
    /// Accept unauthenticated HTTP webhooks. Only for a closed lab network.
    pub allow_unauthenticated: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            token: None,
            token_header: "x-pgsurge-token".into(),
            allow_unauthenticated: false,
        }
    }
}

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
    /// `sslmode` for replication and readiness connections (readiness speaks plain TCP:
    /// `disable`, `allow` or `prefer`).
    pub sslmode: String,
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
            connect_timeout_secs: 5,
            max_replay_lag_bytes: 16 * 1024 * 1024,
            max_replay_lag_secs: 10,
        }
    }
}

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
        }
    }
}

/// A PostgreSQL role or OS user name we are willing to put into a conninfo string or a
/// command line unquoted.
fn plain_name(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

fn validate_postgres(p: &PostgresConfig) -> Result<(), ConfigError> {
    let host_ok = !p.primary_host.is_empty()
        && p.primary_host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'));
    if !host_ok {
        return Err(invalid(
            "postgres.primary_host",
            format!("{:?} is not a host name or IP address", p.primary_host),
        ));
    }
    if p.primary_port == 0 {
        return Err(invalid("postgres.primary_port", "must not be 0"));
    }
    if !plain_name(&p.dbname) {
        return Err(invalid(
            "postgres.dbname",
            format!(
                "{:?} must be 1-63 chars of a-z, 0-9, '_', '-', '.'",
                p.dbname
            ),
        ));
    }
    if !plain_name(&p.replication_user) {
        return Err(invalid(
            "postgres.replication_user",
            format!(
                "{:?} must be 1-63 chars of a-z, 0-9, '_', '-', '.'",
                p.replication_user
            ),
        ));
    }
    if let Some(pw) = &p.password {
        if pw.is_empty() || pw.expose().contains(['\0', '\n', '\r']) {
            return Err(invalid(
                "postgres.password",
                "must be non-empty and contain no NUL or line breaks",
            ));
        }
    }
    if !matches!(p.sslmode.as_str(), "disable" | "allow" | "prefer") {
        return Err(invalid(
            "postgres.sslmode",
            format!("{:?} must be disable, allow or prefer", p.sslmode),
        ));
    }
    if !(1..=120).contains(&p.connect_timeout_secs) {
        return Err(invalid(
            "postgres.connect_timeout_secs",
            format!("{} is outside 1..=120", p.connect_timeout_secs),
        ));
    }
    if p.max_replay_lag_bytes > 1 << 40 {
        return Err(invalid(
            "postgres.max_replay_lag_bytes",
            format!("{} is above 1 TiB", p.max_replay_lag_bytes),
        ));
    }
    if p.max_replay_lag_secs > 86_400 {
        return Err(invalid(
            "postgres.max_replay_lag_secs",
            format!("{} is above one day", p.max_replay_lag_secs),
        ));
    }
    Ok(())
}

fn validate_local(l: &LocalConfig) -> Result<(), ConfigError> {
    if !l.pool_dir.is_absolute() {
        return Err(invalid(
            "local.pool_dir",
            format!("{} is not an absolute path", l.pool_dir.display()),
        ));
    }
    if l.port_first < 1024 {
        return Err(invalid(
            "local.port_first",
            format!("{} is below 1024", l.port_first),
        ));
    }
    if l.port_last < l.port_first {
        return Err(invalid(
            "local.port_last",
            format!(
                "{} is below local.port_first ({})",
                l.port_last, l.port_first
            ),
        ));
    }
    if l.listen_host.parse::<std::net::IpAddr>().is_err() {
        return Err(invalid(
            "local.listen_host",
            format!("{:?} is not an IP address", l.listen_host),
        ));
    }
    if !l.pg_bin.is_absolute() {
        return Err(invalid(
            "local.pg_bin",
            format!("{} is not an absolute path", l.pg_bin.display()),
        ));
    }
    if !plain_name(&l.os_user) {
        return Err(invalid(
            "local.os_user",
            format!("{:?} is not a user name", l.os_user),
        ));
    }
    if l.bootstrap_script.as_os_str().is_empty() {
        return Err(invalid("local.bootstrap_script", "must not be empty"));
    }
    for (key, v) in [
        ("local.start_timeout_secs", l.start_timeout_secs),
        ("local.stop_timeout_secs", l.stop_timeout_secs),
    ] {
        if !(1..=3600).contains(&v) {
            return Err(invalid(key, format!("{v} is outside 1..=3600")));
        }
    }
    Ok(())
}

impl Config {
    /// Load from an optional file plus `PGSURGE_*` environment variables, then validate.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let mut doc = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_path_buf(),
                    source,
                })?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError::Syntax {
                        path: p.to_path_buf(),
                        message: e.message().to_string(),
                    })?
            }
            None => toml::Table::new(),
        };
        apply_env(&mut doc, std::env::vars())?;
        Config::from_table(doc)
    }

    /// Parse and validate a TOML document (no environment).
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let doc = text
            .parse::<toml::Table>()
            .map_err(|e| ConfigError::Syntax {
                path: "<inline>".into(),
                message: e.message().to_string(),
            })?;
        Config::from_table(doc)
    }

    fn from_table(doc: toml::Table) -> Result<Config, ConfigError> {
        let config: Config =
            serde_path_to_error::deserialize(toml::Value::Table(doc)).map_err(|e| {
                let key = e.path().to_string();
                invalid(&key, e.into_inner().to_string())
            })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks that types alone cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let name = &self.cluster.name;
        let name_ok = (1..=32).contains(&name.len())
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !name_ok {
            return Err(invalid(
                "cluster.name",
                format!("{name:?} must be 1-32 chars of a-z, 0-9, '-', starting with a letter"),
            ));
        }
        let r = &self.runtime;
        if !(1024..=10 * 1024 * 1024).contains(&r.max_body_bytes) {
            return Err(invalid(
                "runtime.max_body_bytes",
                format!("{} is outside 1024..=10485760", r.max_body_bytes),
            ));
        }
        if !(1..=900).contains(&r.timeout_secs) {
            return Err(invalid(
                "runtime.timeout_secs",
                format!("{} is outside 1..=900", r.timeout_secs),
            ));
        }
        if r.http_bind.parse::<std::net::IpAddr>().is_err() && r.http_bind != "localhost" {
            return Err(invalid(
                "runtime.http_bind",
                format!("{:?} is not an IP address", r.http_bind),
            ));
        }
        let a = &self.auth;
        if let Some(t) = &a.token {
            if t.expose().len() < 16 {
                return Err(invalid("auth.token", "must be at least 16 characters"));
            }
        }
        if a.token_header.is_empty()
            || !a
                .token_header
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(invalid(
                "auth.token_header",
                format!("{:?} is not a valid header name", a.token_header),
            ));
        }
        validate_postgres(&self.postgres)?;
        validate_local(&self.local)?;
        Ok(())
    }
}

const ENV_PREFIX: &str = "PGSURGE_";

/// Apply `PGSURGE_<SECTION>__<KEY>=value` overrides onto the document.
fn apply_env(
    doc: &mut toml::Table,
    vars: impl Iterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    for (var, raw) in vars {
        let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if rest == "CONFIG" {
            continue;
        }
        let path: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
        if path.len() < 2 || path.iter().any(String::is_empty) {
            return Err(ConfigError::Env {
                var,
                message: "expected PGSURGE_<SECTION>__<KEY>".into(),
            });
        }
        let value = format!("v = {raw}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or(toml::Value::String(raw));
        let (leaf, parents) = path.split_last().expect("len >= 2");
        let mut table = &mut *doc;
        for p in parents {
            let entry = table
                .entry(p.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            table = match entry {
                toml::Value::Table(t) => t,
                _ => {
                    return Err(ConfigError::Env {
                        var,
                        message: format!("`{p}` is not a section"),
                    })
                }
            };
        }
        table.insert(leaf.clone(), value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::from_toml("").unwrap();
    }

    #[test]
    fn example_config_loads() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../config/pgsurge.example.toml"
        );
        let text = std::fs::read_to_string(path).unwrap();
        Config::from_toml(&text).unwrap();
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("[runtime]\ntimeout_secs = \"soon\"", "runtime.timeout_secs"),
            ("[runtime]\ntimeout_secs = 0", "runtime.timeout_secs"),
            ("[runtime]\nmax_body_byte = 10", "runtime"),
            ("[cluster]\nname = \"Bad Name\"", "cluster.name"),
            ("[auth]\ntoken = \"short\"", "auth.token"),
            ("[postgres]\nprimary_port = 0", "postgres.primary_port"),
            (
                "[postgres]\nreplication_user = \"a b\"",
                "postgres.replication_user",
            ),
            ("[postgres]\nsslmode = \"verify-full\"", "postgres.sslmode"),
            (
                "[postgres]\nmax_replay_lag_secs = -1",
                "postgres.max_replay_lag_secs",
            ),
            ("[postgres]\npassword = \"\"", "postgres.password"),
            ("[local]\npool_dir = \"pool\"", "local.pool_dir"),
            (
                "[local]\nport_first = 7000\nport_last = 6999",
                "local.port_last",
            ),
            ("[local]\nclone = \"maybe\"", "local.clone"),
            ("[local]\nlisten_host = \"localhost\"", "local.listen_host"),
        ];
        for (text, key) in cases {
            let err = Config::from_toml(text).unwrap_err().to_string();
            assert!(err.contains(key), "{text:?} gave {err}");
        }
    }

    #[test]
    fn postgres_password_stays_out_of_errors_and_debug() {
        let err = Config::from_toml("[postgres]\npassword = \"zq\\nxv\"")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("postgres.password") && !err.contains("zq"),
            "{err}"
        );
        let c = Config::from_toml("[postgres]\npassword = \"s3cret-pw\"").unwrap();
        assert!(!format!("{c:?}").contains("s3cret-pw"));
    }

    #[test]
    fn secrets_stay_out_of_errors() {
        let err = Config::from_toml("[auth]\ntoken = \"tiny\"")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("tiny"), "{err}");
    }

    #[test]
    fn env_overrides_win_and_are_typed() {
        let mut doc: toml::Table = "[runtime]\ntimeout_secs = 5".parse().unwrap();
        let vars = [
            ("PGSURGE_RUNTIME__TIMEOUT_SECS", "120"),
            ("PGSURGE_AUTH__TOKEN", "0123456789abcdef0123"),
            ("PGSURGE_CONFIG", "/ignored"),
            ("OTHER", "x"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        apply_env(&mut doc, vars.into_iter()).unwrap();
        let c = Config::from_table(doc).unwrap();
        assert_eq!(c.runtime.timeout_secs, 120);
        assert_eq!(c.auth.token.unwrap().expose(), "0123456789abcdef0123");
    }

    #[test]
    fn bad_env_names_are_rejected() {
        let mut doc = toml::Table::new();
        let err = apply_env(
            &mut doc,
            [("PGSURGE_TIMEOUT".to_string(), "1".to_string())].into_iter(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("PGSURGE_TIMEOUT"));
    }
}
