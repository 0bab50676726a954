locals {
  prefix = "pgsurge-${var.cluster}"
}

data "openstack_networking_network_v2" "this" {
  name = var.network_name
}

data "openstack_images_image_v2" "replica" {
  name        = var.replica_image_name
  most_recent = true
}

# --- security groups -------------------------------------------------------------------

resource "openstack_networking_secgroup_v2" "replicas" {
  name                 = "${local.prefix}-replicas"
  description          = "pgsurge ${var.cluster} read replicas"
  delete_default_rules = true
}

resource "openstack_networking_secgroup_rule_v2" "postgres" {
  security_group_id = openstack_networking_secgroup_v2.replicas.id
  description       = "PostgreSQL from HAProxy and the functions"
  direction         = "ingress"
  ethertype         = "IPv4"
  protocol          = "tcp"
  port_range_min    = 5432
  port_range_max    = 5432
  remote_ip_prefix  = var.access_cidr
}

resource "openstack_networking_secgroup_rule_v2" "exporter" {
  security_group_id = openstack_networking_secgroup_v2.replicas.id
  description       = "postgres_exporter from vmagent / Prometheus"
  direction         = "ingress"
  ethertype         = "IPv4"
  protocol          = "tcp"
  port_range_min    = 9187
  port_range_max    = 9187
  remote_ip_prefix  = var.monitoring_cidr
}

resource "openstack_networking_secgroup_rule_v2" "egress" {
  security_group_id = openstack_networking_secgroup_v2.replicas.id
  description       = "WAL from the primary, the instance-ready callback"
  direction         = "egress"
  ethertype         = "IPv4"
  remote_ip_prefix  = var.egress_cidr
}

# --- anti-affinity ----------------------------------------------------------------------

# pgsurge puts surge replicas in the same group (openstack.server_group).
resource "openstack_compute_servergroup_v2" "replicas" {
  name     = "${local.prefix}-replicas"
  policies = ["anti-affinity"]
}

# --- base replicas ----------------------------------------------------------------------

# The original layout (infra/image): system disk from the image + a data volume.
resource "openstack_blockstorage_volume_v3" "data" {
  count             = var.base_replicas
  name              = "${local.prefix}-base-${count.index + 1}-data"
  description       = "PGDATA of pgsurge ${var.cluster} base replica ${count.index + 1}"
  size              = var.data_volume_gb
  availability_zone = var.availability_zones[count.index % length(var.availability_zones)]
  metadata = {
    pgsurge_cluster = var.cluster
    pgsurge_role    = "base"
    pgsurge_replica = "base-${count.index + 1}"
  }
}

resource "openstack_compute_instance_v2" "base" {
  count             = var.base_replicas
  name              = "${local.prefix}-base-${count.index + 1}"
  flavor_name       = var.replica_flavor
  availability_zone = var.availability_zones[count.index % length(var.availability_zones)]
  security_groups   = [openstack_networking_secgroup_v2.replicas.name]
  config_drive      = true

  block_device {
    uuid                  = data.openstack_images_image_v2.replica.id
    source_type           = "image"
    destination_type      = "local"
    boot_index            = 0
    delete_on_termination = true
  }

  block_device {
    uuid                  = openstack_blockstorage_volume_v3.data[count.index].id
    source_type           = "volume"
    destination_type      = "volume"
    boot_index            = -1
    delete_on_termination = false
  }

  network {
    uuid = data.openstack_networking_network_v2.this.id
  }

  scheduler_hints {
    group = openstack_compute_servergroup_v2.replicas.id
  }

  # What pgsurge (cloud::META_*) and vmagent's openstack_sd relabelling read.
  metadata = {
    pgsurge_cluster = var.cluster
    pgsurge_role    = "base"
    pgsurge_replica = "base-${count.index + 1}"
  }
  # pgsurge lists its servers by these tags (Nova filters tags, not metadata).
  tags = ["pgsurge_cluster=${var.cluster}", "pgsurge_role=base"]

  # bootstrap-replica.sh parameters, as scale-up writes them for surge replicas.
  user_data = join("\n", [
    "PRIMARY_HOST=${var.primary_host}",
    "PRIMARY_PORT=${var.primary_port}",
    "REPLICATION_USER=${var.replication_user}",
    "PRIMARY_SSLMODE=${var.sslmode}",
    "CLUSTER_NAME=${local.prefix}-base-${count.index + 1}",
    "APPLICATION_NAME=${local.prefix}-base-${count.index + 1}",
    "",
  ])
}

# --- DNS --------------------------------------------------------------------------------

resource "openstack_dns_zone_v2" "replicas" {
  name        = var.dns_zone
  email       = var.dns_email
  description = "pgsurge ${var.cluster} replicas"
  ttl         = 300
  type        = "PRIMARY"
}
