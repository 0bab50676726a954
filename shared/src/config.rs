//! Configuration: one typed document, from a TOML file plus environment overrides.
//!
//! Loaded and validated before any side effect; every error names the key at fault.
//!
//! Sources, later wins:
//! 1. built-in defaults (every key has one, so an empty file is valid);
//! 2. the TOML file given by `--config` or `PGSURGE_CONFIG`;
//! 3. environment variables `PGSURGE_<SECTION>__<KEY>` (double underscore between
//!    levels), e.g. `PGSURGE_AUTH__TOKEN`, `PGSURGE_RUNTIME__TIMEOUT_SECS=120`.
//!    A key that takes a string (tokens, passwords, keys, names, paths) gets the value
//!    verbatim; any other key reads it as a TOML value (`120`, `true`, `["a", "b"]`).
//!
//! Each section's type and its checks live with the module that uses it
//! (`balancer::HaproxyConfig`, `postgres::PostgresConfig`, ...); a section validates
//! with keys relative to itself and this module, the only one that knows them all,
//! assembles the sections, loads the sources and puts each error's section in front of
//! its key ([`ConfigError::within`]). Nothing below the composition root imports
//! [`Config`]: a module takes its own section.
//!
//! The documented example is `config/pgsurge.example.toml`; a test loads it.

pub use crate::check::ConfigError;

use crate::balancer::HaproxyConfig;
use crate::check::{invalid, Checked};
use crate::cloud::local::LocalConfig;
use crate::cloud::openstack::OpenStackConfig;
use crate::cloud::{CloudConfig, CloudProvider};
use crate::events::{AuthConfig, ClusterConfig};
use crate::metrics::MetricsConfig;
use crate::ops::OpsConfig;
use crate::policy::PolicyConfig;
use crate::postgres::PostgresConfig;
use crate::runtime::RuntimeConfig;
use crate::state::StateConfig;
use serde::Deserialize;
use std::path::Path;

/// The whole configuration: one section per module.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub cluster: ClusterConfig,
    pub runtime: RuntimeConfig,
    pub auth: AuthConfig,
    pub metrics: MetricsConfig,
    pub state: StateConfig,
    pub policy: PolicyConfig,
    pub haproxy: HaproxyConfig,
    pub postgres: PostgresConfig,
    pub local: LocalConfig,
    pub ops: OpsConfig,
    pub cloud: CloudConfig,
    pub openstack: OpenStackConfig,
    pub agent: crate::agent::AgentConfig,
    pub node: crate::node::NodeConfig,
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
        let mut config: Config = serde_path_to_error::deserialize(toml::Value::Table(doc))
            .map_err(|e| {
                let key = e.path().to_string();
                invalid(&key, e.into_inner().to_string())
            })?;
        // The alarm limits allow the flavor servers boot with anyway (see PolicyConfig).
        config.policy.configured_flavor = (config.cloud.provider == CloudProvider::Openstack)
            .then(|| config.openstack.flavor.clone());
        config.validate()?;
        Ok(config)
    }

    /// Checks that types alone cannot express: each section's own, then the ones
    /// across sections.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let sections: [(&str, Checked); 12] = [
            ("cluster", self.cluster.validate()),
            ("runtime", self.runtime.validate()),
            ("metrics", self.metrics.validate()),
            ("auth", self.auth.validate()),
            ("state", self.state.validate()),
            ("policy", self.policy.validate()),
            ("postgres", self.postgres.validate()),
            ("local", self.local.validate()),
            ("ops", self.ops.validate()),
            ("openstack", self.openstack.validate()),
            ("haproxy", self.haproxy.validate()),
            ("agent", self.agent.validate()),
        ];
        for (section, checked) in sections {
            checked.map_err(|e| e.within(section))?;
        }
        // Checked here, not at the first boot: by then scale-up has already taken a
        // snapshot and cloned volumes it would have to roll back.
        if self.cloud.provider == CloudProvider::Openstack && self.openstack.flavor.is_empty() {
            return Err(invalid(
                "openstack.flavor",
                "is required with cloud.provider = \"openstack\" (the flavor surge replicas boot with)",
            ));
        }
        if self.cloud.provider == CloudProvider::Openstack && self.openstack.image.is_empty() {
            return Err(invalid(
                "openstack.image",
                "is required with cloud.provider = \"openstack\" (the replica image surge servers boot from)",
            ));
        }
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
        // Not configuration: the config file path, and the test-only failpoint.
        if rest == "CONFIG" || rest == "FAILPOINT" {
            continue;
        }
        let path: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
        if path.len() < 2 || path.iter().any(String::is_empty) {
            return Err(ConfigError::Env {
                var,
                message: "expected PGSURGE_<SECTION>__<KEY>".into(),
            });
        }
        // A string key takes the value verbatim: read as TOML, the token `0x10` became
        // the integer 16, `"abc"` lost its quotes and `a #b` its comment — silently, and
        // for secrets, the wrong secret.
        let value = if takes_string(&path, &raw) {
            toml::Value::String(raw)
        } else {
            format!("v = {raw}")
                .parse::<toml::Table>()
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or(toml::Value::String(raw))
        };
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

