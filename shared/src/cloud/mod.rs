//! The `Cloud` port: volumes, snapshots and servers, as the functions need them.
//!
//! Two implementations: the local provider (a volume is a directory, a server is a
//! `postgres` process) and OpenStack (Cinder + Nova). Both are driven through this trait
//! only, so the orchestration cannot tell them apart.
//!
//! ## Idempotency
//!
//! Every resource pgsurge creates has a deterministic name ([`resource_name`](crate::model::resource_name)) and
//! metadata ([`META_CLUSTER`], [`META_ROLE`], [`META_REPLICA`], [`META_OP`]). The `ensure_*`
//! helpers look for an existing resource with that name and our metadata and adopt it
//! before creating, so a function killed after a create call and run again converges
//! instead of duplicating. Deletes are idempotent: deleting what is gone is success.

mod config;
pub use config::{CloudConfig, CloudProvider};
pub mod local;
pub mod openstack;

use crate::model::Endpoint;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

// The label keys are the model's (`model::labels`): the replica server's first boot
// checks them too.
pub use crate::model::{META_AZ, META_CLUSTER, META_OP, META_REPLICA, META_ROLE};

pub type Metadata = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloudError {
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    /// The resource exists in a state that forbids the call, or a name is taken by
    /// something that is not ours.
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("quota exceeded: {0}")]
    Quota(String),
    /// Worth retrying later: 5xx, 429, timeouts, connection failures.
    #[error("transient cloud failure: {0}")]
    Transient(String),
    /// Will not get better by retrying: bad request, bad flavor, auth failure, resource in error.
    #[error("cloud error: {0}")]
    Fatal(String),
}

impl CloudError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, CloudError::Transient(_))
    }
}

