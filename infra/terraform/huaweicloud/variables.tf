variable "region" {
  description = "Region of every resource, e.g. ru-moscow-1 or cn-north-4."
  type        = string
  validation {
    condition     = can(regex("^[a-z]{2}-[a-z]+-[0-9]+$", var.region))
    error_message = "region looks like ru-moscow-1 or cn-north-4."
  }
}

variable "cloud_domain" {
  description = "Endpoint domain of the cloud: myhuaweicloud.com (Huawei Cloud) or hc.sbercloud.ru (SberCloud). Used for the IAM and OBS endpoints the functions call."
  type        = string
  default     = "myhuaweicloud.com"
  validation {
    condition     = can(regex("^[a-z0-9.-]+\\.[a-z]+$", var.cloud_domain))
    error_message = "cloud_domain is a bare domain such as myhuaweicloud.com."
  }
}

variable "project_id" {
  description = "ID of the project (region) the functions manage servers in; the agency token is scoped to it."
  type        = string
  validation {
    condition     = can(regex("^[0-9a-f]{32}$", var.project_id))
    error_message = "project_id is 32 lowercase hex characters."
  }
}

variable "cluster" {
  description = "pgsurge cluster name (cluster.name): resource names, state key, and the name every alarm carries."
  type        = string
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,31}$", var.cluster))
    error_message = "cluster is 1-32 chars of a-z, 0-9 and '-', starting with a letter."
  }
}

variable "vpc_name" {
  description = "Existing VPC holding the primary, HAProxy and the replicas."
  type        = string
}

variable "subnet_name" {
  description = "Existing subnet (in vpc_name) for the replicas and the functions' VPC access."
  type        = string
}

variable "access_cidr" {
  description = "CIDR allowed to reach the replicas' PostgreSQL (HAProxy, the functions' subnet)."
  type        = string
  validation {
    condition     = can(cidrhost(var.access_cidr, 0))
    error_message = "access_cidr is an IPv4 CIDR such as 10.0.0.0/24."
  }
}

variable "monitoring_cidr" {
  description = "CIDR of vmagent / Prometheus, allowed to scrape postgres_exporter (9187) on the replicas."
  type        = string
  validation {
    condition     = can(cidrhost(var.monitoring_cidr, 0))
    error_message = "monitoring_cidr is an IPv4 CIDR such as 10.0.1.0/24."
  }
}

variable "replica_image_name" {
  description = "Name of the replica image (infra/image; Packer) the base replicas boot from."
  type        = string
}

variable "replica_flavor" {
  description = "ECS flavor of base and surge replicas, e.g. s6.large.4 (also openstack.flavor)."
  type        = string
}

variable "base_replicas" {
  description = "Base replicas Terraform keeps (never removed by pgsurge); surge replicas are made from snapshots of them."
  type        = number
  default     = 1
  validation {
    condition     = var.base_replicas >= 1 && var.base_replicas <= 10
    error_message = "base_replicas is 1..10: scale-up needs a replica to snapshot."
  }
}

variable "availability_zones" {
  description = "AZs the base replicas are spread over (round robin)."
  type        = list(string)
  validation {
    condition     = length(var.availability_zones) >= 1
    error_message = "name at least one availability zone."
  }
}

variable "data_disk_gb" {
  description = "Size of each base replica's data disk (PGDATA), GB."
  type        = number
  default     = 100
  validation {
    condition     = var.data_disk_gb >= 10 && var.data_disk_gb <= 32768
    error_message = "data_disk_gb is 10..32768."
  }
}

variable "data_disk_type" {
  description = "EVS type of the data disks (SSD, GPSSD, ESSD, ...)."
  type        = string
  default     = "SSD"
}

variable "data_disk_snapshot_id" {
  description = "EVS snapshot of an existing replica's data disk to create the base replicas' data disks from; empty = blank disks seeded with pg_basebackup (README)."
  type        = string
  default     = ""
}

variable "primary_host" {
  description = "The primary as the replicas and the functions reach it (postgres.primary_host)."
  type        = string
}

variable "primary_port" {
  description = "The primary's port."
  type        = number
  default     = 5432
  validation {
    condition     = var.primary_port > 0 && var.primary_port < 65536
    error_message = "primary_port is 1..65535."
  }
}

variable "replication_user" {
  description = "Role the replicas stream as and pgsurge checks readiness as (REPLICATION, pg_monitor)."
  type        = string
  default     = "pgsurge"
}

variable "replication_password" {
  description = "Its password; goes only into the functions' encrypted environment."
  type        = string
  sensitive   = true
}

variable "sslmode" {
  description = "libpq sslmode towards the primary (postgres.sslmode)."
  type        = string
  default     = "verify-full"
  validation {
    condition     = contains(["disable", "allow", "prefer", "require", "verify-ca", "verify-full"], var.sslmode)
    error_message = "sslmode is one of disable, allow, prefer, require, verify-ca, verify-full."
  }
}

