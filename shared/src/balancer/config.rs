//! `[haproxy]`: the HAProxy nodes every replica is registered in, and how servers are
//! added and drained.

use crate::check::{in_range, invalid, Checked};
use crate::secret::Secret;
use serde::Deserialize;
use std::path::PathBuf;

/// The HAProxy nodes every replica is registered in, and how servers are added and drained.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HaproxyConfig {
    /// The backend (on every node) that pgsurge adds its replicas to.
    pub backend: String,
    /// Every node: each is reached through its runtime API or its Data Plane API.
    pub nodes: Vec<HaproxyNodeConfig>,
    /// Data Plane API user and password for nodes that set none themselves (so the
    /// password can come from `PGSURGE_HAPROXY__DATAPLANE_PASSWORD`).
    pub dataplane_user: String,
    pub dataplane_password: Option<Secret>,
    /// PEM file of the CA(s) that sign `https://` Data Plane API certificates, for nodes
    /// that set none themselves. When set, it is the only trust anchor (no public CAs);
    /// unset, the public web PKI roots.
    pub dataplane_ca_file: Option<PathBuf>,
    /// Weight of a new server (0..=256).
    pub weight: u16,
    /// Health-check new servers (the backend's `option pgsql-check`).
    pub check: bool,
    /// Ramp a new server's weight up over this many seconds (0 = off).
    pub slowstart_secs: u64,
    /// Longest wait for a draining server's sessions to end before they are shut down.
    pub drain_deadline_secs: u64,
    /// Longest wait for HAProxy's first passing health check before a server is made ready.
    pub ready_wait_secs: u64,
    /// Per-call timeout towards one node.
    pub timeout_secs: u64,
}

impl Default for HaproxyConfig {
    fn default() -> Self {
        HaproxyConfig {
            backend: "pg_read".into(),
            nodes: Vec::new(),
            dataplane_user: "admin".into(),
            dataplane_password: None,
            dataplane_ca_file: None,
            weight: 100,
            check: true,
            slowstart_secs: 30,
            drain_deadline_secs: 120,
            ready_wait_secs: 15,
            timeout_secs: 5,
        }
    }
}

/// One HAProxy node: exactly one of `runtime_api` and `dataplane_url`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HaproxyNodeConfig {
    /// Name in reports and logs (unique).
    pub name: String,
    /// Admin socket: `unix:/run/haproxy/admin.sock` or `tcp:10.0.0.10:9999`.
    pub runtime_api: Option<String>,
    /// Data Plane API base URL, e.g. `http://10.0.0.10:5555`.
    pub dataplane_url: Option<String>,
    /// `auto` (read `/info`), `v2` or `v3`.
    pub dataplane_version: Option<String>,
    pub dataplane_user: Option<String>,
    pub dataplane_password: Option<Secret>,
    /// This node's `dataplane_ca_file` (see `haproxy.dataplane_ca_file`).
    pub dataplane_ca_file: Option<PathBuf>,
    /// `push` (default), `agent` or `both`: who converges this node.
    pub mode: crate::balancer::mode::NodeMode,
}

impl HaproxyConfig {
    /// Checks for `[haproxy]` that types alone cannot express (keys relative to it).
    pub fn validate(&self) -> Checked {
        let h = self;
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        };
        if !name_ok(&h.backend) {
            return Err(invalid(
                "backend",
                format!("{:?} must be 1-64 chars of A-Z a-z 0-9 - _ .", h.backend),
            ));
        }
        in_range("weight", h.weight, 0..=256)?;
        in_range("slowstart_secs", h.slowstart_secs, 0..=3600)?;
        in_range("drain_deadline_secs", h.drain_deadline_secs, 1..=3600)?;
        in_range("ready_wait_secs", h.ready_wait_secs, 1..=300)?;
        in_range("timeout_secs", h.timeout_secs, 1..=60)?;
        let mut seen = std::collections::BTreeSet::new();
        for (i, n) in h.nodes.iter().enumerate() {
            let key = |k: &str| format!("nodes[{i}].{k}");
            if !name_ok(&n.name) {
                return Err(invalid(
                    key("name"),
                    format!("{:?} must be 1-64 chars of A-Z a-z 0-9 - _ .", n.name),
                ));
            }
            if !seen.insert(n.name.as_str()) {
                return Err(invalid(key("name"), format!("{:?} is used twice", n.name)));
            }
            match (&n.runtime_api, &n.dataplane_url) {
                (Some(addr), None) => {
                    super::runtime_api::SocketAddr::parse(addr)
                        .map_err(|m| invalid(key("runtime_api"), m.to_string()))?;
                }
                (None, Some(url)) => {
                    let ok = (url.starts_with("http://") || url.starts_with("https://"))
                        && url.len() > "https://".len()
                        && !url.contains('@');
                    if !ok {
                        return Err(invalid(
                            key("dataplane_url"),
                            "must be http(s)://host:port, without credentials in it",
                        ));
                    }
                    if let Some(ca) = n
                        .dataplane_ca_file
                        .as_ref()
                        .or(h.dataplane_ca_file.as_ref())
                    {
                        if !url.starts_with("https://") {
                            return Err(invalid(
                                key("dataplane_ca_file"),
                                "is set but dataplane_url is not https://",
                            ));
                        }
                        super::dataplane::read_ca(ca)
                            .map_err(|m| invalid(key("dataplane_ca_file"), m))?;
                    }
                    if !matches!(
                        n.dataplane_version.as_deref(),
                        None | Some("auto" | "v2" | "v3")
                    ) {
                        return Err(invalid(key("dataplane_version"), "must be auto, v2 or v3"));
                    }
                    let user = n.dataplane_user.as_deref().unwrap_or(&h.dataplane_user);
                    if user.is_empty() {
                        return Err(invalid(key("dataplane_user"), "is empty"));
                    }
                    let pw = n
                        .dataplane_password
                        .as_ref()
                        .or(h.dataplane_password.as_ref());
                    if pw.is_none_or(|p| p.is_empty()) {
                        return Err(invalid(
                            key("dataplane_password"),
                            "missing: set it here or in haproxy.dataplane_password \
                         (PGSURGE_HAPROXY__DATAPLANE_PASSWORD)",
                        ));
                    }
                }
                _ => {
                    return Err(invalid(
                        key("runtime_api"),
                        "set exactly one of runtime_api and dataplane_url",
                    ))
                }
            }
        }
        Ok(())
    }
}
