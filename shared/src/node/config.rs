//! `[node]`: what scale-up tells a new server about calling back.

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// instance-ready's URL as a new server reaches it (the HTTP host or the API
    /// gateway in front of it). Unset: servers do not call back; instance-ready's timer
    /// still finds them. The key that signs each server's callback credential is
    /// `auth.callback_secret`; both are needed for a callback.
    pub callback_url: Option<String>,
}
