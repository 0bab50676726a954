//! `[cloud]`: which provider the functions act on.

use serde::Deserialize;

/// Which cloud the functions act on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CloudProvider {
    /// None: functions authenticate, parse and classify events and change nothing.
    #[default]
    None,
    /// This machine: volumes are directories, servers `postgres` processes (`[local]`).
    Local,
    /// An OpenStack cloud: Cinder volumes and snapshots, Nova servers (`[openstack]`).
    Openstack,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CloudConfig {
    pub provider: CloudProvider,
}
