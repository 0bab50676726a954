//! Servers of the local provider: one `postgres` process per server, on its own port,
//! with its data directory on the server's volume.
//!
//! The server is started by the replica bootstrap script (the one the cloud image runs),
//! which leaves PostgreSQL's own pidfile, `postmaster.pid`, in the data directory; its
//! first line is the postmaster's pid and its eighth the postmaster's state (`starting`,
//! `ready`/`standby`, `stopping`). The provider copies the pid next to the server record
//! and only ever signals a pid whose command line shows it is the postmaster of that
//! very data directory: never anything else running on this machine.

use super::pool::{fatal, Kind, Pool};
use crate::cloud::{CloudError, Status};
use std::fs;
use std::io;
use std::net::{IpAddr, TcpListener};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `/proc/<pid>/stat` → (state, ppid). The command name may hold spaces and parentheses,
/// so fields are read after the last `)`.
fn proc_stat(pid: u32) -> Option<(char, u32)> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 1..];
    let mut f = rest.split_whitespace();
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    Some((state, ppid))
}

/// A live process (zombies are dead: they only wait to be reaped).
pub fn pid_alive(pid: u32) -> bool {
    proc_stat(pid).is_some_and(|(state, _)| state != 'Z' && state != 'X')
}

fn cmdline(pid: u32) -> Option<Vec<String>> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

/// Is `pid` the postmaster of `data`? (`postgres -D <data>`, as pg_ctl starts it.)
pub fn is_postmaster_of(pid: u32, data: &Path) -> bool {
    let Some(args) = cmdline(pid) else {
        return false;
    };
    let is_postgres = args
        .first()
        .is_some_and(|a| a.ends_with("/postgres") || a == "postgres");
    let canon = fs::canonicalize(data).unwrap_or_else(|_| data.to_path_buf());
    is_postgres
        && args
            .windows(2)
            .any(|w| w[0] == "-D" && (Path::new(&w[1]) == data || Path::new(&w[1]) == canon))
        && pid_alive(pid)
}

/// Direct children of `pid`: the postmaster's backends and auxiliary processes.
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| proc_stat(p).is_some_and(|(s, ppid)| ppid == pid && s != 'Z'))
        .collect()
}

/// Lines of `<data>/postmaster.pid`, if any.
fn pidfile(data: &Path) -> Option<Vec<String>> {
    let text = fs::read_to_string(data.join("postmaster.pid")).ok()?;
    Some(text.lines().map(|l| l.trim().to_string()).collect())
}

/// The postmaster running on `data`: from its pidfile, else from the pid we recorded.
pub fn running_postmaster(data: &Path, recorded: Option<u32>) -> Option<u32> {
    let from_file = pidfile(data).and_then(|l| l.first()?.parse().ok());
    [from_file, recorded]
        .into_iter()
        .flatten()
        .find(|&pid| is_postmaster_of(pid, data))
}

/// The server's status as the cloud would report it.
pub fn status(data: &Path, recorded: Option<u32>, server_dir: &Path) -> Status {
    match running_postmaster(data, recorded) {
        // Not started yet: the bootstrap script (of a caller that may have died since)
        // is still setting it up.
        None if bootstrapping(server_dir) => Status::Pending,
        None => Status::Error,
        Some(_) => match pidfile(data).and_then(|l| l.get(7).cloned()).as_deref() {
            Some("ready") | Some("standby") => Status::Ready,
            Some("stopping") => Status::Deleting,
            _ => Status::Pending,
        },
    }
}

/// Whether this server's bootstrap script runs: its recorded PID is alive and is bash
/// running it on this server's parameters (not a reused PID).
fn bootstrapping(server_dir: &Path) -> bool {
    let Some(pid) = fs::read_to_string(server_dir.join(BOOTSTRAP_PID))
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok())
    else {
        return false;
    };
    let params = server_dir.join(BOOTSTRAP_ENV);
    pid_alive(pid)
        && fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
            c.split(|b| *b == 0)
                .any(|arg| Path::new(std::ffi::OsStr::from_bytes(arg)) == params)
        })
}

