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
    pub openstack: OpenStackConfig,
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

/// The OpenStack provider (Nova + Cinder, optionally Designate). Credentials never live
/// here: they come from `clouds.yaml` (`cloud`), from `OS_*` environment variables like the
/// `openstack` CLI, or from the token FunctionGraph hands a function with an agency.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpenStackConfig {
    /// Cloud name in clouds.yaml; empty = read `OS_*` environment variables.
    pub cloud: String,
    /// An extra clouds.yaml (besides ./clouds.yaml, ~/.config/openstack/, /etc/openstack/).
    pub clouds_yaml: Option<PathBuf>,
    /// Overrides the cloud's `region_name`.
    pub region: Option<String>,
    /// Use the host's temporary token (FunctionGraph agency: `X-CFF-Auth-Token`) when it
    /// passes one, scoped to `project_id`, against `auth_url`.
    pub use_host_token: bool,
    /// Keystone URL for `use_host_token` (e.g. `https://iam.ru-moscow-1.hc.sbercloud.ru/v3`).
    pub auth_url: Option<String>,
    /// Project for `use_host_token`.
    pub project_id: Option<String>,
    /// Flavor (name or id) for surge replicas. Required to create servers.
    pub flavor: String,
    /// Network (name or id) for the replicas' port; empty = no network.
    pub network: String,
    /// Security groups (names) for the replicas.
    pub security_groups: Vec<String>,
    /// Key pair name; empty = none.
    pub key_name: String,
    /// Server group name; created with `server_group_policy` if missing; empty = none.
    pub server_group: String,
    /// `anti-affinity`, `soft-anti-affinity`, `affinity` or `soft-affinity`.
    pub server_group_policy: String,
    /// Availability zone for servers; empty = the cloud's choice. Volumes always go to the
    /// AZ of the snapshot they are cloned from.
    pub availability_zone: String,
    /// Volume type for cloned volumes; empty = the snapshot's.
    pub volume_type: String,
    /// Delete the data volume together with its server (Nova's delete_on_termination).
    pub delete_on_termination: bool,
    /// Port PostgreSQL listens on in the replicas (the endpoint pgsurge registers).
    pub pg_port: u16,
    /// One HTTP request's time limit.
    pub request_timeout_secs: u64,
    /// TCP connect time limit.
    pub connect_timeout_secs: u64,
    /// Retries of a call that failed with 5xx, 429 or a connection error.
    pub max_retries: u32,
    /// Designate zone (`example.org.`) for one A record per replica; empty = no DNS.
    pub dns_zone: String,
    /// TTL of those records.
    pub dns_ttl: u32,
}

impl Default for OpenStackConfig {
    fn default() -> Self {
        OpenStackConfig {
            cloud: String::new(),
            clouds_yaml: None,
            region: None,
            use_host_token: false,
            auth_url: None,
            project_id: None,
            flavor: String::new(),
            network: String::new(),
            security_groups: Vec::new(),
            key_name: String::new(),
            server_group: String::new(),
            server_group_policy: "anti-affinity".into(),
            availability_zone: String::new(),
            volume_type: String::new(),
            delete_on_termination: false,
            pg_port: 5432,
            request_timeout_secs: 30,
            connect_timeout_secs: 5,
            max_retries: 4,
            dns_zone: String::new(),
            dns_ttl: 60,
        }
    }
}

fn validate_openstack(o: &OpenStackConfig) -> Result<(), ConfigError> {
    const POLICIES: [&str; 4] = [
        "anti-affinity",
        "soft-anti-affinity",
        "affinity",
        "soft-affinity",
    ];
    if !POLICIES.contains(&o.server_group_policy.as_str()) {
        return Err(invalid(
            "openstack.server_group_policy",
            format!("{:?} is not one of {POLICIES:?}", o.server_group_policy),
        ));
    }
    if o.pg_port == 0 {
        return Err(invalid("openstack.pg_port", "must not be 0"));
    }
    if !(1..=600).contains(&o.request_timeout_secs) {
        return Err(invalid(
            "openstack.request_timeout_secs",
            format!("{} is outside 1..=600", o.request_timeout_secs),
        ));
    }
    if !(1..=120).contains(&o.connect_timeout_secs) {
        return Err(invalid(
            "openstack.connect_timeout_secs",
            format!("{} is outside 1..=120", o.connect_timeout_secs),
        ));
    }
    if o.max_retries > 10 {
        return Err(invalid(
            "openstack.max_retries",
            format!("{} is more than 10", o.max_retries),
        ));
    }
    if let Some(i) = o.security_groups.iter().position(|g| g.trim().is_empty()) {
        return Err(invalid(
            &format!("openstack.security_groups[{i}]"),
            "is empty",
        ));
    }
    if !o.dns_zone.is_empty() && !o.dns_zone.ends_with('.') {
        return Err(invalid(
            "openstack.dns_zone",
            format!(
                "{:?} must be a fully qualified name ending in '.'",
                o.dns_zone
            ),
        ));
    }
    if !(1..=86400).contains(&o.dns_ttl) {
        return Err(invalid(
            "openstack.dns_ttl",
            format!("{} is outside 1..=86400", o.dns_ttl),
        ));
    }
    if o.use_host_token && o.auth_url.as_deref().unwrap_or("").is_empty() {
        return Err(invalid(
            "openstack.auth_url",
            "is required with openstack.use_host_token = true",
        ));
    }
    if o.use_host_token && o.project_id.as_deref().unwrap_or("").is_empty() {
        return Err(invalid(
            "openstack.project_id",
            "is required with openstack.use_host_token = true",
        ));
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
        validate_openstack(&self.openstack)?;
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
            (
                "[openstack]\nserver_group_policy = \"spread\"",
                "openstack.server_group_policy",
            ),
            (
                "[openstack]\ndns_zone = \"example.org\"",
                "openstack.dns_zone",
            ),
            (
                "[openstack]\nsecurity_groups = [\"\"]",
                "openstack.security_groups[0]",
            ),
            ("[openstack]\nuse_host_token = true", "openstack.auth_url"),
            (
                "[openstack]\nrequest_timeout_secs = 0",
                "openstack.request_timeout_secs",
            ),
        ];
        for (text, key) in cases {
            let err = Config::from_toml(text).unwrap_err().to_string();
            assert!(err.contains(key), "{text:?} gave {err}");
        }
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
