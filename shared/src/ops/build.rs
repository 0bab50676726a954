//! Turn the validated configuration into [`Ports`]: the one place adapters are chosen.

use super::{OpsError, Ports};
use crate::balancer::fanout::FanOut;
use crate::balancer::DesiredSet;
use crate::cloud::Cloud;
use crate::config::{CloudProvider, Config};
use crate::events::{EventError, Receiver};
use crate::postgres::{LagBounds, PgClient};
use crate::runtime::Credentials;
use std::sync::Arc;
use tokio::sync::Mutex;

/// The ports a warm process built last, with what they were built from.
struct Built {
    config: Arc<Config>,
    creds: Option<Credentials>,
    ports: Option<Arc<Ports>>,
}

static BUILT: Mutex<Option<Built>> = Mutex::const_new(None);

/// The webhook receiver a warm process built last, with the configuration it is for.
static RECEIVER: std::sync::Mutex<Option<(Arc<Config>, Arc<Receiver>)>> =
    std::sync::Mutex::new(None);

/// The webhook [`Receiver`] for this configuration, built once per process.
///
/// Why: it holds the SMN certificate cache and an HTTPS client whose construction reads
/// the system CA store (~150 files, ~20 ms); built per invocation, the cache never hit
/// and every SMN message fetched its certificate again. Unlike the ports it does not
/// depend on the host's credentials, so it is kept apart from them and survives their
/// rotation; it is rebuilt only for another configuration (by identity).
pub fn receiver(config: &Arc<Config>) -> Result<Arc<Receiver>, EventError> {
    let mut cached = RECEIVER.lock().expect("not poisoned");
    if let Some((c, r)) = cached.as_ref() {
        if Arc::ptr_eq(c, config) {
            return Ok(r.clone());
        }
    }
    let r = Arc::new(
        Receiver::new(
            &config.auth,
            config.policy.limits(),
            config.runtime.max_body_bytes,
        )?
        // Another cluster's alarms are judged only by scoping, not by our parameter limits.
        .scoped(crate::events::ClusterScope::new(&config.cluster)),
    );
    *cached = Some((config.clone(), r.clone()));
    Ok(r)
}

/// Make `receiver` the one this process uses for `config` (an embedding that brings
/// its own certificate fetcher; the tests, to count fetches across invocations).
pub fn use_receiver(config: &Arc<Config>, receiver: Arc<Receiver>) {
    *RECEIVER.lock().expect("not poisoned") = Some((config.clone(), receiver));
}

/// The ports for this configuration and these credentials, built once per process.
///
/// Why: the HTTP and runtime-API hosts serve many invocations from one warm process.
/// Building per invocation would log in to Keystone, run the object store's
/// conditional-write probe (a scratch write) and open new connection pools on every
/// webhook. The cache holds one entry and is rebuilt when the configuration (by identity)
/// or the host's temporary credentials change — FunctionGraph rotates those, and ports
/// built from expired ones would fail. A failed build is not cached.
pub async fn ports(
    config: &Arc<Config>,
    creds: Option<&Credentials>,
) -> Result<Option<Arc<Ports>>, OpsError> {
    let mut built = BUILT.lock().await;
    if let Some(b) = built.as_ref() {
        if Arc::ptr_eq(&b.config, config) && b.creds.as_ref() == creds {
            return Ok(b.ports.clone());
        }
    }
    let ports = build(config, creds).await?.map(Arc::new);
    *built = Some(Built {
        config: config.clone(),
        creds: creds.cloned(),
        ports: ports.clone(),
    });
    Ok(ports)
}

/// Build the ports, or `None` when no cloud provider is configured (`cloud.provider =
/// "none"`): the functions then only authenticate, parse and classify events.
pub async fn build(
    config: &Config,
    creds: Option<&Credentials>,
) -> Result<Option<Ports>, OpsError> {
    let cloud: Arc<dyn Cloud> = match config.cloud.provider {
        CloudProvider::None => return Ok(None),
        CloudProvider::Local => Arc::new(crate::cloud::local::LocalCloud::new(
            &config.local,
            &config.postgres,
        )?),
        CloudProvider::Openstack => {
            Arc::new(crate::cloud::openstack::OpenStack::connect(&config.openstack, creds).await?)
        }
    };
    let state = crate::state::open(&config.state, &config.cluster.name, creds).await?;
    let nodes = FanOut::from_config(
        &config.haproxy,
        DesiredSet::for_cluster(&config.cluster.name),
    )
    .map_err(|e| OpsError::Refused(format!("haproxy: {e}")))?
    .into_nodes();
    Ok(Some(Ports {
        cluster: config.cluster.name.clone(),
        cloud,
        nodes,
        state,
        pg: Arc::new(PgClient::new(&config.postgres)),
        policy: config.policy.clone(),
        ops: config.ops.clone(),
        lag: LagBounds::from(&config.postgres),
        haproxy: config.haproxy.clone(),
        bootstrap: config.postgres.clone(),
        callback: crate::node::CallbackMint::from_config(
            config.node.callback_url.as_deref(),
            config.auth.callback_secret.as_ref(),
        ),
    }))
}
