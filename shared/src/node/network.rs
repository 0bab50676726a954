//! `pgsurge node network`: the server's NICs configured from the config drive's
//! `network_data.json`, the way cloud-init's "local" stage does it on a cloud whose
//! subnets hand out no DHCP (Neutron with `enable_dhcp = false`): the port's fixed
//! address, prefix and routes, matched to the NIC by its MAC address.
//!
//! The image runs it (unit `pgsurge-network.service`) before systemd-networkd starts, so
//! the address is there when `network-online.target` is reached and first boot reaches
//! the primary. It writes systemd-networkd units under `/run/systemd/network/`
//! (`10-pgsurge-<link>.network`, read before the image's catch-all DHCP unit
//! `20-wired.network`), nothing persistent: every boot derives them again.
//!
//! No config drive, or a `network_data.json` that only asks for DHCP: nothing is written
//! and the image's DHCP unit applies. A malformed document is an error (the unit fails,
//! the console says why) and writes nothing.

use serde_json::Value;
use std::net::Ipv4Addr;
use std::path::Path;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum NetworkError {
    #[error("network_data.json: {0}")]
    Malformed(String),
    #[error("{what}: {why}")]
    Io { what: String, why: String },
}

/// One systemd-networkd unit: file name and content.
#[derive(Debug, Clone, PartialEq)]
pub struct Unit {
    pub file: String,
    pub content: String,
}

fn malformed(msg: impl Into<String>) -> NetworkError {
    NetworkError::Malformed(msg.into())
}

fn prefix_len(netmask: &str) -> Result<u32, NetworkError> {
    let m: Ipv4Addr = netmask
        .parse()
        .map_err(|_| malformed(format!("netmask {netmask:?} is not an IPv4 netmask")))?;
    let bits = u32::from(m);
    // A netmask is contiguous ones then zeros.
    if bits.leading_ones() + bits.trailing_zeros() != 32 {
        return Err(malformed(format!("netmask {netmask} is not contiguous")));
    }
    Ok(bits.leading_ones())
}

fn str_field<'a>(v: &'a Value, key: &str, what: &str) -> Result<&'a str, NetworkError> {
    v.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| malformed(format!("{what} has no string `{key}`")))
}

/// The networkd units for every static IPv4 network of `doc` (pure). Links are matched by
/// MAC address; a network of another type (`ipv4_dhcp`, `ipv6*`) gets no unit.
pub fn units(doc: &Value) -> Result<Vec<Unit>, NetworkError> {
    let links = doc
        .get("links")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed("no `links` array"))?;
    let networks = doc
        .get("networks")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed("no `networks` array"))?;
    let mut out = Vec::new();
    for (i, n) in networks.iter().enumerate() {
        let what = format!("networks[{i}]");
        if str_field(n, "type", &what)? != "ipv4" {
            continue;
        }
        let link_id = str_field(n, "link", &what)?;
        let link = links
            .iter()
            .find(|l| l.get("id").and_then(Value::as_str) == Some(link_id))
            .ok_or_else(|| malformed(format!("{what} names link {link_id:?}, not in `links`")))?;
        let mac = str_field(link, "ethernet_mac_address", &format!("link {link_id}"))?;
        let ip: Ipv4Addr = str_field(n, "ip_address", &what)?
            .parse()
            .map_err(|_| malformed(format!("{what}: ip_address is not IPv4")))?;
        let prefix = prefix_len(str_field(n, "netmask", &what)?)?;
        let mut content = format!(
            "# written by pgsurge node network from the config drive's network_data.json\n\
             [Match]\nMACAddress={mac}\n\n[Network]\nAddress={ip}/{prefix}\n"
        );
        if let Some(mtu) = link.get("mtu").and_then(Value::as_u64) {
            content = content.replace("[Network]", &format!("[Link]\nMTUBytes={mtu}\n\n[Network]"));
        }
        for s in n
            .get("services")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if s.get("type").and_then(Value::as_str) == Some("dns") {
                if let Some(a) = s.get("address").and_then(Value::as_str) {
                    content.push_str(&format!("DNS={a}\n"));
                }
            }
        }
        for (j, r) in n
            .get("routes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let rw = format!("{what}.routes[{j}]");
            let dest: Ipv4Addr = str_field(r, "network", &rw)?
                .parse()
                .map_err(|_| malformed(format!("{rw}: network is not IPv4")))?;
            let len = prefix_len(str_field(r, "netmask", &rw)?)?;
            let gw: Ipv4Addr = str_field(r, "gateway", &rw)?
                .parse()
                .map_err(|_| malformed(format!("{rw}: gateway is not IPv4")))?;
            content.push_str(&format!(
                "\n[Route]\nDestination={dest}/{len}\nGateway={gw}\n"
            ));
        }
        // File names carry the link id; keep them to characters networkd and a shell
        // reader take as they are.
        let safe: String = link_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        out.push(Unit {
            file: format!("10-pgsurge-{safe}.network"),
            content,
        });
    }
    Ok(out)
}

