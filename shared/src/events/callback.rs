//! The callback credential: what a new server presents to instance-ready, and nothing
//! else accepts.
//!
//! Scale-up mints, per server, `HMAC-SHA256(auth.callback_secret, "pgsurge-callback-v1\n
//! <cluster>\n<replica id>\n<volume id>")` and puts it in the server's user data. The
//! server sends it back in the `x-pgsurge-callback` header as
//! `v1 <cluster> <replica id> <volume id> <hex mac>`. A valid header proves only "scale-up
//! made this server for replica R of cluster C": the receiver then accepts a single
//! event from it — instance `ready` for that replica and cluster — and instance-ready
//! verifies the replica itself anyway (in recovery, same system identifier, caught up).
//! So anyone who reads the user data (anyone who can read the server through the cloud
//! API) can at most make instance-ready look at that replica sooner. Not replay-bound:
//! a replayed "ready" is the same harmless hint.

use super::{Event, EventError, InstanceKind};
use crate::secret::Secret;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The header a server's callback carries its credential in.
pub const CALLBACK_HEADER: &str = "x-pgsurge-callback";
const DOMAIN: &str = "pgsurge-callback-v1";

/// Who a credential speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackClaim {
    pub cluster: String,
    pub replica_id: String,
    pub volume_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    #[error("`{CALLBACK_HEADER}` must be `v1 <cluster> <replica id> <volume id> <hex mac>`")]
    Malformed,
    #[error("the `{CALLBACK_HEADER}` credential does not verify (auth.callback_secret)")]
    BadMac,
    #[error("a `{CALLBACK_HEADER}` credential was presented but auth.callback_secret is not set")]
    NotConfigured,
}

fn mac(secret: &Secret, c: &CallbackClaim) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC takes any key length");
    m.update(format!("{DOMAIN}\n{}\n{}\n{}", c.cluster, c.replica_id, c.volume_id).as_bytes());
    m.finalize().into_bytes().to_vec()
}

/// Mints credentials (scale-up) for servers that call `url`.
#[derive(Clone)]
pub struct CallbackMint {
    pub url: String,
    pub secret: Secret,
}

impl std::fmt::Debug for CallbackMint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackMint")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl CallbackMint {
    /// Both `node.callback_url` and `auth.callback_secret`, or no callback.
    pub fn from_config(url: Option<&str>, secret: Option<&Secret>) -> Option<CallbackMint> {
        Some(CallbackMint {
            url: url?.to_string(),
            secret: secret?.clone(),
        })
    }

    /// The token for `claim` (hex), as it goes into the user data.
    pub fn token(&self, claim: &CallbackClaim) -> Secret {
        Secret::new(hex::encode(mac(&self.secret, claim)))
    }
}

/// The header value a server sends: its claim and the token it was given.
pub fn header_value(claim: &CallbackClaim, token: &str) -> String {
    format!(
        "v1 {} {} {} {token}",
        claim.cluster, claim.replica_id, claim.volume_id
    )
}

/// Verify a presented header with the configured secret; the claim it proves.
pub fn verify(header: &str, secret: Option<&Secret>) -> Result<CallbackClaim, CallbackError> {
    let parts: Vec<&str> = header.split_ascii_whitespace().collect();
    let ["v1", cluster, replica_id, volume_id, mac_hex] = parts.as_slice() else {
        return Err(CallbackError::Malformed);
    };
    let claim = CallbackClaim {
        cluster: cluster.to_string(),
        replica_id: replica_id.to_string(),
        volume_id: volume_id.to_string(),
    };
    let presented = hex::decode(mac_hex).map_err(|_| CallbackError::Malformed)?;
    let secret = secret.ok_or(CallbackError::NotConfigured)?;
    if bool::from(mac(secret, &claim).ct_eq(&presented)) {
        Ok(claim)
    } else {
        Err(CallbackError::BadMac)
    }
}

/// A callback is admitted when its credential verifies and its event is the one it
/// may send: instance `ready` for the claimed replica, of the claimed cluster.
pub fn admit(
    header: &str,
    secret: Option<&Secret>,
    event: &Event,
) -> Result<CallbackClaim, EventError> {
    let claim = verify(header, secret).map_err(|e| EventError::Unauthenticated(e.to_string()))?;
    let fits = matches!(event, Event::Instance(i)
        if i.kind == InstanceKind::Ready
            && i.replica_id.as_deref() == Some(claim.replica_id.as_str())
            && i.cluster.as_deref() == Some(claim.cluster.as_str()));
    if !fits {
        return Err(EventError::Unauthenticated(format!(
            "a server callback credential admits only an instance `ready` event for \
             replica {} of cluster {}",
            claim.replica_id, claim.cluster
        )));
    }
    Ok(claim)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim() -> CallbackClaim {
        CallbackClaim {
            cluster: "main".into(),
            replica_id: "r3".into(),
            volume_id: "vol-123".into(),
        }
    }

    #[test]
    fn a_minted_token_verifies_for_its_claim_only() {
        let mint = CallbackMint::from_config(Some("http://x/"), Some(&Secret::new("k1"))).unwrap();
        let t = mint.token(&claim());
        let h = header_value(&claim(), t.expose());
        assert_eq!(verify(&h, Some(&Secret::new("k1"))).unwrap(), claim());
        // Another key, another replica, another volume: refused.
        assert_eq!(
            verify(&h, Some(&Secret::new("k2"))),
            Err(CallbackError::BadMac)
        );
        for other in [
            h.replace(" r3 ", " r4 "),
            h.replace("vol-123", "vol-124"),
            h.replace("v1 main", "v1 other"),
        ] {
            assert_eq!(
                verify(&other, Some(&Secret::new("k1"))),
                Err(CallbackError::BadMac)
            );
        }
        assert_eq!(verify(&h, None), Err(CallbackError::NotConfigured));
        assert_eq!(
            verify("v1 main r3", Some(&Secret::new("k1"))),
            Err(CallbackError::Malformed)
        );
        assert_eq!(
            verify("v1 a b c zz", Some(&Secret::new("k1"))),
            Err(CallbackError::Malformed)
        );
        assert!(CallbackMint::from_config(None, Some(&Secret::new("k"))).is_none());
        assert!(!format!("{mint:?}").contains("k1"));
    }
}
