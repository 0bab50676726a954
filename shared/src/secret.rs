//! A string that never shows itself in logs, errors or `Debug` output.

use serde::{Deserialize, Deserializer};
use std::fmt;

/// A secret value (token, password, key). `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself: call this only where the value is handed to the peer.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A string only. (It used to take an integer too, because an all-digit token from an
/// environment variable arrived as one; the loader now hands string keys over verbatim,
/// and a number would be the secret in another spelling: `0x10` read as 16.)
impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// Temporary credentials a host hands the function (FunctionGraph with an agency).
///
/// They live here, beside [`Secret`], because the adapters that sign with them (state,
/// cloud) and the runtime that receives them must not depend on each other.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub access_key: Option<String>,
    pub secret_key: Option<Secret>,
    pub security_token: Option<Secret>,
    pub auth_token: Option<Secret>,
}

impl Credentials {
    pub fn is_empty(&self) -> bool {
        self.access_key.is_none()
            && self.secret_key.is_none()
            && self.security_token.is_none()
            && self.auth_token.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_printed() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "Secret(***) ***");
        assert_eq!(s.expose(), "hunter2");
    }
}
