//! The OpenStack provider: [`Cloud`] on Cinder (volumes, snapshots), Nova (servers booted
//! from the replica image with their data volume attached), Glance (image lookup), Neutron
//! (network lookup) and, optionally, Designate (A records).
//!
//! Built on the `openstack_sdk` crate: its session does Keystone v3 auth (password,
//! application credential, token), reads clouds.yaml and `OS_*` like the `openstack` CLI,
//! picks endpoints from the catalog, negotiates microversions and re-authenticates on 401.
//! Around it, one file per concept:
//!
//! * [`session`] — where credentials come from; connecting;
//! * [`errors`] — every call: retries with backoff on 5xx/429/connection errors only,
//!   request ids in the logs, typed errors (quota, not found, conflict);
//! * [`request`] — a hand-built request for what the generated bindings lack;
//! * [`cinder`], [`nova`], [`glance`], [`neutron`], [`designate`] — the services.
//!
//! Our resources are found by deterministic name plus (for servers) tags that mirror the
//! cluster and role metadata; metadata is always verified on the client, since Nova gives
//! normal users no server-side metadata filter.

mod config;
pub use config::{DnsZoneType, OpenStackConfig};
pub mod cinder;
pub mod designate;
pub mod errors;
pub mod glance;
pub mod neutron;
pub mod nova;
pub mod request;
pub mod session;

use crate::cloud::{
    Cloud, CloudError, Filter, Result, Server, ServerRequest, Snapshot, SnapshotRequest, Status,
    Volume, VolumeRequest, META_ROLE,
};
use crate::secret::Credentials;
use crate::secret::Secret;
use async_trait::async_trait;
use errors::{Caller, IdentityProbe, RetryPolicy};
use neutron::Network;
use nova::BootSettings;
use request::ServiceType;
use secrecy::ExposeSecret;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::OnceCell;

pub use session::Source;

/// The OpenStack [`Cloud`]. One per function instance: it holds the Keystone session and
/// caches the lookups that never change during its life (network, server group, flavors).
pub struct OpenStack {
    caller: Caller,
    cfg: OpenStackConfig,
    source: Source,
    network: OnceCell<Option<Network>>,
    /// `openstack.image` resolved to its Glance id.
    image: OnceCell<String>,
    server_group: OnceCell<Option<String>>,
    flavors: Mutex<HashMap<String, String>>,
    dns_zone: OnceCell<Option<String>>,
    /// Servers whose A record is known to be right (saves a Designate call per poll).
    dns_done: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for OpenStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenStack")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl OpenStack {
    /// Authenticate with the configured credentials (see [`session`]); `host` carries the
    /// temporary credentials a FunctionGraph agency passes, if any.
    pub async fn connect(cfg: &OpenStackConfig, host: Option<&Credentials>) -> Result<Self> {
        let (profile, source) = session::profile(cfg, host)?;
        let client = session::connect(
            &profile,
            &source,
            Duration::from_secs(cfg.request_timeout_secs),
            Duration::from_secs(cfg.connect_timeout_secs),
        )
        .await?;
        let identity = profile
            .auth
            .as_ref()
            .and_then(|a| a.auth_url.clone())
            .map(|url| IdentityProbe {
                url,
                timeout: Duration::from_secs(cfg.connect_timeout_secs.max(1)),
            });
        Ok(OpenStack {
            caller: Caller {
                client,
                retry: RetryPolicy {
                    max_retries: cfg.max_retries,
                    ..RetryPolicy::default()
                },
                identity,
            },
            cfg: cfg.clone(),
            source,
            network: OnceCell::new(),
            image: OnceCell::new(),
            server_group: OnceCell::new(),
            flavors: Mutex::new(HashMap::new()),
            dns_zone: OnceCell::new(),
            dns_done: Mutex::new(HashSet::new()),
        })
    }

    /// The authenticated caller, for OpenStack calls outside the [`Cloud`] trait (tests,
    /// tools): same session, retries and error mapping.
    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    /// Where the credentials came from.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// The current Keystone token, e.g. to revoke it in a test of token renewal.
    pub fn session_token(&self) -> Option<Secret> {
        self.caller
            .client
            .get_auth_token()
            .map(|t| Secret::new(t.expose_secret()))
    }

