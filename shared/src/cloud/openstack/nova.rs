//! Nova (compute v2.1): servers booted from the replica image with their data volume
//! attached, flavors, server groups.
//!
//! Servers are created with microversion 2.52 so they carry tags from birth: a normal user
//! cannot filter servers by metadata on the server side, but can by tag (2.26+), so every
//! server gets `pgsurge_cluster=<c>` / `pgsurge_role=<r>` tags mirroring its metadata, and
//! lists ask for `name` (a regex, anchored and escaped here) plus those tags, then verify the
//! full metadata on the client.

use super::cinder::{metadata, text};
use super::errors::Caller;
use super::request::Request;
use crate::cloud::{
    CloudError, Filter, Metadata, Result, Server, ServerRequest, Status, META_AZ, META_CLUSTER,
    META_ROLE,
};
use crate::model::Endpoint;
use base64::Engine;
use openstack_sdk::types::ServiceType;
use serde_json::{json, Value};

/// Microversion for server create and list: tags at create (2.52), tag filters (2.26).
const TAGS_MICROVERSION: (u8, u8) = (2, 52);
/// Nova answers at most 1000 servers per page by default.
const PAGE: usize = 200;

/// Everything about a boot request that comes from configuration, resolved to ids.
#[derive(Debug, Clone, Default)]
pub struct BootSettings {
    pub flavor_id: String,
    /// Glance id of the replica image (`openstack.image`, resolved): the system disk.
    pub image_id: String,
    /// Neutron network id; `None` = `networks: "none"`.
    pub network_id: Option<String>,
    pub security_groups: Vec<String>,
    pub key_name: Option<String>,
    pub server_group_id: Option<String>,
    pub availability_zone: Option<String>,
    pub delete_on_termination: bool,
}

/// The server tags that mirror the metadata keys a list filters on.
pub fn tags_for(metadata: &Metadata) -> Vec<String> {
    [META_CLUSTER, META_ROLE]
        .iter()
        .filter_map(|k| metadata.get(*k).map(|v| format!("{k}={v}")))
        .filter(|t| t.len() <= 60 && !t.contains(',') && !t.contains('/'))
        .collect()
}

/// Nova matches `name` as a regular expression: anchor it and escape every metacharacter.
pub fn name_regex(name: &str) -> String {
    let mut out = String::from("^");
    for c in name.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('$');
    out
}

/// The create body (pure, so a unit test pins the exact shape Nova receives).
///
/// The layout the replica image expects: the system disk from the image on the flavor's
/// root disk, and the data volume, cloned from a snapshot, attached as a second, non-boot
/// disk (the guest finds it by its serial, the volume id). Nova wants both halves spelled
/// out when `block_device_mapping_v2` comes with `imageRef`: the image as the boot device
/// (`source_type: image`, `destination_type: local`, `boot_index` 0 — Nova refuses the
/// request as an invalid boot sequence without it), the volume with `boot_index` -1. This
/// is the request `openstack server create --image … --block-device …` sends. A local
/// system disk rather than one on a volume (`destination_type: volume`): every Nova (and
/// Huawei's ECS Nova API) takes it, and it is nothing pgsurge has to create, label or
/// delete. The data volume is not deleted with the server by default
/// (`delete_on_termination = false`): pgsurge deletes it itself, after its proofs.
pub fn create_body(req: &ServerRequest, boot: &BootSettings, flavor_id: &str) -> Value {
    let mut server = json!({
        "name": req.name,
        "flavorRef": flavor_id,
        "imageRef": boot.image_id,
        "block_device_mapping_v2": [{
            "uuid": boot.image_id,
            "source_type": "image",
            "destination_type": "local",
            "boot_index": 0,
            "delete_on_termination": true,
        }, {
            "uuid": req.volume_id,
            "source_type": "volume",
            "destination_type": "volume",
            "boot_index": -1,
            "delete_on_termination": boot.delete_on_termination,
        }],
        "metadata": req.metadata,
        "tags": tags_for(&req.metadata),
    });
    let s = server.as_object_mut().expect("object");
    match &boot.network_id {
        Some(id) => {
            s.insert("networks".into(), json!([{ "uuid": id }]));
            if !boot.security_groups.is_empty() {
                let groups: Vec<Value> = boot
                    .security_groups
                    .iter()
                    .map(|g| json!({ "name": g }))
                    .collect();
                s.insert("security_groups".into(), Value::Array(groups));
            }
        }
        // security groups apply to ports: with no network there is nothing to attach them to
        None => {
            s.insert("networks".into(), json!("none"));
        }
    }
    if let Some(k) = &boot.key_name {
        s.insert("key_name".into(), json!(k));
    }
    if let Some(az) = req.az.as_ref().or(boot.availability_zone.as_ref()) {
        s.insert("availability_zone".into(), json!(az));
        // What discovery labels the server's metrics with (no Nova API exposes the zone to it).
        if let Some(m) = s.get_mut("metadata").and_then(Value::as_object_mut) {
            m.entry(META_AZ).or_insert_with(|| json!(az));
        }
    }
    if let Some(ud) = &req.user_data {
        s.insert(
            "user_data".into(),
            json!(base64::engine::general_purpose::STANDARD.encode(ud)),
        );
    }
    let mut body = json!({ "server": server });
    if let Some(g) = &boot.server_group_id {
        body["os:scheduler_hints"] = json!({ "group": g });
    }
    body
}

