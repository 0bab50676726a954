//! HAProxy Runtime API adapter: the admin socket (`stats socket ... level admin`),
//! unix or TCP, one command per connection.
//!
//! Servers are *dynamic servers* (`add server` / `del server`, HAProxy ≥ 2.5 without
//! experimental mode), not pre-declared `server-template` slots: the server keeps the
//! replica's own name (so `show servers state` reads like the cluster state), there is
//! no slot count to size in advance, and nothing maps slots to replicas. See
//! ARCHITECTURE.md, "Dynamic servers". The price: dynamic servers do not inherit
//! `default-server` and vanish on reload, hence [`super::Balancer::apply`].
//!
//! Every answer HAProxy gives is text; [`classify`] turns the messages of both the
//! dynamic-server commands and the slot-style commands (`set server` on a name that is
//! not there, static algorithms, old HAProxy without `add server`) into typed errors.
//!
//! Servers declared in haproxy.cfg are the operator's. HAProxy 2.6 lets `del server`
//! delete a configuration server too (verified: a `server-template` slot or an
//! unreferenced `server` line is deleted like a dynamic one), so the adapter must
//! recognise them itself: a server whose admin state carries the *configuration
//! maintenance* bit (`disabled` in haproxy.cfg, the idiom of `server-template` slots,
//! which HAProxy keeps for the life of the process even once the slot is set ready) is
//! a [configuration slot](StateRow::is_config_slot): `put` of its name is a
//! [`BalancerError::Conflict`], `remove` refuses it, and [`Balancer::apply`] never
//! plans to delete or re-add it. pgsurge never sends `disabled`, so its own servers
//! never carry the bit. A config server *without* `disabled` cannot be told from a
//! dynamic one through the Runtime API: the managed prefix must not match such names
//! (see README, "HAProxy").

use super::{
    execute, plan, validate_name, Action, AdminState, Balancer, BalancerError, DesiredSet,
    OperState, PutOutcome, Result, ServerSpec, ServerStatus,
};
use async_trait::async_trait;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An admin socket address that is neither form [`SocketAddr::parse`] reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{given:?} is neither unix:/path nor host:port of an admin socket")]
pub struct BadSocketAddr {
    pub given: String,
}

/// Where the admin socket listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketAddr {
    Unix(PathBuf),
    /// `host:port` of a `stats socket ipv4@...` (keep it on a management network).
    Tcp(String),
}

impl SocketAddr {
    /// `unix:/path`, `/path` or `tcp:host:port` / `host:port`.
    pub fn parse(s: &str) -> std::result::Result<SocketAddr, BadSocketAddr> {
        if let Some(p) = s.strip_prefix("unix:") {
            return Ok(SocketAddr::Unix(p.into()));
        }
        if s.starts_with('/') {
            return Ok(SocketAddr::Unix(s.into()));
        }
        let hp = s.strip_prefix("tcp:").unwrap_or(s);
        match hp.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0) => {
                Ok(SocketAddr::Tcp(hp.to_string()))
            }
            _ => Err(BadSocketAddr { given: s.into() }),
        }
    }
}

impl std::fmt::Display for SocketAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SocketAddr::Unix(p) => write!(f, "unix:{}", p.display()),
            SocketAddr::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

/// One HAProxy node's backend through its admin socket.
#[derive(Debug, Clone)]
pub struct RuntimeApi {
    node: String,
    addr: SocketAddr,
    backend: String,
    timeout: Duration,
    ready_wait: Duration,
}

impl RuntimeApi {
    pub fn new(node: impl Into<String>, addr: SocketAddr, backend: impl Into<String>) -> Self {
        RuntimeApi {
            node: node.into(),
            addr,
            backend: backend.into(),
            timeout: Duration::from_secs(5),
            ready_wait: Duration::from_secs(15),
        }
    }

    /// Per-command deadline (connect + answer). Default 5 s.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long `set_state(Ready)` waits for a server's first passing health check
    /// when it leaves maintenance. Default 15 s.
    pub fn with_ready_wait(mut self, wait: Duration) -> Self {
        self.ready_wait = wait;
        self
    }