/// Whether the key at `path` takes `raw` as a string: a one-key document holding it
/// there deserialises. Asking the types themselves keeps this right for every key,
/// including ones added later, without a list to keep in step.
fn takes_string(path: &[String], raw: &str) -> bool {
    let mut value = toml::Value::String(raw.to_string());
    for p in path.iter().rev() {
        let mut t = toml::Table::new();
        t.insert(p.clone(), value);
        value = toml::Value::Table(t);
    }
    Config::deserialize(value).is_ok()
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

    /// `{:#?}` of a config, flattened to `section.key` → value (list items and the
    /// inside of `Some(..)` joined under the key that holds them). Debug is the one view
    /// every config type already has; its field names are the TOML keys.
    fn debug_leaves(config: &Config) -> std::collections::BTreeMap<String, String> {
        let text = format!("{config:#?}");
        // (key, the path its value is recorded under when it is a list or an option)
        let mut stack: Vec<(String, Option<String>)> = Vec::new();
        let mut out = std::collections::BTreeMap::<String, String>::new();
        for line in text.lines() {
            let t = line.trim();
            let t = t.strip_suffix(',').unwrap_or(t);
            if t.starts_with(['}', ']', ')']) {
                if let Some((_, Some(path))) = stack.pop() {
                    out.entry(path).or_default().push_str(&format!(" {t}"));
                }
                continue;
            }
            let (name, rest) = match t.split_once(": ") {
                Some((n, r)) if n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') => {
                    (Some(n), r)
                }
                _ => (None, t),
            };
            let mut path: Vec<&str> = stack.iter().map(|(k, _)| k.as_str()).collect();
            path.extend(name);
            let path = path
                .into_iter()
                .filter(|p| !p.is_empty())
                .collect::<Vec<_>>()
                .join(".");
            if rest.ends_with(['{', '[', '(']) {
                // A struct's type name says nothing by itself; an opened list or option
                // is recorded so that `[]` vs `[..]` and `None` vs `Some` differ.
                let recorded = (!rest.ends_with('{')).then(|| path.clone());
                if recorded.is_some() {
                    out.entry(path).or_default().push_str(rest);
                }
                stack.push((name.unwrap_or("").to_string(), recorded));
            } else if !path.is_empty() {
                let v = out.entry(path).or_default();
                if !v.is_empty() {
                    v.push(' ');
                }
                v.push_str(rest);
            }
        }
        out
    }

    /// The keys `config/pgsurge.example.toml` sets or shows commented out
    /// (`# key = ...`, `# [[section]]`), as `section.key`.
    fn example_mentions(text: &str) -> std::collections::BTreeSet<String> {
        let mut section = String::new();
        let mut out = std::collections::BTreeSet::new();
        for line in text.lines() {
            let active = line.trim();
            let t = active.trim_start_matches('#').trim();
            if let Some(h) = t.strip_prefix('[') {
                let h = h.trim_matches(|c| c == '[' || c == ']').to_string();
                out.insert(h.clone());
                if !active.starts_with('#') {
                    section = h;
                }
            } else if let Some((k, _)) = t.split_once('=') {
                let k = k.trim();
                if !k.is_empty() && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                    out.insert(format!("{section}.{k}"));
                }
            }
        }
        out
    }

    /// The example claims "every key, with its default": every value it sets is the
    /// code's default, and every key of `Config` is in it (set, or commented out when
    /// it has no default value to show). Fails naming the key when a default changes
    /// in one place only.
    #[test]
    fn example_config_is_every_key_with_its_default() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../config/pgsurge.example.toml"
        );
        let text = std::fs::read_to_string(path).unwrap();
        let example = debug_leaves(&Config::from_toml(&text).unwrap());
        let default = debug_leaves(&Config::default());
        let mut wrong = Vec::new();
        for (key, d) in &default {
            match example.get(key) {
                Some(e) if e != d => wrong.push(format!(
                    "`{key}`: the example gives {e}, Config::default() has {d}"
                )),
                None => wrong.push(format!(
                    "`{key}`: in Config::default() ({d}), not in the example's config"
                )),
                _ => {}
            }
        }
        for (key, e) in &example {
            if !default.contains_key(key) {
                wrong.push(format!(
                    "`{key}`: the example gives {e}, Config::default() has none"
                ));
            }
        }
        let mentioned = example_mentions(&text);
        // Filled in from other keys when the config loads (`#[serde(skip)]`), not keys.
        const DERIVED: &[&str] = &["policy.configured_flavor"];
        for key in default.keys().filter(|k| !DERIVED.contains(&k.as_str())) {
            if !mentioned.contains(key) {
                wrong.push(format!(
                    "`{key}`: not in config/pgsurge.example.toml (add it, commented out if \
                     it has no default to show)"
                ));
            }
        }
        assert!(
            wrong.is_empty(),
            "config/pgsurge.example.toml disagrees with the code:\n{}",
            wrong.join("\n")
        );
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("[runtime]\ntimeout_secs = \"soon\"", "runtime.timeout_secs"),
            ("[runtime]\ntimeout_secs = 0", "runtime.timeout_secs"),
            ("[runtime]\nmax_body_byte = 10", "runtime"),
            ("[runtime]\nheader_timeout_secs = 0", "runtime.header_timeout_secs"),
            ("[runtime]\nbody_timeout_secs = 901", "runtime.body_timeout_secs"),
            ("[runtime]\nidle_timeout_secs = 0", "runtime.idle_timeout_secs"),
            ("[runtime]\nmax_connections = 0", "runtime.max_connections"),
            ("[runtime]\nmetrics_listen = \"9464\"", "runtime.metrics_listen"),
            ("[postgres]\nsslmode = \"sometimes\"", "postgres.sslmode"),
            ("[postgres]\nsslmode = \"verify-ca\"", "postgres.sslmode"),
            ("[postgres]\nreplica_sslmode = \"verify-full\"", "postgres.replica_sslmode"),
            ("[postgres]\nsslrootcert = \"/nonexistent/ca.pem\"", "postgres.sslrootcert"),
            (
                "[postgres]\nprimary_conninfo_sslrootcert = \"ca.pem\"",
                "postgres.primary_conninfo_sslrootcert",
            ),
            (
                "[haproxy]\ndataplane_password = \"pw\"\n[[haproxy.nodes]]\nname = \"n\"\n\
                 dataplane_url = \"https://h:5555\"\ndataplane_ca_file = \"/nonexistent\"",
                "haproxy.nodes[0].dataplane_ca_file",
            ),
            ("[cluster]\nname = \"Bad Name\"", "cluster.name"),
            ("[auth]\ntoken = \"short\"", "auth.token"),
            (
                "[auth]\ncallback_secret = \"0123456789abcdef0123456789abcde\"",
                "auth.callback_secret",
            ),
            ("[metrics]\npush_url = \"ftp://x\"", "metrics.push_url"),
            (
                "[metrics]\npush_format = \"graphite\"",
                "metrics.push_format",
            ),
            ("[haproxy]\nweight = 300", "haproxy.weight"),
            ("[cloud]\nprovider = \"openstack\"", "openstack.flavor"),
            (
                "[cloud]\nprovider = \"openstack\"\n[openstack]\nflavor = \"f\"",
                "openstack.image",
            ),
            ("[openstack]\nimage = \" img\"", "openstack.image"),
            ("[haproxy]\nbackend = \"a b\"", "haproxy.backend"),
            ("[haproxy]\ndrain_deadline_secs = 0", "haproxy.drain_deadline_secs"),
            (
                "[[haproxy.nodes]]\nname = \"a\"\nruntime_api = \"nowhere\"",
                "haproxy.nodes[0].runtime_api",
            ),
            (
                "[[haproxy.nodes]]\nname = \"a\"",
                "haproxy.nodes[0].runtime_api",
            ),
            (
                "[[haproxy.nodes]]\nname = \"a\"\nruntime_api = \"/s\"\n[[haproxy.nodes]]\nname = \"a\"\nruntime_api = \"/t\"",
                "haproxy.nodes[1].name",
            ),
            (
                "[[haproxy.nodes]]\nname = \"a\"\ndataplane_url = \"http://h:5555\"",
                "haproxy.nodes[0].dataplane_password",
            ),
            (
                "[[haproxy.nodes]]\nname = \"a\"\ndataplane_url = \"http://u:p@h:5555\"\ndataplane_password = \"x\"",
                "haproxy.nodes[0].dataplane_url",
            ),
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
    fn haproxy_password_from_the_environment_reaches_every_node() {
        let mut doc: toml::Table =
            "[[haproxy.nodes]]\nname = \"a\"\ndataplane_url = \"http://127.0.0.1:5555\""
                .parse()
                .unwrap();
        let vars = [("PGSURGE_HAPROXY__DATAPLANE_PASSWORD", "s3cret-pass")]
            .map(|(k, v)| (k.to_string(), v.to_string()));
        apply_env(&mut doc, vars.into_iter()).unwrap();
        let c = Config::from_table(doc).unwrap();
        assert_eq!(
            c.haproxy.dataplane_password.unwrap().expose(),
            "s3cret-pass"
        );
        assert!(!format!("{:?}", c.haproxy.nodes).contains("s3cret"));
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

    /// Secrets (and every other string key) from the environment are taken verbatim:
    /// `0x10` was parsed as TOML and became 16, `true` a boolean (then refused), `1e3`
    /// a float, `"quoted"` lost its quotes and ` #...` was cut as a comment.
    #[test]
    fn string_keys_from_the_environment_are_literal() {
        let values = [
            "0x10",
            "true",
            "1e3",
            "\"quoted\"",
            "'single'",
            "pass #not-a-comment",
            "[1, 2]",
            "1979-05-27",
        ];
        for raw in values {
            // Long enough for the token and HMAC minimum lengths.
            let long = format!("{raw}{}", "-".repeat(32));
            let vars = [
                ("PGSURGE_AUTH__TOKEN", long.as_str()),
                ("PGSURGE_AUTH__HMAC_SECRET", long.as_str()),
                ("PGSURGE_POSTGRES__PASSWORD", raw),
                ("PGSURGE_HAPROXY__DATAPLANE_PASSWORD", raw),
                ("PGSURGE_STATE__S3__SECRET_ACCESS_KEY", raw),
                ("PGSURGE_STATE__S3__ACCESS_KEY_ID", raw),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()));
            let mut doc = toml::Table::new();
            apply_env(&mut doc, vars.into_iter()).unwrap();
            let c = Config::from_table(doc).unwrap_or_else(|e| panic!("{raw:?}: {e}"));
            assert_eq!(c.auth.token.unwrap().expose(), long, "{raw:?}");
            assert_eq!(c.auth.hmac_secret.unwrap().expose(), long, "{raw:?}");
            assert_eq!(c.postgres.password.unwrap().expose(), raw, "{raw:?}");
            assert_eq!(c.haproxy.dataplane_password.unwrap().expose(), raw);
            assert_eq!(c.state.s3.access_key_id.as_deref(), Some(raw));
            assert_eq!(c.state.s3.secret_access_key.unwrap().expose(), raw);
        }
        // Not only secrets: any string key (a name, a path) is verbatim too...
        let vars = [
            ("PGSURGE_METRICS__JOB", "1e3"),
            ("PGSURGE_LOCAL__POOL_DIR", "/pool #1"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let mut doc = toml::Table::new();
        apply_env(&mut doc, vars.into_iter()).unwrap();
        assert_eq!(doc["metrics"]["job"].as_str(), Some("1e3"));
        assert_eq!(doc["local"]["pool_dir"].as_str(), Some("/pool #1"));
        // ...while numbers, booleans and lists keep their TOML reading.
        let vars = [
            ("PGSURGE_RUNTIME__TIMEOUT_SECS", "0x10"),
            ("PGSURGE_POLICY__SCALE_DOWN_ON_RESOLVED", "true"),
            ("PGSURGE_AUTH__SMN__DOMAINS", "[\"a.example\"]"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let mut doc = toml::Table::new();
        apply_env(&mut doc, vars.into_iter()).unwrap();
        let c = Config::from_table(doc).unwrap();
        assert_eq!(c.runtime.timeout_secs, 16);
        assert!(c.policy.scale_down_on_resolved);
        assert_eq!(c.auth.smn.domains, vec!["a.example".to_string()]);
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
