//! The parameters of `infra/image/bootstrap-replica.sh`: a `KEY=VALUE` file that reaches
//! a new server as its cloud user data (the local provider writes it next to the server).
//!
//! Same rules as the script, so what passes here passes there: one `KEY=VALUE` per line,
//! blank lines and `#` comments ignored, the value taken literally after the first `=`,
//! unknown or repeated keys refused. The script checks the values' meaning (ports, paths).
//!
//! Cloud user data is readable by anyone who can read the server through the cloud API,
//! so [`UserData::for_replica`] never includes the replication password: the image (or
//! the local provider, from its own configuration) adds `REPLICATION_PASSWORD` on the
//! host. `Debug` redacts it anyway.

use crate::postgres::PostgresConfig;
use std::fmt;

/// Every key the script accepts (see the script's header for meanings and defaults).
pub const KEYS: &[&str] = &[
    "PGDATA",
    "PRIMARY_HOST",
    "PRIMARY_PORT",
    "REPLICATION_USER",
    "REPLICATION_PASSWORD",
    "REPLICATION_PASSFILE",
    "PRIMARY_SSLMODE",
    "PRIMARY_SSLROOTCERT",
    "PRIMARY_SLOT_NAME",
    "CLUSTER_NAME",
    "APPLICATION_NAME",
    "PORT",
    "LISTEN_ADDRESSES",
    "SOCKET_DIR",
    "HOT_STANDBY_FEEDBACK",
    "RESTORE_COMMAND",
    "RECOVERY_INIT_SYNC_METHOD",
    "PG_BIN",
    "PG_USER",
    "LOG_FILE",
    "START",
    "START_TIMEOUT",
];

const SECRET_KEYS: &[&str] = &["REPLICATION_PASSWORD"];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserDataError {
    #[error("line {line}: expected KEY=VALUE")]
    Syntax { line: usize },
    #[error("line {line}: unknown key {key}")]
    UnknownKey { line: usize, key: String },
    #[error("line {line}: {key} given twice")]
    Duplicate { line: usize, key: String },
    #[error("{key}: a value may not contain line breaks or NUL")]
    BadValue { key: String },
}

/// Ordered `KEY=VALUE` pairs with unique, known keys.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct UserData {
    pairs: Vec<(String, String)>,
}

