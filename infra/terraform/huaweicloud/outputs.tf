output "function_urns" {
  description = "URN of each function, by name."
  value       = { for k, f in huaweicloud_fgs_function.fn : k => f.urn }
}

output "smn_topic_urns" {
  description = "SMN topics the alarms publish to (auth.smn.topic_urns if the functions are also served over HTTP)."
  value       = { for k, t in huaweicloud_smn_topic.alarms : k => t.topic_urn }
}

output "state_bucket" {
  description = "OBS bucket holding <prefix>/<cluster>/state.json."
  value       = huaweicloud_obs_bucket.state.bucket
}

output "base_replicas" {
  description = "Base replicas: name, server id, address, AZ — register each with `pgsurge base add`."
  value = [for s in huaweicloud_compute_instance.base : {
    name    = s.name
    id      = s.id
    address = s.access_ip_v4
    az      = s.availability_zone
  }]
}

output "dns_zone_id" {
  description = "Private DNS zone of the replicas' A records."
  value       = huaweicloud_dns_zone.replicas.id
}

output "agency" {
  description = "The functions' agency (least privilege, see infra/README.md)."
  value       = huaweicloud_identity_agency.functions.name
}
