//! The instance parameters: what scale-up gives a new server as its user data, and what
//! the image's first-boot step reads back — written and parsed only here.
//!
//! One `KEY=VALUE` per line (the bootstrap script's rules, see `postgres::bootstrap`):
//! pgsurge's own keys `PGSURGE_*` first, then the bootstrap script's parameters.
//!
//! ```text
//! PGSURGE_PARAMS_VERSION=1
//! PGSURGE_CLUSTER=main                  the cluster (checked against the server's metadata)
//! PGSURGE_REPLICA_ID=r3                 the replica in the state
//! PGSURGE_VOLUME_ID=9f1c...             the data volume: the guest finds it by serial
//!                                       (/dev/disk/by-id/virtio-<first 20 chars>) or label
//! PGSURGE_CALLBACK_URL=https://...      instance-ready (optional, with the token)
//! PGSURGE_CALLBACK_TOKEN=<hex>          its credential for this server (events::callback)
//! PRIMARY_HOST=... (bootstrap-replica.sh's keys; never REPLICATION_PASSWORD)
//! ```

use crate::events::callback::{self, CallbackClaim, CallbackMint};
use crate::postgres::bootstrap::{UserData, UserDataError};
use crate::secret::Secret;

/// The format version this code writes and reads.
pub const VERSION: u32 = 1;
/// The label a data disk carries when its serial is not exposed (`mkfs.ext4 -L`).
pub const DATA_LABEL: &str = "pgdata";

