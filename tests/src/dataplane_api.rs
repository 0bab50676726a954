//! A Data Plane API (v2 or v3) served in front of a *real* HAProxy, for the adapter's
//! contract tests: the `dataplaneapi` binary cannot be installed here.
//!
//! Every request is checked against the official spec (both specs are loaded, so the
//! adapter's `/info` probe of the other version is checked too and answered 404, as a
//! real server does), and every response this server sends is checked before it goes
//! out. Violations are recorded, and a request that violates the spec gets a 400.
//!
//! Behind the API: configuration servers with a version counter and transactions (as
//! dataplaneapi keeps them), mirrored onto the real HAProxy through its admin socket the
//! way dataplaneapi applies server changes at runtime; runtime and stats endpoints read
//! the real HAProxy. Knobs inject version conflicts (another writer won) to exercise
//! the adapter's re-read-and-retry.

use crate::haproxy::HaproxyNode;
use crate::openapi::{Matched, Spec};
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The official spec files copied into the project (tests/data/dataplane/).
pub fn spec_path(version: u8) -> PathBuf {
    crate::workspace_root().join(format!("tests/data/dataplane/v{version}-spec.yaml"))
}

#[derive(Debug, Clone)]
enum StagedOp {
    Create(Value),
    Replace(String, Value),
    Delete(String),
}

struct Txn {
    base_version: i64,
    ops: Vec<StagedOp>,
}

/// The server's state, inspectable by the test.
pub struct State {
    pub version: u8,
    pub cfg_version: i64,
    pub servers: BTreeMap<String, Value>,
    txns: HashMap<String, Txn>,
    next_txn: u64,
    /// Every request: (method, path?query, status).
    pub log: Vec<(String, String, u16)>,
    /// Every operationId answered.
    pub operations: Vec<String>,
    pub violations: Vec<String>,
    /// The next N versioned writes find the version moved (409).
    pub inject_write_conflicts: u32,
    /// The next N commits find their transaction outdated.
    pub inject_commit_conflicts: u32,
    /// Another writer creates this server just before the next create arrives: that
    /// create then finds the version moved, and, retried, that the server exists.
    pub inject_create_race: Option<Value>,
    pub conflicts_sent: u32,
    socket: PathBuf,
    backend: String,
    user: String,
    password: String,
}

pub struct FakeDataPlane {
    pub url: String,
    pub state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
    addr: std::net::SocketAddr,
    shared: Arc<Shared>,
}

impl Drop for FakeDataPlane {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Shared {
    state: Arc<Mutex<State>>,
    specs: Vec<(u8, Arc<Spec>)>,
}

impl FakeDataPlane {
    /// Serve API `version` (2 or 3) for `node`'s backend on a free loopback port.
    pub async fn start(
        version: u8,
        node: &HaproxyNode,
        user: &str,
        password: &str,
        specs: [Arc<Spec>; 2],
    ) -> FakeDataPlane {
        let mut servers = BTreeMap::new();
        for s in &node.backend.servers {
            servers.insert(
                s.name.clone(),
                json!({"name": s.name, "address": "127.0.0.1", "port": s.port, "check": "enabled"}),
            );
        }
        let state = Arc::new(Mutex::new(State {
            version,
            cfg_version: 1,
            servers,
            txns: HashMap::new(),
            next_txn: 1,
            log: Vec::new(),
            operations: Vec::new(),
            violations: Vec::new(),
            inject_write_conflicts: 0,
            inject_commit_conflicts: 0,
            inject_create_race: None,
            conflicts_sent: 0,
            socket: node.socket.clone(),
            backend: node.backend.name.clone(),
            user: user.into(),
            password: password.into(),
        }));
        let [v2, v3] = specs;
        let shared = Arc::new(Shared {
            state: state.clone(),
            specs: vec![(2, v2), (3, v3)],
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = serve_on(listener, shared.clone());
        FakeDataPlane {
            url: format!("http://{addr}"),
            state,
            task,
            addr,
            shared,
        }
    }

    /// The API goes away (connections refused); its configuration is kept.
    pub async fn stop(&mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }

    /// Back on the same address, with the configuration it had.
    pub async fn resume(&mut self) {
        let mut tries = 0;
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if tries < 50 => {
                    tries += 1;
                    eprintln!("rebinding {}: {e}", self.addr);
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => panic!("cannot rebind {}: {e}", self.addr),
            }
        };
        self.task = serve_on(listener, self.shared.clone());
    }

    /// What dataplaneapi's configuration gives a freshly reloaded HAProxy: every
    /// configured server that the new process lacks (the fixture mirrors them as
    /// dynamic servers, which a reload forgets) is added back, in maintenance when
    /// configured so, ready otherwise.
    pub fn after_reload(&self) {
        let mut st = self.state.lock().unwrap();
        let running = runtime_rows(&st);
        let missing: Vec<Value> = st
            .servers
            .iter()
            .filter(|(n, _)| !running.contains_key(*n))
            .map(|(_, s)| s.clone())
            .collect();
        for s in missing {
            let name = s["name"].as_str().unwrap().to_string();
            st.servers.remove(&name);
            apply_op(&mut st, &StagedOp::Create(s)).expect("re-create after reload");
        }
    }
}

fn serve_on(listener: tokio::net::TcpListener, shared: Arc<Shared>) -> tokio::task::JoinHandle<()> {
    let app = axum::Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let shared = shared.clone();
            async move { handle(&shared, method, uri, headers, body) }
        },
    );
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    })
}

