//! Real PostgreSQL 15 for tests: a primary and streaming replicas on loopback.
//!
//! PostgreSQL refuses to run as root, so every server command runs as the `postgres`
//! user (`runuser`), and data lives in a scratch directory owned by it. Each instance
//! listens on its own free port on 127.0.0.1 and is stopped (immediate mode) on drop,
//! so a failing test leaves no server behind. Nothing here touches a server it did not
//! start.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Where Debian's PostgreSQL 15 server binaries live.
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// Fail the test with instructions when PostgreSQL 15 is not installed.
pub fn require_postgres() {
    assert!(
        Path::new(PG_BIN).join("postgres").exists(),
        "PostgreSQL 15 server not found in {PG_BIN}: install it with `apt-get install postgresql-15` \
         (the `just test` recipe does this when run as root)"
    );
}

/// Run a PostgreSQL program as the `postgres` user; panic with its output on failure.
pub fn pg_cmd(program: &str, args: &[&str]) -> String {
    let out = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(Path::new(PG_BIN).join(program))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A scratch directory owned by `postgres`, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(label: &str) -> Scratch {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "pgsurge-{label}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        chown_postgres(&dir);
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn chown_postgres(path: &Path) {
    let status = Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success(), "chown postgres {}", path.display());
}

/// One running PostgreSQL server.
pub struct Pg {
    pub name: String,
    pub port: u16,
    pub datadir: PathBuf,
}

impl Pg {
    /// Initialise pgbench's tables on the primary and flush them (replicas cloned after
    /// this hold them).
    pub fn pgbench_init(&self) {
        let out = Command::new("pgbench")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-i",
                "-s",
                "1",
                "-q",
                "postgres",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pgbench -i: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.psql("postgres", "checkpoint");
    }

    /// `initdb` + start a primary ready for streaming replication (trust auth on loopback).
    pub fn primary(root: &Path, name: &str) -> Pg {
        require_postgres();
        let datadir = root.join(name);
        let d = datadir.to_str().unwrap();
        pg_cmd(
            "initdb",
            &[
                "-D",
                d,
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        );
        let port = crate::free_port();
        let conf = format!(
            "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{d}'\n\
             wal_level = replica\nmax_wal_senders = 20\nmax_replication_slots = 20\nhot_standby = on\n\
             wal_keep_size = '1GB'\nfsync = on\nshared_buffers = '64MB'\nmax_connections = 200\n\
             log_min_messages = warning\nlogging_collector = off\n"
        );
        append(&datadir.join("postgresql.auto.conf"), &conf);
        append(
            &datadir.join("pg_hba.conf"),
            "host replication all 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 trust\n",
        );
        let pg = Pg {
            name: name.to_string(),
            port,
            datadir,
        };
        pg.start();
        pg
    }

    /// `pg_basebackup -R` from `primary` + start: a streaming standby.
    pub fn replica_of(primary: &Pg, root: &Path, name: &str) -> Pg {
        let datadir = root.join(name);
        let d = datadir.to_str().unwrap();
        let port = crate::free_port();
        pg_cmd(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &primary.port.to_string(),
                "-U",
                "postgres",
                "-D",
                d,
                "-R",
                "-X",
                "stream",
                "--no-sync",
            ],
        );
        append(
            &datadir.join("postgresql.auto.conf"),
            &format!("port = {port}\nunix_socket_directories = '{d}'\ncluster_name = '{name}'\n"),
        );
        let pg = Pg {
            name: name.to_string(),
            port,
            datadir,
        };
        pg.start();
        pg
    }

    pub fn start(&self) {
        let log = self.datadir.join("server.log");
        pg_cmd(
            "pg_ctl",
            &[
                "-D",
                self.datadir.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
    }

    /// Fast shutdown (waits for clients to go); a no-op when already stopped.
    pub fn stop(&self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(Path::new(PG_BIN).join("pg_ctl"))
            .args([
                "-D",
                self.datadir.to_str().unwrap(),
                "-m",
                "fast",
                "-w",
                "stop",
            ])
            .output();
    }

    /// libpq connection string (no password: trust auth on loopback).
    pub fn conninfo(&self, db: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname={db}",
            self.port
        )
    }

    /// Run SQL through `psql` and return its unaligned, tuples-only output.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new("psql")
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                &self.conninfo(db),
                "-c",
                sql,
            ])
            .output()
            .expect("psql");
        assert!(
            out.status.success(),
            "psql on {}: {sql}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(Path::new(PG_BIN).join("pg_ctl"))
            .args([
                "-D",
                self.datadir.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ])
            .output();
    }
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

// ---- Additions for the local provider's tests and bench (issue 4) -------------------

/// `psql` against any server on loopback by port (clones the tests did not start with
/// [`Pg`]), as the `postgres` superuser; unaligned, tuples-only output.
pub fn psql_at(port: u16, db: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d"])
        .arg(format!(
            "host=127.0.0.1 port={port} user=postgres dbname={db}"
        ))
        .args(["-c", sql])
        .output()
        .expect("psql");
    assert!(
        out.status.success(),
        "psql on port {port}: {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Poll the server on `port` until it has replayed up to `lsn`; panics after `secs`.
pub fn wait_replayed(port: u16, lsn: &str, secs: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    let sql = format!("select pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn");
    while psql_at(port, "postgres", &sql) != "t" {
        assert!(
            std::time::Instant::now() < deadline,
            "server on port {port} did not replay up to {lsn} within {secs}s"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// A file of the project's dataset generator (`infra/local/dataset/`).
pub fn dataset_script(name: &str) -> PathBuf {
    crate::workspace_root()
        .join("infra/local/dataset")
        .join(name)
}

impl Pg {
    /// Fill database `catalog` with the project's dataset generator.
    pub fn generate_catalog(&self, tables: u32, size_mb: u32) -> String {
        let out = Command::new("bash")
            .arg(dataset_script("generate.sh"))
            .args([
                "--conn",
                &self.conninfo("postgres").replace(" dbname=postgres", ""),
            ])
            .args(["--tables", &tables.to_string()])
            .args(["--size-mb", &size_mb.to_string()])
            .output()
            .expect("generate.sh");
        assert!(
            out.status.success(),
            "generate.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Start the dataset's pgbench write load in the background (`load.sh`); it runs until
    /// the returned process is stopped or dropped.
    pub fn start_write_load(&self, clients: u32, batch: u32) -> crate::Proc {
        self.write_load(clients, batch, None)
    }

    /// The write load limited to `rate` transactions per second (for benchmarks).
    pub fn start_write_load_at(&self, clients: u32, batch: u32, rate: u32) -> crate::Proc {
        self.write_load(clients, batch, Some(rate))
    }

    fn write_load(&self, clients: u32, batch: u32, rate: Option<u32>) -> crate::Proc {
        let mut cmd = Command::new("bash");
        cmd.arg(dataset_script("load.sh"))
            .args([
                "--conn",
                &self.conninfo("postgres").replace(" dbname=postgres", ""),
            ])
            .args(["--clients", &clients.to_string()])
            .args(["--threads", "2", "--seconds", "36000", "--progress", "1"])
            .args(["--batch", &batch.to_string()]);
        if let Some(r) = rate {
            cmd.args(["--rate", &r.to_string()]);
        }
        let child = cmd
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("load.sh");
        crate::Proc::from_child(child)
    }

    pub fn current_lsn(&self) -> String {
        self.psql("postgres", "select pg_current_wal_lsn()")
    }

    /// Put `line` first in pg_hba.conf (first match wins) and reload.
    pub fn prepend_hba(&self, line: &str) {
        let path = self.datadir.join("pg_hba.conf");
        let old = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("{line}\n{old}")).unwrap();
        self.psql("postgres", "select pg_reload_conf()");
    }
}

/// Processes whose working directory is `dir` or below it, or whose command line names
/// it: PostgreSQL's postmaster and every backend chdir into their data directory, so
/// this finds a server's processes without trusting its pidfile.
pub fn processes_in(dir: &Path) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cwd = std::fs::read_link(e.path().join("cwd")).ok();
        let raw = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let args: Vec<String> = raw
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        // Component-wise: /tmp/x must not match /tmp/x-0.
        let named = args.iter().any(|a| Path::new(a).starts_with(dir));
        if cwd.is_some_and(|c| c.starts_with(dir)) || named {
            found.push((pid, args.join(" ")));
        }
    }
    found
}

/// `pgbench -S -C` (a new connection per transaction) at `rate` tps for `secs`.
pub fn pgbench(port: u16, rate: u32, secs: u32) -> std::process::Child {
    std::process::Command::new("pgbench")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            "-n",
            "-S",
            "-C",
            "-c",
            "4",
            "-j",
            "2",
            "-R",
            &rate.to_string(),
            "-T",
            &secs.to_string(),
            "postgres",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("pgbench (apt-get install postgresql-client-15)")
}

/// (processed, failed) from a pgbench summary; panics on a run that did not finish.
pub fn pgbench_result(child: std::process::Child) -> (u64, u64) {
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let num = |key: &str| -> u64 {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(key))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "no {key:?} in pgbench output:\n{text}\n{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })
    };
    (
        num("number of transactions actually processed: "),
        num("number of failed transactions: "),
    )
}
