//! HAProxy Data Plane API adapter, v2 and v3 (HTTP + basic auth).
//!
//! * The API version is read from `/info` (`/v3/info` first, then `/v2/info`) unless
//!   pinned; the two differ in paths (v2 passes the backend as `?backend=`, v3 as a path
//!   segment `backends/{parent_name}`) and in a few bodies (v2 wraps configuration
//!   reads in `{_version, data}`, v3 returns them bare).
//! * Servers are configuration objects (they survive reloads; the API decides whether
//!   a change needs one). Every write carries the configuration `version`; a 409 means
//!   someone else changed the configuration first: re-read and retry, a bounded number
//!   of times. [`Balancer::apply`] batches its configuration changes in one transaction.
//! * A 409 is either a version conflict (retried) or "already exists" (a concurrent
//!   create: not retried, re-read and compared); the body's message tells them apart.
//! * Admin state (ready / drain / maint) goes through the runtime endpoints — no reload —
//!   and the configuration's `maintenance` flag is kept in step so a later reload does
//!   not bring a server back that pgsurge took out (or the reverse). The configuration
//!   has no drain (neither spec's `server` object has it, only `maintenance`), so a
//!   draining server is configured `maintenance: enabled`: a reload starts the new
//!   process with no session on it anyway, so it must take none there either; the
//!   draining sessions live on in the old process. [`plan`] then sees `maint` where it
//!   wants `drain` and sets drain again at runtime.
//! * Removal honours the [`Balancer::remove_server`] contract: while the server still
//!   carries sessions (counted in the native stats) it is [`BalancerError::Busy`] and
//!   stays configured, in maintenance. This API cannot shut sessions down, so on a Data
//!   Plane node a drain past its deadline waits for the application's pool to let go.
//!
//! The requests and the handling of answers are contract-tested against the official
//! specs (`tests/data/dataplane/`, `tests/tests/haproxy_dataplane.rs`).

use super::{
    plan, validate_name, Action, AdminState, Balancer, BalancerError, DesiredSet, OperState,
    PutOutcome, Result, ServerSpec, ServerStatus,
};
use crate::secret::Secret;
use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::OnceCell;

/// How long `remove_server` lets closing sessions end before it answers Busy.
const REMOVE_SETTLE: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiVersion {
    V2,
    V3,
}

impl ApiVersion {
    fn prefix(self) -> &'static str {
        match self {
            ApiVersion::V2 => "/v2",
            ApiVersion::V3 => "/v3",
        }
    }
}

/// How to reach one node's Data Plane API.
#[derive(Debug, Clone)]
pub struct DataPlaneConfig {
    pub node: String,
    /// `http://host:5555` (no version suffix).
    pub url: String,
    pub user: String,
    pub password: Secret,
    pub backend: String,
    /// `None`: detect through `/info`.
    pub version: Option<ApiVersion>,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Attempts when the configuration version moved under us (409).
    pub conflict_retries: u32,
    /// How long leaving maintenance waits for the server's first passing health check.
    pub ready_wait: Duration,
    /// For `https://`: the only CA(s) trusted (PEM); `None` = the public web PKI roots.
    pub ca_file: Option<std::path::PathBuf>,
}

/// An error and its causes, `: `-separated.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let c_text = c.to_string();
        // hyper and reqwest repeat their cause in their own message at times.
        if !text.ends_with(&c_text) {
            text.push_str(&format!(": {c_text}"));
        }
        cause = c.source();
    }
    text
}

/// The certificates of a CA file (PEM bundle), or why not: for config validation and
/// [`DataPlane::new`].
pub fn read_ca(path: &std::path::Path) -> std::result::Result<Vec<reqwest::Certificate>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| format!("{}: not PEM certificates: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: holds no certificate", path.display()));
    }
    Ok(certs)
}

/// One HAProxy node's backend through its Data Plane API.
#[derive(Debug)]
pub struct DataPlane {
    cfg: DataPlaneConfig,
    http: reqwest::Client,
    version: OnceCell<ApiVersion>,
}

/// An HTTP answer: status + JSON body (`Null` when empty).
struct Answer {
    status: StatusCode,
    body: Value,
}

