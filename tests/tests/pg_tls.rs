//! TLS to PostgreSQL, for real: a PostgreSQL 15 with `ssl = on`, a certificate from a
//! CA made by the test, and a pg_hba.conf that refuses every unencrypted connection.
//! pgsurge's readiness client and advisory lock connect with each `sslmode`; a replica
//! bootstrapped by `infra/image/bootstrap-replica.sh` streams over verified TLS.

use pgsurge::config::Config;

use pgsurge::model::Endpoint;
use pgsurge::postgres::bootstrap::UserData;
use pgsurge::postgres::PostgresConfig;
use pgsurge::postgres::{PgClient, Postgres};
use pgsurge::secret::Secret;
use pgsurge::state::{PgAdvisoryLock, WriterLock};
use pgsurge_tests::pg::{chown_postgres, pg_cmd, Pg, Scratch};
use pgsurge_tests::tls::TestCa;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

struct TlsPrimary {
    pg: Pg,
    ca: PathBuf,
    other_ca: PathBuf,
    _root: Scratch,
}

/// A primary that speaks TLS only (`hostnossl ... reject` first in pg_hba.conf), with a
/// server certificate for IP 127.0.0.1 (not for the name `localhost`).
fn tls_primary(label: &str) -> TlsPrimary {
    let root = Scratch::new(label);
    let pg = Pg::primary(&root.0, "primary");
    let certs = root.0.join("certs");
    let ca = TestCa::new(&certs, "ca");
    let other = TestCa::new(&certs, "other-ca");
    let issued = ca.issue("server", &["IP:127.0.0.1"]);
    std::fs::copy(&issued.cert, pg.datadir.join("server.crt")).unwrap();
    std::fs::copy(&issued.key, pg.datadir.join("server.key")).unwrap();
    chown_postgres(&root.0);
    std::process::Command::new("chmod")
        .args(["0600", pg.datadir.join("server.key").to_str().unwrap()])
        .status()
        .unwrap();
    let mut conf = std::fs::OpenOptions::new()
        .append(true)
        .open(pg.datadir.join("postgresql.auto.conf"))
        .unwrap();
    writeln!(
        conf,
        "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'"
    )
    .unwrap();
    let hba = pg.datadir.join("pg_hba.conf");
    let old = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(
        &hba,
        format!("hostnossl all all 127.0.0.1/32 reject\nhostnossl replication all 127.0.0.1/32 reject\n{old}"),
    )
    .unwrap();
    pg.stop();
    pg.start();
    TlsPrimary {
        pg,
        ca: ca.pem(),
        other_ca: other.pem(),
        _root: root,
    }
}

fn config(host: &str, port: u16, sslmode: &str, rootcert: Option<&Path>) -> PostgresConfig {
    PostgresConfig {
        primary_host: host.into(),
        primary_port: port,
        replication_user: "postgres".into(),
        sslmode: sslmode.into(),
        sslrootcert: rootcert.map(Path::to_path_buf),
        connect_timeout_secs: 5,
        ..PostgresConfig::default()
    }
}