variable "haproxy_nodes" {
  description = "HAProxy nodes the functions register replicas on: name and Data Plane API URL each."
  type = list(object({
    name          = string
    dataplane_url = string
  }))
  validation {
    condition     = length(var.haproxy_nodes) >= 1 && alltrue([for n in var.haproxy_nodes : can(regex("^https?://", n.dataplane_url))])
    error_message = "name at least one HAProxy node, each with an http(s):// dataplane_url."
  }
}

variable "dataplane_password" {
  description = "Data Plane API password (haproxy.dataplane_password); encrypted environment only."
  type        = string
  sensitive   = true
}

variable "state_bucket" {
  description = "Name of the OBS bucket created for the state document (globally unique)."
  type        = string
  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.state_bucket))
    error_message = "state_bucket is 3-63 chars of a-z, 0-9, '.', '-'."
  }
}

variable "lock_conninfo" {
  description = "libpq conninfo to the primary for the state's advisory lock (OBS has no conditional writes), with a password for a role that may only connect, e.g. host=10.0.0.10 user=pgsurge_lock password=... dbname=postgres."
  type        = string
  sensitive   = true
  validation {
    condition     = can(regex("host=", var.lock_conninfo))
    error_message = "lock_conninfo names a host=."
  }
}

variable "function_memory_mb" {
  description = "Memory of each function, MB (the binaries need ~30 MB; FunctionGraph sizes CPU with memory)."
  type        = number
  default     = 256
  validation {
    condition     = contains([128, 256, 512, 768, 1024], var.function_memory_mb)
    error_message = "function_memory_mb is one of 128, 256, 512, 768, 1024."
  }
}

variable "function_timeouts" {
  description = "Timeout in seconds of each function: a scale-up waits for a snapshot and clones, a scale-down drains."
  type        = map(number)
  default = {
    "scale-up"         = 900
    "scale-down"       = 600
    "instance-ready"   = 120
    "instance-deleted" = 120
    "reconcile"        = 600
  }
  validation {
    condition     = alltrue([for t in values(var.function_timeouts) : t >= 3 && t <= 900])
    error_message = "each timeout is 3..900 seconds."
  }
}

variable "ready_rate_minutes" {
  description = "How often the instance-ready timer runs (minutes)."
  type        = number
  default     = 1
  validation {
    condition     = var.ready_rate_minutes >= 1 && var.ready_rate_minutes <= 60
    error_message = "ready_rate_minutes is 1..60."
  }
}

variable "reconcile_rate_minutes" {
  description = "How often the reconcile timer runs (minutes)."
  type        = number
  default     = 5
  validation {
    condition     = var.reconcile_rate_minutes >= 1 && var.reconcile_rate_minutes <= 60
    error_message = "reconcile_rate_minutes is 1..60."
  }
}

variable "scale_up_cpu_percent" {
  description = "Average CPU of the base replicas above which the scale-up alarm fires."
  type        = number
  default     = 70
  validation {
    condition     = var.scale_up_cpu_percent > 0 && var.scale_up_cpu_percent < 100
    error_message = "scale_up_cpu_percent is 1..99."
  }
}

variable "scale_down_cpu_percent" {
  description = "Average CPU of the base replicas below which the scale-down alarm fires."
  type        = number
  default     = 20
  validation {
    condition     = var.scale_down_cpu_percent > 0 && var.scale_down_cpu_percent < 100
    error_message = "scale_down_cpu_percent is 1..99."
  }
}

variable "scale_up_multiplier" {
  description = "pgsurge.multiplier the scale-up alarm carries (2..policy.max_multiplier)."
  type        = number
  default     = 2
  validation {
    condition     = var.scale_up_multiplier >= 2 && var.scale_up_multiplier <= 10
    error_message = "scale_up_multiplier is 2..10 (and at most policy.max_multiplier)."
  }
}

variable "scale_down_replicas" {
  description = "pgsurge.replicas the scale-down alarm carries: surge replicas removed per alarm."
  type        = number
  default     = 1
  validation {
    condition     = var.scale_down_replicas >= 1 && var.scale_down_replicas <= 10
    error_message = "scale_down_replicas is 1..10 (and at most policy.max_step)."
  }
}

variable "dns_zone" {
  description = "Private DNS zone for one A record per replica, with the trailing dot, e.g. db.internal."
  type        = string
  validation {
    condition     = can(regex("^([a-z0-9-]+\\.)+$", var.dns_zone))
    error_message = "dns_zone is a domain name ending in a dot, e.g. db.internal."
  }
}

variable "metrics_push_url" {
  description = "VictoriaMetrics / vmagent base URL the functions push their metrics to (metrics.push_url); empty = none."
  type        = string
  default     = ""
}
