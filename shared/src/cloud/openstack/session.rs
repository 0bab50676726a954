//! Authentication and the session: which credentials, and one authenticated SDK client.
//!
//! Three sources, first match wins (the same rules as the `openstack` CLI for the first two):
//! 1. `openstack.use_host_token` and the host passed a token (FunctionGraph with an agency
//!    sends `X-CFF-Auth-Token`): Keystone v3 `token` auth, scoped to `openstack.project_id`;
//! 2. `openstack.cloud`: that entry of clouds.yaml (password, `v3applicationcredential`,
//!    `v3token`, ... — whatever the SDK's auth plugins support), with secure.yaml merged;
//! 3. `OS_*` environment variables (`OS_AUTH_URL`, `OS_USERNAME`, `OS_PASSWORD`,
//!    `OS_PROJECT_NAME`, `OS_APPLICATION_CREDENTIAL_ID`/`_SECRET`, `OS_REGION_NAME`, ...).
//!
//! The SDK's on-disk token cache is disabled (a function's filesystem is not ours to keep
//! tokens in). Token renewal: the SDK re-authenticates once when a call gets 401 (expired or
//! revoked token) and retries it; [`crate::cloud::openstack::OpenStack::session_token`] lets a
//! test prove it. Secrets stay in the SDK's `SecretString`s: its `Debug` prints them
//! redacted, and nothing here formats a credential.

use super::errors::chain;
use crate::cloud::openstack::OpenStackConfig;
use crate::cloud::CloudError;
use crate::secret::Credentials;
use openstack_sdk::config::{Auth, CloudConfig, ConfigFile};
use openstack_sdk::{AsyncOpenStack, OpenStackError};
use std::time::Duration;

/// The SDK finds its auth plugins (password, application credential, token) through an
/// `inventory` registry. Its build script is meant to anchor the plugin crates so the
/// linker keeps them, but it does not recognise the layout of the published manifest
/// (`[dependencies.<name>]` tables), so a plugin nothing references is silently dropped
/// ("AuthType `v3applicationcredential` is not a supported type"). Referencing each
/// plugin's anchor here keeps all three.
#[used]
static AUTH_PLUGINS: (
    &openstack_sdk_auth_password::PasswordAuthenticator,
    &openstack_sdk_auth_applicationcredential::ApplicationCredentialAuthenticator,
    &openstack_sdk_auth_token::TokenAuthenticator,
) = (
    &openstack_sdk_auth_password::ANCHOR,
    &openstack_sdk_auth_applicationcredential::ANCHOR,
    &openstack_sdk_auth_token::ANCHOR,
);

/// Where the credentials came from, for logs (never the credentials themselves).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    HostToken,
    CloudsYaml(String),
    Env,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::HostToken => f.write_str("host token (FunctionGraph agency)"),
            Source::CloudsYaml(c) => write!(f, "clouds.yaml cloud {c:?}"),
            Source::Env => f.write_str("OS_* environment"),
        }
    }
}

/// Build the SDK's cloud profile from our configuration, the environment and the host.
pub fn profile(
    cfg: &OpenStackConfig,
    host: Option<&Credentials>,
) -> Result<(CloudConfig, Source), CloudError> {
    let token = host.and_then(|c| c.auth_token.as_ref());
    let (mut profile, source) = match token {
        Some(token) if cfg.use_host_token => {
            let auth = Auth {
                auth_url: cfg.auth_url.clone(),
                token: Some(token.expose().to_string().into()),
                project_id: cfg.project_id.clone(),
                ..Auth::default()
            };
            let p = CloudConfig {
                auth: Some(auth),
                auth_type: Some("v3token".into()),
                interface: Some("public".into()),
                ..CloudConfig::default()
            };
            (p, Source::HostToken)
        }
        _ if !cfg.cloud.is_empty() => {
            let files = ConfigFile::new_with_user_specified_configs(
                cfg.clouds_yaml.as_deref(),
                None::<&std::path::Path>,
            )
            .map_err(|e| CloudError::Fatal(format!("openstack.clouds_yaml: {}", chain(&e))))?;
            let p = files
                .get_cloud_config(&cfg.cloud)
                .map_err(|e| CloudError::Fatal(format!("openstack.cloud: {}", chain(&e))))?
                .ok_or_else(|| {
                    CloudError::Fatal(format!(
                        "openstack.cloud: no cloud {:?} in clouds.yaml (looked in {}./clouds.yaml, \
                         ~/.config/openstack/, /etc/openstack/, OS_CLIENT_CONFIG_PATH)",
                        cfg.cloud,
                        cfg.clouds_yaml
                            .as_ref()
                            .map(|p| format!("{}, ", p.display()))
                            .unwrap_or_default()
                    ))
                })?;
            (p, Source::CloudsYaml(cfg.cloud.clone()))
        }
        _ => {
            if std::env::var_os("OS_AUTH_URL").is_none() {
                return Err(CloudError::Fatal(
                    "no OpenStack credentials: set openstack.cloud (clouds.yaml) or OS_AUTH_URL \
                     and the other OS_* variables"
                        .into(),
                ));
            }
            let p = CloudConfig::from_env()
                .map_err(|e| CloudError::Fatal(format!("OS_* environment: {}", chain(&e))))?;
            (p, Source::Env)
        }
    };
    if let Some(region) = cfg.region.as_deref().filter(|r| !r.is_empty()) {
        profile.region_name = Some(region.to_string());
    }
    Ok((profile, source))
}