pub fn read_recorded_pid(server_dir: &Path) -> Option<u32> {
    fs::read_to_string(server_dir.join("postmaster.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Claim the lowest free port in `first..=last` for server `id`.
///
/// A claim is a file `ports/<port>` created exclusively, holding `<id> <pid>`; it is
/// stale when neither that server nor the creating process exists any more. A port
/// something else on the machine listens on is skipped.
pub fn claim_port(
    pool: &Pool,
    first: u16,
    last: u16,
    host: IpAddr,
    id: &str,
) -> Result<u16, CloudError> {
    let dir = pool.ports_dir();
    for port in first..=last {
        let claim = dir.join(port.to_string());
        if let Ok(text) = fs::read_to_string(&claim) {
            let mut it = text.split_whitespace();
            let owner = it.next().unwrap_or("");
            let pid = it.next().and_then(|p| p.parse::<u32>().ok());
            let owner_exists = Pool::valid_id(owner) && pool.dir(Kind::Server, owner).exists();
            if owner_exists || pid.is_some_and(pid_alive) {
                continue;
            }
            let _ = fs::remove_file(&claim);
        }
        if TcpListener::bind((host, port)).is_err() {
            continue;
        }
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&claim)
        {
            Ok(f) => {
                use std::io::Write;
                let mut f = f;
                write!(f, "{id} {}", std::process::id()).map_err(|e| fatal(claim.display(), e))?;
                return Ok(port);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(fatal(claim.display(), e)),
        }
    }
    Err(CloudError::Quota(format!(
        "no free port in local.port_first..=local.port_last ({first}..={last})"
    )))
}

/// Attach a volume to server `id`: the file `<volume dir>/attachment`, created
/// exclusively, holding `<id> <pid>` like a port claim. Two servers can never run on one
/// data directory, even when two processes create them at once.
pub fn attach(pool: &Pool, volume_id: &str, id: &str) -> Result<(), CloudError> {
    let claim = pool.dir(Kind::Volume, volume_id).join("attachment");
    for _ in 0..2 {
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&claim)
        {
            Ok(mut f) => {
                use std::io::Write;
                write!(f, "{id} {}", std::process::id()).map_err(|e| fatal(claim.display(), e))?;
                return Ok(());
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let text = fs::read_to_string(&claim).unwrap_or_default();
                let mut it = text.split_whitespace();
                let owner = it.next().unwrap_or("").to_string();
                let pid = it.next().and_then(|p| p.parse::<u32>().ok());
                let owner_exists =
                    Pool::valid_id(&owner) && pool.dir(Kind::Server, &owner).exists();
                if owner_exists || pid.is_some_and(pid_alive) {
                    return Err(CloudError::Conflict(format!(
                        "volume {volume_id} is attached to server {owner}"
                    )));
                }
                // Left by a create that died before its server existed.
                let _ = fs::remove_file(&claim);
            }
            Err(e) => return Err(fatal(claim.display(), e)),
        }
    }
    Err(CloudError::Transient(format!(
        "volume {volume_id}: attachment keeps changing"
    )))
}

/// The server a volume is attached to, if the attachment is live.
pub fn attached_to(pool: &Pool, volume_id: &str) -> Option<String> {
    let text = fs::read_to_string(pool.dir(Kind::Volume, volume_id).join("attachment")).ok()?;
    let mut it = text.split_whitespace();
    let owner = it.next()?.to_string();
    let pid = it.next().and_then(|p| p.parse::<u32>().ok());
    let live = (Pool::valid_id(&owner) && pool.dir(Kind::Server, &owner).exists())
        || pid.is_some_and(pid_alive);
    live.then_some(owner)
}

/// Detach a volume, if `id` holds it.
pub fn detach(pool: &Pool, volume_id: &str, id: &str) {
    if !Pool::valid_id(volume_id) {
        return;
    }
    let claim = pool.dir(Kind::Volume, volume_id).join("attachment");
    if fs::read_to_string(&claim).is_ok_and(|t| t.split_whitespace().next() == Some(id)) {
        let _ = fs::remove_file(claim);
    }
}

/// The port in `<data>/postmaster.pid` (its fourth line).
pub fn pidfile_port(data: &Path) -> Option<u16> {
    pidfile(data)?.get(3)?.parse().ok()
}

/// Give a port back, if `id` still holds it.
pub fn release_port(pool: &Pool, port: u16, id: &str) {
    let claim = pool.ports_dir().join(port.to_string());
    if fs::read_to_string(&claim).is_ok_and(|t| t.split_whitespace().next() == Some(id)) {
        let _ = fs::remove_file(claim);
    }
}

/// A PostgreSQL program run as `os_user` (PostgreSQL refuses to run as root).
fn pg_program(pg_bin: &Path, os_user: &str, program: &str) -> tokio::process::Command {
    let bin = pg_bin.join(program);
    // SAFETY: geteuid has no preconditions.
    let mut cmd = if unsafe { libc::geteuid() } == 0 {
        let mut c = tokio::process::Command::new("runuser");
        c.args(["-u", os_user, "--"]).arg(bin);
        c
    } else {
        tokio::process::Command::new(bin)
    };
    cmd.stdin(std::process::Stdio::null());
    cmd
}

/// The bootstrap script's parameters, log and PID, in the server's directory.
const BOOTSTRAP_ENV: &str = "bootstrap.env";
const BOOTSTRAP_LOG: &str = "bootstrap.log";
const BOOTSTRAP_PID: &str = "bootstrap.pid";

/// Run the bootstrap script on the server's parameters file (`bootstrap.env` in
/// `server_dir`); its stderr is the log of what it did.
///
/// The script outlives a caller that dies (`kill -9`, a function timeout), as a cloud
/// server boots whatever happens to whoever asked for it: its output goes to a file,
/// not a pipe that would break (SIGPIPE) halfway through the set-up, and its PID is
/// recorded so that [`status`] says "booting", not "error", while it runs.
pub async fn run_bootstrap(
    script: &Path,
    server_dir: &Path,
    timeout: Duration,
) -> Result<String, CloudError> {
    let log_path = server_dir.join(BOOTSTRAP_LOG);
    let log_file = fs::File::create(&log_path).map_err(|e| fatal(log_path.display(), e))?;
    let mut cmd = tokio::process::Command::new("bash");
    cmd.arg(script)
        .arg(server_dir.join(BOOTSTRAP_ENV))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log_file)
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| fatal(format!("cannot run {}", script.display()), e))?;
    if let Some(pid) = child.id() {
        let _ = fs::write(server_dir.join(BOOTSTRAP_PID), pid.to_string());
    }
    // Killed here: the server's record exists and its set-up runs on without us.
    crate::failpoint::hit("local.create_server.while_bootstrapping");
    let waited = tokio::time::timeout(timeout, child.wait()).await;
    let _ = fs::remove_file(server_dir.join(BOOTSTRAP_PID));
    let status = waited
        .map_err(|_| {
            CloudError::Transient(format!(
                "bootstrap script {} did not finish within {timeout:?}",
                script.display()
            ))
        })?
        .map_err(|e| fatal(format!("cannot run {}", script.display()), e))?;
    let log = fs::read_to_string(&log_path)
        .unwrap_or_default()
        .trim()
        .to_string();
    if status.success() {
        Ok(log)
    } else {
        Err(CloudError::Fatal(format!(
            "bootstrap script failed ({status}): {log}"
        )))
    }
}