impl DataPlane {
    pub fn new(cfg: DataPlaneConfig) -> Result<DataPlane> {
        let mut builder = reqwest::Client::builder().timeout(cfg.timeout);
        if let Some(path) = &cfg.ca_file {
            // A private CA replaces the public roots: the node's certificate must come
            // from it, not from any CA on the internet.
            builder = builder.tls_built_in_root_certs(false);
            for cert in read_ca(path).map_err(|m| {
                BalancerError::Protocol(format!("{}: dataplane_ca_file {m}", cfg.node))
            })? {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| BalancerError::Protocol(format!("http client: {e}")))?;
        let version = OnceCell::new_with(cfg.version);
        Ok(DataPlane { cfg, http, version })
    }

    /// The API version: pinned, or detected once through `/info`.
    pub async fn api_version(&self) -> Result<ApiVersion> {
        self.version
            .get_or_try_init(|| async {
                for v in [ApiVersion::V3, ApiVersion::V2] {
                    let a = self
                        .send(Method::GET, &format!("{}/info", v.prefix()), &[], None)
                        .await?;
                    if a.status == StatusCode::NOT_FOUND {
                        continue;
                    }
                    let a = self.ok(a, "")?;
                    let reported = a.body["api"]["version"].as_str().unwrap_or("");
                    tracing::info!(node = %self.cfg.node, api = reported, "data plane api detected");
                    return Ok(v);
                }
                Err(BalancerError::Unsupported(format!(
                    "{}: neither /v3/info nor /v2/info answers: not a Data Plane API v2/v3",
                    self.cfg.node
                )))
            })
            .await
            .copied()
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Answer> {
        let url = format!("{}{}", self.cfg.url.trim_end_matches('/'), path);
        let mut req = self
            .http
            .request(method.clone(), &url)
            .basic_auth(&self.cfg.user, Some(self.cfg.password.expose()))
            .query(query);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| BalancerError::Unavailable {
            node: self.cfg.node.clone(),
            // reqwest's error names the URL, never the credentials; its causes say why
            // (a refused connection, an untrusted certificate).
            message: with_causes(&e.without_url()),
        })?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| BalancerError::Unavailable {
            node: self.cfg.node.clone(),
            message: e.without_url().to_string(),
        })?;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).map_err(|e| {
                BalancerError::Protocol(format!("{method} {path}: {status}, body is not JSON: {e}"))
            })?
        };
        tracing::debug!(node = %self.cfg.node, %method, path, status = status.as_u16(), "data plane api");
        Ok(Answer { status, body })
    }

    /// Map a non-2xx answer to a typed error.
    fn ok(&self, a: Answer, server: &str) -> Result<Answer> {
        if a.status.is_success() {
            return Ok(a);
        }
        let msg = message(&a.body);
        Err(match a.status.as_u16() {
            401 | 403 => BalancerError::Auth(format!("{}: {msg}", self.cfg.node)),
            404 if server.is_empty() => BalancerError::Protocol(format!("404: {msg}")),
            404 => BalancerError::NotFound {
                backend: self.cfg.backend.clone(),
                server: server.to_string(),
            },
            409 if already_exists(&msg) => {
                BalancerError::Conflict(format!("{}: {msg}", self.cfg.node))
            }
            406 | 409 => BalancerError::Conflict(format!("configuration version moved: {msg}")),
            429 | 500..=599 => BalancerError::Unavailable {
                node: self.cfg.node.clone(),
                message: format!("{}: {msg}", a.status),
            },
            _ => BalancerError::Rejected(format!("{}: {msg}", a.status)),
        })
    }

    // ---- paths -------------------------------------------------------------

    async fn config_servers_path(&self) -> Result<(String, Vec<(&'static str, String)>)> {
        let v = self.api_version().await?;
        Ok(match v {
            ApiVersion::V2 => (
                "/v2/services/haproxy/configuration/servers".into(),
                vec![("backend", self.cfg.backend.clone())],
            ),
            ApiVersion::V3 => (
                format!(
                    "/v3/services/haproxy/configuration/backends/{}/servers",
                    self.cfg.backend
                ),
                vec![],
            ),
        })
    }

    async fn runtime_servers_path(&self) -> Result<(String, Vec<(&'static str, String)>)> {
        let v = self.api_version().await?;
        Ok(match v {
            ApiVersion::V2 => (
                "/v2/services/haproxy/runtime/servers".into(),
                vec![("backend", self.cfg.backend.clone())],
            ),
            ApiVersion::V3 => (
                format!(
                    "/v3/services/haproxy/runtime/backends/{}/servers",
                    self.cfg.backend
                ),
                vec![],
            ),
        })
    }

    // ---- configuration -----------------------------------------------------

    async fn config_version(&self) -> Result<i64> {
        let v = self.api_version().await?;
        let a = self
            .send(
                Method::GET,
                &format!("{}/services/haproxy/configuration/version", v.prefix()),
                &[],
                None,
            )
            .await?;
        let a = self.ok(a, "")?;
        a.body
            .as_i64()
            .ok_or_else(|| BalancerError::Protocol(format!("configuration version {}", a.body)))
    }

    /// The configured servers, as raw JSON objects.
    async fn config_servers(&self) -> Result<Vec<Value>> {
        let (path, q) = self.config_servers_path().await?;
        let a = self.send(Method::GET, &path, &q, None).await?;
        let a = self.ok(a, "")?;
        // v2: {_version, data: [...]}; v3: [...]
        let list = if a.body.is_array() {
            a.body
        } else {
            a.body["data"].clone()
        };
        list.as_array()
            .cloned()
            .ok_or_else(|| BalancerError::Protocol(format!("servers list: {list}")))
    }

    async fn config_server(&self, name: &str) -> Result<Option<Value>> {
        let (path, q) = self.config_servers_path().await?;
        let a = self
            .send(Method::GET, &format!("{path}/{name}"), &q, None)
            .await?;
        if a.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let a = self.ok(a, name)?;
        let s = if a.body.get("data").is_some() && a.body.get("name").is_none() {
            a.body["data"].clone()
        } else {
            a.body
        };
        Ok(Some(s))
    }

    /// One configuration write, retried with a fresh version on 409.
    async fn config_write(
        &self,
        method: Method,
        name: Option<&str>,
        body: Option<&Value>,
        server: &str,
    ) -> Result<Answer> {
        let (base, q) = self.config_servers_path().await?;
        let path = match name {
            Some(n) => format!("{base}/{n}"),
            None => base,
        };
        let mut last = None;
        for attempt in 0..self.cfg.conflict_retries.max(1) {
            let version = self.config_version().await?;
            let mut query = q.clone();
            query.push(("version", version.to_string()));
            let a = self.send(method.clone(), &path, &query, body).await?;
            if a.status == StatusCode::CONFLICT && !already_exists(&message(&a.body)) {
                tracing::info!(node = %self.cfg.node, attempt, "configuration version moved; re-reading");
                last = Some(a);
                tokio::time::sleep(Duration::from_millis(20 * (attempt as u64 + 1))).await;
                continue;
            }
            return self.ok(a, server);
        }
        Err(BalancerError::Conflict(format!(
            "{}: configuration kept changing over {} attempts ({})",
            self.cfg.node,
            self.cfg.conflict_retries,
            last.map(|a| a.body.to_string()).unwrap_or_default()
        )))
    }

    /// A runtime server change. Right after a configuration write the server may not
    /// be in the running process yet (the API reloads asynchronously): retry 404 briefly.
    async fn runtime_put(&self, name: &str, body: &Value) -> Result<()> {
        let (base, q) = self.runtime_servers_path().await?;
        let path = format!("{base}/{name}");
        let deadline = tokio::time::Instant::now() + self.cfg.timeout;
        loop {
            let a = self.send(Method::PUT, &path, &q, Some(body)).await?;
            if a.status == StatusCode::NOT_FOUND && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            self.ok(a, name)?;
            return Ok(());
        }
    }

    async fn stats(&self) -> Result<HashMap<String, Stat>> {
        let v = self.api_version().await?;
        let a = self
            .send(
                Method::GET,
                &format!("{}/services/haproxy/stats/native", v.prefix()),
                &[
                    ("type", "server".to_string()),
                    ("parent", self.cfg.backend.clone()),
                ],
                None,
            )
            .await?;
        let a = self.ok(a, "")?;
        // v2: [{runtimeAPI, stats: [...]}, ...] (one per process); v3: {runtimeAPI, stats}.
        let collections: Vec<Value> = match a.body {
            Value::Array(v) => v,
            other => vec![other],
        };
        let mut map: HashMap<String, Stat> = HashMap::new();
        for c in collections {
            for s in c["stats"].as_array().into_iter().flatten() {
                if s["type"] != "server" || s["backend_name"] != self.cfg.backend.as_str() {
                    continue;
                }
                let Some(name) = s["name"].as_str() else {
                    continue;
                };
                let e = map.entry(name.to_string()).or_default();
                e.sessions += s["stats"]["scur"].as_u64().unwrap_or(0);
                e.total_sessions += s["stats"]["stot"].as_u64().unwrap_or(0);
                e.status = s["stats"]["status"].as_str().unwrap_or("").to_string();
                e.check_status = s["stats"]["check_status"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
            }
        }
        Ok(map)
    }
}

/// An error body's `message` (both specs' `error` object), else the whole body.
fn message(body: &Value) -> String {
    body["message"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| body.to_string())
}

/// A 409 that says the object exists (dataplaneapi: "... already exists ..."), not that
/// the configuration version moved: retrying with a fresh version cannot help.
fn already_exists(msg: &str) -> bool {
    msg.to_ascii_lowercase().contains("already exists")
}

/// One server's line of the native stats.
#[derive(Debug, Clone, Default)]
struct Stat {
    sessions: u64,
    total_sessions: u64,
    /// UP, DOWN, NOLB, MAINT, no check.
    status: String,
    /// L4OK, L7OK, L4CON, INI, ... (empty without a check).
    check_status: String,
}

impl Stat {
    fn check_passed(&self) -> bool {
        matches!(
            self.check_status.as_str(),
            "" | "L4OK" | "L6OK" | "L7OK" | "L7OKC"
        )
    }
}

/// The configuration body for a server (both versions accept these fields).
pub fn server_body(spec: &ServerSpec, maintenance: bool) -> Value {
    let mut b = json!({
        "name": spec.name,
        "address": spec.address,
        "port": spec.port,
        "weight": spec.weight,
        "check": if spec.check { "enabled" } else { "disabled" },
        "maintenance": if maintenance { "enabled" } else { "disabled" },
    });
    if spec.slowstart_ms > 0 {
        b["slowstart"] = json!(spec.slowstart_ms);
    }
    b
}

/// Read the settings pgsurge compares out of a configuration server object.
fn settings(v: &Value) -> (String, u16, u16, bool) {
    (
        v["address"].as_str().unwrap_or_default().to_string(),
        v["port"].as_u64().unwrap_or(0) as u16,
        // HAProxy's default weight is 1.
        v["weight"].as_u64().unwrap_or(1) as u16,
        v["check"] == "enabled",
    )
}

fn admin_of(s: &str) -> AdminState {
    match s {
        "ready" => AdminState::Ready,
        "drain" => AdminState::Drain,
        _ => AdminState::Maint,
    }
}

fn oper_of(s: &str) -> OperState {
    match s {
        "up" => OperState::Up,
        "stopping" => OperState::Stopping,
        _ => OperState::Down,
    }
}

#[async_trait]
impl Balancer for DataPlane {
    fn node(&self) -> &str {
        &self.cfg.node
    }

    async fn put_server(&self, spec: &ServerSpec) -> Result<PutOutcome> {
        spec.validate()?;
        match self.config_server(&spec.name).await? {
            None => {
                let body = server_body(spec, true);
                let a = self
                    .config_write(Method::POST, None, Some(&body), &spec.name)
                    .await;
                match a {
                    Ok(_) => {}
                    // Created by someone else meanwhile: compare below.
                    Err(BalancerError::Conflict(_))
                        if self.config_server(&spec.name).await?.is_some() =>
                    {
                        return self.put_server(spec).await;
                    }
                    Err(e) => return Err(e),
                }
                Ok(PutOutcome::Created)
            }
            Some(cur) => {
                let (address, port, weight, check) = settings(&cur);
                if address == spec.address && port == spec.port && check == spec.check {
                    if weight == spec.weight {
                        return Ok(PutOutcome::Unchanged);
                    }
                    let mut body = cur.clone();
                    body["weight"] = json!(spec.weight);
                    self.config_write(Method::PUT, Some(&spec.name), Some(&body), &spec.name)
                        .await?;
                    return Ok(PutOutcome::Updated);
                }
                Err(BalancerError::Conflict(format!(
                    "{}/{} exists as {address}:{port} check={check} but {}:{} check={} was asked; remove it first",
                    self.cfg.backend, spec.name, spec.address, spec.port, spec.check
                )))
            }
        }
    }

    async fn set_state(&self, name: &str, state: AdminState) -> Result<()> {
        validate_name(name)?;
        if state == AdminState::Ready {
            self.wait_check_before_ready(name).await?;
        }
        // Configuration first, so a reload the API makes meanwhile already starts the
        // server in the right state; drain is configured as maintenance (module doc).
        let want_maint = match state {
            AdminState::Ready => "disabled",
            AdminState::Maint | AdminState::Drain => "enabled",
        };
        let Some(mut cur) = self.config_server(name).await? else {
            return Err(BalancerError::NotFound {
                backend: self.cfg.backend.clone(),
                server: name.to_string(),
            });
        };
        if cur["maintenance"].as_str().unwrap_or("disabled") != want_maint {
            cur["maintenance"] = json!(want_maint);
            self.config_write(Method::PUT, Some(name), Some(&cur), name)
                .await?;
        }
        self.runtime_put(name, &json!({"admin_state": state.as_str()}))
            .await
    }

    async fn remove_server(&self, name: &str) -> Result<bool> {
        validate_name(name)?;
        if self.config_server(name).await?.is_none() {
            return Ok(false);
        }
        match self
            .runtime_put(name, &json!({"admin_state": "maint"}))
            .await
        {
            Ok(()) | Err(BalancerError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        // Sessions that were closing when it went to maint take a moment to end; past
        // that, the server still carries sessions: Busy, as the trait promises (the
        // runtime adapter gets the same from `del server`).
        let until = tokio::time::Instant::now() + REMOVE_SETTLE;
        loop {
            let open = self.stats().await?.get(name).map_or(0, |s| s.sessions);
            if open == 0 {
                break;
            }
            if tokio::time::Instant::now() >= until {
                return Err(BalancerError::Busy(format!(
                    "{}/{name}: {open} session(s) still open; left configured, in maintenance \
                     (drain first; this API cannot shut sessions down)",
                    self.cfg.backend
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        match self
            .config_write(Method::DELETE, Some(name), None, name)
            .await
        {
            Ok(_) => Ok(true),
            Err(BalancerError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The Data Plane API has no "shutdown sessions": sessions still open when the
    /// server is deleted end with the old process after the API's reload
    /// (`hard-stop-after` bounds them).
    async fn kill_sessions(&self, _name: &str) -> Result<()> {
        Err(BalancerError::Unsupported(
            "the Data Plane API cannot shut sessions down; they end with the reload that deletes the server".into(),
        ))
    }

    async fn list_servers(&self) -> Result<Vec<ServerStatus>> {
        let configured = self.config_servers().await?;
        let (path, q) = self.runtime_servers_path().await?;
        let a = self.send(Method::GET, &path, &q, None).await?;
        let runtime = self.ok(a, "")?.body;
        let runtime: HashMap<String, &Value> = runtime
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| Some((r["name"].as_str()?.to_string(), r)))
            .collect();
        let stats = self.stats().await?;
        Ok(configured
            .iter()
            .filter_map(|c| {
                let name = c["name"].as_str()?.to_string();
                let (address, port, weight, check) = settings(c);
                let (admin, oper) = match runtime.get(&name) {
                    Some(r) => (
                        admin_of(r["admin_state"].as_str().unwrap_or("")),
                        oper_of(r["operational_state"].as_str().unwrap_or("")),
                    ),
                    // Configured but not running yet (reload pending).
                    None => (AdminState::Maint, OperState::Down),
                };
                let (sessions, total_sessions) = stats
                    .get(&name)
                    .map(|s| (s.sessions, s.total_sessions))
                    .unwrap_or((0, 0));
                Some(ServerStatus {
                    name,
                    address,
                    port,
                    weight,
                    check,
                    admin,
                    oper,
                    sessions,
                    total_sessions,
                })
            })
            .collect())
    }

    /// Configuration changes of the plan in one transaction (one reload at most), then
    /// the runtime state changes. A transaction that went stale (409 at start, 406/409
    /// at commit) is dropped and the whole plan re-made from a fresh read.
    async fn apply(&self, desired: &DesiredSet) -> Result<Vec<Action>> {
        for d in desired.servers.values() {
            d.spec.validate()?;
        }
        let v = self.api_version().await?;
        let tx_base = format!("{}/services/haproxy/transactions", v.prefix());
        for attempt in 0..self.cfg.conflict_retries.max(1) {
            let current = self.list_servers().await?;
            let actions = plan(desired, &current);
            // A stray that still carries sessions is not deleted (the remove_server
            // contract): it goes to maintenance now and is deleted by a later apply.
            let busy: Vec<&str> = actions
                .iter()
                .filter_map(|a| match a {
                    Action::Remove { name } => current
                        .iter()
                        .find(|c| &c.name == name && c.sessions > 0)
                        .map(|c| c.name.as_str()),
                    _ => None,
                })
                .collect();
            let config: Vec<&Action> = actions
                .iter()
                .filter(|a| match a {
                    Action::SetState { .. } => false,
                    Action::Remove { name } => !busy.contains(&name.as_str()),
                    Action::Put { .. } => true,
                })
                .collect();
            if !config.is_empty() {
                let version = self.config_version().await?;
                let a = self
                    .send(
                        Method::POST,
                        &tx_base,
                        &[("version", version.to_string())],
                        None,
                    )
                    .await?;
                if a.status == StatusCode::CONFLICT {
                    continue;
                }
                let tx = self.ok(a, "")?.body["id"]
                    .as_str()
                    .ok_or_else(|| BalancerError::Protocol("transaction without id".into()))?
                    .to_string();
                let staged = self.stage(&config, &current, &tx).await;
                if let Err(e) = staged {
                    let _ = self
                        .send(Method::DELETE, &format!("{tx_base}/{tx}"), &[], None)
                        .await;
                    return Err(e);
                }
                let a = self
                    .send(Method::PUT, &format!("{tx_base}/{tx}"), &[], None)
                    .await?;
                if matches!(a.status.as_u16(), 406 | 409) {
                    tracing::info!(node = %self.cfg.node, attempt, "transaction outdated; re-planning");
                    let _ = self
                        .send(Method::DELETE, &format!("{tx_base}/{tx}"), &[], None)
                        .await;
                    continue;
                }
                self.ok(a, "")?;
            }
            for a in &actions {
                if let Action::SetState { name, state } = a {
                    self.set_state(name, *state).await?;
                }
            }
            if !busy.is_empty() {
                for name in &busy {
                    match self
                        .runtime_put(name, &json!({"admin_state": "maint"}))
                        .await
                    {
                        Ok(()) | Err(BalancerError::NotFound { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
                return Err(BalancerError::Busy(format!(
                    "{}: {} still carry sessions: put in maintenance, not deleted yet",
                    self.cfg.node,
                    busy.join(", ")
                )));
            }
            return Ok(actions);
        }
        Err(BalancerError::Conflict(format!(
            "{}: configuration kept changing over {} attempts",
            self.cfg.node, self.cfg.conflict_retries
        )))
    }
}

impl DataPlane {
    /// As with the runtime API: HAProxy puts a checked server up the moment it leaves
    /// maintenance, so leave it only once HAProxy's own check has passed.
    async fn wait_check_before_ready(&self, name: &str) -> Result<()> {
        let until = tokio::time::Instant::now() + self.cfg.ready_wait;
        loop {
            let stats = self.stats().await?;
            let st = stats.get(name);
            match st {
                Some(st) if st.status != "MAINT" || st.check_passed() => return Ok(()),
                _ if tokio::time::Instant::now() >= until => {
                    return Err(BalancerError::Busy(format!(
                        "{}/{name}: health check has not passed within {:?} ({}); left in maintenance",
                        self.cfg.backend,
                        self.cfg.ready_wait,
                        st.map(|s| s.check_status.as_str()).unwrap_or("not running yet")
                    )))
                }
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// Send the plan's configuration actions inside transaction `tx`.
    async fn stage(&self, config: &[&Action], current: &[ServerStatus], tx: &str) -> Result<()> {
        let (base, q) = self.config_servers_path().await?;
        for a in config {
            let mut query = q.clone();
            query.push(("transaction_id", tx.to_string()));
            let (method, path, body, server) = match a {
                Action::Put { spec } => {
                    if let Some(cur) = current.iter().find(|c| c.name == spec.name) {
                        if !cur.only_weight_differs(spec) {
                            return Err(BalancerError::Conflict(format!(
                                "{}/{} exists with another address, port or check; remove it first",
                                self.cfg.backend, spec.name
                            )));
                        }
                        // Change the weight only: keep whatever else the object carries.
                        let mut body = self.config_server(&spec.name).await?.ok_or_else(|| {
                            BalancerError::NotFound {
                                backend: self.cfg.backend.clone(),
                                server: spec.name.clone(),
                            }
                        })?;
                        body["weight"] = json!(spec.weight);
                        (
                            Method::PUT,
                            format!("{base}/{}", spec.name),
                            Some(body),
                            spec.name.as_str(),
                        )
                    } else {
                        (
                            Method::POST,
                            base.clone(),
                            Some(server_body(spec, true)),
                            spec.name.as_str(),
                        )
                    }
                }
                Action::Remove { name } => (
                    Method::DELETE,
                    format!("{base}/{name}"),
                    None,
                    name.as_str(),
                ),
                Action::SetState { .. } => continue,
            };
            let a = self.send(method, &path, &query, body.as_ref()).await?;
            self.ok(a, server)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_body_uses_the_spec_field_names() {
        let spec = ServerSpec {
            name: "pgsurge-c-r1".into(),
            address: "10.0.0.7".into(),
            port: 5432,
            weight: 100,
            check: true,
            slowstart_ms: 30_000,
        };
        let b = server_body(&spec, true);
        assert_eq!(b["check"], "enabled");
        assert_eq!(b["maintenance"], "enabled");
        assert_eq!(b["slowstart"], 30_000);
        assert_eq!(settings(&b), ("10.0.0.7".into(), 5432, 100, true));
        let b = server_body(
            &ServerSpec {
                slowstart_ms: 0,
                check: false,
                ..spec
            },
            false,
        );
        assert!(b.get("slowstart").is_none());
        assert_eq!(b["check"], "disabled");
    }

    #[test]
    fn a_409_that_says_already_exists_is_not_a_version_conflict() {
        assert!(already_exists(&message(
            &json!({"code": 409, "message": "Server pgsurge-c-r1 already exists in backend pg"})
        )));
        assert!(!already_exists(&message(
            &json!({"code": 409, "message": "version mismatch: 3 != 4"})
        )));
    }

    #[test]
    fn password_never_in_debug() {
        let dp = DataPlane::new(DataPlaneConfig {
            node: "n".into(),
            url: "http://127.0.0.1:1".into(),
            user: "admin".into(),
            password: Secret::new("hunter2-secret"),
            backend: "pg".into(),
            version: None,
            timeout: Duration::from_secs(1),
            conflict_retries: 3,
            ready_wait: Duration::from_secs(1),
            ca_file: None,
        })
        .unwrap();
        assert!(!format!("{dp:?}").contains("hunter2"));
    }
}
