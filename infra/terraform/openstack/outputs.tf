output "base_replicas" {
  description = "Base replicas: name, server id, address, AZ — register each with `pgsurge base add`."
  value = [for s in openstack_compute_instance_v2.base : {
    name    = s.name
    id      = s.id
    address = s.access_ip_v4
    az      = s.availability_zone
  }]
}

output "security_group" {
  description = "openstack.security_groups for the functions' configuration."
  value       = openstack_networking_secgroup_v2.replicas.name
}

output "server_group" {
  description = "openstack.server_group for the functions' configuration."
  value       = openstack_compute_servergroup_v2.replicas.name
}

output "dns_zone" {
  description = "openstack.dns_zone (without the trailing dot)."
  value       = trimsuffix(openstack_dns_zone_v2.replicas.name, ".")
}

output "alarm_stack_id" {
  description = "Heat stack holding the Aodh alarms."
  value       = openstack_orchestration_stack_v1.alarms.id
}