/// Nova's server states in the trait's terms.
pub fn server_status(status: &str, task_state: Option<&str>) -> Status {
    if task_state == Some("deleting") {
        return Status::Deleting;
    }
    match status {
        "BUILD" | "REBUILD" => Status::Pending,
        "ACTIVE" => Status::Ready,
        "ERROR" => Status::Error,
        "DELETED" | "SOFT_DELETED" => Status::Deleting,
        other => Status::Other(other.to_string()),
    }
}

/// The server's address: first IPv4 on `network_name` if given, else the first IPv4 at all.
fn address(v: &Value, network_name: Option<&str>) -> Option<String> {
    let nets = v.get("addresses")?.as_object()?;
    let pick = |list: &Value| -> Option<String> {
        list.as_array()?
            .iter()
            .find(|a| a.get("version").and_then(Value::as_u64) == Some(4))
            .and_then(|a| a.get("addr")?.as_str().map(str::to_string))
    };
    if let Some(n) = network_name {
        if let Some(a) = nets.get(n).and_then(pick) {
            return Some(a);
        }
    }
    nets.values().find_map(pick)
}

pub fn parse_server(v: &Value, pg_port: u16, network_name: Option<&str>) -> Server {
    Server {
        id: text(v, "id"),
        name: text(v, "name"),
        status: server_status(
            &text(v, "status"),
            v.get("OS-EXT-STS:task_state").and_then(Value::as_str),
        ),
        az: v
            .get("OS-EXT-AZ:availability_zone")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        metadata: metadata(v.get("metadata").unwrap_or(&Value::Null)),
        volume_ids: v
            .get("os-extended-volumes:volumes_attached")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.get("id")?.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        endpoint: address(v, network_name).map(|host| Endpoint {
            host,
            port: pg_port,
        }),
        // Nova's reason for an ERROR (only shown with the server while it is in ERROR)
        fault: v
            .get("fault")
            .and_then(|f| f.get("message"))
            .and_then(Value::as_str)
            .filter(|m| !m.trim().is_empty())
            .map(|m| m.trim().to_string()),
    }
}