/// Authenticate: one call to Keystone (plus version discovery), bounded by the timeouts.
pub async fn connect(
    profile: &CloudConfig,
    source: &Source,
    request_timeout: Duration,
    connect_timeout: Duration,
) -> Result<AsyncOpenStack, CloudError> {
    let auth_url = profile
        .auth
        .as_ref()
        .and_then(|a| a.auth_url.clone())
        .unwrap_or_default();
    let connecting = AsyncOpenStack::builder(profile)
        .disable_auth_cache(true)
        .http_timeout(request_timeout)
        .http_connect_timeout(connect_timeout)
        .max_auth_retries(1)
        .connect();
    // The SDK's own timeouts bound each request; this bounds discovery + token together.
    match tokio::time::timeout(request_timeout * 2 + connect_timeout, connecting).await {
        Ok(Ok(client)) => {
            tracing::info!(source = %source, auth_url = %auth_url, "authenticated to OpenStack");
            Ok(client)
        }
        Ok(Err(e)) => Err(connect_error(&auth_url, &e)),
        Err(_) => Err(CloudError::Transient(format!(
            "identity service {auth_url}: no answer within {:?}",
            request_timeout * 2 + connect_timeout
        ))),
    }
}

/// Keystone unreachable is worth retrying later; refused credentials are not.
fn connect_error(auth_url: &str, e: &OpenStackError) -> CloudError {
    let text = chain(e);
    if unreachable(e, &text) {
        CloudError::Transient(format!("identity service {auth_url} unreachable: {text}"))
    } else {
        CloudError::Fatal(format!(
            "authentication to {auth_url} failed: {}",
            redact(&text)
        ))
    }
}

fn unreachable(e: &OpenStackError, text: &str) -> bool {
    if matches!(e, OpenStackError::Communication { .. }) {
        return true;
    }
    if let OpenStackError::Http { status } = e {
        return status.is_server_error();
    }
    let t = text.to_ascii_lowercase();
    [
        // the SDK's first request is the identity version discovery; when it gets no
        // answer it reports "endpoint version discovery error ... Service is not working"
        "version discovery error",
        "error sending request",
        "connection refused",
        "connect error",
        "timed out",
        "dns error",
        "connection reset",
        "503",
        "502",
        "504",
    ]
    .iter()
    .any(|m| t.contains(m))
}

/// Drop anything after `password`/`secret`/`token` from an error text: belt and braces,
/// since the SDK's messages carry URLs and statuses, not credentials.
pub fn redact(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    match ["password", "secret", "token\":"]
        .iter()
        .filter_map(|k| lower.find(k))
        .min()
    {
        Some(i) => format!("{}[redacted]", &text[..i]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    #[test]
    fn host_token_wins_when_enabled() {
        let cfg = OpenStackConfig {
            use_host_token: true,
            auth_url: Some("https://iam.example/v3".into()),
            project_id: Some("p1".into()),
            cloud: "ignored".into(),
            ..OpenStackConfig::default()
        };
        let creds = Credentials {
            auth_token: Some(Secret::new("tok-123")),
            ..Credentials::default()
        };
        let (p, src) = profile(&cfg, Some(&creds)).unwrap();
        assert_eq!(src, Source::HostToken);
        assert_eq!(p.auth_type.as_deref(), Some("v3token"));
        let a = p.auth.unwrap();
        assert_eq!(a.project_id.as_deref(), Some("p1"));
        // the SDK's Debug keeps the token out
        assert!(!format!("{a:?}").contains("tok-123"));
    }

    #[test]
    fn unknown_cloud_names_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clouds.yaml");
        std::fs::write(
            &path,
            "clouds:\n  a:\n    auth:\n      auth_url: http://127.0.0.1:1/v3\n",
        )
        .unwrap();
        let cfg = OpenStackConfig {
            cloud: "b".into(),
            clouds_yaml: Some(path.clone()),
            ..OpenStackConfig::default()
        };
        let err = profile(&cfg, None).unwrap_err().to_string();
        assert!(
            err.contains("openstack.cloud") && err.contains("\"b\""),
            "{err}"
        );
        let cfg = OpenStackConfig {
            cloud: "a".into(),
            clouds_yaml: Some(path),
            region: Some("R2".into()),
            ..OpenStackConfig::default()
        };
        let (p, src) = profile(&cfg, None).unwrap();
        assert_eq!(src, Source::CloudsYaml("a".into()));
        assert_eq!(p.region_name.as_deref(), Some("R2"));
    }

    #[test]
    fn redaction_cuts_at_the_first_secret_word() {
        assert_eq!(
            redact("bad request: {\"password\": \"x\"}"),
            "bad request: {\"[redacted]"
        );
        assert_eq!(redact("HTTP 401 Unauthorized"), "HTTP 401 Unauthorized");
    }
}
