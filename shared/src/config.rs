//! Configuration: one typed document, from a TOML file plus environment overrides.
//!
//! Loaded and validated before any side effect; every error names the key at fault.
//!
//! Sources, later wins:
//! 1. built-in defaults (every key has one, so an empty file is valid);
//! 2. the TOML file given by `--config` or `PGSURGE_CONFIG`;
//! 3. environment variables `PGSURGE_<SECTION>__<KEY>` (double underscore between
//!    levels), e.g. `PGSURGE_AUTH__TOKEN`, `PGSURGE_RUNTIME__TIMEOUT_SECS=120`.
//!    A key that takes a string (tokens, passwords, keys, names, paths) gets the value
//!    verbatim; any other key reads it as a TOML value (`120`, `true`, `["a", "b"]`).
//!
//! The documented example is `config/pgsurge.example.toml`; a test loads it.

use crate::secret::Secret;
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    /// A key has the wrong type, is unknown, or fails validation.
    #[error("`{key}`: {message}")]
    Key { key: String, message: String },
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Key {
        key: key.to_string(),
        message: message.into(),
    }
}

/// The whole configuration. Sections are added as the library grows.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub cluster: ClusterConfig,
    pub runtime: RuntimeConfig,
    pub auth: AuthConfig,
    pub metrics: MetricsConfig,
    pub state: crate::state::StateConfig,
    pub policy: crate::policy::PolicyConfig,
    pub haproxy: HaproxyConfig,
    pub postgres: PostgresConfig,
    pub local: LocalConfig,
    pub ops: crate::ops::OpsConfig,
    pub cloud: CloudConfig,
    pub openstack: OpenStackConfig,
    pub node: crate::node::NodeConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// Short name used in every resource name (`pgsurge-<name>-<replica>`) and state key,
    /// and the name alarms must carry (`pgsurge_cluster`; `events::scope`).
    pub name: String,
    /// An alarm that names no cluster is ignored (true) or taken as this cluster's
    /// (false: only when nothing else can ever send to this deployment's webhooks).
    pub require_label: bool,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            name: "main".into(),
            require_label: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Largest accepted event body; larger ones get 413 / PayloadTooLarge.
    pub max_body_bytes: usize,
    /// Deadline for hosts that do not give one (CLI, HTTP, FunctionGraph without RUNTIME_TIMEOUT).
    pub timeout_secs: u64,
    /// HTTP host port when neither `--port` nor `PORT` is given (FunctionGraph HTTP functions use 8000).
    pub http_port: u16,
    /// HTTP host bind address.
    pub http_bind: String,
    /// HTTP host: the request line and headers must have arrived this many seconds after
    /// the connection opened or the first byte of the request came (slow-header clients).
    pub header_timeout_secs: u64,
    /// HTTP host: the whole body must have arrived this many seconds after the headers;
    /// else 408 and the connection is closed.
    pub body_timeout_secs: u64,
    /// HTTP host: a keep-alive connection with no request for this long is closed. Keep
    /// a proxy's upstream keep-alive below it.
    pub idle_timeout_secs: u64,
    /// HTTP host: open connections at most (webhook listener); beyond it a new
    /// connection gets 503 and is closed at once, never queued.
    pub max_connections: usize,
    /// `host:port` where the HTTP host serves `GET /metrics` (Prometheus text); empty =
    /// not served (metrics are pushed, see `[metrics]`). Never the webhook listener.
    pub metrics_listen: String,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            max_body_bytes: 256 * 1024,
            timeout_secs: 60,
            http_port: 8000,
            http_bind: "127.0.0.1".into(),
            header_timeout_secs: 10,
            body_timeout_secs: 30,
            idle_timeout_secs: 30,
            max_connections: 128,
            metrics_listen: String::new(),
        }
    }
}

/// How webhooks that arrive over HTTP (HTTP host, API-gateway envelopes) prove who sent them.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Shared token expected in `token_header` (or `Authorization: Bearer <token>`).
    pub token: Option<Secret>,
    /// Header that carries the token.
    pub token_header: String,
    /// Query parameter that may carry the token (`?token=...`, for SMN subscription
    /// URLs: SMN sends no custom header). Empty: not accepted in the URL.
    pub token_query_param: String,
    /// Accept unauthenticated HTTP webhooks. Only for a closed lab network.
    pub allow_unauthenticated: bool,
    /// HMAC-SHA256 key: requests sign "<timestamp>.<body>" (see `events::auth`).
    pub hmac_secret: Option<Secret>,
    /// Header with `sha256=<hex signature>`.
    pub signature_header: String,
    /// Header with the Unix time (seconds) the request was signed at.
    pub timestamp_header: String,
    /// Signed requests older (or newer) than this are refused as replays.
    pub replay_window_secs: u64,
    /// SMN signature verification and subscription handshake.
    pub smn: crate::events::SmnConfig,
    /// Key of the per-server callback credentials (`node::callback`): scale-up signs,
    /// instance-ready verifies. Unset: no server calls back.
    pub callback_secret: Option<Secret>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            token: None,
            token_header: "x-pgsurge-token".into(),
            token_query_param: "token".into(),
            allow_unauthenticated: false,
            hmac_secret: None,
            signature_header: "x-pgsurge-signature".into(),
            timestamp_header: "x-pgsurge-timestamp".into(),
            replay_window_secs: 300,
            smn: crate::events::SmnConfig::default(),
            callback_secret: None,
        }
    }
}

/// Where metrics go after each invocation.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Base URL of VictoriaMetrics/vmagent or a Pushgateway; empty = do not push.
    pub push_url: String,
    pub push_format: crate::metrics::PushFormat,
    /// `job` label of pushed series.
    pub job: String,
    /// Upper bound on one push; a slow metrics server must not eat the function's deadline.
    pub push_timeout_ms: u64,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            push_url: String::new(),
            push_format: crate::metrics::PushFormat::Victoriametrics,
            job: "pgsurge".into(),
            push_timeout_ms: 2000,
        }
    }
}

/// The HAProxy nodes every replica is registered in, and how servers are added and drained.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HaproxyConfig {
    /// The backend (on every node) that pgsurge adds its replicas to.
    pub backend: String,
    /// Every node: each is reached through its runtime API or its Data Plane API.
    pub nodes: Vec<HaproxyNodeConfig>,
    /// Data Plane API user and password for nodes that set none themselves (so the
    /// password can come from `PGSURGE_HAPROXY__DATAPLANE_PASSWORD`).
    pub dataplane_user: String,
    pub dataplane_password: Option<Secret>,
    /// PEM file of the CA(s) that sign `https://` Data Plane API certificates, for nodes
    /// that set none themselves. When set, it is the only trust anchor (no public CAs);
    /// unset, the public web PKI roots.
    pub dataplane_ca_file: Option<PathBuf>,
    /// Weight of a new server (0..=256).
    pub weight: u16,
    /// Health-check new servers (the backend's `option pgsql-check`).
    pub check: bool,
    /// Ramp a new server's weight up over this many seconds (0 = off).
    pub slowstart_secs: u64,
    /// Longest wait for a draining server's sessions to end before they are shut down.
    pub drain_deadline_secs: u64,
    /// Longest wait for HAProxy's first passing health check before a server is made ready.
    pub ready_wait_secs: u64,
    /// Per-call timeout towards one node.
    pub timeout_secs: u64,
}