const K_VERSION: &str = "PGSURGE_PARAMS_VERSION";
const K_CLUSTER: &str = "PGSURGE_CLUSTER";
const K_REPLICA: &str = "PGSURGE_REPLICA_ID";
const K_VOLUME: &str = "PGSURGE_VOLUME_ID";
const K_URL: &str = "PGSURGE_CALLBACK_URL";
const K_TOKEN: &str = "PGSURGE_CALLBACK_TOKEN";
const KEYS: &[&str] = &[K_VERSION, K_CLUSTER, K_REPLICA, K_VOLUME, K_URL, K_TOKEN];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    #[error(transparent)]
    Bootstrap(#[from] UserDataError),
    #[error("line {line}: unknown key {key}")]
    UnknownKey { line: usize, key: String },
    #[error("line {line}: {key} given twice")]
    Duplicate { line: usize, key: String },
    #[error("missing {0}")]
    Missing(&'static str),
    #[error("{K_VERSION}={0}: this image reads version {VERSION}")]
    Version(String),
    #[error("{0}: empty, or contains whitespace")]
    BadValue(&'static str),
    #[error("{K_URL} and {K_TOKEN} come together")]
    HalfCallback,
    #[error("REPLICATION_PASSWORD must never travel in user data")]
    PasswordInUserData,
}

/// Where to call back, and the credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callback {
    pub url: String,
    pub token: Secret,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceParams {
    pub cluster: String,
    pub replica_id: String,
    pub volume_id: String,
    pub callback: Option<Callback>,
    /// The bootstrap script's parameters (no password).
    pub bootstrap: UserData,
}

impl InstanceParams {
    /// What scale-up gives the server for replica `replica_id` on volume `volume_id`.
    pub fn for_server(
        cluster: &str,
        replica_id: &str,
        volume_id: &str,
        bootstrap: UserData,
        mint: Option<&CallbackMint>,
    ) -> Result<InstanceParams, ParamsError> {
        let claim = CallbackClaim {
            cluster: cluster.into(),
            replica_id: replica_id.into(),
            volume_id: volume_id.into(),
        };
        let p = InstanceParams {
            callback: mint.map(|m| Callback {
                url: m.url.clone(),
                token: m.token(&claim),
            }),
            cluster: claim.cluster,
            replica_id: claim.replica_id,
            volume_id: claim.volume_id,
            bootstrap,
        };
        p.check()?;
        Ok(p)
    }

    fn check(&self) -> Result<(), ParamsError> {
        for (k, v) in [
            (K_CLUSTER, &self.cluster),
            (K_REPLICA, &self.replica_id),
            (K_VOLUME, &self.volume_id),
        ] {
            if v.is_empty() || v.contains(char::is_whitespace) {
                return Err(ParamsError::BadValue(k));
            }
        }
        if let Some(c) = &self.callback {
            if c.url.is_empty() || c.url.contains(char::is_whitespace) {
                return Err(ParamsError::BadValue(K_URL));
            }
        }
        if self.bootstrap.get("REPLICATION_PASSWORD").is_some() {
            return Err(ParamsError::PasswordInUserData);
        }
        Ok(())
    }

    /// The claim the callback credential speaks for.
    pub fn claim(&self) -> CallbackClaim {
        CallbackClaim {
            cluster: self.cluster.clone(),
            replica_id: self.replica_id.clone(),
            volume_id: self.volume_id.clone(),
        }
    }

    /// The header value the server's callback carries.
    pub fn callback_header(&self) -> Option<String> {
        let c = self.callback.as_ref()?;
        Some(callback::header_value(&self.claim(), c.token.expose()))
    }

    /// The serial a virtio disk of this volume shows (`/dev/disk/by-id/virtio-<serial>`):
    /// Nova passes the volume id, which virtio truncates to 20 bytes.
    pub fn volume_serial(&self) -> &str {
        let end = self
            .volume_id
            .char_indices()
            .nth(20)
            .map_or(self.volume_id.len(), |(i, _)| i);
        &self.volume_id[..end]
    }

    /// The user data text.
    pub fn render(&self) -> String {
        let mut s = String::from("# pgsurge instance parameters (shared/src/node/params.rs)\n");
        let mut put = |k: &str, v: &str| {
            s.push_str(k);
            s.push('=');
            s.push_str(v);
            s.push('\n');
        };
        put(K_VERSION, &VERSION.to_string());
        put(K_CLUSTER, &self.cluster);
        put(K_REPLICA, &self.replica_id);
        put(K_VOLUME, &self.volume_id);
        if let Some(c) = &self.callback {
            put(K_URL, &c.url);
            put(K_TOKEN, c.token.expose());
        }
        s + &self.bootstrap.render()
    }

    /// Parse user data written by [`InstanceParams::render`]; every pgsurge key but the
    /// callback is required, and the version must be this one.
    pub fn parse(text: &str) -> Result<InstanceParams, ParamsError> {
        let (own, bootstrap) = split(text)?;
        let get = |k: &'static str| own.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
        let need = |k: &'static str| get(k).ok_or(ParamsError::Missing(k));
        let version = need(K_VERSION)?;
        if version != VERSION.to_string() {
            return Err(ParamsError::Version(version));
        }
        let callback = match (get(K_URL), get(K_TOKEN)) {
            (Some(url), Some(token)) => Some(Callback {
                url,
                token: Secret::new(token),
            }),
            (None, None) => None,
            _ => return Err(ParamsError::HalfCallback),
        };
        let p = InstanceParams {
            cluster: need(K_CLUSTER)?,
            replica_id: need(K_REPLICA)?,
            volume_id: need(K_VOLUME)?,
            callback,
            bootstrap,
        };
        p.check()?;
        Ok(p)
    }
}

/// The bootstrap script's part of user data, pgsurge's own keys set aside (the local
/// provider hands it to the script; older user data without them reads the same).
pub fn bootstrap_part(text: &str) -> Result<UserData, ParamsError> {
    split(text).map(|(_, ud)| ud)
}

/// pgsurge's keys (checked: known, unique) and the rest parsed as the script's
/// parameters, line numbers kept.
fn split(text: &str) -> Result<(Vec<(String, String)>, UserData), ParamsError> {
    let mut own: Vec<(String, String)> = Vec::new();
    let mut rest = String::with_capacity(text.len());
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.strip_suffix('\r').unwrap_or(raw);
        match l.split_once('=') {
            Some((key, value)) if key.starts_with("PGSURGE_") => {
                if !KEYS.contains(&key) {
                    return Err(ParamsError::UnknownKey {
                        line,
                        key: key.into(),
                    });
                }
                if own.iter().any(|(k, _)| k == key) {
                    return Err(ParamsError::Duplicate {
                        line,
                        key: key.into(),
                    });
                }
                own.push((key.into(), value.into()));
                rest.push('\n');
            }
            _ => {
                rest.push_str(l);
                rest.push('\n');
            }
        }
    }
    Ok((own, UserData::parse(&rest)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(mint: Option<&CallbackMint>) -> InstanceParams {
        let mut ud = UserData::default();
        ud.set("PRIMARY_HOST", "10.0.0.5").unwrap();
        ud.set("APPLICATION_NAME", "pgsurge-main-r3").unwrap();
        InstanceParams::for_server("main", "r3", "0123456789abcdefghijKLMN", ud, mint).unwrap()
    }

    #[test]
    fn round_trips_and_verifies() {
        let mint =
            CallbackMint::from_config(Some("http://10.0.2.2:9000/"), Some(&Secret::new("k")))
                .unwrap();
        let p = params(Some(&mint));
        let text = p.render();
        let back = InstanceParams::parse(&text).unwrap();
        assert_eq!(back, p);
        assert_eq!(back.volume_serial(), "0123456789abcdefghij");
        let claim = callback::verify(&back.callback_header().unwrap(), Some(&Secret::new("k")));
        assert_eq!(claim.unwrap(), p.claim());
        // The script's part alone, for the local provider.
        assert_eq!(bootstrap_part(&text).unwrap(), p.bootstrap);
        let plain = params(None);
        assert_eq!(
            InstanceParams::parse(&plain.render()).unwrap().callback,
            None
        );
    }

    #[test]
    fn refuses_missing_unknown_and_foreign_versions() {
        let text = params(None).render();
        let without = |k: &str| {
            text.lines()
                .filter(|l| !l.starts_with(&format!("{k}=")))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(
            InstanceParams::parse(&without(K_VOLUME)),
            Err(ParamsError::Missing(K_VOLUME))
        );
        assert_eq!(
            InstanceParams::parse(&without(K_VERSION)),
            Err(ParamsError::Missing(K_VERSION))
        );
        assert_eq!(
            InstanceParams::parse(&text.replace("VERSION=1", "VERSION=2")),
            Err(ParamsError::Version("2".into()))
        );
        assert!(matches!(
            InstanceParams::parse(&format!("{text}PGSURGE_NOPE=1\n")),
            Err(ParamsError::UnknownKey { key, .. }) if key == "PGSURGE_NOPE"
        ));
        assert!(matches!(
            InstanceParams::parse(&format!("{text}PGSURGE_CLUSTER=x\n")),
            Err(ParamsError::Duplicate { .. })
        ));
        assert_eq!(
            InstanceParams::parse(&format!("{text}PGSURGE_CALLBACK_URL=http://x/\n")),
            Err(ParamsError::HalfCallback)
        );
        assert_eq!(
            InstanceParams::parse(&format!("{text}REPLICATION_PASSWORD=pw\n")),
            Err(ParamsError::PasswordInUserData)
        );
        assert!(matches!(
            InstanceParams::parse(&format!("{text}BOGUS=1\n")),
            Err(ParamsError::Bootstrap(UserDataError::UnknownKey { .. }))
        ));
    }
}
