//! The configuration error and the checks every section's `validate` is made of.
//!
//! A leaf: it imports nothing of the crate, so each module can validate its own section
//! (`balancer::HaproxyConfig::validate`, `postgres::PostgresConfig::validate`, ...)
//! without importing [`crate::config`], which assembles the sections and so sits above
//! them all. A section names keys relative to itself (`primary_port`); the assembler
//! puts the section in front ([`ConfigError::within`]), so every error names the full
//! key path (`postgres.primary_port`).

use std::fmt::Display;
use std::ops::RangeInclusive;
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

/// The result of one check.
pub type Checked = Result<(), ConfigError>;

/// `key` is invalid because of `message` (which never quotes a secret).
pub fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Key {
        key: key.into(),
        message: message.into(),
    }
}

impl ConfigError {
    /// The same error with `section.` in front of its key: `primary_port` reported by
    /// `[postgres]` becomes `postgres.primary_port`. Other kinds pass unchanged.
    pub fn within(self, section: &str) -> ConfigError {
        match self {
            ConfigError::Key { key, message } => ConfigError::Key {
                key: format!("{section}.{key}"),
                message,
            },
            other => other,
        }
    }
}

/// `value` must lie in `range` (inclusive): "`key`: 0 is outside 1..=120".
pub fn in_range<T: PartialOrd + Display>(key: &str, value: T, range: RangeInclusive<T>) -> Checked {
    if range.contains(&value) {
        return Ok(());
    }
    Err(invalid(
        key,
        format!("{value} is outside {}..={}", range.start(), range.end()),
    ))
}

/// `value` must not exceed `max`; `max_said` is how the message names the bound
/// (`"86400 (one day)"`, `"1 TiB"`).
pub fn at_most<T: PartialOrd + Display>(key: &str, value: T, max: T, max_said: &str) -> Checked {
    if value <= max {
        return Ok(());
    }
    Err(invalid(key, format!("{value} is above {max_said}")))
}

/// `value` must be at least `min`.
pub fn at_least<T: PartialOrd + Display>(key: &str, value: T, min: T) -> Checked {
    if value >= min {
        return Ok(());
    }
    Err(invalid(key, format!("{value} is below {min}")))
}

/// A string (or path) key that must be set.
pub fn non_empty(key: &str, value: impl AsRef<std::ffi::OsStr>) -> Checked {
    if value.as_ref().is_empty() {
        return Err(invalid(key, "must not be empty"));
    }
    Ok(())
}

/// A path that must be absolute (it is used from processes with another working
/// directory).
pub fn absolute(key: &str, path: &Path) -> Checked {
    if path.is_absolute() {
        return Ok(());
    }
    Err(invalid(
        key,
        format!("{} is not an absolute path", path.display()),
    ))
}

/// A file that must exist now: a wrong path fails at load, not at first use.
pub fn is_file(key: &str, path: &Path) -> Checked {
    if path.is_file() {
        return Ok(());
    }
    Err(invalid(key, format!("{} is not a file", path.display())))
}

/// An IP address (v4 or v6), not a host name.
pub fn ip_address(key: &str, value: &str) -> Checked {
    if value.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    Err(invalid(key, format!("{value:?} is not an IP address")))
}

/// An HTTP header name (`x-pgsurge-token`): ASCII letters, digits and `-`.
pub fn header_name(key: &str, value: &str) -> Checked {
    if !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Ok(());
    }
    Err(invalid(
        key,
        format!("{value:?} is not a valid header name"),
    ))
}

/// A PostgreSQL role, database or OS user name we are willing to put into a conninfo
/// string or a command line unquoted.
pub fn plain_name(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(r: Checked) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn checks_name_the_key_and_the_bound() {
        assert!(in_range("k", 5u64, 1..=10).is_ok());
        assert_eq!(
            message(in_range("k", 0u64, 1..=10)),
            "`k`: 0 is outside 1..=10"
        );
        assert_eq!(
            message(at_most("k", 9u64, 8, "8 (a byte)")),
            "`k`: 9 is above 8 (a byte)"
        );
        assert_eq!(message(at_least("k", 1u16, 1024)), "`k`: 1 is below 1024");
        assert_eq!(message(non_empty("k", "")), "`k`: must not be empty");
        assert!(absolute("k", Path::new("/a")).is_ok());
        assert!(message(absolute("k", Path::new("a"))).contains("not an absolute path"));
        assert!(ip_address("k", "::1").is_ok() && ip_address("k", "localhost").is_err());
        assert!(header_name("k", "x-a-1").is_ok());
        assert!(header_name("k", "x a").is_err() && header_name("k", "").is_err());
        assert!(plain_name("pgsurge") && !plain_name("a b") && !plain_name("1a"));
    }

    #[test]
    fn within_puts_the_section_in_front_of_key_errors_only() {
        let e = invalid("primary_port", "must not be 0").within("postgres");
        assert_eq!(e.to_string(), "`postgres.primary_port`: must not be 0");
        let e = invalid("name", "x")
            .within("haproxy.nodes[1]")
            .within("outer");
        assert_eq!(e.to_string(), "`outer.haproxy.nodes[1].name`: x");
        let env = ConfigError::Env {
            var: "PGSURGE_X".into(),
            message: "m".into(),
        }
        .within("postgres");
        assert_eq!(env.to_string(), "environment variable PGSURGE_X: m");
    }
}