impl Default for HaproxyConfig {
    fn default() -> Self {
        HaproxyConfig {
            backend: "pg_read".into(),
            nodes: Vec::new(),
            dataplane_user: "admin".into(),
            dataplane_password: None,
            dataplane_ca_file: None,
            weight: 100,
            check: true,
            slowstart_secs: 30,
            drain_deadline_secs: 120,
            ready_wait_secs: 15,
            timeout_secs: 5,
        }
    }
}

/// One HAProxy node: exactly one of `runtime_api` and `dataplane_url`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HaproxyNodeConfig {
    /// Name in reports and logs (unique).
    pub name: String,
    /// Admin socket: `unix:/run/haproxy/admin.sock` or `tcp:10.0.0.10:9999`.
    pub runtime_api: Option<String>,
    /// Data Plane API base URL, e.g. `http://10.0.0.10:5555`.
    pub dataplane_url: Option<String>,
    /// `auto` (read `/info`), `v2` or `v3`.
    pub dataplane_version: Option<String>,
    pub dataplane_user: Option<String>,
    pub dataplane_password: Option<Secret>,
    /// This node's `dataplane_ca_file` (see `haproxy.dataplane_ca_file`).
    pub dataplane_ca_file: Option<PathBuf>,
}

/// Which cloud the functions act on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CloudProvider {
    /// None: functions authenticate, parse and classify events and change nothing.
    #[default]
    None,
    /// This machine: volumes are directories, servers `postgres` processes (`[local]`).
    Local,
    /// An OpenStack cloud: Cinder volumes and snapshots, Nova servers (`[openstack]`).
    Openstack,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CloudConfig {
    pub provider: CloudProvider,
}

/// The PostgreSQL primary, the role replicas stream as, and when a replica counts as caught up.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PostgresConfig {
    /// The primary as replicas reach it (`primary_conninfo`) and as pgsurge checks it.
    pub primary_host: String,
    pub primary_port: u16,
    /// Database pgsurge connects to for readiness checks.
    pub dbname: String,
    /// Role in the replicas' `primary_conninfo`; pgsurge also connects as it to check
    /// readiness (needs REPLICATION and `pg_monitor`; the local provider's snapshots also
    /// need EXECUTE on `pg_backup_start`/`pg_backup_stop`).
    pub replication_user: String,
    /// Its password; `None` for trust, `.pgpass` or certificate authentication.
    pub password: Option<Secret>,
    /// libpq `sslmode` towards the primary: pgsurge's own connections (readiness,
    /// standby proofs) and every replica's `primary_conninfo`. `disable`, `allow`,
    /// `prefer`, `require`, `verify-ca` or `verify-full` (see `postgres::tls`).
    pub sslmode: String,
    /// PEM file of the CA certificates pgsurge trusts for its own connections; required
    /// by `verify-ca` / `verify-full`, turns `require` into `verify-ca` (as in libpq).
    pub sslrootcert: Option<PathBuf>,
    /// `sslmode` of pgsurge's connections to replicas; empty = as `sslmode`. A clone
    /// carries its seed's certificate whatever its address, so `verify-full` fits
    /// replicas only when their certificates name each address: `verify-ca` usually does.
    pub replica_sslmode: String,
    /// `sslrootcert` in the replicas' `primary_conninfo`: a path on the replica's own
    /// file system (the image ships it). Empty = libpq's default (`~/.postgresql/root.crt`).
    pub primary_conninfo_sslrootcert: String,
    pub connect_timeout_secs: u64,
    /// A replica is caught up when its replay LSN is at most this many bytes behind the
    /// primary's current LSN...
    pub max_replay_lag_bytes: u64,
    /// ...and the last transaction it replayed committed at most this long ago
    /// (0 when it has replayed everything).
    pub max_replay_lag_secs: u64,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        PostgresConfig {
            primary_host: "127.0.0.1".into(),
            primary_port: 5432,
            dbname: "postgres".into(),
            replication_user: "pgsurge".into(),
            password: None,
            sslmode: "prefer".into(),
            sslrootcert: None,
            replica_sslmode: String::new(),
            primary_conninfo_sslrootcert: String::new(),
            connect_timeout_secs: 5,
            max_replay_lag_bytes: 16 * 1024 * 1024,
            max_replay_lag_secs: 10,
        }
    }
}

/// How the local provider clones files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CloneMode {
    /// Copy-on-write (FICLONE) when the pool's filesystem supports it, else a plain copy.
    Auto,
    /// Copy-on-write or fail.
    Reflink,
    /// Always a plain byte copy.
    Copy,
}

/// The local provider: volumes and snapshots are directories in a pool, servers are
/// `postgres` processes on loopback ports.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LocalConfig {
    /// The volume pool (absolute). On XFS with reflink=1 or btrfs, clones are copy-on-write.
    pub pool_dir: PathBuf,
    /// Servers get the lowest free port in `port_first..=port_last`.
    pub port_first: u16,
    pub port_last: u16,
    /// Address servers listen on.
    pub listen_host: String,
    /// PostgreSQL server binaries.
    pub pg_bin: PathBuf,
    /// OS user that owns the data directories and runs `postgres`.
    pub os_user: String,
    /// The replica bootstrap script (the one the cloud image runs).
    pub bootstrap_script: PathBuf,
    pub clone: CloneMode,
    /// How long the bootstrap script waits for PostgreSQL to start.
    pub start_timeout_secs: u64,
    /// How long a fast shutdown may take before the server is stopped immediately.
    pub stop_timeout_secs: u64,
    /// Before a snapshot, `CHECKPOINT` the primary and let the source replica replay it,
    /// so the snapshot's restartpoint is fresh and a clone replays only the WAL written
    /// since (as `pg_basebackup --checkpoint=fast` does). Needs `pg_checkpoint`.
    pub checkpoint_primary: bool,
    /// `process` (default): a PostgreSQL process per server; `vm`: a qemu VM from the
    /// replica image per server (`cloud::local::vm`, settings in `[local.vm]`).
    pub servers: crate::cloud::local::vm::ServerKind,
    pub vm: crate::cloud::local::vm::VmConfig,
}