/// Write `units` into `dir` (each to a temporary name, then renamed: networkd never
/// reads half a file). Returns the paths written.
pub fn write_units(dir: &Path, units: &[Unit]) -> Result<Vec<String>, NetworkError> {
    let io = |what: String| {
        move |e: std::io::Error| NetworkError::Io {
            what,
            why: e.to_string(),
        }
    };
    std::fs::create_dir_all(dir).map_err(io(format!("create {}", dir.display())))?;
    let mut written = Vec::new();
    for u in units {
        let path = dir.join(&u.file);
        let tmp = dir.join(format!(".{}.tmp", u.file));
        std::fs::write(&tmp, &u.content).map_err(io(format!("write {}", tmp.display())))?;
        std::fs::rename(&tmp, &path).map_err(io(format!("rename to {}", path.display())))?;
        written.push(path.display().to_string());
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// What Nova (Zed, `nova.virt.netutils.get_network_metadata`) writes for a port on a
    /// subnet without DHCP.
    fn nova_static() -> Value {
        json!({
            "links": [{"id": "tap6b1e1b9c-3a", "vif_id": "6b1e1b9c-3a55-4c1e-9c1b-2f1e0e7a1d10",
                       "type": "ovs", "mtu": 1450, "ethernet_mac_address": "fa:16:3e:12:34:56"}],
            "networks": [{"id": "network0", "type": "ipv4", "link": "tap6b1e1b9c-3a",
                          "ip_address": "192.0.2.17", "netmask": "255.255.255.0",
                          "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "192.0.2.1"}],
                          "network_id": "5f0f3b0e", "services": [{"type": "dns", "address": "192.0.2.53"}]}],
            "services": []
        })
    }

    #[test]
    fn a_static_port_gets_its_address_route_and_dns_matched_by_mac() {
        let u = units(&nova_static()).unwrap();
        assert_eq!(u.len(), 1);
        assert_eq!(u[0].file, "10-pgsurge-tap6b1e1b9c-3a.network");
        let c = &u[0].content;
        for want in [
            "MACAddress=fa:16:3e:12:34:56",
            "Address=192.0.2.17/24",
            "Destination=0.0.0.0/0\nGateway=192.0.2.1",
            "DNS=192.0.2.53",
            "MTUBytes=1450",
        ] {
            assert!(c.contains(want), "{want} missing in\n{c}");
        }
    }

    #[test]
    fn dhcp_networks_get_no_unit() {
        let mut d = nova_static();
        d["networks"][0]["type"] = json!("ipv4_dhcp");
        assert!(units(&d).unwrap().is_empty());
    }

    #[test]
    fn malformed_documents_are_refused_with_what_is_wrong() {
        let mut d = nova_static();
        d["networks"][0]["netmask"] = json!("255.0.255.0");
        assert!(units(&d)
            .unwrap_err()
            .to_string()
            .contains("not contiguous"));
        let mut d = nova_static();
        d["networks"][0]["link"] = json!("tap-other");
        assert!(units(&d).unwrap_err().to_string().contains("tap-other"));
        let mut d = nova_static();
        d["links"][0]
            .as_object_mut()
            .unwrap()
            .remove("ethernet_mac_address");
        assert!(units(&d)
            .unwrap_err()
            .to_string()
            .contains("ethernet_mac_address"));
        assert!(units(&json!({})).is_err());
    }

    #[test]
    fn units_are_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let u = units(&nova_static()).unwrap();
        let paths = write_units(dir.path(), &u).unwrap();
        assert_eq!(std::fs::read_to_string(&paths[0]).unwrap(), u[0].content);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
