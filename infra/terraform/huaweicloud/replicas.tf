# Base replicas: servers from the replica image (infra/image) with a data disk, spread over
# the AZs and kept on different hosts. pgsurge never removes them; scale-up snapshots one
# of them. Their metadata is what pgsurge (cloud::META_*) and vmagent's openstack_sd
# relabelling read.
data "huaweicloud_images_image" "replica" {
  name        = var.replica_image_name
  most_recent = true
}

resource "huaweicloud_networking_secgroup" "replicas" {
  name                 = "${local.prefix}-replicas"
  description          = "pgsurge ${var.cluster} read replicas"
  delete_default_rules = true
}

resource "huaweicloud_networking_secgroup_rule" "postgres" {
  security_group_id = huaweicloud_networking_secgroup.replicas.id
  description       = "PostgreSQL from HAProxy and the functions"
  direction         = "ingress"
  ethertype         = "IPv4"
  protocol          = "tcp"
  port_range_min    = 5432
  port_range_max    = 5432
  remote_ip_prefix  = var.access_cidr
}

resource "huaweicloud_networking_secgroup_rule" "exporter" {
  security_group_id = huaweicloud_networking_secgroup.replicas.id
  description       = "postgres_exporter from vmagent / Prometheus"
  direction         = "ingress"
  ethertype         = "IPv4"
  protocol          = "tcp"
  port_range_min    = 9187
  port_range_max    = 9187
  remote_ip_prefix  = var.monitoring_cidr
}

resource "huaweicloud_networking_secgroup_rule" "egress" {
  security_group_id = huaweicloud_networking_secgroup.replicas.id
  description       = "WAL from the primary, the instance-ready callback"
  direction         = "egress"
  ethertype         = "IPv4"
  remote_ip_prefix  = data.huaweicloud_vpc.this.cidr
}

resource "huaweicloud_compute_servergroup" "replicas" {
  name     = "${local.prefix}-replicas"
  policies = ["anti-affinity"]
}

resource "huaweicloud_compute_instance" "base" {
  count = var.base_replicas

  name               = "${local.prefix}-base-${count.index + 1}"
  description        = "pgsurge ${var.cluster} base replica"
  image_id           = data.huaweicloud_images_image.replica.id
  flavor_id          = var.replica_flavor
  availability_zone  = var.availability_zones[count.index % length(var.availability_zones)]
  security_group_ids = [huaweicloud_networking_secgroup.replicas.id]
  system_disk_type   = var.data_disk_type
  system_disk_size   = 20

  network {
    uuid = data.huaweicloud_vpc_subnet.this.id
  }

  data_disks {
    type        = var.data_disk_type
    size        = var.data_disk_gb
    snapshot_id = var.data_disk_snapshot_id == "" ? null : var.data_disk_snapshot_id
  }

  scheduler_hints {
    group = huaweicloud_compute_servergroup.replicas.id
  }

  metadata = {
    pgsurge_cluster = var.cluster
    pgsurge_role    = "base"
    pgsurge_replica = "base-${count.index + 1}"
  }

  # The bootstrap parameters (infra/image/bootstrap-replica.sh), as scale-up writes them
  # for a surge replica. No password: the image provides it (README of infra/image).
  user_data = join("\n", [
    "PRIMARY_HOST=${var.primary_host}",
    "PRIMARY_PORT=${var.primary_port}",
    "REPLICATION_USER=${var.replication_user}",
    "PRIMARY_SSLMODE=${var.sslmode}",
    "CLUSTER_NAME=${local.prefix}-base-${count.index + 1}",
    "APPLICATION_NAME=${local.prefix}-base-${count.index + 1}",
    "",
  ])

  stop_before_destroy         = true
  delete_disks_on_termination = false
}