impl Default for LocalConfig {
    fn default() -> Self {
        LocalConfig {
            pool_dir: "/var/lib/pgsurge/pool".into(),
            port_first: 6500,
            port_last: 6599,
            listen_host: "127.0.0.1".into(),
            pg_bin: "/usr/lib/postgresql/15/bin".into(),
            os_user: "postgres".into(),
            bootstrap_script: "infra/image/bootstrap-replica.sh".into(),
            clone: CloneMode::Auto,
            start_timeout_secs: 60,
            stop_timeout_secs: 30,
            checkpoint_primary: true,
            servers: Default::default(),
            vm: Default::default(),
        }
    }
}

/// A PostgreSQL role or OS user name we are willing to put into a conninfo string or a
/// command line unquoted.
fn plain_name(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

fn validate_postgres(p: &PostgresConfig) -> Result<(), ConfigError> {
    let host_ok = !p.primary_host.is_empty()
        && p.primary_host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'));
    if !host_ok {
        return Err(invalid(
            "postgres.primary_host",
            format!("{:?} is not a host name or IP address", p.primary_host),
        ));
    }
    if p.primary_port == 0 {
        return Err(invalid("postgres.primary_port", "must not be 0"));
    }
    if !plain_name(&p.dbname) {
        return Err(invalid(
            "postgres.dbname",
            format!(
                "{:?} must be 1-63 chars of a-z, 0-9, '_', '-', '.'",
                p.dbname
            ),
        ));
    }
    if !plain_name(&p.replication_user) {
        return Err(invalid(
            "postgres.replication_user",
            format!(
                "{:?} must be 1-63 chars of a-z, 0-9, '_', '-', '.'",
                p.replication_user
            ),
        ));
    }
    if let Some(pw) = &p.password {
        if pw.is_empty() || pw.expose().contains(['\0', '\n', '\r']) {
            return Err(invalid(
                "postgres.password",
                "must be non-empty and contain no NUL or line breaks",
            ));
        }
    }
    use crate::postgres::tls::{PgTls, SslMode};
    let mode: SslMode = p
        .sslmode
        .parse()
        .map_err(|m| invalid("postgres.sslmode", m))?;
    let replica_mode: SslMode = match p.replica_sslmode.as_str() {
        "" => mode,
        m => m
            .parse()
            .map_err(|m| invalid("postgres.replica_sslmode", m))?,
    };
    if let Some(path) = &p.sslrootcert {
        if !path.is_file() {
            return Err(invalid(
                "postgres.sslrootcert",
                format!("{} is not a file", path.display()),
            ));
        }
    }
    // Read the CA file now: a wrong one fails here, not at the first readiness check.
    for (key, m) in [
        ("postgres.sslmode", mode),
        ("postgres.replica_sslmode", replica_mode),
    ] {
        PgTls::new(m, p.sslrootcert.as_deref()).map_err(|e| invalid(key, e.to_string()))?;
    }
    let cert = &p.primary_conninfo_sslrootcert;
    if !cert.is_empty() && (!cert.starts_with('/') || cert.contains(['\'', '\\', '\n', '\r', '\0']))
    {
        return Err(invalid(
            "postgres.primary_conninfo_sslrootcert",
            format!("{cert:?} must be an absolute path without quotes, backslashes or line breaks"),
        ));
    }
    if !(1..=120).contains(&p.connect_timeout_secs) {
        return Err(invalid(
            "postgres.connect_timeout_secs",
            format!("{} is outside 1..=120", p.connect_timeout_secs),
        ));
    }
    if p.max_replay_lag_bytes > 1 << 40 {
        return Err(invalid(
            "postgres.max_replay_lag_bytes",
            format!("{} is above 1 TiB", p.max_replay_lag_bytes),
        ));
    }
    if p.max_replay_lag_secs > 86_400 {
        return Err(invalid(
            "postgres.max_replay_lag_secs",
            format!("{} is above one day", p.max_replay_lag_secs),
        ));
    }
    Ok(())
}

fn validate_local(l: &LocalConfig) -> Result<(), ConfigError> {
    if !l.pool_dir.is_absolute() {
        return Err(invalid(
            "local.pool_dir",
            format!("{} is not an absolute path", l.pool_dir.display()),
        ));
    }
    if l.port_first < 1024 {
        return Err(invalid(
            "local.port_first",
            format!("{} is below 1024", l.port_first),
        ));
    }
    if l.port_last < l.port_first {
        return Err(invalid(
            "local.port_last",
            format!(
                "{} is below local.port_first ({})",
                l.port_last, l.port_first
            ),
        ));
    }
    if l.listen_host.parse::<std::net::IpAddr>().is_err() {
        return Err(invalid(
            "local.listen_host",
            format!("{:?} is not an IP address", l.listen_host),
        ));
    }
    if !l.pg_bin.is_absolute() {
        return Err(invalid(
            "local.pg_bin",
            format!("{} is not an absolute path", l.pg_bin.display()),
        ));
    }
    if !plain_name(&l.os_user) {
        return Err(invalid(
            "local.os_user",
            format!("{:?} is not a user name", l.os_user),
        ));
    }
    if l.bootstrap_script.as_os_str().is_empty() {
        return Err(invalid("local.bootstrap_script", "must not be empty"));
    }
    for (key, v) in [
        ("local.start_timeout_secs", l.start_timeout_secs),
        ("local.stop_timeout_secs", l.stop_timeout_secs),
    ] {
        if !(1..=3600).contains(&v) {
            return Err(invalid(key, format!("{v} is outside 1..=3600")));
        }
    }
    Ok(())
}

/// The OpenStack provider (Nova + Cinder, optionally Designate). Credentials never live
/// here: they come from `clouds.yaml` (`cloud`), from `OS_*` environment variables like the
/// `openstack` CLI, or from the token FunctionGraph hands a function with an agency.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpenStackConfig {
    /// Cloud name in clouds.yaml; empty = read `OS_*` environment variables.
    pub cloud: String,
    /// An extra clouds.yaml (besides ./clouds.yaml, ~/.config/openstack/, /etc/openstack/).
    pub clouds_yaml: Option<PathBuf>,
    /// Overrides the cloud's `region_name`.
    pub region: Option<String>,
    /// Use the host's temporary token (FunctionGraph agency: `X-CFF-Auth-Token`) when it
    /// passes one, scoped to `project_id`, against `auth_url`.
    pub use_host_token: bool,
    /// Keystone URL for `use_host_token` (e.g. `https://iam.ru-moscow-1.hc.sbercloud.ru/v3`).
    pub auth_url: Option<String>,
    /// Project for `use_host_token`.
    pub project_id: Option<String>,
    /// Flavor (name or id) for surge replicas. Required to create servers.
    pub flavor: String,
    /// Network (name or id) for the replicas' port; empty = no network.
    pub network: String,
    /// Security groups (names) for the replicas.
    pub security_groups: Vec<String>,
    /// Key pair name; empty = none.
    pub key_name: String,
    /// Server group name; created with `server_group_policy` if missing; empty = none.
    pub server_group: String,
    /// `anti-affinity`, `soft-anti-affinity`, `affinity` or `soft-affinity`.
    pub server_group_policy: String,
    /// Availability zone for a server whose volume reports none; empty = the cloud's
    /// choice. A server boots in its clone's zone (see `ops::scale_up`); clones go to
    /// their snapshot's zone, or to an alarm's `az`.
    pub availability_zone: String,
    /// Volume type for cloned volumes; empty = the snapshot's.
    pub volume_type: String,
    /// Delete the data volume together with its server (Nova's delete_on_termination).
    pub delete_on_termination: bool,
    /// Port PostgreSQL listens on in the replicas (the endpoint pgsurge registers).
    pub pg_port: u16,
    /// One HTTP request's time limit.
    pub request_timeout_secs: u64,
    /// TCP connect time limit.
    pub connect_timeout_secs: u64,
    /// Retries of a call that failed with 5xx, 429 or a connection error.
    pub max_retries: u32,
    /// Designate zone (`example.org.`) for one A record per replica; empty = no DNS.
    pub dns_zone: String,
    /// How `dns_zone` is looked up: see [`DnsZoneType`].
    pub dns_zone_type: DnsZoneType,
    /// TTL of those records.
    pub dns_ttl: u32,
}

