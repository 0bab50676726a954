data "huaweicloud_vpc" "this" {
  name = var.vpc_name
}

data "huaweicloud_vpc_subnet" "this" {
  vpc_id = data.huaweicloud_vpc.this.id
  name   = var.subnet_name
}

locals {
  # The five function crates (functions/*); `just package` writes one FunctionGraph
  # custom-runtime zip per function, an executable `bootstrap` at its root.
  functions   = ["scale-up", "scale-down", "instance-ready", "instance-deleted", "reconcile"]
  package_dir = "${path.module}/../../../target/package/fgs"
  prefix      = "pgsurge-${var.cluster}"

  # The pgsurge configuration, as PGSURGE_<SECTION>__<KEY> environment variables
  # (README "Configuration"); tests/tests/terraform.rs checks every name against the
  # keys the binaries read. Non-secret here, secrets in `secret_env` (encrypted).
  env = {
    PGSURGE_CLUSTER__NAME                 = var.cluster
    PGSURGE_CLOUD__PROVIDER               = "openstack"
    PGSURGE_OPENSTACK__USE_HOST_TOKEN     = "true"
    PGSURGE_OPENSTACK__AUTH_URL           = "https://iam.${var.region}.${var.cloud_domain}/v3"
    PGSURGE_OPENSTACK__PROJECT_ID         = var.project_id
    PGSURGE_OPENSTACK__REGION             = var.region
    PGSURGE_OPENSTACK__FLAVOR             = var.replica_flavor
    PGSURGE_OPENSTACK__NETWORK            = data.huaweicloud_vpc_subnet.this.id
    PGSURGE_OPENSTACK__SECURITY_GROUPS    = jsonencode([huaweicloud_networking_secgroup.replicas.name])
    PGSURGE_OPENSTACK__SERVER_GROUP       = huaweicloud_compute_servergroup.replicas.name
    PGSURGE_OPENSTACK__SERVER_GROUP_POLICY = "anti-affinity"
    PGSURGE_OPENSTACK__DNS_ZONE           = trimsuffix(huaweicloud_dns_zone.replicas.name, ".")
    PGSURGE_OPENSTACK__DNS_ZONE_TYPE      = "private"
    PGSURGE_STATE__BACKEND                = "s3"
    PGSURGE_STATE__CONCURRENCY            = "postgres-advisory-lock"
    PGSURGE_STATE__S3__ENDPOINT           = "https://obs.${var.region}.${var.cloud_domain}"
    PGSURGE_STATE__S3__REGION             = var.region
    PGSURGE_STATE__S3__BUCKET             = huaweicloud_obs_bucket.state.bucket
    PGSURGE_STATE__S3__PATH_STYLE         = "false"
    PGSURGE_POSTGRES__PRIMARY_HOST        = var.primary_host
    PGSURGE_POSTGRES__PRIMARY_PORT        = tostring(var.primary_port)
    PGSURGE_POSTGRES__REPLICATION_USER    = var.replication_user
    PGSURGE_POSTGRES__SSLMODE             = var.sslmode
    # TOML inline tables: a list-of-tables key takes its whole value from one variable.
    PGSURGE_HAPROXY__NODES = "[${join(", ", [for n in var.haproxy_nodes : "{ name = \"${n.name}\", dataplane_url = \"${n.dataplane_url}\" }"])}]"
    PGSURGE_METRICS__PUSH_URL = var.metrics_push_url
  }
  secret_env = {
    PGSURGE_POSTGRES__PASSWORD            = var.replication_password
    PGSURGE_HAPROXY__DATAPLANE_PASSWORD   = var.dataplane_password
    PGSURGE_STATE__POSTGRES_LOCK__CONNINFO = var.lock_conninfo
  }
}