fn err(code: u16, message: &str) -> (u16, Option<Value>) {
    (code, Some(json!({"code": code, "message": message})))
}

fn handle(shared: &Shared, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().to_string();
    let query: Vec<(String, String)> = reqwest::Url::parse(&format!("http://x{uri}"))
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let body_json: Option<Value> = if body.is_empty() {
        None
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => Some(v),
            Err(e) => {
                shared
                    .state
                    .lock()
                    .unwrap()
                    .violations
                    .push(format!("{method} {path}: body is not JSON: {e}"));
                return reply(
                    400,
                    Some(json!({"code": 400, "message": "body is not JSON"})),
                );
            }
        }
    };
    let mut st = shared.state.lock().unwrap();
    // Which spec: the one whose base path the request is under.
    let Some((req_version, spec)) = shared
        .specs
        .iter()
        .find(|(_, s)| path.starts_with(&format!("{}/", s.base_path)))
    else {
        st.violations
            .push(format!("{method} {uri}: under no spec's base path"));
        st.log.push((method.to_string(), uri.to_string(), 404));
        return reply(404, Some(json!({"code": 404, "message": "not found"})));
    };
    let matched = match spec.check_request(method.as_str(), &path, &query, body_json.as_ref()) {
        Ok(m) => m,
        Err(errors) => {
            st.violations.push(format!(
                "{method} {uri} (v{req_version} spec): {}",
                errors.join("; ")
            ));
            st.log.push((method.to_string(), uri.to_string(), 400));
            return reply(
                400,
                Some(json!({"code": 400, "message": errors.join("; ")})),
            );
        }
    };
    let (status, out) = if *req_version != st.version {
        // A v3 path on a v2 server (the adapter's version probe): not served.
        err(404, "not found")
    } else if !authorized(&st, &headers) {
        err(401, "invalid credentials")
    } else {
        st.operations.push(matched.operation_id.clone());
        serve(&mut st, &matched, &query, body_json)
    };
    if let Err(errors) = spec.check_response(&matched, status, out.as_ref()) {
        st.violations.push(format!(
            "response {status} to {method} {uri}: {}",
            errors.join("; ")
        ));
    }
    st.log.push((method.to_string(), uri.to_string(), status));
    reply(status, out)
}

fn reply(status: u16, body: Option<Value>) -> Response {
    let status = StatusCode::from_u16(status).unwrap();
    match body {
        Some(b) => (
            status,
            [("content-type", "application/json")],
            b.to_string(),
        )
            .into_response(),
        None => status.into_response(),
    }
}