impl Default for OpenStackConfig {
    fn default() -> Self {
        OpenStackConfig {
            cloud: String::new(),
            clouds_yaml: None,
            region: None,
            use_host_token: false,
            auth_url: None,
            project_id: None,
            flavor: String::new(),
            network: String::new(),
            security_groups: Vec::new(),
            key_name: String::new(),
            server_group: String::new(),
            server_group_policy: "anti-affinity".into(),
            availability_zone: String::new(),
            volume_type: String::new(),
            delete_on_termination: false,
            pg_port: 5432,
            request_timeout_secs: 30,
            connect_timeout_secs: 5,
            max_retries: 4,
            dns_zone: String::new(),
            dns_zone_type: DnsZoneType::Auto,
            dns_ttl: 60,
        }
    }
}

/// Which zones `openstack.dns_zone` is looked up among. Huawei Cloud and SberCloud list
/// private zones only when asked for `type=private`; plain Designate has no such type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DnsZoneType {
    /// Ask both ways (one extra listing, once per process); a name found twice (a public
    /// and a private zone) is an error asking for one of the two below.
    Auto,
    /// Only the plain listing: plain Designate, or a Huawei public zone.
    Public,
    /// Only `type=private`: a Huawei Cloud / SberCloud private zone.
    Private,
}

fn validate_openstack(o: &OpenStackConfig) -> Result<(), ConfigError> {
    const POLICIES: [&str; 4] = [
        "anti-affinity",
        "soft-anti-affinity",
        "affinity",
        "soft-affinity",
    ];
    if !POLICIES.contains(&o.server_group_policy.as_str()) {
        return Err(invalid(
            "openstack.server_group_policy",
            format!("{:?} is not one of {POLICIES:?}", o.server_group_policy),
        ));
    }
    if o.pg_port == 0 {
        return Err(invalid("openstack.pg_port", "must not be 0"));
    }
    if !(1..=600).contains(&o.request_timeout_secs) {
        return Err(invalid(
            "openstack.request_timeout_secs",
            format!("{} is outside 1..=600", o.request_timeout_secs),
        ));
    }
    if !(1..=120).contains(&o.connect_timeout_secs) {
        return Err(invalid(
            "openstack.connect_timeout_secs",
            format!("{} is outside 1..=120", o.connect_timeout_secs),
        ));
    }
    if o.max_retries > 10 {
        return Err(invalid(
            "openstack.max_retries",
            format!("{} is more than 10", o.max_retries),
        ));
    }
    if let Some(i) = o.security_groups.iter().position(|g| g.trim().is_empty()) {
        return Err(invalid(
            &format!("openstack.security_groups[{i}]"),
            "is empty",
        ));
    }
    if !o.dns_zone.is_empty() && !o.dns_zone.ends_with('.') {
        return Err(invalid(
            "openstack.dns_zone",
            format!(
                "{:?} must be a fully qualified name ending in '.'",
                o.dns_zone
            ),
        ));
    }
    if !(1..=86400).contains(&o.dns_ttl) {
        return Err(invalid(
            "openstack.dns_ttl",
            format!("{} is outside 1..=86400", o.dns_ttl),
        ));
    }
    if o.use_host_token && o.auth_url.as_deref().unwrap_or("").is_empty() {
        return Err(invalid(
            "openstack.auth_url",
            "is required with openstack.use_host_token = true",
        ));
    }
    if o.use_host_token && o.project_id.as_deref().unwrap_or("").is_empty() {
        return Err(invalid(
            "openstack.project_id",
            "is required with openstack.use_host_token = true",
        ));
    }
    Ok(())
}

