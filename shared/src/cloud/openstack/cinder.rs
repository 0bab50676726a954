//! Cinder (block storage v3): snapshots and volumes.
//!
//! Creates, gets and deletes use the SDK's generated endpoints; lists use [`Request`]
//! because the generated list endpoints have no `name` filter. Lists filter by name on
//! the server and verify metadata on the client (Cinder's metadata filter needs
//! microversion 3.22 for snapshots and is not offered by every cloud).

use super::errors::{Caller, Reply};
use super::request::Request;
use crate::cloud::{
    CloudError, Filter, Metadata, Result, Snapshot, SnapshotRequest, Status, Volume, VolumeRequest,
};
use openstack_sdk::api::block_storage::v3::{snapshot, volume};
use openstack_sdk::types::ServiceType;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// Page size of list calls (Cinder's default maximum is 1000).
const PAGE: usize = 200;

pub(super) fn build_err(e: impl std::fmt::Display) -> CloudError {
    CloudError::Fatal(format!("cannot build request: {e}"))
}

pub(super) fn metadata(v: &Value) -> Metadata {
    v.as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

pub(super) fn text(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or("").to_string()
}

fn opt_text(v: &Value, key: &str) -> Option<String> {
    v.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Cinder's volume and snapshot states in the trait's terms. `in-use` (attached) is
/// [`Status::Ready`] too: the volume is usable — a scale-up resumed after its server was
/// created must not wait for its own boot disk to become `available` — and whether it is
/// attached shows in [`crate::cloud::Server::volume_ids`]. `attaching`, `detaching`,
/// `reserved`, `backing-up`, ... stay [`Status::Other`].
pub fn status(s: &str) -> Status {
    match s {
        "available" | "in-use" => Status::Ready,
        "creating" | "downloading" | "restoring-backup" => Status::Pending,
        "deleting" => Status::Deleting,
        s if s.starts_with("error") => Status::Error,
        other => Status::Other(other.to_string()),
    }
}

pub fn parse_snapshot(v: &Value, az: Option<String>) -> Snapshot {
    Snapshot {
        id: text(v, "id"),
        name: text(v, "name"),
        volume_id: text(v, "volume_id"),
        status: status(&text(v, "status")),
        size_gb: v.get("size").and_then(Value::as_u64).unwrap_or(0),
        created_at: text(v, "created_at"),
        az,
        metadata: metadata(v.get("metadata").unwrap_or(&Value::Null)),
    }
}

pub fn parse_volume(v: &Value) -> Volume {
    Volume {
        id: text(v, "id"),
        name: text(v, "name"),
        status: status(&text(v, "status")),
        size_gb: v.get("size").and_then(Value::as_u64).unwrap_or(0),
        az: opt_text(v, "availability_zone"),
        snapshot_id: opt_text(v, "snapshot_id"),
        metadata: metadata(v.get("metadata").unwrap_or(&Value::Null)),
    }
}

/// GET every page of `path` (`snapshots/detail`, `volumes/detail`), server-side name filter.
async fn list_all(
    caller: &Caller,
    what: &str,
    path: &str,
    key: &str,
    name: Option<&str>,
) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let mut req =
            Request::get(ServiceType::BlockStorage, path).query("limit", PAGE.to_string());
        if let Some(n) = name {
            req = req.query("name", n);
        }
        if let Some(m) = &marker {
            req = req.query("marker", m.clone());
        }
        let page = caller.send(what, req).await?.json(Some(key))?;
        let items = page.as_array().cloned().unwrap_or_default();
        let n = items.len();
        marker = items.last().map(|v| text(v, "id"));
        out.extend(items);
        if n < PAGE || marker.is_none() {
            return Ok(out);
        }
    }
}