    pub fn backend(&self) -> &str {
        &self.backend
    }

    /// Send one command and return HAProxy's answer, verbatim.
    pub async fn command(&self, cmd: &str) -> Result<String> {
        let unavailable = |m: String| BalancerError::Unavailable {
            node: self.node.clone(),
            message: m,
        };
        let run = async {
            let mut out = Vec::new();
            match &self.addr {
                SocketAddr::Unix(p) => {
                    let mut s = tokio::net::UnixStream::connect(p).await?;
                    s.write_all(format!("{cmd}\n").as_bytes()).await?;
                    s.read_to_end(&mut out).await?;
                }
                SocketAddr::Tcp(a) => {
                    let mut s = tokio::net::TcpStream::connect(a).await?;
                    s.write_all(format!("{cmd}\n").as_bytes()).await?;
                    s.read_to_end(&mut out).await?;
                }
            }
            Ok::<_, std::io::Error>(out)
        };
        let out = tokio::time::timeout(self.timeout, run)
            .await
            .map_err(|_| unavailable(format!("{} timed out after {:?}", self.addr, self.timeout)))?
            .map_err(|e| unavailable(format!("{}: {e}", self.addr)))?;
        let text = String::from_utf8(out)
            .map_err(|_| BalancerError::Protocol(format!("non-UTF-8 answer to {cmd:?}")))?;
        tracing::debug!(node = %self.node, cmd, answer = text.trim(), "haproxy runtime api");
        Ok(text)
    }

    /// A command that answers nothing on success; any text is an error.
    async fn expect_silent(&self, cmd: &str, server: &str) -> Result<()> {
        let out = self.command(cmd).await?;
        let msg = out.trim();
        if msg.is_empty() {
            return Ok(());
        }
        Err(classify(&self.backend, server, msg))
    }

    fn target(&self, name: &str) -> String {
        format!("{}/{}", self.backend, name)
    }

    async fn state_rows(&self) -> Result<Vec<StateRow>> {
        let out = self
            .command(&format!("show servers state {}", self.backend))
            .await?;
        parse_servers_state(&out).map_err(|e| {
            let msg = out.trim();
            if msg.lines().count() == 1 && !msg.starts_with('#') && !msg.is_empty() {
                classify(&self.backend, "", msg)
            } else {
                e
            }
        })
    }

    async fn find(&self, name: &str) -> Result<Option<StateRow>> {
        Ok(self
            .state_rows()
            .await?
            .into_iter()
            .find(|r| r.name == name))
    }

    /// `add server` with everything in one line, then turn its health check on (checks
    /// run in maintenance too). Rolls the add back when enabling the check fails.
    async fn create(&self, spec: &ServerSpec) -> Result<()> {
        let cmd = add_server_command(&self.backend, spec);
        let out = self.command(&cmd).await?;
        if out.trim() != "New server registered." {
            return Err(classify(&self.backend, &spec.name, out.trim()));
        }
        if spec.check {
            let t = self.target(&spec.name);
            let enabled = self
                .expect_silent(&format!("enable health {t}"), &spec.name)
                .await;
            if let Err(e) = enabled {
                let _ = self.command(&format!("del server {t}")).await;
                return Err(e);
            }
        }
        Ok(())
    }
}

/// `add server <backend>/<name> <addr>:<port> weight W [check] [slowstart Nms]`.
///
/// Pure, so the exact line is unit-tested. IPv6 addresses are bracketed.
pub fn add_server_command(backend: &str, spec: &ServerSpec) -> String {
    let addr = if spec.address.contains(':') {
        format!("[{}]", spec.address)
    } else {
        spec.address.clone()
    };
    let mut cmd = format!(
        "add server {backend}/{} {addr}:{} weight {}",
        spec.name, spec.port, spec.weight
    );
    if spec.check {
        cmd.push_str(" check");
    }
    if spec.slowstart_ms > 0 {
        cmd.push_str(&format!(" slowstart {}ms", spec.slowstart_ms));
    }
    cmd
}