fn authorized(st: &State, headers: &HeaderMap) -> bool {
    let want =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", st.user, st.password));
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Basic {want}"))
}

fn q<'a>(query: &'a [(String, String)], k: &str) -> Option<&'a str> {
    query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

fn serve(
    st: &mut State,
    m: &Matched,
    query: &[(String, String)],
    body: Option<Value>,
) -> (u16, Option<Value>) {
    let v2 = st.version == 2;
    let backend = if v2 {
        q(query, "backend").map(str::to_string)
    } else {
        m.path_params.get("parent_name").cloned()
    };
    if let Some(b) = &backend {
        if *b != st.backend && m.operation_id != "getStats" {
            return err(404, &format!("backend {b} not found"));
        }
    }
    let name = m.path_params.get("name").cloned();
    match m.operation_id.as_str() {
        "getInfo" => (
            200,
            Some(
                json!({"api": {"version": if v2 { "v2.9.8 3c2e9c5f" } else { "v3.0.4 8e6f2a1d" }, "build_date": "2025-01-15T10:00:00.000Z"}, "system": {}}),
            ),
        ),
        "getConfigurationVersion" => (200, Some(json!(st.cfg_version))),
        "getServers" | "getAllServerBackend" => {
            let list: Vec<Value> = st.servers.values().cloned().collect();
            (
                200,
                Some(if v2 {
                    json!({"_version": st.cfg_version, "data": list})
                } else {
                    json!(list)
                }),
            )
        }
        "getServer" | "getServerBackend" => match st.servers.get(name.as_deref().unwrap()) {
            Some(s) => (
                200,
                Some(if v2 {
                    json!({"_version": st.cfg_version, "data": s})
                } else {
                    s.clone()
                }),
            ),
            None => err(404, "server not found"),
        },
        "createServer"
        | "createServerBackend"
        | "replaceServer"
        | "replaceServerBackend"
        | "deleteServer"
        | "deleteServerBackend" => {
            let op = match m.operation_id.as_str() {
                "createServer" | "createServerBackend" => StagedOp::Create(body.clone().unwrap()),
                "replaceServer" | "replaceServerBackend" => {
                    StagedOp::Replace(name.clone().unwrap(), body.clone().unwrap())
                }
                _ => StagedOp::Delete(name.clone().unwrap()),
            };
            if let Some(tx) = q(query, "transaction_id") {
                let Some(t) = st.txns.get_mut(tx) else {
                    return err(404, "transaction not found");
                };
                t.ops.push(op.clone());
                return written(&op, v2, true);
            }
            let Some(version) = q(query, "version").and_then(|v| v.parse::<i64>().ok()) else {
                return err(400, "version or transaction_id required");
            };
            let theirs = match op {
                StagedOp::Create(_) => st.inject_create_race.take(),
                _ => None,
            };
            if let Some(theirs) = theirs {
                apply_op(st, &StagedOp::Create(theirs)).expect("the other writer's create");
                st.cfg_version += 1;
            }
            if st.inject_write_conflicts > 0 {
                // Another writer committed first.
                st.inject_write_conflicts -= 1;
                st.cfg_version += 1;
            }
            if version != st.cfg_version {
                st.conflicts_sent += 1;
                return err(
                    409,
                    &format!("version mismatch: {version} != {}", st.cfg_version),
                );
            }
            if let Err(e) = apply_op(st, &op) {
                return e;
            }
            st.cfg_version += 1;
            written(&op, v2, false)
        }
        "startTransaction" => {
            let version: i64 = q(query, "version").unwrap().parse().unwrap();
            if version != st.cfg_version {
                st.conflicts_sent += 1;
                return err(409, "version mismatch");
            }
            let id = format!("tx-{:04}-{}", st.next_txn, st.version);
            st.next_txn += 1;
            st.txns.insert(
                id.clone(),
                Txn {
                    base_version: version,
                    ops: Vec::new(),
                },
            );
            (
                201,
                Some(json!({"id": id, "_version": version, "status": "in_progress"})),
            )
        }
        "commitTransaction" => {
            let id = m.path_params["id"].clone();
            if st.inject_commit_conflicts > 0 {
                st.inject_commit_conflicts -= 1;
                st.cfg_version += 1;
            }
            let Some(t) = st.txns.get(&id) else {
                return err(404, "transaction not found");
            };
            if t.base_version != st.cfg_version {
                st.conflicts_sent += 1;
                return err(if v2 { 409 } else { 406 }, "transaction outdated");
            }
            let t = st.txns.remove(&id).unwrap();
            // All or nothing: check every op against a copy first.
            let before = st.servers.clone();
            for op in &t.ops {
                if let Err(e) = stage_check(&before, op) {
                    return e;
                }
            }
            for op in &t.ops {
                if let Err(e) = apply_op(st, op) {
                    return e;
                }
            }
            st.cfg_version += 1;
            (
                200,
                Some(json!({"id": id, "_version": st.cfg_version, "status": "success"})),
            )
        }
        "deleteTransaction" => match st.txns.remove(&m.path_params["id"]) {
            Some(_) => (204, None),
            None => err(404, "transaction not found"),
        },
        "getRuntimeServers" | "getAllRuntimeServer" => {
            let rows = runtime_rows(st);
            (200, Some(Value::Array(rows.into_values().collect())))
        }
        "replaceRuntimeServer" => {
            let name = name.unwrap();
            let rows = runtime_rows(st);
            if !rows.contains_key(&name) {
                return err(404, "server not found in runtime");
            }
            let b = body.unwrap();
            if let Some(a) = b["admin_state"].as_str() {
                let out = cli(st, &format!("set server {}/{name} state {a}", st.backend));
                if !out.trim().is_empty() {
                    return err(400, out.trim());
                }
            }
            if let Some(o) = b["operational_state"].as_str() {
                let h = if o == "stopping" { "stopping" } else { o };
                cli(st, &format!("set server {}/{name} health {h}", st.backend));
            }
            (200, Some(runtime_rows(st).remove(&name).unwrap()))
        }
        "getStats" => {
            let stats = stats(st);
            let collection = json!({"runtimeAPI": st.socket.display().to_string(), "stats": stats});
            (200, Some(if v2 { json!([collection]) } else { collection }))
        }
        other => err(501, &format!("{other} not implemented by the test server")),
    }
}