    /// The configured network, resolved once.
    async fn network(&self) -> Result<Option<&Network>> {
        let n = self
            .network
            .get_or_try_init(|| async {
                if self.cfg.network.is_empty() {
                    return Ok(None);
                }
                self.caller.discover(&ServiceType::Network).await?;
                self.caller
                    .resolve_network(&self.cfg.network)
                    .await
                    .map(Some)
            })
            .await?;
        Ok(n.as_ref())
    }

    fn network_name(&self) -> Option<&str> {
        self.network
            .get()
            .and_then(|n| n.as_ref())
            .map(|n| n.name.as_str())
    }

    async fn flavor_id(&self, flavor: &str) -> Result<String> {
        if let Some(id) = self.flavors.lock().expect("lock").get(flavor) {
            return Ok(id.clone());
        }
        let id = self.caller.flavor_id(flavor).await?;
        self.flavors
            .lock()
            .expect("lock")
            .insert(flavor.to_string(), id.clone());
        Ok(id)
    }

    /// The replica image's id, resolved once (by id, else by exact name; must be active).
    async fn image_id(&self) -> Result<String> {
        self.image
            .get_or_try_init(|| async {
                if self.cfg.image.is_empty() {
                    return Err(CloudError::Fatal(
                        "openstack.image is not set: no replica image to boot servers from".into(),
                    ));
                }
                Ok(self.caller.resolve_image(&self.cfg.image).await?.id)
            })
            .await
            .cloned()
    }