/// Turn an HAProxy answer into a typed error.
pub fn classify(backend: &str, server: &str, msg: &str) -> BalancerError {
    let m = msg.trim();
    let has = |s: &str| m.contains(s);
    if has("No such backend") || has("Can't find backend") {
        BalancerError::NoBackend(backend.to_string())
    } else if has("No such server") {
        // Also what a slot-style `set server` gets when the slot is not declared.
        BalancerError::NotFound {
            backend: backend.to_string(),
            server: server.to_string(),
        }
    } else if has("Already exists a server with the same name") {
        BalancerError::Conflict(format!(
            "{backend}/{server} already exists (a static or server-template server, or a concurrent add)"
        ))
    } else if has("dynamic load balancing to support dynamic servers") || has("static LB algorithm")
    {
        BalancerError::Unsupported(format!(
            "backend {backend} uses a static balance algorithm: pgsurge adds dynamic servers, \
             which need `balance roundrobin` or `leastconn` (HAProxy said: {m})"
        ))
    } else if has("restricted to experimental mode") || has("Unknown command") {
        BalancerError::Unsupported(format!(
            "this HAProxy has no dynamic servers without experimental mode; pgsurge needs \
             HAProxy >= 2.5 (`add server`), it does not fill server-template slots (HAProxy said: {m})"
        ))
    } else if has("due to other configuration elements pointing to it") {
        // `del server` on a server that a `track`, `use-server`, stick table... of
        // haproxy.cfg refers to: it is the operator's, not a transient state.
        BalancerError::Conflict(format!(
            "{backend}/{server} is referenced by other elements of haproxy.cfg (track, \
             use-server, ...): HAProxy cannot delete it at runtime and pgsurge does not \
             manage it (HAProxy said: {m})"
        ))
    } else if has("option is not accepted for dynamic server") {
        BalancerError::Unsupported(format!(
            "{backend}/{server}: this HAProxy does not accept an option of `add server` on \
             a dynamic server (HAProxy said: {m})"
        ))
    } else if has("Only servers in maintenance mode can be deleted")
        || has("still has connections attached")
        || has("Entry currently in use")
    {
        BalancerError::Busy(format!("{backend}/{server}: {m}"))
    } else if has("Permission denied") {
        BalancerError::Auth(format!(
            "admin socket refused the command (needs `level admin`): {m}"
        ))
    } else {
        BalancerError::Rejected(format!("{backend}/{server}: {m}"))
    }
}

/// One line of `show servers state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateRow {
    pub name: String,
    pub address: String,
    pub port: u16,
    pub op_state: u8,
    pub admin_state: u32,
    pub weight: u16,
    pub check_state: u32,
    /// srv_check_result: 0 unknown (no check yet), 1 neutral, 2 failed, 3 passed, 4 conditionally passed.
    pub check_result: u32,
}

// srv_admin_state bits (HAProxy's SRV_ADMF_*): forced/inherited/config/resolver/hostname
// maintenance, forced/inherited drain.
const ADMF_MAINT: u32 = 0x01 | 0x02 | 0x04 | 0x20 | 0x40;
/// SRV_ADMF_CMAINT: declared `disabled` in the configuration.
const ADMF_CONFIG_MAINT: u32 = 0x04;
const ADMF_DRAIN: u32 = 0x08 | 0x10;
// srv_check_state bits (CHK_ST_*).
const CHK_CONFIGURED: u32 = 0x02;
const CHK_ENABLED: u32 = 0x04;

impl StateRow {
    pub fn admin(&self) -> AdminState {
        if self.admin_state & ADMF_MAINT != 0 {
            AdminState::Maint
        } else if self.admin_state & ADMF_DRAIN != 0 {
            AdminState::Drain
        } else {
            AdminState::Ready
        }
    }