fn written(op: &StagedOp, _v2: bool, in_txn: bool) -> (u16, Option<Value>) {
    match op {
        // Inside a transaction the change is staged: 202 (accepted) with the object.
        StagedOp::Create(s) => (if in_txn { 202 } else { 201 }, Some(s.clone())),
        StagedOp::Replace(_, s) => (if in_txn { 202 } else { 200 }, Some(s.clone())),
        StagedOp::Delete(_) => (if in_txn { 202 } else { 204 }, None),
    }
}

fn stage_check(
    servers: &BTreeMap<String, Value>,
    op: &StagedOp,
) -> Result<(), (u16, Option<Value>)> {
    match op {
        StagedOp::Create(s) if servers.contains_key(s["name"].as_str().unwrap_or("")) => {
            // dataplaneapi's wording (client-native ErrObjectAlreadyExists).
            Err(err(
                409,
                &format!("server {} already exists", s["name"].as_str().unwrap_or("")),
            ))
        }
        StagedOp::Replace(n, _) | StagedOp::Delete(n) if !servers.contains_key(n) => {
            Err(err(404, "server not found"))
        }
        _ => Ok(()),
    }
}

/// Apply a configuration change, and mirror it onto the running HAProxy.
fn apply_op(st: &mut State, op: &StagedOp) -> Result<(), (u16, Option<Value>)> {
    stage_check(&st.servers, op)?;
    let be = st.backend.clone();
    match op {
        StagedOp::Create(s) => {
            let name = s["name"].as_str().unwrap().to_string();
            let mut line = format!(
                "add server {be}/{name} {}:{} weight {}",
                s["address"].as_str().unwrap(),
                s["port"],
                s["weight"].as_u64().unwrap_or(1)
            );
            if s["check"] == "enabled" {
                line.push_str(" check");
            }
            if let Some(ms) = s["slowstart"].as_u64() {
                line.push_str(&format!(" slowstart {ms}ms"));
            }
            let out = cli(st, &line);
            if out.trim() != "New server registered." {
                return Err(err(400, out.trim()));
            }
            if s["check"] == "enabled" {
                cli(st, &format!("enable health {be}/{name}"));
            }
            if s["maintenance"] != "enabled" {
                cli(st, &format!("set server {be}/{name} state ready"));
            }
            st.servers.insert(name, s.clone());
        }
        StagedOp::Replace(name, s) => {
            let old = st.servers[name].clone();
            if old["weight"] != s["weight"] {
                cli(
                    st,
                    &format!(
                        "set weight {be}/{name} {}",
                        s["weight"].as_u64().unwrap_or(1)
                    ),
                );
            }
            if old["maintenance"] != s["maintenance"] {
                let state = if s["maintenance"] == "enabled" {
                    "maint"
                } else {
                    "ready"
                };
                cli(st, &format!("set server {be}/{name} state {state}"));
            }
            st.servers.insert(name.clone(), s.clone());
        }
        StagedOp::Delete(name) => {
            cli(st, &format!("set server {be}/{name} state maint"));
            cli(st, &format!("shutdown sessions server {be}/{name}"));
            let out = cli(st, &format!("del server {be}/{name}"));
            if out.trim() != "Server deleted." {
                return Err(err(500, out.trim()));
            }
            st.servers.remove(name);
        }
    }
    Ok(())
}