pub type Result<T> = std::result::Result<T, CloudError>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Being created / booted.
    Pending,
    /// Snapshot or volume usable; server running.
    Ready,
    Deleting,
    Error,
    /// A provider status with no mapping above, kept verbatim.
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub id: String,
    pub name: String,
    pub volume_id: String,
    pub status: Status,
    pub size_gb: u64,
    /// RFC 3339.
    pub created_at: String,
    pub az: Option<String>,
    pub metadata: Metadata,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Volume {
    pub id: String,
    pub name: String,
    pub status: Status,
    pub size_gb: u64,
    pub az: Option<String>,
    pub snapshot_id: Option<String>,
    pub metadata: Metadata,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Server {
    pub id: String,
    pub name: String,
    pub status: Status,
    pub az: Option<String>,
    pub metadata: Metadata,
    /// Volumes attached (the data volume first).
    pub volume_ids: Vec<String>,
    /// PostgreSQL address, once the provider knows it.
    pub endpoint: Option<Endpoint>,
    /// Why the provider put the server in [`Status::Error`], in its own words (Nova's
    /// fault message: "No valid host was found", a volume that failed to attach, ...).
    #[serde(default)]
    pub fault: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotRequest {
    pub name: String,
    pub volume_id: String,
    pub metadata: Metadata,
    /// Snapshot even if the volume is attached (Cinder's `force`).
    pub force: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VolumeRequest {
    pub name: String,
    pub snapshot_id: String,
    /// Defaults to the snapshot's size.
    pub size_gb: Option<u64>,
    /// Defaults to the snapshot's AZ.
    pub az: Option<String>,
    pub metadata: Metadata,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerRequest {
    pub name: String,
    /// The data volume (OpenStack: attached beside the image's system disk; local: the
    /// data directory the server runs on).
    pub volume_id: String,
    /// Overrides the provider's configured flavor.
    pub flavor: Option<String>,
    pub az: Option<String>,
    pub metadata: Metadata,
    /// Bootstrap parameters for the replica bootstrap script (cloud user data).
    pub user_data: Option<String>,
}

/// Which resources to list: all of this cluster's, optionally narrowed.
/// Providers filter on the client when the API cannot (Nova metadata).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Exact name.
    pub name: Option<String>,
    /// Every pair must match.
    pub metadata: Metadata,
}

impl Filter {
    pub fn matches(&self, name: &str, metadata: &Metadata) -> bool {
        self.name.as_deref().is_none_or(|n| n == name)
            && self
                .metadata
                .iter()
                .all(|(k, v)| metadata.get(k) == Some(v))
    }
}

#[async_trait]
pub trait Cloud: Send + Sync {
    /// `local`, `openstack`: for logs and status.
    fn kind(&self) -> &'static str;

    async fn create_snapshot(&self, req: &SnapshotRequest) -> Result<Snapshot>;
    async fn get_snapshot(&self, id: &str) -> Result<Snapshot>;
    async fn list_snapshots(&self, filter: &Filter) -> Result<Vec<Snapshot>>;
    /// Idempotent: a snapshot already gone is success.
    async fn delete_snapshot(&self, id: &str) -> Result<()>;

    async fn create_volume(&self, req: &VolumeRequest) -> Result<Volume>;
    async fn get_volume(&self, id: &str) -> Result<Volume>;
    async fn list_volumes(&self, filter: &Filter) -> Result<Vec<Volume>>;
    /// Idempotent: a volume already gone is success.
    async fn delete_volume(&self, id: &str) -> Result<()>;

    async fn create_server(&self, req: &ServerRequest) -> Result<Server>;
    async fn get_server(&self, id: &str) -> Result<Server>;
    async fn list_servers(&self, filter: &Filter) -> Result<Vec<Server>>;
    /// Idempotent: a server already gone is success. Does not wait for it to vanish.
    /// Also removes what [`Cloud::publish_server`] made for it, gone or not.
    async fn delete_server(&self, id: &str) -> Result<()>;

    /// A surge server of ours passed its readiness checks: make what the provider keeps
    /// beside it (OpenStack: its DNS A record, when configured). Called on the ready path
    /// only, never by a read: `get_server` and `list_servers` change nothing. Idempotent.
    async fn publish_server(&self, _server: &Server) -> Result<()> {
        Ok(())
    }

    /// Remove what [`Cloud::publish_server`] made, by the server's deterministic name
    /// ([`resource_name`](crate::model::resource_name)), whether or not the server still exists: for a server that
    /// vanished behind our back. Idempotent: nothing to remove is success.
    async fn unpublish_server(&self, _name: &str) -> Result<()> {
        Ok(())
    }
}

/// The metadata filter that identifies one resource of ours by name.
fn ours(name: &str, metadata: &Metadata) -> Filter {
    let mut m = Metadata::new();
    for key in [META_CLUSTER, META_REPLICA] {
        if let Some(v) = metadata.get(key) {
            m.insert(key.to_string(), v.clone());
        }
    }
    Filter {
        name: Some(name.to_string()),
        metadata: m,
    }
}

/// Adopt the one existing resource, refuse when the name is ambiguous.
fn adopt<T>(kind: &str, name: &str, mut found: Vec<T>) -> Result<Option<T>> {
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        n => Err(CloudError::Conflict(format!(
            "{n} {kind}s are named {name}; refusing to guess which is ours"
        ))),
    }
}

/// Create the snapshot unless one with this name and our metadata exists.
pub async fn ensure_snapshot(cloud: &dyn Cloud, req: &SnapshotRequest) -> Result<Snapshot> {
    let found = cloud
        .list_snapshots(&ours(&req.name, &req.metadata))
        .await?;
    match adopt("snapshot", &req.name, found)? {
        Some(s) => Ok(s),
        None => cloud.create_snapshot(req).await,
    }
}

/// Create the volume unless one with this name and our metadata exists.
pub async fn ensure_volume(cloud: &dyn Cloud, req: &VolumeRequest) -> Result<Volume> {
    let found = cloud.list_volumes(&ours(&req.name, &req.metadata)).await?;
    match adopt("volume", &req.name, found)? {
        Some(v) => Ok(v),
        None => cloud.create_volume(req).await,
    }
}

/// Create the server unless one with this name and our metadata exists.
pub async fn ensure_server(cloud: &dyn Cloud, req: &ServerRequest) -> Result<Server> {
    let found = cloud.list_servers(&ours(&req.name, &req.metadata)).await?;
    match adopt("server", &req.name, found)? {
        Some(s) => Ok(s),
        None => cloud.create_server(req).await,
    }
}

/// Poll `get` until the resource is ready, fails, or `timeout` passes.
///
/// `Status::Error` is a [`CloudError::Fatal`]; running out of time is
/// [`CloudError::Transient`] (the caller may look again later).
pub async fn wait_ready<T, F, Fut>(
    kind: &str,
    id: &str,
    timeout: Duration,
    get: F,
    status: fn(&T) -> &Status,
) -> Result<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    wait_ready_why(kind, id, timeout, get, status, |_| None).await
}

/// [`wait_ready`] for a server: an ERROR names the provider's reason (Nova's fault).
pub async fn wait_server_ready(cloud: &dyn Cloud, id: &str, timeout: Duration) -> Result<Server> {
    wait_ready_why(
        "server",
        id,
        timeout,
        || cloud.get_server(id),
        |s: &Server| &s.status,
        |s: &Server| s.fault.clone(),
    )
    .await
}

async fn wait_ready_why<T, F, Fut>(
    kind: &str,
    id: &str,
    timeout: Duration,
    get: F,
    status: fn(&T) -> &Status,
    why: fn(&T) -> Option<String>,
) -> Result<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut delay = Duration::from_millis(100);
    loop {
        let item = get().await?;
        match status(&item) {
            Status::Ready => return Ok(item),
            Status::Error => {
                return Err(CloudError::Fatal(match why(&item) {
                    Some(reason) => format!("{kind} {id} went into error: {reason}"),
                    None => format!("{kind} {id} went into error"),
                }))
            }
            _ => {}
        }
        if tokio::time::Instant::now() + delay > deadline {
            return Err(CloudError::Transient(format!(
                "{kind} {id} not ready after {timeout:?} ({:?})",
                status(&item)
            )));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(3));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_name_and_every_pair() {
        let meta: Metadata = [
            (META_CLUSTER.into(), "c".into()),
            (META_REPLICA.into(), "r1".into()),
        ]
        .into();
        let f = ours("pgsurge-c-r1", &meta);
        assert!(f.matches("pgsurge-c-r1", &meta));
        assert!(!f.matches("pgsurge-c-r2", &meta));
        let other: Metadata = [(META_CLUSTER.into(), "d".into())].into();
        assert!(!f.matches("pgsurge-c-r1", &other));
        assert!(Filter::default().matches("anything", &Metadata::new()));
    }

    #[test]
    fn ambiguous_names_are_refused() {
        assert_eq!(adopt::<u8>("volume", "v", vec![]).unwrap(), None);
        assert_eq!(adopt("volume", "v", vec![1]).unwrap(), Some(1));
        assert!(matches!(
            adopt("volume", "v", vec![1, 2]),
            Err(CloudError::Conflict(_))
        ));
    }
}