    pub fn oper(&self) -> OperState {
        match self.op_state {
            1 => OperState::Starting,
            2 => OperState::Up,
            3 => OperState::Stopping,
            _ => OperState::Down,
        }
    }

    pub fn check(&self) -> bool {
        self.check_state & CHK_CONFIGURED != 0
    }

    pub fn check_enabled(&self) -> bool {
        self.check_state & CHK_ENABLED != 0
    }

    /// Declared `disabled` in haproxy.cfg (a `server-template` slot, typically): the
    /// operator's, never deleted or re-added by pgsurge. See the module doc.
    pub fn is_config_slot(&self) -> bool {
        self.admin_state & ADMF_CONFIG_MAINT != 0
    }

    /// The last health check passed (3) or conditionally passed (4).
    pub fn check_passed(&self) -> bool {
        matches!(self.check_result, 3 | 4)
    }
}

/// Parse `show servers state` (format version 1), columns found by their header name.
pub fn parse_servers_state(text: &str) -> Result<Vec<StateRow>> {
    let bad = |m: &str| BalancerError::Protocol(format!("show servers state: {m}"));
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    match lines.next().map(str::trim) {
        Some("1") => {}
        other => return Err(bad(&format!("format version {other:?}, expected 1"))),
    }
    let header = lines
        .next()
        .and_then(|h| h.strip_prefix('#'))
        .ok_or_else(|| bad("no header"))?;
    let cols: HashMap<&str, usize> = header
        .split_whitespace()
        .enumerate()
        .map(|(i, c)| (c, i))
        .collect();
    let col = |name: &str| cols.get(name).copied().ok_or_else(|| bad(name));
    let (i_name, i_addr, i_port) = (col("srv_name")?, col("srv_addr")?, col("srv_port")?);
    let (i_op, i_admin, i_w, i_chk) = (
        col("srv_op_state")?,
        col("srv_admin_state")?,
        col("srv_uweight")?,
        col("srv_check_state")?,
    );
    let i_res = col("srv_check_result")?;
    lines
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let get = |i: usize| f.get(i).copied().ok_or_else(|| bad(l));
            let num = |i: usize| get(i)?.parse::<u32>().map_err(|_| bad(l));
            Ok(StateRow {
                name: get(i_name)?.to_string(),
                address: get(i_addr)?.to_string(),
                port: num(i_port)? as u16,
                op_state: num(i_op)? as u8,
                admin_state: num(i_admin)?,
                weight: num(i_w)? as u16,
                check_state: num(i_chk)?,
                check_result: num(i_res)?,
            })
        })
        .collect()
}

/// Session counters per server from `show stat <backend> 4 -1` (CSV): name → (scur, stot).
pub fn parse_stat_sessions(text: &str) -> Result<HashMap<String, (u64, u64)>> {
    let bad = |m: &str| BalancerError::Protocol(format!("show stat: {m}"));
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header = lines
        .next()
        .and_then(|h| h.strip_prefix("# "))
        .ok_or_else(|| bad("no header"))?;
    let cols: Vec<&str> = header.split(',').collect();
    let idx = |n: &str| cols.iter().position(|c| *c == n).ok_or_else(|| bad(n));
    let (i_sv, i_scur, i_stot) = (idx("svname")?, idx("scur")?, idx("stot")?);
    let mut map = HashMap::new();
    for l in lines {
        let f: Vec<&str> = l.split(',').collect();
        let num = |i: usize| {
            f.get(i)
                .map(|v| {
                    if v.is_empty() {
                        Ok(0)
                    } else {
                        v.parse::<u64>()
                    }
                })
                .unwrap_or(Ok(0))
                .map_err(|_| bad(l))
        };
        let name = f.get(i_sv).ok_or_else(|| bad(l))?;
        if *name == "BACKEND" || *name == "FRONTEND" {
            continue;
        }
        map.insert(name.to_string(), (num(i_scur)?, num(i_stot)?));
    }
    Ok(map)
}

#[async_trait]
impl Balancer for RuntimeApi {
    fn node(&self) -> &str {
        &self.node
    }

