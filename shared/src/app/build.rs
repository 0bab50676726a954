//! Turn the validated configuration into the adapters: the one place they are chosen.

use crate::balancer::fanout::FanOut;
use crate::balancer::DesiredSet;
use crate::cloud::Cloud;
use crate::cloud::CloudProvider;
use crate::config::Config;
use crate::events::{EventError, Receiver};
use crate::ops::{OpsError, Ports, Refusal};
use crate::postgres::{LagBounds, PgClient};
use crate::secret::Credentials;
use std::sync::Arc;

/// The webhook [`Receiver`] for this configuration.
pub fn receiver(config: &Config) -> Result<Receiver, EventError> {
    Ok(Receiver::new(
        &config.auth,
        config.policy.limits(),
        config.runtime.max_body_bytes,
    )?
    // Another cluster's alarms are judged only by scoping, not by our parameter limits.
    .scoped(crate::events::ClusterScope::new(&config.cluster)))
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
    .map_err(|e| OpsError::from(Refusal::Haproxy(e.to_string())))?
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
        callback: crate::events::CallbackMint::from_config(
            config.node.callback_url.as_deref(),
            config.auth.callback_secret.as_ref(),
        ),
    }))
}
