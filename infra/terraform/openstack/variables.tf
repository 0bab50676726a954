variable "cloud" {
  description = "Cloud name in clouds.yaml (empty: OS_* environment variables)."
  type        = string
  default     = ""
}

variable "cluster" {
  description = "pgsurge cluster name (cluster.name): resource names and the name every alarm carries."
  type        = string
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,31}$", var.cluster))
    error_message = "cluster is 1-32 chars of a-z, 0-9 and '-', starting with a letter."
  }
}

variable "network_name" {
  description = "Existing network of the primary, HAProxy and the replicas."
  type        = string
}

variable "access_cidr" {
  description = "CIDR allowed to reach the replicas' PostgreSQL (HAProxy, the functions' hosts)."
  type        = string
  validation {
    condition     = can(cidrhost(var.access_cidr, 0))
    error_message = "access_cidr is an IPv4 CIDR such as 10.0.0.0/24."
  }
}

variable "monitoring_cidr" {
  description = "CIDR of vmagent / Prometheus, allowed to scrape postgres_exporter (9187)."
  type        = string
  validation {
    condition     = can(cidrhost(var.monitoring_cidr, 0))
    error_message = "monitoring_cidr is an IPv4 CIDR such as 10.0.1.0/24."
  }
}

variable "egress_cidr" {
  description = "Where replicas may connect: the primary (WAL) and the functions' endpoint (instance-ready callback)."
  type        = string
  validation {
    condition     = can(cidrhost(var.egress_cidr, 0))
    error_message = "egress_cidr is an IPv4 CIDR."
  }
}

variable "replica_image_name" {
  description = "Glance image of replicas (infra/image; Packer)."
  type        = string
}

variable "replica_flavor" {
  description = "Flavor name of base and surge replicas (also openstack.flavor)."
  type        = string
}

variable "base_replicas" {
  description = "Base replicas Terraform keeps (never removed by pgsurge)."
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
  default     = ["nova"]
  validation {
    condition     = length(var.availability_zones) >= 1
    error_message = "name at least one availability zone."
  }
}

variable "data_volume_gb" {
  description = "Size of each base replica's data volume (PGDATA), GB."
  type        = number
  default     = 100
  validation {
    condition     = var.data_volume_gb >= 1
    error_message = "data_volume_gb is at least 1."
  }
}

variable "primary_host" {
  description = "The primary as the replicas reach it (postgres.primary_host)."
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
  description = "Role the replicas stream as (REPLICATION)."
  type        = string
  default     = "pgsurge"
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

variable "functions_url" {
  description = "HTTPS base URL where the functions are served (HTTP host behind TLS), e.g. https://pgsurge.example.net: Aodh posts to <url>/scale-up and <url>/scale-down."
  type        = string
  validation {
    condition     = can(regex("^https://[^/?#]+(/[^?#]*)?$", var.functions_url)) && !endswith(var.functions_url, "/")
    error_message = "functions_url is https://host[/path], without a trailing slash (the token must not cross a network in clear)."
  }
}

variable "webhook_token" {
  description = "auth.token of the functions; Aodh cannot send headers, so it goes in the alarm URL (?token=)."
  type        = string
  sensitive   = true
  validation {
    condition     = length(var.webhook_token) >= 16 && can(regex("^[A-Za-z0-9_-]+$", var.webhook_token))
    error_message = "webhook_token is at least 16 URL-safe characters (auth.token)."
  }
}

variable "scale_up_cpu_percent" {
  description = "Mean CPU of the cluster's replicas above which the scale-up alarm fires."
  type        = number
  default     = 70
  validation {
    condition     = var.scale_up_cpu_percent > 0 && var.scale_up_cpu_percent < 100
    error_message = "scale_up_cpu_percent is 1..99."
  }
}

variable "scale_down_cpu_percent" {
  description = "Mean CPU of the cluster's replicas below which the scale-down alarm fires."
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

variable "dns_zone" {
  description = "Designate zone for one A record per replica, with the trailing dot (openstack.dns_zone without it)."
  type        = string
  validation {
    condition     = can(regex("^([a-z0-9-]+\\.)+$", var.dns_zone))
    error_message = "dns_zone is a domain name ending in a dot, e.g. db.example.net."
  }
}

variable "dns_email" {
  description = "Administrator e-mail of the Designate zone (SOA)."
  type        = string
  validation {
    condition     = can(regex("^[^@ ]+@[^@ ]+$", var.dns_email))
    error_message = "dns_email is an e-mail address."
  }
}