impl Config {
    /// Load from an optional file plus `PGSURGE_*` environment variables, then validate.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let mut doc = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_path_buf(),
                    source,
                })?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError::Syntax {
                        path: p.to_path_buf(),
                        message: e.message().to_string(),
                    })?
            }
            None => toml::Table::new(),
        };
        apply_env(&mut doc, std::env::vars())?;
        Config::from_table(doc)
    }

    /// Parse and validate a TOML document (no environment).
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let doc = text
            .parse::<toml::Table>()
            .map_err(|e| ConfigError::Syntax {
                path: "<inline>".into(),
                message: e.message().to_string(),
            })?;
        Config::from_table(doc)
    }

    fn from_table(doc: toml::Table) -> Result<Config, ConfigError> {
        let mut config: Config = serde_path_to_error::deserialize(toml::Value::Table(doc))
            .map_err(|e| {
                let key = e.path().to_string();
                invalid(&key, e.into_inner().to_string())
            })?;
        // The alarm limits allow the flavor servers boot with anyway (see PolicyConfig).
        config.policy.configured_flavor = (config.cloud.provider == CloudProvider::Openstack)
            .then(|| config.openstack.flavor.clone());
        config.validate()?;
        Ok(config)
    }

    /// Checks that types alone cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let name = &self.cluster.name;
        let name_ok = (1..=32).contains(&name.len())
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !name_ok {
            return Err(invalid(
                "cluster.name",
                format!("{name:?} must be 1-32 chars of a-z, 0-9, '-', starting with a letter"),
            ));
        }
        let r = &self.runtime;
        if !(1024..=10 * 1024 * 1024).contains(&r.max_body_bytes) {
            return Err(invalid(
                "runtime.max_body_bytes",
                format!("{} is outside 1024..=10485760", r.max_body_bytes),
            ));
        }
        if !(1..=900).contains(&r.timeout_secs) {
            return Err(invalid(
                "runtime.timeout_secs",
                format!("{} is outside 1..=900", r.timeout_secs),
            ));
        }
        if r.http_bind.parse::<std::net::IpAddr>().is_err() && r.http_bind != "localhost" {
            return Err(invalid(
                "runtime.http_bind",
                format!("{:?} is not an IP address", r.http_bind),
            ));
        }
        let ranges = [
            ("runtime.header_timeout_secs", r.header_timeout_secs, 1, 300),
            ("runtime.body_timeout_secs", r.body_timeout_secs, 1, 900),
            ("runtime.idle_timeout_secs", r.idle_timeout_secs, 1, 3600),
            (
                "runtime.max_connections",
                r.max_connections as u64,
                1,
                65_536,
            ),
        ];
        for (key, v, lo, hi) in ranges {
            if !(lo..=hi).contains(&v) {
                return Err(invalid(key, format!("{v} is outside {lo}..={hi}")));
            }
        }
        if !r.metrics_listen.is_empty() && r.metrics_listen.parse::<std::net::SocketAddr>().is_err()
        {
            return Err(invalid(
                "runtime.metrics_listen",
                format!(
                    "{:?} is not an IP:port (e.g. 127.0.0.1:9464); empty turns /metrics off",
                    r.metrics_listen
                ),
            ));
        }
        self.validate_metrics()?;
        let a = &self.auth;
        if let Some(t) = &a.token {
            if t.expose().len() < 16 {
                return Err(invalid("auth.token", "must be at least 16 characters"));
            }
        }
        if a.token_header.is_empty()
            || !a
                .token_header
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(invalid(
                "auth.token_header",
                format!("{:?} is not a valid header name", a.token_header),
            ));
        }
        validate_auth_signing(a)?;
        crate::state::validate_state(&self.state)?;
        crate::policy::validate_policy(&self.policy)?;
        validate_postgres(&self.postgres)?;
        validate_local(&self.local)?;
        crate::ops::config::validate_ops(&self.ops)?;
        validate_openstack(&self.openstack)?;
        // Checked here, not at the first boot: by then scale-up has already taken a
        // snapshot and cloned volumes it would have to roll back.
        if self.cloud.provider == CloudProvider::Openstack && self.openstack.flavor.is_empty() {
            return Err(invalid(
                "openstack.flavor",
                "is required with cloud.provider = \"openstack\" (the flavor surge replicas boot with)",
            ));
        }
        validate_haproxy(&self.haproxy)
    }
}

impl Config {
    fn validate_metrics(&self) -> Result<(), ConfigError> {
        let m = &self.metrics;
        if !m.push_url.is_empty() {
            let url = reqwest::Url::parse(&m.push_url)
                .map_err(|e| invalid("metrics.push_url", format!("not a URL: {e}")))?;
            if !matches!(url.scheme(), "http" | "https") || url.password().is_some() {
                return Err(invalid(
                    "metrics.push_url",
                    "must be an http(s) URL without credentials",
                ));
            }
        }
        if m.job.is_empty()
            || !m
                .job
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(invalid(
                "metrics.job",
                format!("{:?} must be non-empty [A-Za-z0-9_-]", m.job),
            ));
        }
        if !(100..=30_000).contains(&m.push_timeout_ms) {
            return Err(invalid(
                "metrics.push_timeout_ms",
                format!("{} is outside 100..=30000", m.push_timeout_ms),
            ));
        }
        Ok(())
    }
}

/// The HMAC and SMN keys of `[auth]`.
fn validate_auth_signing(a: &AuthConfig) -> Result<(), ConfigError> {
    // Both are HMAC keys: a short one can be brute-forced from one signed request (for
    // the callback key: from any server's user data, which carries a credential).
    for (key, secret) in [
        ("auth.hmac_secret", &a.hmac_secret),
        ("auth.callback_secret", &a.callback_secret),
    ] {
        if secret.as_ref().is_some_and(|s| s.expose().len() < 32) {
            return Err(invalid(key, "must be at least 32 characters"));
        }
    }
    for (key, h) in [
        ("auth.signature_header", &a.signature_header),
        ("auth.timestamp_header", &a.timestamp_header),
    ] {
        if h.is_empty() || !h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(invalid(key, format!("{h:?} is not a valid header name")));
        }
    }
    if !(1..=3600).contains(&a.replay_window_secs) {
        return Err(invalid(
            "auth.replay_window_secs",
            format!("{} is outside 1..=3600", a.replay_window_secs),
        ));
    }
    if !a
        .token_query_param
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(invalid(
            "auth.token_query_param",
            format!("{:?} must be [A-Za-z0-9_-] (or empty)", a.token_query_param),
        ));
    }
    validate_smn(a)
}

/// `[auth.smn]`: the keys that make an SMN signature mean "our topic, from SMN".
fn validate_smn(a: &AuthConfig) -> Result<(), ConfigError> {
    let smn = &a.smn;
    if smn.verify_signature && smn.topic_urns.is_empty() {
        return Err(invalid(
            "auth.smn.topic_urns",
            "must list the SMN topics to trust when auth.smn.verify_signature is on \
             (any cloud account can create a topic and sign messages on it)",
        ));
    }
    if let Some(t) = smn.topic_urns.iter().find(|t| {
        let parts: Vec<&str> = t.split(':').collect();
        parts.len() != 5 || parts[..2] != ["urn", "smn"] || parts.iter().any(|p| p.is_empty())
    }) {
        return Err(invalid(
            "auth.smn.topic_urns",
            format!("{t:?} is not urn:smn:<region>:<project id>:<topic name>"),
        ));
    }
    if smn.verify_signature && smn.require_token && a.token.is_none() && a.hmac_secret.is_none() {
        return Err(invalid(
            "auth.smn.require_token",
            "needs auth.token (or auth.hmac_secret) when auth.smn.verify_signature is on; \
             set the token, or require_token = false to trust the signature alone",
        ));
    }
    if smn.verify_signature && smn.domains.is_empty() {
        return Err(invalid(
            "auth.smn.domains",
            "must name at least one domain when auth.smn.verify_signature is on",
        ));
    }
    let host_ok = |h: &str| {
        !h.is_empty()
            && !h.starts_with('.')
            && !h.ends_with('.')
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    };
    if let Some(h) = smn.domains.iter().find(|h| !host_ok(h)) {
        return Err(invalid(
            "auth.smn.domains",
            format!("{h:?} is not a domain name (e.g. \"myhuaweicloud.com\")"),
        ));
    }
    if let Some(h) = smn
        .signing_subjects
        .iter()
        .find(|h| h.is_empty() || h.contains(char::is_whitespace))
    {
        return Err(invalid(
            "auth.smn.signing_subjects",
            format!("{h:?} is not a host name"),
        ));
    }
    if a.smn.max_age_secs > 7 * 86_400 {
        return Err(invalid(
            "auth.smn.max_age_secs",
            format!("{} is above 604800 (a week)", a.smn.max_age_secs),
        ));
    }
    if let Some(p) = &a.smn.ca_file {
        if !p.is_file() {
            return Err(invalid(
                "auth.smn.ca_file",
                format!("{} is not a file", p.display()),
            ));
        }
    }
    Ok(())
}

