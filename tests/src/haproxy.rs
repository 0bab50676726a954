//! Real HAProxy 2.6 for tests: one process per node on loopback, each with a generated
//! configuration, a unix admin socket, a TCP admin socket, and a pidfile.
//!
//! Nodes are started in daemon mode (`-D`) and stopped by the PID in their pidfile —
//! never by name, since other HAProxy processes may run on this machine. A reload is
//! what an init system does: a new process with `-sf <old pid>` that takes the
//! listeners over through the admin socket (`-x`), so no connection is refused.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub const HAPROXY: &str = "/usr/sbin/haproxy";

/// Fail the test with instructions when HAProxy is not installed.
pub fn require_haproxy() {
    assert!(
        Path::new(HAPROXY).exists(),
        "HAProxy not found at {HAPROXY}: install it with `apt-get install haproxy` \
         (the `just test` recipe does this when run as root)"
    );
}

/// A server declared in haproxy.cfg (a base replica, not managed by pgsurge).
#[derive(Debug, Clone)]
pub struct StaticServer {
    pub name: String,
    pub port: u16,
}

/// How the backend is declared.
#[derive(Debug, Clone)]
pub struct BackendSpec {
    pub name: String,
    /// `leastconn` (what pgsurge expects); `static-rr` to provoke the dynamic-server error.
    pub balance: String,
    pub servers: Vec<StaticServer>,
    /// More lines for the backend section, verbatim (a `server-template`, a server
    /// that `track`s another, ...).
    pub extra: Vec<String>,
}

impl BackendSpec {
    pub fn new(name: &str, servers: Vec<StaticServer>) -> Self {
        BackendSpec {
            name: name.into(),
            balance: "leastconn".into(),
            servers,
            extra: Vec::new(),
        }
    }

    /// A backend whose only configured server is the base replica `base-1` at `port`.
    pub fn with_base(name: &str, port: u16) -> Self {
        Self::new(
            name,
            vec![StaticServer {
                name: "base-1".into(),
                port,
            }],
        )
    }
}

/// One running HAProxy node.
pub struct HaproxyNode {
    pub name: String,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub pidfile: PathBuf,
    pub socket: PathBuf,
    /// TCP admin socket on 127.0.0.1.
    pub admin_port: u16,
    /// Where clients connect (the PostgreSQL frontend).
    pub port: u16,
    pub backend: BackendSpec,
    /// Every PID this node ever had, so drop can stop leftovers of a reload.
    pids: Vec<u32>,
}

impl HaproxyNode {
    /// Write the configuration under `root/<name>` and start the node.
    pub fn start(root: &Path, name: &str, backend: BackendSpec) -> HaproxyNode {
        require_haproxy();
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let mut node = HaproxyNode {
            name: name.into(),
            config: dir.join("haproxy.cfg"),
            pidfile: dir.join("haproxy.pid"),
            socket: dir.join("admin.sock"),
            admin_port: crate::free_port(),
            port: crate::free_port(),
            dir,
            backend,
            pids: Vec::new(),
        };
        node.write_config();
        node.launch(&[]);
        node
    }

    /// The configuration: a pgsurge-managed read backend (see infra/haproxy/haproxy.cfg).
    pub fn config_text(&self) -> String {
        let mut servers = String::new();
        for s in &self.backend.servers {
            servers.push_str(&format!(
                "    server {} 127.0.0.1:{} check inter 1s fall 2 rise 1 weight 100\n",
                s.name, s.port
            ));
        }
        for l in &self.backend.extra {
            servers.push_str(&format!("    {l}\n"));
        }
        format!(
            "global\n\
             \x20   stats socket {sock} mode 600 level admin expose-fd listeners\n\
             \x20   stats socket ipv4@127.0.0.1:{admin} level admin\n\
             \x20   pidfile {pid}\n\
             \x20   hard-stop-after 30s\n\
             defaults\n\
             \x20   mode tcp\n\
             \x20   timeout connect 2s\n\
             \x20   timeout client 5m\n\
             \x20   timeout server 5m\n\
             \x20   timeout check 2s\n\
             \x20   retries 3\n\
             \x20   option redispatch 1\n\
             frontend pg_read_in\n\
             \x20   bind 127.0.0.1:{port}\n\
             \x20   default_backend {be}\n\
             backend {be}\n\
             \x20   balance {balance}\n\
             \x20   option pgsql-check user postgres\n\
             {servers}",
            sock = self.socket.display(),
            admin = self.admin_port,
            pid = self.pidfile.display(),
            port = self.port,
            be = self.backend.name,
            balance = self.backend.balance,
        )
    }

    fn write_config(&self) {
        std::fs::write(&self.config, self.config_text()).unwrap();
    }

