//! Designate (DNS v2), optional: one A record `<server name>.<zone>` per replica.
//!
//! The record is made on the ready path only ([`crate::cloud::Cloud::publish_server`]: a
//! surge server ACTIVE with an address), updated if the address changed, and deleted with
//! the server. Reads never write here. Every step is idempotent: a record that already says
//! the right thing is left alone, a record already gone is success.
//!
//! The zone is looked up by name once per process; `openstack.dns_zone_type` says how
//! ([`zone_queries`]): Huawei Cloud / SberCloud show private zones only to a listing
//! that asks for `type=private`.
//!
//! The record's name comes from the replica's deterministic server name, and its
//! description names the server id ([`description`]): so the record can be removed by
//! name (a replica that vanished) or by server id (a server deleted behind our back,
//! whose name Nova no longer tells).

use super::cinder::text;
use super::errors::Caller;
use super::request::Request;
use super::DnsZoneType;
use crate::cloud::{CloudError, Result};
use openstack_sdk::types::ServiceType;
use serde_json::{json, Value};

/// One A recordset as Designate reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ARecord {
    pub id: String,
    pub name: String,
    pub records: Vec<String>,
    pub status: String,
    pub description: String,
}

/// The description our A records carry: which server the record is for.
pub fn description(server_id: &str) -> String {
    format!("pgsurge server {server_id}")
}

/// `<host>.<zone>` (the zone ends with a dot, so the name does too).
pub fn fqdn(host: &str, zone: &str) -> String {
    format!("{host}.{zone}")
}

fn parse(v: &Value) -> ARecord {
    ARecord {
        id: text(v, "id"),
        name: text(v, "name"),
        records: v
            .get("records")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|r| r.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        status: text(v, "status"),
        description: text(v, "description"),
    }
}

/// The zone listings that find `zone` for `kind`. Plain Designate lists every zone the
/// project owns (its `type` filter is PRIMARY / SECONDARY, which `private` never
/// matches); Huawei Cloud and SberCloud list only *public* zones unless asked for
/// `type=private`. `Auto` asks both ways.
pub fn zone_queries(zone: &str, kind: DnsZoneType) -> Vec<Request> {
    let plain = || Request::get(ServiceType::Dns, "zones").query("name", zone);
    match kind {
        DnsZoneType::Public => vec![plain()],
        DnsZoneType::Private => vec![plain().query("type", "private")],
        DnsZoneType::Auto => vec![plain(), plain().query("type", "private")],
    }
}

