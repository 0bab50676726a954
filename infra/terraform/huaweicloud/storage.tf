# The state document's bucket. OBS ignores conditional writes, so the functions serialise
# writers with a PostgreSQL advisory lock on the primary instead
# (PGSURGE_STATE__CONCURRENCY = postgres-advisory-lock, conninfo in the encrypted env).
resource "huaweicloud_obs_bucket" "state" {
  bucket        = var.state_bucket
  acl           = "private"
  storage_class = "STANDARD"
  # Every write is a new version: a bad write can be rolled back by hand.
  versioning    = true
  encryption    = true
  sse_algorithm = "kms"
  force_destroy = false

  lifecycle_rule {
    name    = "old-state-versions"
    enabled = true
    noncurrent_version_expiration {
      days = 30
    }
  }
}