fn key_syntax(k: &str) -> bool {
    k.starts_with(|c: char| c.is_ascii_uppercase())
        && k.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

impl UserData {
    pub fn parse(text: &str) -> Result<UserData, UserDataError> {
        let mut ud = UserData::default();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let l = raw.strip_suffix('\r').unwrap_or(raw);
            if l.trim().is_empty() || l.starts_with('#') {
                continue;
            }
            let (key, value) = l.split_once('=').ok_or(UserDataError::Syntax { line })?;
            if !key_syntax(key) {
                return Err(UserDataError::Syntax { line });
            }
            if !KEYS.contains(&key) {
                return Err(UserDataError::UnknownKey {
                    line,
                    key: key.into(),
                });
            }
            if ud.get(key).is_some() {
                return Err(UserDataError::Duplicate {
                    line,
                    key: key.into(),
                });
            }
            if value.contains('\0') {
                return Err(UserDataError::BadValue { key: key.into() });
            }
            ud.pairs.push((key.into(), value.into()));
        }
        Ok(ud)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Set (or replace) a key.
    pub fn set(&mut self, key: &str, value: impl Into<String>) -> Result<(), UserDataError> {
        let value = value.into();
        if !KEYS.contains(&key) {
            return Err(UserDataError::UnknownKey {
                line: 0,
                key: key.into(),
            });
        }
        if value.contains(['\n', '\r', '\0']) {
            return Err(UserDataError::BadValue { key: key.into() });
        }
        match self.pairs.iter_mut().find(|(k, _)| k == key) {
            Some(p) => p.1 = value,
            None => self.pairs.push((key.into(), value)),
        }
        Ok(())
    }

    /// Set a key only when it is not there yet.
    pub fn set_default(
        &mut self,
        key: &str,
        value: impl Into<String>,
    ) -> Result<(), UserDataError> {
        if self.get(key).is_some() {
            return Ok(());
        }
        self.set(key, value)
    }

    /// The file the script reads.
    pub fn render(&self) -> String {
        let mut s = String::from(
            "# pgsurge replica bootstrap parameters (infra/image/bootstrap-replica.sh)\n",
        );
        for (k, v) in &self.pairs {
            s.push_str(k);
            s.push('=');
            s.push_str(v);
            s.push('\n');
        }
        s
    }

    /// The parameters every replica of this primary needs, for the cloud user data:
    /// where the primary is, who to stream as, and the replica's own name. No password.
    pub fn for_replica(pg: &PostgresConfig, replica_name: &str) -> Result<UserData, UserDataError> {
        let mut ud = UserData::default();
        ud.set("PRIMARY_HOST", &pg.primary_host)?;
        ud.set("PRIMARY_PORT", pg.primary_port.to_string())?;
        ud.set("REPLICATION_USER", &pg.replication_user)?;
        ud.set("PRIMARY_SSLMODE", &pg.sslmode)?;
        if !pg.primary_conninfo_sslrootcert.is_empty() {
            ud.set("PRIMARY_SSLROOTCERT", &pg.primary_conninfo_sslrootcert)?;
        }
        ud.set("CLUSTER_NAME", replica_name)?;
        ud.set("APPLICATION_NAME", replica_name)?;
        Ok(ud)
    }
}

impl fmt::Debug for UserData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (k, v) in &self.pairs {
            if SECRET_KEYS.contains(&k.as_str()) {
                m.entry(k, &"***");
            } else {
                m.entry(k, v);
            }
        }
        m.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_scripts_format() {
        let ud = UserData::parse(
            "# comment\n\nPGDATA=/var/lib/pg data\r\nRESTORE_COMMAND=cp /a/%f \"%p\" # literal\nPORT=\n",
        )
        .unwrap();
        assert_eq!(ud.get("PGDATA"), Some("/var/lib/pg data"));
        assert_eq!(ud.get("RESTORE_COMMAND"), Some("cp /a/%f \"%p\" # literal"));
        assert_eq!(ud.get("PORT"), Some(""));
        assert_eq!(UserData::parse(&ud.render()).unwrap(), ud);
    }

    #[test]
    fn refuses_what_the_script_refuses() {
        assert_eq!(
            UserData::parse("PGDATA=/x\nFOO=1").unwrap_err(),
            UserDataError::UnknownKey {
                line: 2,
                key: "FOO".into()
            }
        );
        assert_eq!(
            UserData::parse("PORT=1\nPORT=2").unwrap_err(),
            UserDataError::Duplicate {
                line: 2,
                key: "PORT".into()
            }
        );
        for bad in ["PGDATA", "pgdata=/x", " PGDATA=/x", "=x"] {
            assert!(
                matches!(UserData::parse(bad), Err(UserDataError::Syntax { line: 1 })),
                "{bad}"
            );
        }
        let mut ud = UserData::default();
        assert!(ud.set("PORT", "1\n2").is_err());
        assert!(ud.set("NOPE", "1").is_err());
    }

    #[test]
    fn replica_parameters_carry_no_password_and_debug_redacts() {
        let pg = PostgresConfig {
            password: Some(crate::secret::Secret::new("hunter2-pw")),
            ..PostgresConfig::default()
        };
        let mut ud = UserData::for_replica(&pg, "pgsurge-c-r1").unwrap();
        assert!(!ud.render().contains("hunter2-pw"));
        assert_eq!(ud.get("APPLICATION_NAME"), Some("pgsurge-c-r1"));
        ud.set("REPLICATION_PASSWORD", "hunter2-pw").unwrap();
        assert!(!format!("{ud:?}").contains("hunter2-pw"));
        ud.set_default("PORT", "1").unwrap();
        ud.set_default("PORT", "2").unwrap();
        assert_eq!(ud.get("PORT"), Some("1"));
    }
}