impl Caller {
    /// Flavor id from a name or id; a flavor that does not exist is `NotFound { kind: "flavor" }`.
    pub async fn flavor_id(&self, flavor: &str) -> Result<String> {
        let by_id = Request::get(ServiceType::Compute, format!("flavors/{flavor}"));
        match self.send(&format!("get flavor {flavor}"), by_id).await {
            Ok(r) => return Ok(text(&r.json(Some("flavor"))?, "id")),
            Err(CloudError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        let list = Request::get(ServiceType::Compute, "flavors").query("is_public", "None");
        let flavors = self
            .send("list flavors", list)
            .await?
            .json(Some("flavors"))?;
        let found: Vec<String> = flavors
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| text(f, "name") == flavor)
            .map(|f| text(f, "id"))
            .collect();
        match found.as_slice() {
            [id] => Ok(id.clone()),
            [] => Err(CloudError::NotFound {
                kind: "flavor",
                id: flavor.to_string(),
            }),
            _ => Err(CloudError::Conflict(format!(
                "{} flavors are named {flavor}; configure its id",
                found.len()
            ))),
        }
    }

    /// The server group's id, created with `policy` when no group has this name.
    pub async fn ensure_server_group(&self, name: &str, policy: &str) -> Result<String> {
        let groups = self
            .send(
                "list server groups",
                Request::get(ServiceType::Compute, "os-server-groups"),
            )
            .await?
            .json(Some("server_groups"))?;
        let mine: Vec<&Value> = groups
            .as_array()
            .into_iter()
            .flatten()
            .filter(|g| text(g, "name") == name)
            .collect();
        match mine.as_slice() {
            [g] => return Ok(text(g, "id")),
            [] => {}
            _ => {
                return Err(CloudError::Conflict(format!(
                    "{} server groups are named {name}",
                    mine.len()
                )))
            }
        }
        // 2.15 brings the soft policies; `policies` (a list) is the pre-2.64 shape, which
        // every cloud we target accepts.
        let req = Request::post(
            ServiceType::Compute,
            "os-server-groups",
            json!({ "server_group": { "name": name, "policies": [policy] } }),
        )
        .microversion(2, 15);
        let g = self
            .send(&format!("create server group {name}"), req)
            .await?
            .json(Some("server_group"))?;
        tracing::info!(group = %text(&g, "id"), name, policy, "server group created");
        Ok(text(&g, "id"))
    }

    pub async fn create_server(
        &self,
        req: &ServerRequest,
        boot: &BootSettings,
        flavor_id: &str,
        pg_port: u16,
        network_name: Option<&str>,
    ) -> Result<Server> {
        let body = create_body(req, boot, flavor_id);
        let (maj, min) = TAGS_MICROVERSION;
        let call = Request::post(ServiceType::Compute, "servers", body).microversion(maj, min);
        let what = format!(
            "create server {} from image {} with volume {}",
            req.name, boot.image_id, req.volume_id
        );
        let reply = self.send(&what, call).await?;
        let id = text(&reply.json(Some("server"))?, "id");
        tracing::info!(server = %id, name = %req.name, image = %boot.image_id, volume = %req.volume_id, flavor = flavor_id,
            request_id = reply.request_id.as_deref().unwrap_or("-"), "server requested");
        // the create answer holds only id and links: read the server back
        match self.get_server(&id, pg_port, network_name).await {
            Ok(s) => Ok(s),
            // accepted but not yet readable: report what we know
            Err(CloudError::NotFound { .. }) => Ok(Server {
                id,
                name: req.name.clone(),
                status: Status::Pending,
                az: None,
                metadata: req.metadata.clone(),
                volume_ids: vec![req.volume_id.clone()],
                endpoint: None,
                fault: None,
            }),
            Err(e) => Err(e),
        }
    }

    pub async fn get_server(
        &self,
        id: &str,
        pg_port: u16,
        network_name: Option<&str>,
    ) -> Result<Server> {
        // (the generated `get_20` asks for microversion 2.0, which Nova's v2.1 API refuses)
        let (maj, min) = TAGS_MICROVERSION;
        let ep = Request::get(ServiceType::Compute, format!("servers/{id}")).microversion(maj, min);
        let v = match self.send(&format!("get server {id}"), ep).await {
            Ok(r) => r.json(Some("server"))?,
            Err(CloudError::NotFound { .. }) => {
                return Err(CloudError::NotFound {
                    kind: "server",
                    id: id.to_string(),
                })
            }
            Err(e) => return Err(e),
        };
        let s = parse_server(&v, pg_port, network_name);
        if s.status == Status::Error {
            // Nova's reason (NoValidHost, a volume that failed to attach, ...): in the
            // returned server (`fault`, which `wait_server_ready` puts in its error) and here
            tracing::warn!(server = %s.id, name = %s.name, fault = s.fault.as_deref().unwrap_or("-"),
                "server is in ERROR");
        }
        Ok(s)
    }

    pub async fn list_servers(
        &self,
        filter: &Filter,
        pg_port: u16,
        network_name: Option<&str>,
    ) -> Result<Vec<Server>> {
        let tags = tags_for(&filter.metadata);
        let (maj, min) = TAGS_MICROVERSION;
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let mut req = Request::get(ServiceType::Compute, "servers/detail")
                .microversion(maj, min)
                .query("limit", PAGE.to_string());
            if let Some(n) = &filter.name {
                req = req.query("name", name_regex(n));
            }
            if !tags.is_empty() {
                req = req.query("tags", tags.join(","));
            }
            if let Some(m) = &marker {
                req = req.query("marker", m.clone());
            }
            let page = self
                .send("list servers", req)
                .await?
                .json(Some("servers"))?;
            let items = page.as_array().cloned().unwrap_or_default();
            let n = items.len();
            marker = items.last().map(|v| text(v, "id"));
            out.extend(
                items
                    .iter()
                    .map(|v| parse_server(v, pg_port, network_name))
                    .filter(|s| filter.matches(&s.name, &s.metadata)),
            );
            if n < PAGE || marker.is_none() {
                return Ok(out);
            }
        }
    }