async fn wait_gone(pids: &[u32], within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if pids.iter().all(|&p| !pid_alive(p)) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn is_postgres_process(pid: u32, pg_bin: &Path) -> bool {
    fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe == pg_bin.join("postgres"))
}

/// Stop the postmaster of `data` and every process it started; nothing else.
///
/// Fast shutdown first (clients are disconnected, the standby stops cleanly), then
/// immediate, then SIGKILL to the postmaster and whatever of its children remain.
pub async fn stop(
    pg_bin: &Path,
    os_user: &str,
    data: &Path,
    recorded: Option<u32>,
    timeout: Duration,
) -> Result<(), CloudError> {
    let Some(pm) = running_postmaster(data, recorded) else {
        return Ok(());
    };
    let mut procs = children(pm);
    procs.push(pm);
    let d = data.display().to_string();
    for (mode, secs) in [("fast", timeout.as_secs().max(1)), ("immediate", 10)] {
        let out = pg_program(pg_bin, os_user, "pg_ctl")
            .args(["-D", &d, "-m", mode, "-w", "-t", &secs.to_string(), "stop"])
            .output()
            .await
            .map_err(|e| fatal("cannot run pg_ctl", e))?;
        if wait_gone(&procs, Duration::from_secs(2)).await {
            return Ok(());
        }
        tracing::warn!(
            data = %d, mode,
            stderr = %String::from_utf8_lossy(&out.stderr).trim(),
            "pg_ctl stop left processes behind"
        );
    }
    for &p in &procs {
        if pid_alive(p) && is_postgres_process(p, pg_bin) {
            // SAFETY: plain syscall; the pid was verified above to be one of ours.
            unsafe { libc::kill(p as libc::pid_t, libc::SIGKILL) };
        }
    }
    if wait_gone(&procs, Duration::from_secs(10)).await {
        Ok(())
    } else {
        Err(CloudError::Transient(format!(
            "postgres on {d} (pid {pm}) is still running after SIGKILL"
        )))
    }
}

/// Where a server keeps its record, parameters, log and pid.
pub struct ServerFiles {
    pub dir: PathBuf,
}

impl ServerFiles {
    pub fn params(&self) -> PathBuf {
        self.dir.join("bootstrap.env")
    }
    pub fn log(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }
    pub fn pid(&self) -> PathBuf {
        self.dir.join("postmaster.pid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_process() {
        let me = std::process::id();
        assert!(pid_alive(me));
        assert!(!is_postmaster_of(me, Path::new("/nonexistent")));
        assert!(!pid_alive(u32::MAX - 1));
        let child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        assert!(children(me).contains(&child.id()));
        let mut child = child;
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn ports_are_claimed_once_and_released() {
        let t = tempfile::tempdir().unwrap();
        let pool = Pool::open(t.path()).unwrap();
        let host: IpAddr = "127.0.0.1".parse().unwrap();
        // A port something else listens on is skipped.
        let busy = TcpListener::bind((host, 0)).unwrap();
        let b = busy.local_addr().unwrap().port();
        let (a, c) = (
            "00000000-0000-4000-8000-000000000001",
            "00000000-0000-4000-8000-000000000002",
        );
        let p1 = claim_port(&pool, b, b + 50, host, a).unwrap();
        assert_ne!(p1, b);
        let p2 = claim_port(&pool, b, b + 50, host, c).unwrap();
        assert_ne!(p1, p2);
        assert!(matches!(
            claim_port(&pool, p1, p1, host, "x"),
            Err(CloudError::Quota(_))
        ));
        release_port(&pool, p1, c); // not c's: stays claimed
        assert!(pool.ports_dir().join(p1.to_string()).exists());
        release_port(&pool, p1, a);
        assert!(!pool.ports_dir().join(p1.to_string()).exists());
    }
}