    async fn put_server(&self, spec: &ServerSpec) -> Result<PutOutcome> {
        spec.validate()?;
        if let Some(row) = self.find(&spec.name).await? {
            self.refuse_config_slot(&row)?;
            return self.reconcile_existing(spec, &row).await;
        }
        match self.create(spec).await {
            Ok(()) => Ok(PutOutcome::Created),
            // Someone (another invocation) added it between our look and our add.
            Err(BalancerError::Conflict(_)) => match self.find(&spec.name).await? {
                Some(row) => {
                    self.refuse_config_slot(&row)?;
                    self.reconcile_existing(spec, &row).await
                }
                None => Err(BalancerError::Conflict(format!(
                    "{} appeared and vanished during put",
                    spec.name
                ))),
            },
            Err(e) => Err(e),
        }
    }

    async fn set_state(&self, name: &str, state: AdminState) -> Result<()> {
        validate_name(name)?;
        if state == AdminState::Ready {
            self.wait_check_before_ready(name).await?;
        }
        self.expect_silent(
            &format!("set server {} state {}", self.target(name), state.as_str()),
            name,
        )
        .await
    }

    async fn remove_server(&self, name: &str) -> Result<bool> {
        validate_name(name)?;
        let Some(row) = self.find(name).await? else {
            return Ok(false);
        };
        self.refuse_config_slot(&row)?;
        if row.admin() != AdminState::Maint {
            self.set_state(name, AdminState::Maint).await?;
        }
        // Sessions that were closing when the server went to maint take a moment to
        // let go of it; `del server` refuses until then.
        let until = tokio::time::Instant::now() + Duration::from_secs(3);
        loop {
            let out = self
                .command(&format!("del server {}", self.target(name)))
                .await?;
            if out.trim() == "Server deleted." {
                return Ok(true);
            }
            match classify(&self.backend, name, out.trim()) {
                BalancerError::Busy(_) if tokio::time::Instant::now() < until => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                e => return Err(e),
            }
        }
    }

    async fn kill_sessions(&self, name: &str) -> Result<()> {
        validate_name(name)?;
        self.expect_silent(
            &format!("shutdown sessions server {}", self.target(name)),
            name,
        )
        .await
    }

    /// As the default, except that configuration slots are invisible to [`plan`]: a
    /// stray slot is never removed, and a desired server named like a slot becomes a
    /// `put` that fails with a [`BalancerError::Conflict`] naming the slot.
    async fn apply(&self, desired: &DesiredSet) -> Result<Vec<Action>> {
        for d in desired.servers.values() {
            d.spec.validate()?;
        }
        let rows = self.state_rows().await?;
        let current: Vec<ServerStatus> = self
            .statuses(rows)
            .await?
            .into_iter()
            .filter_map(|(s, slot)| (!slot).then_some(s))
            .collect();
        let actions = plan(desired, &current);
        execute(self, &actions).await?;
        Ok(actions)
    }

    async fn list_servers(&self) -> Result<Vec<ServerStatus>> {
        let rows = self.state_rows().await?;
        Ok(self
            .statuses(rows)
            .await?
            .into_iter()
            .map(|(s, _)| s)
            .collect())
    }
}

impl RuntimeApi {
    /// The rows with their session counters, each with "is a configuration slot".
    async fn statuses(&self, rows: Vec<StateRow>) -> Result<Vec<(ServerStatus, bool)>> {
        let stat = self
            .command(&format!("show stat {} 4 -1", self.backend))
            .await?;
        let sessions = parse_stat_sessions(&stat)?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let (cur, tot) = sessions.get(&r.name).copied().unwrap_or((0, 0));
                let slot = r.is_config_slot();
                let status = ServerStatus {
                    admin: r.admin(),
                    oper: r.oper(),
                    check: r.check(),
                    sessions: cur,
                    total_sessions: tot,
                    name: r.name,
                    address: r.address,
                    port: r.port,
                    weight: r.weight,
                };
                (status, slot)
            })
            .collect())
    }

    fn refuse_config_slot(&self, row: &StateRow) -> Result<()> {
        if row.is_config_slot() {
            return Err(BalancerError::Conflict(format!(
                "{} is declared `disabled` in haproxy.cfg (a server-template slot): it is the \
                 operator's; pgsurge adds dynamic servers and never fills, re-adds or deletes \
                 configuration servers — use a name outside the template's prefix",
                self.target(&row.name)
            )));
        }
        Ok(())
    }
}