    pub async fn delete_server(&self, id: &str) -> Result<()> {
        let ep = Request::delete(ServiceType::Compute, format!("servers/{id}"));
        match self.send(&format!("delete server {id}"), ep).await {
            Ok(_) => {
                // Accepted (204), not gone: Nova deletes and detaches the volume later.
                crate::failpoint::hit("openstack.delete_server.accepted");
                Ok(())
            }
            Err(CloudError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> ServerRequest {
        ServerRequest {
            name: "pgsurge-c-r1".into(),
            volume_id: "vol-1".into(),
            flavor: None,
            az: None,
            metadata: [
                (META_CLUSTER.to_string(), "c".to_string()),
                (META_ROLE.to_string(), "surge".to_string()),
                ("pgsurge_replica".to_string(), "r1".to_string()),
            ]
            .into(),
            user_data: Some("#!/bin/sh\necho hi\n".into()),
        }
    }

    #[test]
    fn image_boot_with_the_data_volume_attached_body() {
        let boot = BootSettings {
            image_id: "img-1".into(),
            network_id: Some("net-1".into()),
            security_groups: vec!["pg".into()],
            key_name: Some("k".into()),
            server_group_id: Some("grp".into()),
            availability_zone: Some("az1".into()),
            delete_on_termination: true,
            ..BootSettings::default()
        };
        let b = create_body(&req(), &boot, "fl-1");
        let s = &b["server"];
        assert_eq!(s["flavorRef"], "fl-1");
        // system disk: the image, the boot device on the flavor's disk; the data volume:
        // one non-boot mapping; nothing else
        assert_eq!(s["imageRef"], "img-1");
        assert_eq!(s["block_device_mapping_v2"].as_array().unwrap().len(), 2);
        assert_eq!(
            s["block_device_mapping_v2"][0],
            json!({"uuid": "img-1", "source_type": "image", "destination_type": "local",
                   "boot_index": 0, "delete_on_termination": true})
        );
        let bdm = &s["block_device_mapping_v2"][1];
        assert_eq!(bdm["uuid"], "vol-1");
        assert_eq!(bdm["boot_index"], -1);
        assert_eq!(bdm["source_type"], "volume");
        assert_eq!(bdm["destination_type"], "volume");
        assert_eq!(bdm["delete_on_termination"], true);
        assert_eq!(s["networks"][0]["uuid"], "net-1");
        assert_eq!(s["security_groups"][0]["name"], "pg");
        assert_eq!(s["key_name"], "k");
        assert_eq!(s["availability_zone"], "az1");
        assert_eq!(s["metadata"]["pgsurge_az"], "az1", "discovery's az label");
        assert_eq!(s["metadata"]["pgsurge_replica"], "r1");
        assert_eq!(
            s["tags"],
            json!(["pgsurge_cluster=c", "pgsurge_role=surge"])
        );
        assert_eq!(s["user_data"], "IyEvYmluL3NoCmVjaG8gaGkK");
        assert_eq!(b["os:scheduler_hints"]["group"], "grp");
        // the request's AZ (the snapshot's, passed down by scale-up) wins over the config's
        let mut r = req();
        r.az = Some("az-snap".into());
        let b2 = create_body(&r, &boot, "fl-1");
        assert_eq!(b2["server"]["availability_zone"], "az-snap");
        r.az = None;
        let no_az = BootSettings {
            availability_zone: None,
            ..boot.clone()
        };
        assert!(create_body(&r, &no_az, "fl-1")["server"]
            .get("availability_zone")
            .is_none());
        // no network: "none", and no security groups
        let b = create_body(&req(), &BootSettings::default(), "f");
        assert_eq!(b["server"]["networks"], "none");
        assert!(b["server"].get("security_groups").is_none());
        assert!(b.get("os:scheduler_hints").is_none());
    }

    #[test]
    fn names_are_anchored_literal_regexes() {
        assert_eq!(name_regex("pgsurge-c-r1"), "^pgsurge-c-r1$");
        assert_eq!(name_regex("a.b(c)"), "^a\\.b\\(c\\)$");
    }

    #[test]
    fn servers_parse() {
        let v = json!({
            "id": "s1", "name": "pgsurge-c-r1", "status": "ACTIVE",
            "OS-EXT-STS:task_state": null, "OS-EXT-AZ:availability_zone": "nova",
            "metadata": {"pgsurge_cluster": "c"},
            "os-extended-volumes:volumes_attached": [{"id": "vol-1", "delete_on_termination": false}],
            "addresses": {"other": [{"addr": "fe80::1", "version": 6}],
                          "db-net": [{"addr": "10.0.0.7", "version": 4}]}
        });
        let s = parse_server(&v, 5432, Some("db-net"));
        assert_eq!(s.status, Status::Ready);
        assert_eq!(s.volume_ids, vec!["vol-1"]);
        assert_eq!(
            s.endpoint,
            Some(Endpoint {
                host: "10.0.0.7".into(),
                port: 5432
            })
        );
        assert_eq!(s.fault, None);
        let e = parse_server(
            &json!({"id": "s2", "status": "ERROR",
                    "fault": {"code": 500, "message": "No valid host was found. ", "details": "..."}}),
            5432,
            None,
        );
        assert_eq!(e.status, Status::Error);
        assert_eq!(e.fault.as_deref(), Some("No valid host was found."));
        assert_eq!(server_status("ACTIVE", Some("deleting")), Status::Deleting);
        assert_eq!(server_status("BUILD", None), Status::Pending);
        assert_eq!(
            server_status("SHUTOFF", None),
            Status::Other("SHUTOFF".into())
        );
    }
}