    fn launch(&mut self, extra: &[String]) {
        let _ = std::fs::remove_file(&self.pidfile);
        let out = Command::new(HAPROXY)
            .arg("-D")
            .arg("-f")
            .arg(&self.config)
            .args(extra)
            .output()
            .expect("run haproxy");
        assert!(
            out.status.success(),
            "haproxy {} failed to start: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        let pid = self.wait_pid();
        self.pids.push(pid);
        self.wait_socket();
    }

    fn wait_pid(&self) -> u32 {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(pid) = std::fs::read_to_string(&self.pidfile)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                return pid;
            }
            assert!(
                Instant::now() < until,
                "haproxy {} wrote no pidfile",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_socket(&self) {
        let until = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(&self.socket).is_err() {
            assert!(
                Instant::now() < until,
                "haproxy {} admin socket never answered",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The PID of the running process (from the pidfile).
    pub fn pid(&self) -> u32 {
        *self.pids.last().expect("started")
    }

    pub fn is_running(&self) -> bool {
        self.pids
            .last()
            .is_some_and(|p| alive(*p) && runs_config(*p, &self.config))
    }

    /// Reload as an init system does: a new process takes the listeners over (`-x`)
    /// and tells the old one to finish its sessions and exit (`-sf`).
    pub fn reload(&mut self) {
        let old = self.pid();
        self.launch(&[
            "-x".into(),
            self.socket.display().to_string(),
            "-sf".into(),
            old.to_string(),
        ]);
        assert_ne!(self.pid(), old, "reload kept the old PID");
        wait_gone(old, Duration::from_secs(10));
    }

    /// Stop the node by PID (SIGTERM, then SIGKILL after 5 s).
    pub fn stop(&mut self) {
        for pid in &self.pids {
            // A PID that exited may have been reused by someone else's process: only
            // signal a process that runs our configuration file.
            if alive(*pid) && runs_config(*pid, &self.config) {
                signal(*pid, "TERM");
                if !wait_gone(*pid, Duration::from_secs(5)) {
                    signal(*pid, "KILL");
                    wait_gone(*pid, Duration::from_secs(5));
                }
            }
        }
        let _ = std::fs::remove_file(&self.socket);
    }

    /// Start again after [`HaproxyNode::stop`], same configuration and ports.
    pub fn restart(&mut self) {
        assert!(!self.is_running(), "restart of a running node");
        self.launch(&[]);
    }

    /// One runtime API command through the unix socket, answered verbatim.
    pub fn cli(&self, cmd: &str) -> String {
        use std::io::{Read, Write};
        let mut s = std::os::unix::net::UnixStream::connect(&self.socket)
            .unwrap_or_else(|e| panic!("admin socket of {}: {e}", self.name));
        s.write_all(format!("{cmd}\n").as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    /// `show servers state` rows of the backend: name → (admin state bits, op state, port).
    pub fn servers_state(&self) -> std::collections::BTreeMap<String, (u32, u32, u16)> {
        let text = self.cli(&format!("show servers state {}", self.backend.name));
        let mut lines = text.lines().filter(|l| !l.trim().is_empty()).skip(1);
        let header: Vec<&str> = lines
            .next()
            .unwrap_or_else(|| panic!("no header in {text:?}"))
            .trim_start_matches('#')
            .split_whitespace()
            .collect();
        let col = |n: &str| header.iter().position(|c| *c == n).unwrap();
        let (n, a, o, p) = (
            col("srv_name"),
            col("srv_admin_state"),
            col("srv_op_state"),
            col("srv_port"),
        );
        lines
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (
                    f[n].to_string(),
                    (
                        f[a].parse().unwrap(),
                        f[o].parse().unwrap(),
                        f[p].parse().unwrap(),
                    ),
                )
            })
            .collect()
    }

    /// `show stat` for the backend's servers: name → (status, scur, stot).
    pub fn stat(&self) -> std::collections::BTreeMap<String, (String, u64, u64)> {
        let text = self.cli(&format!("show stat {} 4 -1", self.backend.name));
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let header: Vec<&str> = lines
            .next()
            .unwrap()
            .trim_start_matches("# ")
            .split(',')
            .collect();
        let col = |n: &str| header.iter().position(|c| *c == n).unwrap();
        let (sv, st, cur, tot) = (col("svname"), col("status"), col("scur"), col("stot"));
        lines
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                let num = |i: usize| f[i].parse::<u64>().unwrap_or(0);
                (f[sv].to_string(), (f[st].to_string(), num(cur), num(tot)))
            })
            .collect()
    }
}

impl Drop for HaproxyNode {
    fn drop(&mut self) {
        self.stop();
    }
}

fn alive(pid: u32) -> bool {
    // A zombie is gone for our purposes (daemonised HAProxy is not our child, but check anyway).
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

fn runs_config(pid: u32, config: &Path) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| {
            c.split(|b| *b == 0)
                .any(|arg| arg == config.as_os_str().as_encoded_bytes())
        })
        .unwrap_or(false)
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

fn wait_gone(pid: u32, within: Duration) -> bool {
    let until = Instant::now() + within;
    while alive(pid) {
        if Instant::now() > until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// Connect through `port` (HAProxy) and return the port of the PostgreSQL server that
/// answered (`inet_server_port()`), i.e. which replica HAProxy routed to.
pub fn served_by(port: u16) -> Result<u16, String> {
    let out = Command::new("psql")
        .args([
            "-X",
            "-A",
            "-t",
            "-d",
            &format!("host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=5"),
            "-c",
            "select inet_server_port()",
        ])
        .output()
        .map_err(|e| format!("psql: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|e| format!("{e}"))
}

/// Poll a balancer until `name` reports `oper` (e.g. its health check passed).
pub async fn wait_oper(
    b: &dyn pgsurge::balancer::Balancer,
    name: &str,
    oper: pgsurge::balancer::OperState,
    secs: u64,
) -> pgsurge::balancer::ServerStatus {
    let until = Instant::now() + Duration::from_secs(secs);
    loop {
        let list = b.list_servers().await.expect("list servers");
        if let Some(s) = list.iter().find(|s| s.name == name) {
            if s.oper == oper {
                return s.clone();
            }
            assert!(
                Instant::now() < until,
                "{name} on {} still {:?} after {secs}s",
                b.node(),
                s
            );
        } else {
            assert!(
                Instant::now() < until,
                "{name} not on {} after {secs}s",
                b.node()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Connect `tries` times through `port` and return the set of PostgreSQL ports that answered.
pub fn ports_served(port: u16, tries: usize) -> std::collections::BTreeSet<u16> {
    (0..tries)
        .map(|_| served_by(port).unwrap_or_else(|e| panic!("read through :{port} failed: {e}")))
        .collect()
}
