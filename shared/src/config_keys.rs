//! Every configuration key the binaries read, as a TOML path and its `PGSURGE_*`
//! environment name — derived from the configuration types themselves, so a deployment
//! (infra/terraform, checked by tests/tests/terraform.rs) can be checked against the
//! code: a key renamed in the code fails that check instead of being silently ignored.
//!
//! How: every config struct denies unknown fields, and serde's refusal of an unknown field
//! lists the fields the struct *does* have. Asking each section (and each key that turns
//! out to be a section) with a made-up key walks the whole tree from the real types,
//! wherever they live. A key whose value is not a table (a number, a string, a list of
//! tables) refuses the probe with a type error instead: it is a leaf.

use crate::config::Config;
use serde::Deserialize;

/// One key: `path` as in the TOML file (`state.s3.bucket`), `env` the variable that
/// overrides it (`PGSURGE_STATE__S3__BUCKET`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConfigKey {
    pub path: String,
    pub env: String,
}

const PROBE: &str = "pgsurge_probe_not_a_key";

/// Every leaf key of [`Config`], sorted by path.
pub fn config_keys() -> Vec<ConfigKey> {
    let mut out = Vec::new();
    walk(&mut Vec::new(), &mut out);
    out.sort();
    out
}

/// The environment variable of a TOML path (`a.b.c` → `PGSURGE_A__B__C`).
pub fn env_name(path: &str) -> String {
    format!("PGSURGE_{}", path.replace('.', "__").to_ascii_uppercase())
}

fn walk(path: &mut Vec<String>, out: &mut Vec<ConfigKey>) {
    match fields_at(path) {
        Some(fields) => {
            for f in fields {
                path.push(f);
                walk(path, out);
                path.pop();
            }
        }
        None if !path.is_empty() => {
            let p = path.join(".");
            out.push(ConfigKey {
                env: env_name(&p),
                path: p,
            });
        }
        None => {}
    }
}

/// The field names of the table at `path`, or `None` when the key there is not a table.
fn fields_at(path: &[String]) -> Option<Vec<String>> {
    let mut probe = toml::Table::new();
    probe.insert(PROBE.into(), toml::Value::Integer(0));
    let mut value = toml::Value::Table(probe);
    for p in path.iter().rev() {
        let mut t = toml::Table::new();
        t.insert(p.clone(), value);
        value = toml::Value::Table(t);
    }
    let err = Config::deserialize(value).err()?.to_string();
    parse_expected(&err)
}

/// serde's `unknown field` message: "unknown field `x`, expected `a`", "... expected `a`
/// or `b`", "... expected one of `a`, `b`, `c`", "... there are no fields".
fn parse_expected(message: &str) -> Option<Vec<String>> {
    let rest = message.split(&format!("unknown field `{PROBE}`")).nth(1)?;
    if rest.starts_with(", there are no fields") {
        return Some(Vec::new());
    }
    let list = rest.split_once("expected")?.1;
    // The list ends at the first line break (toml appends no context after it).
    let list = list.lines().next().unwrap_or("");
    Some(
        list.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_leaves_of_nested_sections_with_their_env_names() {
        let keys = config_keys();
        let find = |p: &str| keys.iter().find(|k| k.path == p).map(|k| k.env.clone());
        assert_eq!(
            find("cluster.name").as_deref(),
            Some("PGSURGE_CLUSTER__NAME")
        );
        assert_eq!(
            find("state.s3.bucket").as_deref(),
            Some("PGSURGE_STATE__S3__BUCKET")
        );
        assert_eq!(
            find("state.postgres_lock.conninfo").as_deref(),
            Some("PGSURGE_STATE__POSTGRES_LOCK__CONNINFO")
        );
        // Optional secrets have no default but are keys all the same.
        assert!(find("auth.token").is_some());
        // A list of tables is one key (set whole, as TOML).
        assert!(find("haproxy.nodes").is_some());
        // Sections are not leaves.
        assert!(find("state").is_none() && find("state.s3").is_none());
    }

    /// Every key the example configuration sets is listed, and every listed key loads
    /// from the environment: the list is neither short nor made up.
    #[test]
    fn agrees_with_the_example_and_the_loader() {
        let keys = config_keys();
        assert!(keys.len() > 80, "only {} keys", keys.len());
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../config/pgsurge.example.toml"
        );
        let example: toml::Table = std::fs::read_to_string(path).unwrap().parse().unwrap();
        fn leaves(prefix: &str, t: &toml::Table, out: &mut Vec<String>) {
            for (k, v) in t {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match v {
                    toml::Value::Table(t) => leaves(&p, t, out),
                    _ => out.push(p),
                }
            }
        }
        let mut set = Vec::new();
        leaves("", &example, &mut set);
        for p in set {
            assert!(
                keys.iter().any(|k| k.path == p),
                "example key {p} not listed"
            );
        }
        assert!(parse_expected("unknown field `other`, expected `a`").is_none());
        assert_eq!(
            parse_expected(&format!("unknown field `{PROBE}`, expected `a` or `b`")),
            Some(vec!["a".to_string(), "b".to_string()])
        );
    }
}