impl RuntimeApi {
    /// HAProxy 2.6 puts a checked server *up* the moment it leaves maintenance and only
    /// then re-checks it, so a replica that is not answering would get sessions for a
    /// moment. Refuse to leave maintenance until HAProxy's own check (run in maintenance
    /// too) has passed: the replica is then verified twice, by pgsurge and by HAProxy.
    async fn wait_check_before_ready(&self, name: &str) -> Result<()> {
        let until = tokio::time::Instant::now() + self.ready_wait;
        loop {
            let Some(row) = self.find(name).await? else {
                return Err(BalancerError::NotFound {
                    backend: self.backend.clone(),
                    server: name.to_string(),
                });
            };
            if row.admin() != AdminState::Maint || !row.check_enabled() || row.check_passed() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= until {
                return Err(BalancerError::Busy(format!(
                    "{}: health check has not passed within {:?} (result {}); left in maintenance",
                    self.target(name),
                    self.ready_wait,
                    row.check_result
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn reconcile_existing(&self, spec: &ServerSpec, row: &StateRow) -> Result<PutOutcome> {
        let status = ServerStatus {
            name: row.name.clone(),
            address: row.address.clone(),
            port: row.port,
            weight: row.weight,
            check: row.check(),
            admin: row.admin(),
            oper: row.oper(),
            sessions: 0,
            total_sessions: 0,
        };
        let t = self.target(&spec.name);
        if status.matches(spec) {
            // Killed between `add server` and `enable health` last time: finish.
            if spec.check && !row.check_enabled() {
                self.expect_silent(&format!("enable health {t}"), &spec.name)
                    .await?;
                return Ok(PutOutcome::Updated);
            }
            return Ok(PutOutcome::Unchanged);
        }
        if status.only_weight_differs(spec) {
            self.expect_silent(&format!("set weight {t} {}", spec.weight), &spec.name)
                .await?;
            return Ok(PutOutcome::Updated);
        }
        Err(BalancerError::Conflict(format!(
            "{t} exists as {}:{} check={} but {}:{} check={} was asked; remove it first",
            row.address,
            row.port,
            row.check(),
            spec.address,
            spec.port,
            spec.check
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATE: &str = "1
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port
2 pg 1 seed 127.0.0.1 2 0 1 1 1 8 2 0 6 0 0 0 - 21009 - 0 0 - - 0
2 pg 2 r1 127.0.0.1 0 1 50 50 0 1 0 0 2 0 0 0 - 21010 - 0 0 - - 0
2 pg 3 r2 127.0.0.1 2 8 10 10 0 1 0 0 0 0 0 0 - 21011 - 0 0 - - 0

";

    #[test]
    fn servers_state_is_parsed_by_column_name() {
        let rows = parse_servers_state(STATE).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].name, "seed");
        assert_eq!(rows[0].port, 21009);
        assert_eq!(rows[0].admin(), AdminState::Ready);
        assert_eq!(rows[0].oper(), OperState::Up);
        assert!(rows[0].check() && rows[0].check_enabled());
        assert_eq!(rows[1].admin(), AdminState::Maint);
        assert!(rows[1].check() && !rows[1].check_enabled());
        assert_eq!(rows[1].weight, 50);
        assert_eq!(rows[2].admin(), AdminState::Drain);
        assert!(!rows[2].check());
        assert!(rows.iter().all(|r| !r.is_config_slot()));
        let slot = StateRow {
            admin_state: 4,
            ..rows[0].clone()
        };
        assert!(slot.is_config_slot());
        assert!(parse_servers_state("No such backend.\n").is_err());
    }

    #[test]
    fn stat_sessions_are_parsed() {
        let text = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin\n\
                    pg,seed,0,0,3,5,,120,0\npg,r1,0,0,0,0,,,0\npg,BACKEND,0,0,3,5,,120,0\n";
        let m = parse_stat_sessions(text).unwrap();
        assert_eq!(m["seed"], (3, 120));
        assert_eq!(m["r1"], (0, 0));
        assert!(!m.contains_key("BACKEND"));
    }

    #[test]
    fn add_server_line_carries_every_setting() {
        let spec = ServerSpec {
            name: "pgsurge-c-r1".into(),
            address: "10.0.0.7".into(),
            port: 5432,
            weight: 100,
            check: true,
            slowstart_ms: 30_000,
        };
        assert_eq!(
            add_server_command("pg_read", &spec),
            "add server pg_read/pgsurge-c-r1 10.0.0.7:5432 weight 100 check slowstart 30000ms"
        );
        let v6 = ServerSpec {
            address: "fd00::7".into(),
            check: false,
            slowstart_ms: 0,
            ..spec
        };
        assert_eq!(
            add_server_command("b", &v6),
            "add server b/pgsurge-c-r1 [fd00::7]:5432 weight 100"
        );
    }

    #[test]
    fn haproxy_messages_become_typed_errors() {
        let c = |m| classify("pg", "r1", m);
        assert!(matches!(c("No such backend."), BalancerError::NoBackend(_)));
        assert!(matches!(
            c("No such server."),
            BalancerError::NotFound { .. }
        ));
        assert!(matches!(
            c("Already exists a server with the same name in backend."),
            BalancerError::Conflict(_)
        ));
        assert!(matches!(
            c("Backend must use a dynamic load balancing to support dynamic servers."),
            BalancerError::Unsupported(_)
        ));
        assert!(matches!(
            c("This command is restricted to experimental mode only."),
            BalancerError::Unsupported(_)
        ));
        assert!(matches!(
            c("Unknown command. Please enter one of the following commands only :"),
            BalancerError::Unsupported(_)
        ));
        assert!(matches!(
            c("Server still has connections attached to it, cannot remove it."),
            BalancerError::Busy(_)
        ));
        assert!(matches!(
            c("Only servers in maintenance mode can be deleted."),
            BalancerError::Busy(_)
        ));
        assert!(matches!(c("Permission denied\n"), BalancerError::Auth(_)));
        // HAProxy 2.6's own words (seen on 2.6.12).
        let e = c("This server cannot be removed at runtime due to other configuration elements pointing to it.");
        assert!(
            matches!(&e, BalancerError::Conflict(m) if m.contains("pg/r1") && m.contains("haproxy.cfg")),
            "{e}"
        );
        let e = c("'init-addr' option is not accepted for dynamic server");
        assert!(
            matches!(&e, BalancerError::Unsupported(m) if m.contains("'init-addr'")),
            "{e}"
        );
        assert!(matches!(c("something new"), BalancerError::Rejected(_)));
    }

    #[test]
    fn socket_addresses_parse() {
        assert_eq!(
            SocketAddr::parse("/run/haproxy/admin.sock").unwrap(),
            SocketAddr::Unix("/run/haproxy/admin.sock".into())
        );
        assert_eq!(
            SocketAddr::parse("unix:/x.sock").unwrap(),
            SocketAddr::Unix("/x.sock".into())
        );
        assert_eq!(
            SocketAddr::parse("tcp:127.0.0.1:9999").unwrap(),
            SocketAddr::Tcp("127.0.0.1:9999".into())
        );
        assert_eq!(
            SocketAddr::parse("127.0.0.1:9999").unwrap(),
            SocketAddr::Tcp("127.0.0.1:9999".into())
        );
        assert!(SocketAddr::parse("nowhere").is_err());
        assert!(SocketAddr::parse("h:0").is_err());
    }
}
