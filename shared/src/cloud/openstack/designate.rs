//! Designate (DNS v2), optional: one A record `<server name>.<zone>` per replica.
//!
//! The record is made once the server is first seen ACTIVE with an address (Nova assigns
//! the address while building), updated if the address changed, and deleted with the
//! server. Every step is idempotent: a record that already says the right thing is left
//! alone, a record already gone is success.

use super::cinder::text;
use super::errors::Caller;
use super::request::Request;
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
    }
}

impl Caller {
    /// The id of a zone the project can see, by name.
    pub async fn zone_id(&self, zone: &str) -> Result<String> {
        let req = Request::get(ServiceType::Dns, "zones").query("name", zone);
        let zones = self
            .send(&format!("find zone {zone}"), req)
            .await?
            .json(Some("zones"))?;
        match zones.as_array().map(Vec::as_slice) {
            Some([z]) => Ok(text(z, "id")),
            Some([]) | None => Err(CloudError::NotFound {
                kind: "dns zone",
                id: zone.to_string(),
            }),
            Some(many) => Err(CloudError::Conflict(format!(
                "{} zones are named {zone}",
                many.len()
            ))),
        }
    }

    pub async fn a_records(&self, zone_id: &str, name: &str) -> Result<Vec<ARecord>> {
        let req = Request::get(ServiceType::Dns, format!("zones/{zone_id}/recordsets"))
            .query("name", name)
            .query("type", "A");
        let sets = self
            .send(&format!("list A records {name}"), req)
            .await?
            .json(Some("recordsets"))?;
        Ok(sets
            .as_array()
            .into_iter()
            .flatten()
            .map(parse)
            .filter(|r| r.name == name)
            .collect())
    }

    /// Make `name` resolve to exactly `ip`.
    pub async fn ensure_a_record(
        &self,
        zone_id: &str,
        name: &str,
        ip: &str,
        ttl: u32,
    ) -> Result<()> {
        let existing = self.a_records(zone_id, name).await?;
        let want = vec![ip.to_string()];
        match existing.as_slice() {
            [r] if r.records == want => Ok(()),
            [r] => {
                let req = Request::new(
                    http::Method::PUT,
                    ServiceType::Dns,
                    format!("zones/{zone_id}/recordsets/{}", r.id),
                )
                .body(json!({ "records": want, "ttl": ttl }));
                self.send(&format!("update A record {name}"), req).await?;
                tracing::info!(record = name, ip, "dns record updated");
                Ok(())
            }
            [] => {
                let req = Request::post(
                    ServiceType::Dns,
                    format!("zones/{zone_id}/recordsets"),
                    json!({ "name": name, "type": "A", "ttl": ttl, "records": want }),
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

    pub async fn delete_a_records(&self, zone_id: &str, name: &str) -> Result<()> {
        for r in self.a_records(zone_id, name).await? {
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

    #[test]
    fn recordsets_parse() {
        let r = parse(
            &json!({"id": "r1", "name": "pgsurge-c-r1.db.example.", "type": "A",
            "records": ["10.0.0.7"], "status": "PENDING"}),
        );
        assert_eq!(r.records, vec!["10.0.0.7"]);
        assert_eq!(
            fqdn("pgsurge-c-r1", "db.example."),
            "pgsurge-c-r1.db.example."
        );
    }
}
