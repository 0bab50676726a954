//! Neutron: resolve the configured network (name or id) to its id and name. Nova takes
//! security groups by name, so they need no lookup; the network needs its id for the boot
//! request, and its name to pick the server's address out of Nova's `addresses`.

use super::cinder::text;
use super::errors::Caller;
use super::request::Request;
use crate::cloud::{CloudError, Result};
use openstack_sdk::types::ServiceType;

/// A resolved network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    pub id: String,
    pub name: String,
}

impl Caller {
    pub async fn resolve_network(&self, name_or_id: &str) -> Result<Network> {
        let by_id = Request::get(ServiceType::Network, format!("networks/{name_or_id}"));
        match self.send(&format!("get network {name_or_id}"), by_id).await {
            Ok(r) => {
                let n = r.json(Some("network"))?;
                return Ok(Network {
                    id: text(&n, "id"),
                    name: text(&n, "name"),
                });
            }
            Err(CloudError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        let list = Request::get(ServiceType::Network, "networks").query("name", name_or_id);
        let nets = self
            .send(&format!("find network {name_or_id}"), list)
            .await?
            .json(Some("networks"))?;
        let found: Vec<Network> = nets
            .as_array()
            .into_iter()
            .flatten()
            .map(|n| Network {
                id: text(n, "id"),
                name: text(n, "name"),
            })
            .collect();
        match found.as_slice() {
            [n] => Ok(n.clone()),
            [] => Err(CloudError::NotFound {
                kind: "network",
                id: name_or_id.to_string(),
            }),
            _ => Err(CloudError::Conflict(format!(
                "{} networks are named {name_or_id}; configure openstack.network as an id",
                found.len()
            ))),
        }
    }
}