fn validate_haproxy(h: &HaproxyConfig) -> Result<(), ConfigError> {
    let name_ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    if !name_ok(&h.backend) {
        return Err(invalid(
            "haproxy.backend",
            format!("{:?} must be 1-64 chars of A-Z a-z 0-9 - _ .", h.backend),
        ));
    }
    let ranges = [
        ("haproxy.weight", h.weight as u64, 0, 256),
        ("haproxy.slowstart_secs", h.slowstart_secs, 0, 3600),
        (
            "haproxy.drain_deadline_secs",
            h.drain_deadline_secs,
            1,
            3600,
        ),
        ("haproxy.ready_wait_secs", h.ready_wait_secs, 1, 300),
        ("haproxy.timeout_secs", h.timeout_secs, 1, 60),
    ];
    for (key, v, lo, hi) in ranges {
        if !(lo..=hi).contains(&v) {
            return Err(invalid(key, format!("{v} is outside {lo}..={hi}")));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, n) in h.nodes.iter().enumerate() {
        let key = |k: &str| format!("haproxy.nodes[{i}].{k}");
        if !name_ok(&n.name) {
            return Err(invalid(
                &key("name"),
                format!("{:?} must be 1-64 chars of A-Z a-z 0-9 - _ .", n.name),
            ));
        }
        if !seen.insert(n.name.as_str()) {
            return Err(invalid(&key("name"), format!("{:?} is used twice", n.name)));
        }
        match (&n.runtime_api, &n.dataplane_url) {
            (Some(addr), None) => {
                crate::balancer::runtime_api::SocketAddr::parse(addr)
                    .map_err(|m| invalid(&key("runtime_api"), m))?;
            }
            (None, Some(url)) => {
                let ok = (url.starts_with("http://") || url.starts_with("https://"))
                    && url.len() > "https://".len()
                    && !url.contains('@');
                if !ok {
                    return Err(invalid(
                        &key("dataplane_url"),
                        "must be http(s)://host:port, without credentials in it",
                    ));
                }
                if let Some(ca) = n
                    .dataplane_ca_file
                    .as_ref()
                    .or(h.dataplane_ca_file.as_ref())
                {
                    if !url.starts_with("https://") {
                        return Err(invalid(
                            &key("dataplane_ca_file"),
                            "is set but dataplane_url is not https://",
                        ));
                    }
                    crate::balancer::dataplane::read_ca(ca)
                        .map_err(|m| invalid(&key("dataplane_ca_file"), m))?;
                }
                if !matches!(
                    n.dataplane_version.as_deref(),
                    None | Some("auto" | "v2" | "v3")
                ) {
                    return Err(invalid(&key("dataplane_version"), "must be auto, v2 or v3"));
                }
                let user = n.dataplane_user.as_deref().unwrap_or(&h.dataplane_user);
                if user.is_empty() {
                    return Err(invalid(&key("dataplane_user"), "is empty"));
                }
                let pw = n
                    .dataplane_password
                    .as_ref()
                    .or(h.dataplane_password.as_ref());
                if pw.is_none_or(|p| p.is_empty()) {
                    return Err(invalid(
                        &key("dataplane_password"),
                        "missing: set it here or in haproxy.dataplane_password \
                         (PGSURGE_HAPROXY__DATAPLANE_PASSWORD)",
                    ));
                }
            }
            _ => {
                return Err(invalid(
                    &key("runtime_api"),
                    "set exactly one of runtime_api and dataplane_url",
                ))
            }
        }
    }
    Ok(())
}

const ENV_PREFIX: &str = "PGSURGE_";

/// Apply `PGSURGE_<SECTION>__<KEY>=value` overrides onto the document.
fn apply_env(
    doc: &mut toml::Table,
    vars: impl Iterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    for (var, raw) in vars {
        let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        // Not configuration: the config file path, and the test-only failpoint.
        if rest == "CONFIG" || rest == "FAILPOINT" {
            continue;
        }
        let path: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
        if path.len() < 2 || path.iter().any(String::is_empty) {
            return Err(ConfigError::Env {
                var,
                message: "expected PGSURGE_<SECTION>__<KEY>".into(),
            });
        }
        // A string key takes the value verbatim: read as TOML, the token `0x10` became
        // the integer 16, `"abc"` lost its quotes and `a #b` its comment — silently, and
        // for secrets, the wrong secret.
        let value = if takes_string(&path, &raw) {
            toml::Value::String(raw)
        } else {
            format!("v = {raw}")
                .parse::<toml::Table>()
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or(toml::Value::String(raw))
        };
        let (leaf, parents) = path.split_last().expect("len >= 2");
        let mut table = &mut *doc;
        for p in parents {
            let entry = table
                .entry(p.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            table = match entry {
                toml::Value::Table(t) => t,
                _ => {
                    return Err(ConfigError::Env {
                        var,
                        message: format!("`{p}` is not a section"),
                    })
                }
            };
        }
        table.insert(leaf.clone(), value);
    }
    Ok(())
}

/// Whether the key at `path` takes `raw` as a string: a one-key document holding it
/// there deserialises. Asking the types themselves keeps this right for every key,
/// including ones added later, without a list to keep in step.
fn takes_string(path: &[String], raw: &str) -> bool {
    let mut value = toml::Value::String(raw.to_string());
    for p in path.iter().rev() {
        let mut t = toml::Table::new();
        t.insert(p.clone(), value);
        value = toml::Value::Table(t);
    }
    Config::deserialize(value).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::from_toml("").unwrap();
    }

    #[test]
    fn example_config_loads() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../config/pgsurge.example.toml"
        );
        let text = std::fs::read_to_string(path).unwrap();
        Config::from_toml(&text).unwrap();
    }

    /// `{:#?}` of a config, flattened to `section.key` → value (list items and the
    /// inside of `Some(..)` joined under the key that holds them). Debug is the one view
    /// every config type already has; its field names are the TOML keys.
    fn debug_leaves(config: &Config) -> std::collections::BTreeMap<String, String> {
        let text = format!("{config:#?}");
        // (key, the path its value is recorded under when it is a list or an option)
        let mut stack: Vec<(String, Option<String>)> = Vec::new();
        let mut out = std::collections::BTreeMap::<String, String>::new();
        for line in text.lines() {
            let t = line.trim();
            let t = t.strip_suffix(',').unwrap_or(t);
            if t.starts_with(['}', ']', ')']) {
                if let Some((_, Some(path))) = stack.pop() {
                    out.entry(path).or_default().push_str(&format!(" {t}"));
                }
                continue;
            }
            let (name, rest) = match t.split_once(": ") {
                Some((n, r)) if n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') => {
                    (Some(n), r)
                }
                _ => (None, t),
            };
            let mut path: Vec<&str> = stack.iter().map(|(k, _)| k.as_str()).collect();
            path.extend(name);
            let path = path
                .into_iter()
                .filter(|p| !p.is_empty())
                .collect::<Vec<_>>()
                .join(".");
            if rest.ends_with(['{', '[', '(']) {
                // A struct's type name says nothing by itself; an opened list or option
                // is recorded so that `[]` vs `[..]` and `None` vs `Some` differ.
                let recorded = (!rest.ends_with('{')).then(|| path.clone());
                if recorded.is_some() {
                    out.entry(path).or_default().push_str(rest);
                }
                stack.push((name.unwrap_or("").to_string(), recorded));
            } else if !path.is_empty() {
                let v = out.entry(path).or_default();
                if !v.is_empty() {
                    v.push(' ');
                }
                v.push_str(rest);
            }
        }
        out
    }

    /// The keys `config/pgsurge.example.toml` sets or shows commented out
    /// (`# key = ...`, `# [[section]]`), as `section.key`.
    fn example_mentions(text: &str) -> std::collections::BTreeSet<String> {
        let mut section = String::new();
        let mut out = std::collections::BTreeSet::new();
        for line in text.lines() {
            let active = line.trim();
            let t = active.trim_start_matches('#').trim();
            if let Some(h) = t.strip_prefix('[') {
                let h = h.trim_matches(|c| c == '[' || c == ']').to_string();
                out.insert(h.clone());
                if !active.starts_with('#') {
                    section = h;
                }
            } else if let Some((k, _)) = t.split_once('=') {
                let k = k.trim();
                if !k.is_empty() && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                    out.insert(format!("{section}.{k}"));
                }
            }
        }
        out
    }

    /// The example claims "every key, with its default": every value it sets is the
    /// code's default, and every key of `Config` is in it (set, or commented out when
    /// it has no default value to show). Fails naming the key when a default changes
    /// in one place only.
    #[test]
    fn example_config_is_every_key_with_its_default() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../config/pgsurge.example.toml"
        );
        let text = std::fs::read_to_string(path).unwrap();
        let example = debug_leaves(&Config::from_toml(&text).unwrap());
        let default = debug_leaves(&Config::default());
        let mut wrong = Vec::new();
        for (key, d) in &default {
            match example.get(key) {
                Some(e) if e != d => wrong.push(format!(
                    "`{key}`: the example gives {e}, Config::default() has {d}"
                )),
                None => wrong.push(format!(
                    "`{key}`: in Config::default() ({d}), not in the example's config"
                )),
                _ => {}
            }
        }
        for (key, e) in &example {
            if !default.contains_key(key) {
                wrong.push(format!(
                    "`{key}`: the example gives {e}, Config::default() has none"
                ));
            }
        }
        let mentioned = example_mentions(&text);
        // Filled in from other keys when the config loads (`#[serde(skip)]`), not keys.
        const DERIVED: &[&str] = &["policy.configured_flavor"];
        for key in default.keys().filter(|k| !DERIVED.contains(&k.as_str())) {
            if !mentioned.contains(key) {
                wrong.push(format!(
                    "`{key}`: not in config/pgsurge.example.toml (add it, commented out if \
                     it has no default to show)"
                ));
            }
        }
        assert!(
            wrong.is_empty(),
            "config/pgsurge.example.toml disagrees with the code:\n{}",
            wrong.join("\n")
        );
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("[runtime]\ntimeout_secs = \"soon\"", "runtime.timeout_secs"),
            ("[runtime]\ntimeout_secs = 0", "runtime.timeout_secs"),
            ("[runtime]\nmax_body_byte = 10", "runtime"),
            ("[runtime]\nheader_timeout_secs = 0", "runtime.header_timeout_secs"),
            ("[runtime]\nbody_timeout_secs = 901", "runtime.body_timeout_secs"),
            ("[runtime]\nidle_timeout_secs = 0", "runtime.idle_timeout_secs"),
            ("[runtime]\nmax_connections = 0", "runtime.max_connections"),
            ("[runtime]\nmetrics_listen = \"9464\"", "runtime.metrics_listen"),
            ("[postgres]\nsslmode = \"sometimes\"", "postgres.sslmode"),
            ("[postgres]\nsslmode = \"verify-ca\"", "postgres.sslmode"),
            ("[postgres]\nreplica_sslmode = \"verify-full\"", "postgres.replica_sslmode"),
            ("[postgres]\nsslrootcert = \"/nonexistent/ca.pem\"", "postgres.sslrootcert"),
            (
                "[postgres]\nprimary_conninfo_sslrootcert = \"ca.pem\"",
                "postgres.primary_conninfo_sslrootcert",
            ),
            (
                "[haproxy]\ndataplane_password = \"pw\"\n[[haproxy.nodes]]\nname = \"n\"\n\
                 dataplane_url = \"https://h:5555\"\ndataplane_ca_file = \"/nonexistent\"",
                "haproxy.nodes[0].dataplane_ca_file",
            ),
            ("[cluster]\nname = \"Bad Name\"", "cluster.name"),
            ("[auth]\ntoken = \"short\"", "auth.token"),
            (
                "[auth]\ncallback_secret = \"0123456789abcdef0123456789abcde\"",
                "auth.callback_secret",
            ),
            ("[metrics]\npush_url = \"ftp://x\"", "metrics.push_url"),
            (
                "[metrics]\npush_format = \"graphite\"",
                "metrics.push_format",
            ),
            ("[haproxy]\nweight = 300", "haproxy.weight"),
            ("[cloud]\nprovider = \"openstack\"", "openstack.flavor"),
            ("[haproxy]\nbackend = \"a b\"", "haproxy.backend"),
            ("[haproxy]\ndrain_deadline_secs = 0", "haproxy.drain_deadline_secs"),
            (
                "[[haproxy.nodes]]\nname = \"a\"\nruntime_api = \"nowhere\"",
                "haproxy.nodes[0].runtime_api",
            ),
            (
                "[[haproxy.nodes]]\nname = \"a\"",
                "haproxy.nodes[0].runtime_api",
            ),
            (
                "[[haproxy.nodes]]\nname = \"a\"\nruntime_api = \"/s\"\n[[haproxy.nodes]]\nname = \"a\"\nruntime_api = \"/t\"",
                "haproxy.nodes[1].name",
            ),
            (
                "[[haproxy.nodes]]\nname = \"a\"\ndataplane_url = \"http://h:5555\"",
                "haproxy.nodes[0].dataplane_password",
            ),
            (
                "[[haproxy.nodes]]\nname = \"a\"\ndataplane_url = \"http://u:p@h:5555\"\ndataplane_password = \"x\"",
                "haproxy.nodes[0].dataplane_url",
            ),
            ("[postgres]\nprimary_port = 0", "postgres.primary_port"),
            (
                "[postgres]\nreplication_user = \"a b\"",
                "postgres.replication_user",
            ),
            ("[postgres]\nsslmode = \"verify-full\"", "postgres.sslmode"),
            (
                "[postgres]\nmax_replay_lag_secs = -1",
                "postgres.max_replay_lag_secs",
            ),
            ("[postgres]\npassword = \"\"", "postgres.password"),
            ("[local]\npool_dir = \"pool\"", "local.pool_dir"),
            (
                "[local]\nport_first = 7000\nport_last = 6999",
                "local.port_last",
            ),
            ("[local]\nclone = \"maybe\"", "local.clone"),
            ("[local]\nlisten_host = \"localhost\"", "local.listen_host"),
            (
                "[openstack]\nserver_group_policy = \"spread\"",
                "openstack.server_group_policy",
            ),
            (
                "[openstack]\ndns_zone = \"example.org\"",
                "openstack.dns_zone",
            ),
            (
                "[openstack]\nsecurity_groups = [\"\"]",
                "openstack.security_groups[0]",
            ),
            ("[openstack]\nuse_host_token = true", "openstack.auth_url"),
            (
                "[openstack]\nrequest_timeout_secs = 0",
                "openstack.request_timeout_secs",
            ),
        ];
        for (text, key) in cases {
            let err = Config::from_toml(text).unwrap_err().to_string();
            assert!(err.contains(key), "{text:?} gave {err}");
        }
    }

    #[test]
    fn haproxy_password_from_the_environment_reaches_every_node() {
        let mut doc: toml::Table =
            "[[haproxy.nodes]]\nname = \"a\"\ndataplane_url = \"http://127.0.0.1:5555\""
                .parse()
                .unwrap();
        let vars = [("PGSURGE_HAPROXY__DATAPLANE_PASSWORD", "s3cret-pass")]
            .map(|(k, v)| (k.to_string(), v.to_string()));
        apply_env(&mut doc, vars.into_iter()).unwrap();
        let c = Config::from_table(doc).unwrap();
        assert_eq!(
            c.haproxy.dataplane_password.unwrap().expose(),
            "s3cret-pass"
        );
        assert!(!format!("{:?}", c.haproxy.nodes).contains("s3cret"));
    }

    #[test]
    fn postgres_password_stays_out_of_errors_and_debug() {
        let err = Config::from_toml("[postgres]\npassword = \"zq\\nxv\"")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("postgres.password") && !err.contains("zq"),
            "{err}"
        );
        let c = Config::from_toml("[postgres]\npassword = \"s3cret-pw\"").unwrap();
        assert!(!format!("{c:?}").contains("s3cret-pw"));
    }

    #[test]
    fn secrets_stay_out_of_errors() {
        let err = Config::from_toml("[auth]\ntoken = \"tiny\"")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("tiny"), "{err}");
    }

    #[test]
    fn env_overrides_win_and_are_typed() {
        let mut doc: toml::Table = "[runtime]\ntimeout_secs = 5".parse().unwrap();
        let vars = [
            ("PGSURGE_RUNTIME__TIMEOUT_SECS", "120"),
            ("PGSURGE_AUTH__TOKEN", "0123456789abcdef0123"),
            ("PGSURGE_CONFIG", "/ignored"),
            ("OTHER", "x"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        apply_env(&mut doc, vars.into_iter()).unwrap();
        let c = Config::from_table(doc).unwrap();
        assert_eq!(c.runtime.timeout_secs, 120);
        assert_eq!(c.auth.token.unwrap().expose(), "0123456789abcdef0123");
    }

    /// Secrets (and every other string key) from the environment are taken verbatim:
    /// `0x10` was parsed as TOML and became 16, `true` a boolean (then refused), `1e3`
    /// a float, `"quoted"` lost its quotes and ` #...` was cut as a comment.
    #[test]
    fn string_keys_from_the_environment_are_literal() {
        let values = [
            "0x10",
            "true",
            "1e3",
            "\"quoted\"",
            "'single'",
            "pass #not-a-comment",
            "[1, 2]",
            "1979-05-27",
        ];
        for raw in values {
            // Long enough for the token and HMAC minimum lengths.
            let long = format!("{raw}{}", "-".repeat(32));
            let vars = [
                ("PGSURGE_AUTH__TOKEN", long.as_str()),
                ("PGSURGE_AUTH__HMAC_SECRET", long.as_str()),
                ("PGSURGE_POSTGRES__PASSWORD", raw),
                ("PGSURGE_HAPROXY__DATAPLANE_PASSWORD", raw),
                ("PGSURGE_STATE__S3__SECRET_ACCESS_KEY", raw),
                ("PGSURGE_STATE__S3__ACCESS_KEY_ID", raw),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()));
            let mut doc = toml::Table::new();
            apply_env(&mut doc, vars.into_iter()).unwrap();
            let c = Config::from_table(doc).unwrap_or_else(|e| panic!("{raw:?}: {e}"));
            assert_eq!(c.auth.token.unwrap().expose(), long, "{raw:?}");
            assert_eq!(c.auth.hmac_secret.unwrap().expose(), long, "{raw:?}");
            assert_eq!(c.postgres.password.unwrap().expose(), raw, "{raw:?}");
            assert_eq!(c.haproxy.dataplane_password.unwrap().expose(), raw);
            assert_eq!(c.state.s3.access_key_id.as_deref(), Some(raw));
            assert_eq!(c.state.s3.secret_access_key.unwrap().expose(), raw);
        }
        // Not only secrets: any string key (a name, a path) is verbatim too...
        let vars = [
            ("PGSURGE_METRICS__JOB", "1e3"),
            ("PGSURGE_LOCAL__POOL_DIR", "/pool #1"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let mut doc = toml::Table::new();
        apply_env(&mut doc, vars.into_iter()).unwrap();
        assert_eq!(doc["metrics"]["job"].as_str(), Some("1e3"));
        assert_eq!(doc["local"]["pool_dir"].as_str(), Some("/pool #1"));
        // ...while numbers, booleans and lists keep their TOML reading.
        let vars = [
            ("PGSURGE_RUNTIME__TIMEOUT_SECS", "0x10"),
            ("PGSURGE_POLICY__SCALE_DOWN_ON_RESOLVED", "true"),
            ("PGSURGE_AUTH__SMN__DOMAINS", "[\"a.example\"]"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let mut doc = toml::Table::new();
        apply_env(&mut doc, vars.into_iter()).unwrap();
        let c = Config::from_table(doc).unwrap();
        assert_eq!(c.runtime.timeout_secs, 16);
        assert!(c.policy.scale_down_on_resolved);
        assert_eq!(c.auth.smn.domains, vec!["a.example".to_string()]);
    }

    #[test]
    fn bad_env_names_are_rejected() {
        let mut doc = toml::Table::new();
        let err = apply_env(
            &mut doc,
            [("PGSURGE_TIMEOUT".to_string(), "1".to_string())].into_iter(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("PGSURGE_TIMEOUT"));
    }
}
