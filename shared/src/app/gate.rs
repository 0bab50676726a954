//! The HTTP host's early authentication, built from `[auth]`.

use crate::events::AuthConfig;
use crate::events::{auth, Webhook};
use crate::runtime::{Admission, FunctionError, Gate, HttpHead};

/// Refuses an HTTP request whose shared secret does not authenticate it — from its head
/// for a token, once the body has arrived for an HMAC signature — before the handler
/// parses anything. The rules are `events::auth`'s ([`auth::preauthenticate`]).
pub struct AuthGate {
    auth: AuthConfig,
}

impl AuthGate {
    pub fn new(auth: AuthConfig) -> Self {
        AuthGate { auth }
    }

    fn judge(&self, head: &HttpHead<'_>, body: &str) -> Result<(), FunctionError> {
        let mut webhook = Webhook::http(&[], body);
        webhook.headers = head.headers.clone();
        webhook.query = head.query.clone();
        auth::preauthenticate(&webhook, &self.auth).map_err(FunctionError::from)
    }
}

impl Gate for AuthGate {
    fn head(&self, head: &HttpHead<'_>) -> Result<Admission, FunctionError> {
        let mut webhook = Webhook::http(&[], "");
        webhook.headers = head.headers.clone();
        if auth::signs_body(&webhook, &self.auth) {
            return Ok(Admission::NeedsBody);
        }
        self.judge(head, "").map(|()| Admission::Admit)
    }

    fn body(&self, head: &HttpHead<'_>, body: &str) -> Result<(), FunctionError> {
        self.judge(head, body)
    }
}