fn cli(st: &State, cmd: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(&st.socket).expect("haproxy admin socket");
    s.write_all(format!("{cmd}\n").as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// `show servers state` as Data Plane API runtime_server objects.
fn runtime_rows(st: &State) -> BTreeMap<String, Value> {
    let text = cli(st, &format!("show servers state {}", st.backend));
    let rows =
        pgsurge::balancer::runtime_api::parse_servers_state(&text).expect("show servers state");
    rows.into_iter()
        .map(|r| {
            let admin = match r.admin() {
                pgsurge::balancer::AdminState::Ready => "ready",
                pgsurge::balancer::AdminState::Drain => "drain",
                pgsurge::balancer::AdminState::Maint => "maint",
            };
            let oper = match r.oper() {
                pgsurge::balancer::OperState::Up | pgsurge::balancer::OperState::Starting => "up",
                pgsurge::balancer::OperState::Stopping => "stopping",
                pgsurge::balancer::OperState::Down => "down",
            };
            (
                r.name.clone(),
                json!({"name": r.name, "id": r.name, "address": r.address, "port": r.port, "admin_state": admin, "operational_state": oper}),
            )
        })
        .collect()
}

/// `show stat` as native_stat objects.
fn stats(st: &State) -> Vec<Value> {
    let text = cli(st, &format!("show stat {} 4 -1", st.backend));
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines
        .next()
        .unwrap()
        .trim_start_matches("# ")
        .split(',')
        .collect();
    let col = |n: &str| header.iter().position(|c| *c == n).unwrap();
    let (sv, scur, stot, status, chk) = (
        col("svname"),
        col("scur"),
        col("stot"),
        col("status"),
        col("check_status"),
    );
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            // "UP 1/3" is UP on its way; "* L7OK" is a check in progress.
            let status = f[status].split_whitespace().next().unwrap_or("");
            // HAProxy says DRAIN, which neither spec's enum has: NOLB is the spec's
            // "up, takes no new sessions".
            let status = match status {
                "no" => "no check",
                "DRAIN" => "NOLB",
                s => s,
            };
            let mut s = json!({
                "scur": f[scur].parse::<u64>().unwrap_or(0),
                "stot": f[stot].parse::<u64>().unwrap_or(0),
                "status": status,
            });
            let check = f[chk].trim_start_matches("* ");
            if !check.is_empty() {
                s["check_status"] = json!(check);
            }
            json!({"name": f[sv], "backend_name": st.backend, "type": "server", "stats": s})
        })
        .collect()
}
