//! How pgsurge labels what it creates: the metadata keys on every volume, snapshot and
//! server of a cluster (with [`resource_name`](super::resource_name), the names). The
//! cloud adapters write and filter by them; scale-down's and the first boot's proofs read
//! them back.

/// Metadata key: which pgsurge cluster a resource belongs to.
pub const META_CLUSTER: &str = "pgsurge_cluster";
/// Metadata key: `base` (made by people) or `surge` (made by pgsurge, removable).
pub const META_ROLE: &str = "pgsurge_role";
/// Metadata key: the replica id within the cluster.
pub const META_REPLICA: &str = "pgsurge_replica";
/// Metadata key: the operation that created the resource.
pub const META_OP: &str = "pgsurge_op";
/// Server metadata key: the availability zone the server was asked for. Prometheus'
/// OpenStack discovery exposes metadata but not the zone; the `az` label comes from here
/// (infra/observability/prometheus.yml).
pub const META_AZ: &str = "pgsurge_az";
/// Metadata key: when pgsurge created the resource (RFC 3339), for the orphan grace period.
pub const META_CREATED: &str = "pgsurge_created_at";