/// 404 on a delete is success: the resource is already gone.
fn gone_ok(r: Result<Reply>) -> Result<()> {
    match r {
        Ok(_) | Err(CloudError::NotFound { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

fn not_found(kind: &'static str, id: &str, r: Result<Reply>) -> Result<Reply> {
    r.map_err(|e| match e {
        CloudError::NotFound { .. } => CloudError::NotFound {
            kind,
            id: id.to_string(),
        },
        e => e,
    })
}

/// The create-volume call for a clone of `snap` (pure, so a unit test pins the body
/// Cinder receives): at least the snapshot's size, in the requested AZ or else the
/// snapshot's. Also returns the size and AZ, for the log.
pub fn create_volume_request<'a>(
    req: &'a VolumeRequest,
    snap: &Snapshot,
    volume_type: &'a str,
) -> Result<(volume::create_30::Request<'a>, u64, Option<String>)> {
    let size = req.size_gb.unwrap_or(snap.size_gb).max(snap.size_gb);
    let az = req.az.clone().or(snap.az.clone());
    let mut b = volume::create_30::VolumeBuilder::default();
    b.name(Some(Cow::from(req.name.as_str())))
        .snapshot_id(Some(Cow::from(req.snapshot_id.as_str())))
        .size(Some(size as i32))
        .metadata(req.metadata.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    if let Some(az) = &az {
        b.availability_zone(Some(Cow::from(az.clone())));
    }
    if !volume_type.is_empty() {
        b.volume_type(Some(Cow::from(volume_type)));
    }
    let ep = volume::create_30::Request::builder()
        .volume(b.build().map_err(build_err)?)
        .build()
        .map_err(build_err)?;
    Ok((ep, size, az))
}

impl Caller {
    /// The AZ of a snapshot is its source volume's (Cinder keeps none on the snapshot).
    async fn volume_az(&self, volume_id: &str) -> Result<Option<String>> {
        match self.get_volume(volume_id).await {
            Ok(v) => Ok(v.az),
            Err(CloudError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn create_snapshot(&self, req: &SnapshotRequest) -> Result<Snapshot> {
        let what = format!("create snapshot {} of volume {}", req.name, req.volume_id);
        let body = snapshot::create::SnapshotBuilder::default()
            .volume_id(req.volume_id.as_str())
            .name(Some(Cow::from(req.name.as_str())))
            .force(req.force)
            .metadata(req.metadata.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .build()
            .map_err(build_err)?;
        let ep = snapshot::create::Request::builder()
            .snapshot(body)
            .build()
            .map_err(build_err)?;
        let reply = self.send(&what, ep).await.map_err(|e| match e {
            CloudError::NotFound { .. } => CloudError::NotFound {
                kind: "volume",
                id: req.volume_id.clone(),
            },
            e => e,
        })?;
        let v = reply.json(Some("snapshot"))?;
        let az = self.volume_az(&req.volume_id).await?;
        let s = parse_snapshot(&v, az);
        tracing::info!(snapshot = %s.id, name = %s.name, volume = %req.volume_id, force = req.force,
            request_id = reply.request_id.as_deref().unwrap_or("-"), "snapshot requested");
        Ok(s)
    }

    pub async fn get_snapshot(&self, id: &str) -> Result<Snapshot> {
        let ep = snapshot::get::Request::builder()
            .id(id)
            .build()
            .map_err(build_err)?;
        let v = not_found(
            "snapshot",
            id,
            self.send(&format!("get snapshot {id}"), ep).await,
        )?
        .json(Some("snapshot"))?;
        let az = self.volume_az(&text(&v, "volume_id")).await?;
        Ok(parse_snapshot(&v, az))
    }

    pub async fn list_snapshots(&self, filter: &Filter) -> Result<Vec<Snapshot>> {
        let items = list_all(
            self,
            "list snapshots",
            "snapshots/detail",
            "snapshots",
            filter.name.as_deref(),
        )
        .await?;
        let mut azs: BTreeMap<String, Option<String>> = BTreeMap::new();
        let mut out = Vec::new();
        for v in items {
            let s = parse_snapshot(&v, None);
            if !filter.matches(&s.name, &s.metadata) {
                continue;
            }
            let az = match azs.get(&s.volume_id) {
                Some(az) => az.clone(),
                None => {
                    let az = self.volume_az(&s.volume_id).await?;
                    azs.insert(s.volume_id.clone(), az.clone());
                    az
                }
            };
            out.push(Snapshot { az, ..s });
        }
        Ok(out)
    }

    pub async fn delete_snapshot(&self, id: &str) -> Result<()> {
        let ep = snapshot::delete::Request::builder()
            .id(id)
            .build()
            .map_err(build_err)?;
        gone_ok(self.send(&format!("delete snapshot {id}"), ep).await)
    }

    /// Clone a volume from a snapshot, in the snapshot's AZ unless told otherwise. The
    /// snapshot is checked first, so a snapshot in `error` (or still `creating`) is refused
    /// with a precise message before anything is created.
    pub async fn create_volume(&self, req: &VolumeRequest, volume_type: &str) -> Result<Volume> {
        let snap = self.get_snapshot(&req.snapshot_id).await?;
        if snap.status != Status::Ready {
            let state = match &snap.status {
                Status::Error => "error".to_string(),
                Status::Pending => "creating".to_string(),
                Status::Deleting => "deleting".to_string(),
                Status::Other(s) => s.clone(),
                Status::Ready => unreachable!(),
            };
            let what = format!(
                "snapshot {} is in state {state}, not available: cannot clone volume {}",
                snap.id, req.name
            );
            return Err(match snap.status {
                Status::Pending => CloudError::Transient(what),
                _ => CloudError::Fatal(what),
            });
        }
        let (ep, size, az) = create_volume_request(req, &snap, volume_type)?;
        let what = format!(
            "create volume {} from snapshot {}",
            req.name, req.snapshot_id
        );
        let reply = self.send(&what, ep).await?;
        let v = parse_volume(&reply.json(Some("volume"))?);
        tracing::info!(volume = %v.id, name = %v.name, snapshot = %req.snapshot_id,
            az = az.as_deref().unwrap_or("-"), size_gb = size,
            request_id = reply.request_id.as_deref().unwrap_or("-"), "volume requested");
        Ok(v)
    }

    /// The volume as Cinder reports it (all fields, Cinder's own status words).
    pub async fn volume_json(&self, id: &str) -> Result<Value> {
        let ep = volume::get::Request::builder()
            .id(id)
            .build()
            .map_err(build_err)?;
        not_found(
            "volume",
            id,
            self.send(&format!("get volume {id}"), ep).await,
        )?
        .json(Some("volume"))
    }

    pub async fn get_volume(&self, id: &str) -> Result<Volume> {
        Ok(parse_volume(&self.volume_json(id).await?))
    }

    pub async fn list_volumes(&self, filter: &Filter) -> Result<Vec<Volume>> {
        let items = list_all(
            self,
            "list volumes",
            "volumes/detail",
            "volumes",
            filter.name.as_deref(),
        )
        .await?;
        Ok(items
            .iter()
            .map(parse_volume)
            .filter(|v| filter.matches(&v.name, &v.metadata))
            .collect())
    }

    /// Delete a volume. Cinder refuses (400) a volume that is attached, has snapshots, or
    /// is busy: that is a [`CloudError::Conflict`] with Cinder's reason, plus what to do when
    /// Nova holds it (since the CVE-2023-2088 fix only Nova may detach its attachments).
    pub async fn delete_volume(&self, id: &str) -> Result<()> {
        // Between the server's delete (Nova detaches the volume) and the volume's own.
        crate::failpoint::hit("openstack.delete_volume.before_request");
        let ep = volume::delete::Request::builder()
            .id(id)
            .build()
            .map_err(build_err)?;
        match self.send(&format!("delete volume {id}"), ep).await {
            Ok(_) | Err(CloudError::NotFound { .. }) => Ok(()),
            Err(CloudError::Fatal(m)) if m.contains("HTTP 400") => match self.volume_json(id).await
            {
                Ok(v) if text(&v, "status") == "in-use" => Err(CloudError::Conflict(format!(
                    "volume {id} is in-use (attached to a server): delete the server \
                         first, then the volume once it is available"
                ))),
                Err(CloudError::NotFound { .. }) => Ok(()),
                _ => Err(CloudError::Conflict(m)),
            },
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn volumes_parse_with_metadata_and_az() {
        let v = parse_volume(&json!({
            "id": "v1", "name": "pgsurge-c-r1", "status": "available", "size": 10,
            "availability_zone": "nova", "snapshot_id": "s1",
            "metadata": {"pgsurge_cluster": "c", "readonly": "False"}
        }));
        assert_eq!(v.status, Status::Ready);
        assert_eq!(v.az.as_deref(), Some("nova"));
        assert_eq!(v.snapshot_id.as_deref(), Some("s1"));
        assert_eq!(
            v.metadata.get("pgsurge_cluster").map(String::as_str),
            Some("c")
        );
        let v = parse_volume(&json!({"id": "v2", "status": "in-use", "snapshot_id": null}));
        assert_eq!(v.status, Status::Ready);
        assert_eq!(v.snapshot_id, None);
    }

    fn body_of(req: &VolumeRequest, snap: &Snapshot) -> Value {
        use openstack_sdk::api::rest_endpoint::RestEndpoint;
        let (ep, _, _) = create_volume_request(req, snap, "").unwrap();
        let (_, bytes) = ep.body().unwrap().expect("a body");
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn clones_are_created_in_the_snapshots_az_unless_told_otherwise() {
        let snap = parse_snapshot(
            &json!({"id": "s1", "volume_id": "v0", "status": "available", "size": 3}),
            Some("az-2".into()),
        );
        let mut req = VolumeRequest {
            name: "pgsurge-c-r1".into(),
            snapshot_id: "s1".into(),
            size_gb: None,
            az: None,
            metadata: [("pgsurge_cluster".to_string(), "c".to_string())].into(),
        };
        let b = body_of(&req, &snap);
        assert_eq!(b["volume"]["availability_zone"], "az-2", "{b}");
        assert_eq!(b["volume"]["snapshot_id"], "s1");
        assert_eq!(b["volume"]["size"], 3);
        assert_eq!(b["volume"]["metadata"]["pgsurge_cluster"], "c");
        req.az = Some("az-9".into());
        assert_eq!(body_of(&req, &snap)["volume"]["availability_zone"], "az-9");
        // no AZ anywhere: Cinder picks its default, we send none
        req.az = None;
        let b = body_of(&req, &parse_snapshot(&json!({"id": "s1", "size": 3}), None));
        assert!(b["volume"].get("availability_zone").is_none(), "{b}");
    }

    #[test]
    fn states_map() {
        assert_eq!(status("creating"), Status::Pending);
        assert_eq!(status("error_deleting"), Status::Error);
        assert_eq!(status("deleting"), Status::Deleting);
        assert_eq!(status("backing-up"), Status::Other("backing-up".into()));
    }
}