impl Caller {
    /// The id of a zone the project can see, by name, looked up as `kind` says
    /// ([`zone_queries`]). Found in no listing: `NotFound`; more than one zone of that
    /// name (Huawei allows a public and a private one): `Conflict`, naming the knob.
    pub async fn zone_id(&self, zone: &str, kind: DnsZoneType) -> Result<String> {
        let mut found: Vec<(String, String)> = Vec::new();
        for req in zone_queries(zone, kind) {
            let zones = self
                .send(&format!("find zone {zone}"), req)
                .await?
                .json(Some("zones"))?;
            for z in zones.as_array().into_iter().flatten() {
                // `name` filters accept wildcards: keep exact matches only.
                let (id, name) = (text(z, "id"), text(z, "name"));
                if name == zone && !found.iter().any(|(i, _)| *i == id) {
                    // Huawei says `zone_type` (public / private), Designate `type`.
                    let kind = z.get("zone_type").or_else(|| z.get("type"));
                    let visibility = match kind.and_then(Value::as_str) {
                        Some(t) => t.to_lowercase(),
                        None => "zone".into(),
                    };
                    found.push((id, visibility));
                }
            }
        }
        match found.as_slice() {
            [(id, _)] => Ok(id.clone()),
            [] => Err(CloudError::NotFound {
                kind: "dns zone",
                id: zone.to_string(),
            }),
            many => Err(CloudError::Conflict(format!(
                "{} zones are named {zone} ({}): set openstack.dns_zone_type to \
                 \"public\" or \"private\"",
                many.len(),
                many.iter()
                    .map(|(id, t)| format!("{t} {id}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    pub async fn a_records(&self, zone_id: &str, name: &str) -> Result<Vec<ARecord>> {
        let req = Request::get(ServiceType::Dns, format!("zones/{zone_id}/recordsets"))
            .query("name", name)
            .query("type", "A");
        self.list_a(&format!("list A records {name}"), req, |r| r.name == name)
            .await
    }

    /// Our A records for server `server_id` (by the description they carry).
    pub async fn a_records_of_server(
        &self,
        zone_id: &str,
        server_id: &str,
    ) -> Result<Vec<ARecord>> {
        let want = description(server_id);
        let req = Request::get(ServiceType::Dns, format!("zones/{zone_id}/recordsets"))
            .query("type", "A")
            .query("description", want.clone());
        let what = format!("list A records of server {server_id}");
        self.list_a(&what, req, |r| r.description == want).await
    }

    /// Send a recordset listing; keep what `keep` says (Designate's filters are not
    /// exact matches: `name` and `description` accept wildcards).
    async fn list_a(
        &self,
        what: &str,
        req: Request,
        keep: impl Fn(&ARecord) -> bool,
    ) -> Result<Vec<ARecord>> {
        let sets = self.send(what, req).await?.json(Some("recordsets"))?;
        Ok(sets
            .as_array()
            .into_iter()
            .flatten()
            .map(parse)
            .filter(|r| keep(r))
            .collect())
    }

    /// Make `name` resolve to exactly `ip`, with the description naming `server_id`.
    pub async fn ensure_a_record(
        &self,
        zone_id: &str,
        name: &str,
        ip: &str,
        ttl: u32,
        server_id: &str,
    ) -> Result<()> {
        let existing = self.a_records(zone_id, name).await?;
        let want = vec![ip.to_string()];
        let desc = description(server_id);
        match existing.as_slice() {
            [r] if r.records == want && r.description == desc => Ok(()),
            [r] => {
                let req = Request::new(
                    http::Method::PUT,
                    ServiceType::Dns,
                    format!("zones/{zone_id}/recordsets/{}", r.id),
                )
                .body(json!({ "records": want, "ttl": ttl, "description": desc }));
                self.send(&format!("update A record {name}"), req).await?;
                tracing::info!(record = name, ip, "dns record updated");
                Ok(())
            }
            [] => {
                let req = Request::post(
                    ServiceType::Dns,
                    format!("zones/{zone_id}/recordsets"),
                    json!({ "name": name, "type": "A", "ttl": ttl, "records": want,
                            "description": desc }),
                );
                match self.send(&format!("create A record {name}"), req).await {
                    // a concurrent invocation made it first: converge on the next look
                    Ok(_) | Err(CloudError::Conflict(_)) => {}
                    Err(e) => return Err(e),
                }
                tracing::info!(record = name, ip, "dns record created");
                Ok(())
            }
            many => Err(CloudError::Conflict(format!(
                "{} A recordsets are named {name}",
                many.len()
            ))),
        }
    }

    /// Delete every A record named `name`.
    pub async fn delete_a_records(&self, zone_id: &str, name: &str) -> Result<()> {
        let records = self.a_records(zone_id, name).await?;
        self.delete_records(zone_id, records).await
    }

    /// Delete every A record of ours for server `server_id`.
    pub async fn delete_a_records_of_server(&self, zone_id: &str, server_id: &str) -> Result<()> {
        let records = self.a_records_of_server(zone_id, server_id).await?;
        self.delete_records(zone_id, records).await
    }

    async fn delete_records(&self, zone_id: &str, records: Vec<ARecord>) -> Result<()> {
        for r in records {
            let name = r.name.as_str();
            let req = Request::delete(
                ServiceType::Dns,
                format!("zones/{zone_id}/recordsets/{}", r.id),
            );
            match self.send(&format!("delete A record {name}"), req).await {
                Ok(_) | Err(CloudError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
            tracing::info!(record = name, "dns record deleted");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openstack_sdk::api::rest_endpoint::RestEndpoint;

    /// The query string a request is sent with.
    fn query(r: &Request) -> String {
        let mut url = reqwest::Url::parse("http://dns.example/v2/zones").unwrap();
        r.parameters().add_to_url(&mut url);
        url.query().unwrap_or_default().to_string()
    }

    #[test]
    fn zone_lookups_ask_for_private_zones_where_configured() {
        let z = "db.example.";
        let q = |kind| {
            zone_queries(z, kind)
                .iter()
                .map(|r| (r.endpoint().to_string(), query(r)))
                .collect::<Vec<_>>()
        };
        let plain = ("zones".to_string(), "name=db.example.".to_string());
        let private = (
            "zones".to_string(),
            "name=db.example.&type=private".to_string(),
        );
        assert_eq!(q(DnsZoneType::Auto), [plain.clone(), private.clone()]);
        assert_eq!(q(DnsZoneType::Public), [plain]);
        assert_eq!(q(DnsZoneType::Private), [private]);
    }

    #[test]
    fn recordsets_parse() {
        let r = parse(
            &json!({"id": "r1", "name": "pgsurge-c-r1.db.example.", "type": "A",
            "records": ["10.0.0.7"], "status": "PENDING", "description": "pgsurge server s-1"}),
        );
        assert_eq!(r.records, vec!["10.0.0.7"]);
        assert_eq!(r.description, description("s-1"));
        assert_eq!(
            fqdn("pgsurge-c-r1", "db.example."),
            "pgsurge-c-r1.db.example."
        );
    }
}
