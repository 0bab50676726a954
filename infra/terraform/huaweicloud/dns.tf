# Private zone: pgsurge writes one A record per surge replica (`<server name>.<zone>`).
resource "huaweicloud_dns_zone" "replicas" {
  name        = var.dns_zone
  zone_type   = "private"
  description = "pgsurge ${var.cluster} replicas"
  ttl         = 300

  router {
    router_id     = data.huaweicloud_vpc.this.id
    router_region = var.region
  }
}
