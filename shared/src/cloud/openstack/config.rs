//! `[openstack]`: what the OpenStack provider creates and how it talks to the cloud.

use crate::check::{in_range, invalid, non_empty, Checked};
use serde::Deserialize;
use std::path::PathBuf;

/// The OpenStack provider (Nova + Cinder, optionally Designate). Credentials never live
/// here: they come from `clouds.yaml` (`cloud`), from `OS_*` environment variables like the
/// `openstack` CLI, or from the token FunctionGraph hands a function with an agency.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpenStackConfig {
    /// Cloud name in clouds.yaml; empty = read `OS_*` environment variables.
    pub cloud: String,
    /// An extra clouds.yaml (besides ./clouds.yaml, ~/.config/openstack/, /etc/openstack/).
    pub clouds_yaml: Option<PathBuf>,
    /// Overrides the cloud's `region_name`.
    pub region: Option<String>,
    /// Use the host's temporary token (FunctionGraph agency: `X-CFF-Auth-Token`) when it
    /// passes one, scoped to `project_id`, against `auth_url`.
    pub use_host_token: bool,
    /// Keystone URL for `use_host_token` (e.g. `https://iam.ru-moscow-1.hc.sbercloud.ru/v3`).
    pub auth_url: Option<String>,
    /// Project for `use_host_token`.
    pub project_id: Option<String>,
    /// Flavor (name or id) for surge replicas. Required to create servers.
    pub flavor: String,
    /// The replica image (Glance name or id) a surge server boots from: its system disk.
    /// The data volume cloned from a snapshot is attached beside it as the second disk.
    /// Required with `cloud.provider = "openstack"`; a name must match exactly one image.
    pub image: String,
    /// Network (name or id) for the replicas' port; empty = no network.
    pub network: String,
    /// Security groups (names) for the replicas.
    pub security_groups: Vec<String>,
    /// Key pair name; empty = none.
    pub key_name: String,
    /// Server group name; created with `server_group_policy` if missing; empty = none.
    pub server_group: String,
    /// `anti-affinity`, `soft-anti-affinity`, `affinity` or `soft-affinity`.
    pub server_group_policy: String,
    /// Availability zone for a server whose volume reports none; empty = the cloud's
    /// choice. A server boots in its clone's zone (see `ops::scale_up`); clones go to
    /// their snapshot's zone, or to an alarm's `az`.
    pub availability_zone: String,
    /// Volume type for cloned volumes; empty = the snapshot's.
    pub volume_type: String,
    /// Delete the data volume together with its server (Nova's delete_on_termination).
    /// Keep false: then pgsurge deletes it itself, after its proofs, once Nova detached it.
    pub delete_on_termination: bool,
    /// Port PostgreSQL listens on in the replicas (the endpoint pgsurge registers).
    pub pg_port: u16,
    /// One HTTP request's time limit.
    pub request_timeout_secs: u64,
    /// TCP connect time limit.
    pub connect_timeout_secs: u64,
    /// Retries of a call that failed with 5xx, 429 or a connection error.
    pub max_retries: u32,
    /// Designate zone (`example.org.`) for one A record per replica; empty = no DNS.
    pub dns_zone: String,
    /// How `dns_zone` is looked up: see [`DnsZoneType`].
    pub dns_zone_type: DnsZoneType,
    /// TTL of those records.
    pub dns_ttl: u32,
}

impl Default for OpenStackConfig {
    fn default() -> Self {
        OpenStackConfig {
            cloud: String::new(),
            clouds_yaml: None,
            region: None,
            use_host_token: false,
            auth_url: None,
            project_id: None,
            flavor: String::new(),
            image: String::new(),
            network: String::new(),
            security_groups: Vec::new(),
            key_name: String::new(),
            server_group: String::new(),
            server_group_policy: "anti-affinity".into(),
            availability_zone: String::new(),
            volume_type: String::new(),
            delete_on_termination: false,
            pg_port: 5432,
            request_timeout_secs: 30,
            connect_timeout_secs: 5,
            max_retries: 4,
            dns_zone: String::new(),
            dns_zone_type: DnsZoneType::Auto,
            dns_ttl: 60,
        }
    }
}

/// Which zones `openstack.dns_zone` is looked up among. Huawei Cloud and SberCloud list
/// private zones only when asked for `type=private`; plain Designate has no such type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DnsZoneType {
    /// Ask both ways (one extra listing, once per process); a name found twice (a public
    /// and a private zone) is an error asking for one of the two below.
    Auto,
    /// Only the plain listing: plain Designate, or a Huawei public zone.
    Public,
    /// Only `type=private`: a Huawei Cloud / SberCloud private zone.
    Private,
}

impl OpenStackConfig {
    /// Checks for `[openstack]` that types alone cannot express (keys relative to it).
    pub fn validate(&self) -> Checked {
        let o = self;
        const POLICIES: [&str; 4] = [
            "anti-affinity",
            "soft-anti-affinity",
            "affinity",
            "soft-affinity",
        ];
        if !POLICIES.contains(&o.server_group_policy.as_str()) {
            return Err(invalid(
                "server_group_policy",
                format!("{:?} is not one of {POLICIES:?}", o.server_group_policy),
            ));
        }
        in_range("pg_port", o.pg_port, 1..=u16::MAX)?;
        in_range("request_timeout_secs", o.request_timeout_secs, 1..=600)?;
        in_range("connect_timeout_secs", o.connect_timeout_secs, 1..=120)?;
        in_range("max_retries", o.max_retries, 0..=10)?;
        for (i, g) in o.security_groups.iter().enumerate() {
            non_empty(&format!("security_groups[{i}]"), g.trim())?;
        }
        if o.image != o.image.trim() || o.image.chars().any(char::is_control) {
            return Err(invalid(
                "image",
                format!("{:?} has surrounding blanks or control characters", o.image),
            ));
        }
        if !o.dns_zone.is_empty() && !o.dns_zone.ends_with('.') {
            return Err(invalid(
                "dns_zone",
                format!(
                    "{:?} must be a fully qualified name ending in '.'",
                    o.dns_zone
                ),
            ));
        }
        in_range("dns_ttl", o.dns_ttl, 1..=86400)?;
        if o.use_host_token {
            for (key, v) in [("auth_url", &o.auth_url), ("project_id", &o.project_id)] {
                if v.as_deref().unwrap_or("").is_empty() {
                    return Err(invalid(
                        key,
                        "is required with openstack.use_host_token = true",
                    ));
                }
            }
        }
        Ok(())
    }
}