    async fn boot_settings(&self) -> Result<BootSettings> {
        let image_id = self.image_id().await?;
        let network_id = self.network().await?.map(|n| n.id.clone());
        let group = self
            .server_group
            .get_or_try_init(|| async {
                if self.cfg.server_group.is_empty() {
                    return Ok(None);
                }
                self.caller
                    .ensure_server_group(&self.cfg.server_group, &self.cfg.server_group_policy)
                    .await
                    .map(Some)
            })
            .await?;
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_string());
        Ok(BootSettings {
            flavor_id: String::new(),
            image_id,
            network_id,
            security_groups: self.cfg.security_groups.clone(),
            key_name: non_empty(&self.cfg.key_name),
            server_group_id: group.clone(),
            availability_zone: non_empty(&self.cfg.availability_zone),
            delete_on_termination: self.cfg.delete_on_termination,
        })
    }

    async fn dns_zone_id(&self) -> Result<Option<&str>> {
        let z = self
            .dns_zone
            .get_or_try_init(|| async {
                if self.cfg.dns_zone.is_empty() {
                    return Ok(None);
                }
                self.caller.discover(&ServiceType::Dns).await?;
                self.caller
                    .zone_id(&self.cfg.dns_zone, self.cfg.dns_zone_type)
                    .await
                    .map(Some)
            })
            .await?;
        Ok(z.as_deref())
    }

    /// Give an ACTIVE surge server with an address its A record (once per server and
    /// address). Base replicas (made by people) are never touched.
    async fn ensure_dns(&self, s: &Server) -> Result<()> {
        let surge = s.metadata.get(META_ROLE).map(String::as_str) == Some("surge");
        if !surge || s.status != Status::Ready {
            return Ok(());
        }
        let (Some(zone), Some(ep)) = (self.dns_zone_id().await?, s.endpoint.as_ref()) else {
            return Ok(());
        };
        let key = format!("{}={}", s.id, ep.host);
        if self.dns_done.lock().expect("lock").contains(&key) {
            return Ok(());
        }
        let name = designate::fqdn(&s.name, &self.cfg.dns_zone);
        self.caller
            .ensure_a_record(zone, &name, &ep.host, self.cfg.dns_ttl, &s.id)
            .await?;
        self.dns_done.lock().expect("lock").insert(key);
        Ok(())
    }

    /// Delete the A record of a replica by its server name (also for a server that vanished).
    pub async fn delete_dns_record(&self, server_name: &str) -> Result<()> {
        match self.dns_zone_id().await? {
            Some(zone) => {
                let name = designate::fqdn(server_name, &self.cfg.dns_zone);
                self.caller.delete_a_records(zone, &name).await
            }
            None => Ok(()),
        }
    }

    /// The A records of a replica (empty when DNS is off), to check from outside.
    pub async fn dns_records(&self, server_name: &str) -> Result<Vec<designate::ARecord>> {
        match self.dns_zone_id().await? {
            Some(zone) => {
                let name = designate::fqdn(server_name, &self.cfg.dns_zone);
                self.caller.a_records(zone, &name).await
            }
            None => Ok(Vec::new()),
        }
    }

    /// Poll until the server is gone (Nova answers 404), or fail after `timeout`.
    pub async fn wait_server_gone(&self, id: &str, timeout: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut delay = Duration::from_millis(200);
        loop {
            match self.get_server(id).await {
                Err(CloudError::NotFound { .. }) => return Ok(()),
                Err(e) => return Err(e),
                Ok(s) if tokio::time::Instant::now() + delay > deadline => {
                    return Err(CloudError::Transient(format!(
                        "server {id} still there after {timeout:?} ({:?})",
                        s.status
                    )))
                }
                Ok(_) => {}
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }
}

#[async_trait]
impl Cloud for OpenStack {
    fn kind(&self) -> &'static str {
        "openstack"
    }

    async fn create_snapshot(&self, req: &SnapshotRequest) -> Result<Snapshot> {
        self.caller.create_snapshot(req).await
    }

    async fn get_snapshot(&self, id: &str) -> Result<Snapshot> {
        self.caller.get_snapshot(id).await
    }

    async fn list_snapshots(&self, filter: &Filter) -> Result<Vec<Snapshot>> {
        self.caller.list_snapshots(filter).await
    }

    async fn delete_snapshot(&self, id: &str) -> Result<()> {
        self.caller.delete_snapshot(id).await
    }

    async fn create_volume(&self, req: &VolumeRequest) -> Result<Volume> {
        self.caller.create_volume(req, &self.cfg.volume_type).await
    }

    async fn get_volume(&self, id: &str) -> Result<Volume> {
        self.caller.get_volume(id).await
    }

    async fn list_volumes(&self, filter: &Filter) -> Result<Vec<Volume>> {
        self.caller.list_volumes(filter).await
    }

    async fn delete_volume(&self, id: &str) -> Result<()> {
        self.caller.delete_volume(id).await
    }

    /// Boot from the replica image with the data volume attached (see [`nova::create_body`]).
    /// Configuration is checked (flavor, image, network, server group) before Nova is asked
    /// for anything, so a bad flavor or image leaves nothing behind.
    async fn create_server(&self, req: &ServerRequest) -> Result<Server> {
        let flavor = req.flavor.as_deref().unwrap_or(&self.cfg.flavor);
        if flavor.is_empty() {
            return Err(CloudError::Fatal(
                "openstack.flavor is not set: no flavor to boot replicas with".into(),
            ));
        }
        let flavor_id = self.flavor_id(flavor).await?;
        let boot = self.boot_settings().await?;
        self.caller
            .create_server(
                req,
                &boot,
                &flavor_id,
                self.cfg.pg_port,
                self.network_name(),
            )
            .await
    }

    /// A read: changes nothing anywhere (`pgsurge status` relies on it).
    async fn get_server(&self, id: &str) -> Result<Server> {
        self.network().await?;
        self.caller
            .get_server(id, self.cfg.pg_port, self.network_name())
            .await
    }

    async fn list_servers(&self, filter: &Filter) -> Result<Vec<Server>> {
        self.network().await?;
        self.caller
            .list_servers(filter, self.cfg.pg_port, self.network_name())
            .await
    }

    /// Delete the server and its A record. The record goes first (a record left pointing
    /// at nothing is worse than a server briefly without a name), and also when the server
    /// is already gone: found by the server id its description carries. With
    /// `delete_on_termination = false` the volume survives and becomes `available` once
    /// Nova has detached it.
    async fn delete_server(&self, id: &str) -> Result<()> {
        if let Some(zone) = self.dns_zone_id().await? {
            match self.caller.get_server(id, self.cfg.pg_port, None).await {
                Ok(s) => {
                    let name = designate::fqdn(&s.name, &self.cfg.dns_zone);
                    self.caller.delete_a_records(zone, &name).await?;
                }
                Err(CloudError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
            self.caller.delete_a_records_of_server(zone, id).await?;
            self.dns_done
                .lock()
                .expect("lock")
                .retain(|k| !k.starts_with(&format!("{id}=")));
        }
        self.caller.delete_server(id).await
    }

    /// The replica's A record, on the ready path (surge servers only).
    async fn publish_server(&self, server: &Server) -> Result<()> {
        self.ensure_dns(server).await
    }

    /// The replica's A record, by its deterministic name, server or no server.
    async fn unpublish_server(&self, name: &str) -> Result<()> {
        self.delete_dns_record(name).await
    }
}