/// Connect as `PgClient` does and say whether the session is encrypted.
async fn encrypted(c: &PostgresConfig) -> Result<bool, String> {
    let client = PgClient::new(c);
    let at = Endpoint {
        host: c.primary_host.clone(),
        port: c.primary_port,
    };
    let session = client.connect(&at).await.map_err(|e| e.to_string())?;
    let row = session
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(row.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_sslmode_against_a_tls_only_primary() {
    let p = tls_primary("pg-tls-modes");
    let port = p.pg.port;

    // verify-full with the right CA: connects encrypted, and the readiness port reads it.
    let full = config("127.0.0.1", port, "verify-full", Some(&p.ca));
    assert_eq!(encrypted(&full).await, Ok(true));
    let status = PgClient::new(&full).primary_status().await.unwrap();
    assert!(status.timeline >= 1, "{status:?}");
    // The same settings pass config validation (the CA file is read there).
    let toml = format!(
        "[postgres]\nprimary_port = {port}\nsslmode = \"verify-full\"\nsslrootcert = {:?}\n",
        p.ca.display().to_string()
    );
    Config::from_toml(&toml).unwrap();

    // A certificate from another CA: refused, saying why.
    let wrong_ca = config("127.0.0.1", port, "verify-full", Some(&p.other_ca));
    let e = PgClient::new(&wrong_ca)
        .primary_status()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("invalid peer certificate")
            && e.contains("UnknownIssuer")
            && e.contains("sslmode verify-full"),
        "{e}"
    );
    let e = encrypted(&config("127.0.0.1", port, "verify-ca", Some(&p.other_ca)))
        .await
        .unwrap_err();
    assert!(e.contains("UnknownIssuer"), "{e}");

    // A name the certificate does not carry: verify-full refuses, verify-ca (chain only) connects.
    let e = encrypted(&config("localhost", port, "verify-full", Some(&p.ca)))
        .await
        .unwrap_err();
    assert!(
        e.contains("invalid peer certificate")
            && e.contains("certificate not valid for name \"localhost\""),
        "{e}"
    );
    assert_eq!(
        encrypted(&config("localhost", port, "verify-ca", Some(&p.ca))).await,
        Ok(true)
    );
    // require (no CA): encrypted, certificate not checked; require with a CA checks the chain.
    assert_eq!(
        encrypted(&config("127.0.0.1", port, "require", None)).await,
        Ok(true)
    );
    let e = encrypted(&config("localhost", port, "require", Some(&p.other_ca)))
        .await
        .unwrap_err();
    assert!(e.contains("UnknownIssuer"), "{e}");
    // prefer: encrypted when the server offers it.
    assert_eq!(
        encrypted(&config("127.0.0.1", port, "prefer", None)).await,
        Ok(true)
    );
    // disable against hostssl-only: the server's own refusal, named.
    let e = encrypted(&config("127.0.0.1", port, "disable", None))
        .await
        .unwrap_err();
    assert!(
        e.contains("pg_hba.conf rejects connection")
            && e.contains("no encryption")
            && e.contains("sslmode disable"),
        "{e}"
    );
    // verify-* without a CA file is a configuration error, before any connection.
    let e = Config::from_toml("[postgres]\nsslmode = \"verify-full\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("postgres.sslmode") && e.contains("sslrootcert"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_advisory_lock_honours_the_conninfo_sslmode_and_sslrootcert() {
    let p = tls_primary("pg-tls-lock");
    let port = p.pg.port;
    let conninfo = |ca: &Path, mode: &str| {
        Secret::new(format!(
            "host=127.0.0.1 port={port} user=postgres dbname=postgres sslmode={mode} sslrootcert='{}'",
            ca.display()
        ))
    };
    let lock = PgAdvisoryLock::new(conninfo(&p.ca, "verify-full"), Duration::from_secs(5));
    let guard = lock.acquire("catalog/state.json").await.unwrap();
    drop(guard);
    let url = format!(
        "postgres://postgres@127.0.0.1:{port}/postgres?sslmode=verify-full&sslrootcert={}",
        p.ca.display()
    );
    let lock = PgAdvisoryLock::new(Secret::new(url), Duration::from_secs(5));
    drop(lock.acquire("k").await.unwrap());

    let lock = PgAdvisoryLock::new(conninfo(&p.other_ca, "verify-full"), Duration::from_secs(5));
    let e = lock.acquire("k").await.err().expect("wrong CA").to_string();
    assert!(
        e.contains("sslmode verify-full") && e.contains("UnknownIssuer"),
        "{e}"
    );
    let lock = PgAdvisoryLock::new(conninfo(&p.ca, "disable"), Duration::from_secs(5));
    let e = lock
        .acquire("k")
        .await
        .err()
        .expect("no encryption")
        .to_string();
    assert!(e.contains("no encryption"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bootstrapped_replica_streams_over_verified_tls() {
    let p = tls_primary("pg-tls-replica");
    let root = p.pg.datadir.parent().unwrap().to_path_buf();
    let data = root.join("replica");
    pg_cmd(
        "pg_basebackup",
        &[
            "-d",
            &format!(
                "host=127.0.0.1 port={} user=postgres sslmode=require",
                p.pg.port
            ),
            "-D",
            data.to_str().unwrap(),
            "-X",
            "stream",
            "--no-sync",
        ],
    );
    let pgc = PostgresConfig {
        primary_conninfo_sslrootcert: p.ca.display().to_string(),
        ..config("127.0.0.1", p.pg.port, "verify-full", Some(&p.ca))
    };
    let mut ud = UserData::for_replica(&pgc, "tls-replica").unwrap();
    assert_eq!(ud.get("PRIMARY_SSLMODE"), Some("verify-full"));
    let port = pgsurge_tests::free_port();
    for (k, v) in [
        ("PGDATA", data.display().to_string()),
        ("PORT", port.to_string()),
        ("LISTEN_ADDRESSES", "127.0.0.1".into()),
        ("SOCKET_DIR", String::new()),
        ("LOG_FILE", root.join("replica.log").display().to_string()),
        ("START_TIMEOUT", "60".into()),
    ] {
        ud.set(k, v).unwrap();
    }
    let params = root.join("bootstrap.env");
    std::fs::write(&params, ud.render()).unwrap();
    let out = std::process::Command::new("bash")
        .arg(pgsurge_tests::workspace_root().join("infra/image/bootstrap-replica.sh"))
        .arg(&params)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _replica = Pg {
        name: "replica".into(),
        port,
        datadir: data.clone(),
    };
    let auto = std::fs::read_to_string(data.join("postgresql.auto.conf")).unwrap();
    assert!(
        auto.contains("sslmode=verify-full")
            && auto.contains(&format!("sslrootcert=''{}''", p.ca.display())),
        "{auto}"
    );
    // The primary sees the replica's WAL receiver, over TLS.
    let sql = "SELECT s.ssl FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid) \
               WHERE r.application_name = 'tls-replica'";
    let mut seen = String::new();
    for _ in 0..100 {
        seen = p.pg.psql("postgres", sql);
        if !seen.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = std::fs::read_to_string(root.join("replica.log")).unwrap_or_default();
    assert_eq!(
        seen.trim(),
        "t",
        "replica not streaming over TLS; its log:\n{log}"
    );
}
