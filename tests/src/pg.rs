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
