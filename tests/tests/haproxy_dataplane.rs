//! Data Plane API adapter, v2 and v3, contract-tested against the official specs:
//! every request the adapter sends must match a path, method, parameters and body
//! schema of the spec, and every response the test server returns must be valid for
//! it. The test server (tests/src/dataplane_api.rs) fronts a real HAProxy, so the
//! adapter's changes also route real PostgreSQL sessions.

use pgsurge::balancer::dataplane::{ApiVersion, DataPlane, DataPlaneConfig};
use pgsurge::balancer::{
    AdminState, Balancer, BalancerError, DesiredSet, OperState, PutOutcome, ServerSpec,
};
use pgsurge::secret::Secret;
use pgsurge_tests::dataplane_api::{spec_path, FakeDataPlane};
use pgsurge_tests::haproxy::{ports_served, wait_oper, BackendSpec, HaproxyNode};
use pgsurge_tests::openapi::Spec;
use pgsurge_tests::pg::{Pg, Scratch};
use serde_json::json;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

const BE: &str = "pg_read";
const PASSWORD: &str = "dpa-test-password-7f3a";

fn specs() -> [Arc<Spec>; 2] {
    static SPECS: OnceLock<[Arc<Spec>; 2]> = OnceLock::new();
    SPECS
        .get_or_init(|| {
            [
                Arc::new(Spec::load(&spec_path(2))),
                Arc::new(Spec::load(&spec_path(3))),
            ]
        })
        .clone()
}

fn adapter(url: &str, password: &str, version: Option<ApiVersion>) -> DataPlane {
    adapter_with_ca(url, password, version, None)
}

fn adapter_with_ca(
    url: &str,
    password: &str,
    version: Option<ApiVersion>,
    ca_file: Option<std::path::PathBuf>,
) -> DataPlane {
    DataPlane::new(DataPlaneConfig {
        node: "dpa-1".into(),
        url: url.into(),
        user: "admin".into(),
        password: Secret::new(password),
        backend: BE.into(),
        version,
        timeout: Duration::from_secs(5),
        conflict_retries: 5,
        ready_wait: Duration::from_secs(15),
        ca_file,
    })
    .unwrap()
}

fn spec(name: &str, port: u16, weight: u16) -> ServerSpec {
    ServerSpec {
        name: name.into(),
        address: "127.0.0.1".into(),
        port,
        weight,
        check: true,
        slowstart_ms: 1000,
    }
}

async fn full_cycle(version: u8) {
    let root = Scratch::new(&format!("i5-dpa{version}"));
    let primary = Pg::primary(&root.0, "primary");
    let r_base = Pg::replica_of(&primary, &root.0, "r_base");
    let r_new = Pg::replica_of(&primary, &root.0, "r_new");
    let mut node = HaproxyNode::start(&root.0, "h1", BackendSpec::with_base(BE, r_base.port));
    let fake = FakeDataPlane::start(version, &node, "admin", PASSWORD, specs()).await;
    let dp = adapter(&fake.url, PASSWORD, None);
    let want = if version == 2 {
        ApiVersion::V2
    } else {
        ApiVersion::V3
    };

    // Version detection through /info.
    assert_eq!(dp.api_version().await.unwrap(), want);

    // Put: created (in maintenance), then idempotent, then an in-place weight change.
    let name = "pgsurge-t-r1";
    assert_eq!(
        dp.put_server(&spec(name, r_new.port, 100)).await.unwrap(),
        PutOutcome::Created
    );
    assert_eq!(
        node.servers_state()[name].0 & 1,
        1,
        "real HAProxy has it, in maint"
    );
    assert_eq!(
        dp.put_server(&spec(name, r_new.port, 100)).await.unwrap(),
        PutOutcome::Unchanged
    );
    // Another writer bumps the version twice: 409, re-read, retry.
    fake.state.lock().unwrap().inject_write_conflicts = 2;
    assert_eq!(
        dp.put_server(&spec(name, r_new.port, 60)).await.unwrap(),
        PutOutcome::Updated
    );
    assert_eq!(fake.state.lock().unwrap().conflicts_sent, 2);
    assert_eq!(fake.state.lock().unwrap().servers[name]["weight"], 60);
    let moved = spec(name, r_base.port, 60);
    assert!(matches!(
        dp.put_server(&moved).await,
        Err(BalancerError::Conflict(_))
    ));

    // A concurrent create of the same server: our create meets one version conflict
    // (retried) and then "already exists", which is not retried: re-read, compared.
    let raced = spec("pgsurge-t-race", r_base.port, 10);
    fake.state.lock().unwrap().inject_create_race =
        Some(pgsurge::balancer::dataplane::server_body(&raced, true));
    let posts = |st: &pgsurge_tests::dataplane_api::State| {
        st.log
            .iter()
            .filter(|(m, p, _)| {
                m == "POST" && p.contains("/servers") && !p.contains("transaction_id")
            })
            .count()
    };
    let before = posts(&fake.state.lock().unwrap());
    assert_eq!(dp.put_server(&raced).await.unwrap(), PutOutcome::Unchanged);
    let statuses: Vec<u16> = {
        let st = fake.state.lock().unwrap();
        st.log[st.log.len() - 8..].iter().map(|l| l.2).collect()
    };
    assert_eq!(
        posts(&fake.state.lock().unwrap()) - before,
        2,
        "one retry after the version conflict, none after \"already exists\": {statuses:?}"
    );
    assert!(dp.remove_server("pgsurge-t-race").await.unwrap());

    // Ready through the runtime endpoint (no reload), after HAProxy's check passed.
    dp.set_state(name, AdminState::Ready).await.unwrap();
    assert_eq!(
        fake.state.lock().unwrap().servers[name]["maintenance"],
        "disabled"
    );
    wait_oper(&dp, name, OperState::Up, 20).await;
    let served = ports_served(node.port, 12);
    assert!(
        served.contains(&r_new.port),
        "never routed to r_new: {served:?}"
    );
    let me = dp
        .list_servers()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.name == name)
        .unwrap();
    assert_eq!(
        (me.admin, me.weight, me.check, me.port),
        (AdminState::Ready, 60, true, r_new.port)
    );
    assert!(me.total_sessions > 0, "{me:?}");

    // apply(): one transaction; a commit that finds it outdated is re-planned.
    let mut desired = DesiredSet::new("pgsurge-");
    desired.insert(spec(name, r_new.port, 60), AdminState::Ready);
    desired.insert(spec("pgsurge-t-r2", r_base.port, 10), AdminState::Maint);
    fake.state.lock().unwrap().inject_commit_conflicts = 1;
    let actions = dp.apply(&desired).await.unwrap();
    assert_eq!(actions.len(), 1, "{actions:?}");
    assert!(node.servers_state().contains_key("pgsurge-t-r2"));
    assert!(dp.apply(&desired).await.unwrap().is_empty(), "converged");
    // A weight change inside a transaction keeps the rest of the object.
    desired.insert(spec("pgsurge-t-r2", r_base.port, 20), AdminState::Maint);
    assert_eq!(dp.apply(&desired).await.unwrap().len(), 1);
    let r2 = fake.state.lock().unwrap().servers["pgsurge-t-r2"].clone();
    assert_eq!(
        (r2["weight"].as_u64(), r2["slowstart"].as_u64()),
        (Some(20), Some(1000))
    );
    desired.servers.remove("pgsurge-t-r2");
    dp.apply(&desired).await.unwrap();
    assert!(!node.servers_state().contains_key("pgsurge-t-r2"));

    // Sessions open on the server (raw TCP through HAProxy: each holds a session on
    // the PostgreSQL it was routed to until closed).
    // base-1 drained for the moment (the test nodes weigh it 100, like
    // infra/haproxy/haproxy.cfg), so they all land on it. Wait for two (a probe session
    // from above may still be closing).
    node.cli(&format!("set server {BE}/base-1 state drain"));
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(
            tokio::net::TcpStream::connect(("127.0.0.1", node.port))
                .await
                .unwrap(),
        );
    }
    let on_it = || async {
        dp.list_servers()
            .await
            .unwrap()
            .into_iter()
            .find(|s| s.name == name)
            .map_or(0, |s| s.sessions)
    };
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while on_it().await < 2 {
        assert!(
            std::time::Instant::now() < until,
            "no session reached {name}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    node.cli(&format!("set server {BE}/base-1 state ready"));

    // Drain: at runtime, and configured as maintenance so a reload cannot make it ready.
    dp.set_state(name, AdminState::Drain).await.unwrap();
    assert_eq!(node.servers_state()[name].0 & 0x08, 0x08);
    assert_eq!(
        fake.state.lock().unwrap().servers[name]["maintenance"],
        "enabled"
    );
    assert!(matches!(
        dp.kill_sessions(name).await,
        Err(BalancerError::Unsupported(_))
    ));
    // Sessions still open: Busy, and the server stays, configured and in maintenance.
    let e = dp.remove_server(name).await.unwrap_err();
    assert!(matches!(e, BalancerError::Busy(_)), "{e}");
    assert!(fake.state.lock().unwrap().servers.contains_key(name));
    assert_eq!(node.servers_state()[name].0 & 1, 1, "in maintenance");
    drop(held);

    // A reload (the API's own, after a configuration change) keeps it out of rotation.
    dp.set_state(name, AdminState::Drain).await.unwrap();
    node.reload();
    fake.after_reload();
    let me = dp
        .list_servers()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.name == name)
        .unwrap();
    assert_eq!(
        me.admin,
        AdminState::Maint,
        "not ready after the reload: {me:?}"
    );
    assert_eq!(ports_served(node.port, 6), [r_base.port].into());
    dp.set_state(name, AdminState::Drain).await.unwrap();
    assert!(dp.remove_server(name).await.unwrap());
    assert!(!dp.remove_server(name).await.unwrap());
    assert!(!node.servers_state().contains_key(name));
    assert_eq!(ports_served(node.port, 4), [r_base.port].into());

    // Wrong password: a typed error, and the password is in no message.
    let bad = adapter(&fake.url, "wrong-password-123", Some(want));
    let e = bad.list_servers().await.unwrap_err();
    assert!(matches!(e, BalancerError::Auth(_)), "{e}");
    assert!(!e.to_string().contains("wrong-password"));

    let st = fake.state.lock().unwrap();
    assert!(
        st.violations.is_empty(),
        "contract violations:\n{}",
        st.violations.join("\n")
    );
    let mut ops = st.operations.clone();
    ops.sort();
    ops.dedup();
    eprintln!(
        "v{version}: {} requests, all spec-valid; operations used: {ops:?}",
        st.log.len()
    );
    for needed in [
        "getInfo",
        "getConfigurationVersion",
        "startTransaction",
        "commitTransaction",
        "replaceRuntimeServer",
        "getStats",
    ] {
        assert!(
            ops.iter().any(|o| o == needed),
            "v{version} never used {needed}: {ops:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dataplane_v2_adapter_honours_the_v2_spec_against_real_haproxy() {
    full_cycle(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dataplane_v3_adapter_honours_the_v3_spec_against_real_haproxy() {
    full_cycle(3).await;
}

/// The checker is not a rubber stamp: wrong paths, bodies, parameters and responses fail.
#[test]
fn contract_checker_rejects_what_the_spec_does_not_allow() {
    let [v2, v3] = specs();
    assert_eq!(
        (v2.base_path.as_str(), v3.base_path.as_str()),
        ("/v2", "/v3")
    );
    let q = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
    };
    let good = json!({"name": "pgsurge-t-r1", "address": "127.0.0.1", "port": 5432, "weight": 100, "check": "enabled", "maintenance": "enabled", "slowstart": 1000});

    // Valid requests pass (v2 backend as query, v3 as a path segment).
    v2.check_request(
        "POST",
        "/v2/services/haproxy/configuration/servers",
        &q(&[("backend", BE), ("version", "3")]),
        Some(&good),
    )
    .unwrap();
    v3.check_request(
        "POST",
        "/v3/services/haproxy/configuration/backends/pg_read/servers",
        &q(&[("version", "3")]),
        Some(&good),
    )
    .unwrap();

    // An invalid path: the v3 layout on a v2 server.
    let e = v2
        .check_request(
            "GET",
            "/v2/services/haproxy/configuration/backends/pg_read/servers",
            &[],
            None,
        )
        .unwrap_err();
    assert!(e[0].contains("no path"), "{e:?}");
    // An invalid body: weight must be an integer.
    let bad = json!({"name": "x", "address": "127.0.0.1", "weight": "heavy"});
    for (spec, path, query) in [
        (
            &v2,
            "/v2/services/haproxy/configuration/servers",
            q(&[("backend", BE), ("version", "1")]),
        ),
        (
            &v3,
            "/v3/services/haproxy/configuration/backends/pg_read/servers",
            q(&[("version", "1")]),
        ),
    ] {
        let e = spec
            .check_request("POST", path, &query, Some(&bad))
            .unwrap_err();
        assert!(
            e.iter().any(|m| m.contains("body") && m.contains("heavy")),
            "{e:?}"
        );
    }
    // v3: a field no server has (additionalProperties: false over the merged allOf).
    let extra = json!({"name": "x", "address": "127.0.0.1", "colour": "blue"});
    assert!(v3
        .check_request(
            "POST",
            "/v3/services/haproxy/configuration/backends/pg_read/servers",
            &q(&[("version", "1")]),
            Some(&extra)
        )
        .is_err());
    // v3 requires address; v2 does not.
    let no_addr = json!({"name": "x"});
    assert!(v3
        .check_request(
            "POST",
            "/v3/services/haproxy/configuration/backends/pg_read/servers",
            &q(&[("version", "1")]),
            Some(&no_addr)
        )
        .is_err());
    // Missing required query parameter; unknown parameter; version with transaction_id.
    assert!(v2
        .check_request(
            "GET",
            "/v2/services/haproxy/configuration/servers",
            &[],
            None
        )
        .is_err());
    assert!(v2
        .check_request(
            "GET",
            "/v2/services/haproxy/configuration/servers",
            &q(&[("backend", BE), ("parent_name", BE)]),
            None
        )
        .is_err());
    assert!(v2
        .check_request(
            "DELETE",
            "/v2/services/haproxy/configuration/servers/x",
            &q(&[("backend", BE), ("version", "1"), ("transaction_id", "t")]),
            None
        )
        .is_err());
    assert!(v2
        .check_request(
            "POST",
            "/v2/services/haproxy/transactions",
            &q(&[("version", "one")]),
            None
        )
        .is_err());
    // A wrong method; a read-only field in a runtime change.
    assert!(v3
        .check_request(
            "PATCH",
            "/v3/services/haproxy/runtime/backends/pg_read/servers/x",
            &[],
            None
        )
        .is_err());
    let ro = json!({"admin_state": "drain", "name": "renamed"});
    assert!(v2
        .check_request(
            "PUT",
            "/v2/services/haproxy/runtime/servers/x",
            &q(&[("backend", BE)]),
            Some(&ro)
        )
        .is_err());
    v2.check_request(
        "PUT",
        "/v2/services/haproxy/runtime/servers/x",
        &q(&[("backend", BE)]),
        Some(&json!({"admin_state": "drain"})),
    )
    .unwrap();

    // Responses: an unknown admin state, a missing body, a v2-shaped list from v3.
    let m = v2
        .check_request(
            "GET",
            "/v2/services/haproxy/runtime/servers",
            &q(&[("backend", BE)]),
            None,
        )
        .unwrap();
    assert!(v2
        .check_response(
            &m,
            200,
            Some(&json!([{"name": "x", "admin_state": "sleeping"}]))
        )
        .is_err());
    v2.check_response(
        &m,
        200,
        Some(&json!([{"name": "x", "admin_state": "ready", "port": null}])),
    )
    .unwrap();
    assert!(v2.check_response(&m, 200, None).is_err());
    let m = v3
        .check_request(
            "GET",
            "/v3/services/haproxy/configuration/backends/pg_read/servers",
            &[],
            None,
        )
        .unwrap();
    assert!(v3
        .check_response(&m, 200, Some(&json!({"_version": 1, "data": []})))
        .is_err());
    v3.check_response(&m, 200, Some(&json!([good]))).unwrap();
    // Errors must carry code and message.
    assert!(v3
        .check_response(&m, 500, Some(&json!({"oops": 1})))
        .is_err());
}

/// `apply` honours the same contract as `remove_server`: a stray server that still
/// carries sessions is put in maintenance, not deleted, and the apply says Busy; once
/// the sessions end, the next apply deletes it. (A plain TCP listener stands in for the
/// replica: the server has no health check, so no PostgreSQL is needed.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_keeps_a_stray_that_still_carries_sessions() {
    let root = Scratch::new("i5-dpa-stray");
    let node = HaproxyNode::start(&root.0, "h1", BackendSpec::with_base(BE, 1));
    let fake = FakeDataPlane::start(3, &node, "admin", PASSWORD, specs()).await;
    let dp = adapter(&fake.url, PASSWORD, Some(ApiVersion::V3));
    let backend = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = backend.local_addr().unwrap().port();
    let accepted = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = backend.accept().await {
            held.push(s);
        }
    });
    let stray = ServerSpec {
        check: false,
        ..spec("pgsurge-t-stray", port, 100)
    };
    dp.put_server(&stray).await.unwrap();
    dp.set_state(&stray.name, AdminState::Ready).await.unwrap();
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(
            tokio::net::TcpStream::connect(("127.0.0.1", node.port))
                .await
                .unwrap(),
        );
    }
    let sessions = || async {
        dp.list_servers()
            .await
            .unwrap()
            .into_iter()
            .find(|s| s.name == "pgsurge-t-stray")
            .map(|s| (s.admin, s.sessions))
    };
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while sessions().await.unwrap().1 == 0 {
        assert!(std::time::Instant::now() < until, "no session on the stray");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let desired = DesiredSet::new("pgsurge-");
    let e = dp.apply(&desired).await.unwrap_err();
    assert!(
        matches!(&e, BalancerError::Busy(m) if m.contains("pgsurge-t-stray")),
        "{e}"
    );
    assert!(fake
        .state
        .lock()
        .unwrap()
        .servers
        .contains_key("pgsurge-t-stray"));
    assert_eq!(sessions().await.unwrap().0, AdminState::Maint);

    drop(clients);
    accepted.abort();
    let until = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match dp.apply(&desired).await {
            Ok(actions) => {
                assert_eq!(
                    actions,
                    vec![pgsurge::balancer::Action::Remove {
                        name: "pgsurge-t-stray".into()
                    }]
                );
                break;
            }
            Err(BalancerError::Busy(_)) if std::time::Instant::now() < until => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(!node.servers_state().contains_key("pgsurge-t-stray"));
    let st = fake.state.lock().unwrap();
    assert!(st.violations.is_empty(), "{}", st.violations.join("\n"));
}

/// The Data Plane API over https, behind a TLS terminator with a certificate from a
/// test CA: the adapter connects with `ca_file` = that CA, and refuses the node without
/// it (public roots only) or with another CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_adapter_speaks_https_to_a_data_plane_signed_by_its_ca_file() {
    use pgsurge_tests::tls::{Terminator, TestCa};
    let root = Scratch::new("i5-dpa-tls");
    let node = HaproxyNode::start(
        &root.0,
        "h1",
        BackendSpec::with_base(BE, pgsurge_tests::free_port()),
    );
    let fake = FakeDataPlane::start(3, &node, "admin", PASSWORD, specs()).await;
    let plain: std::net::SocketAddr = fake.url.trim_start_matches("http://").parse().unwrap();
    let certs = root.0.join("certs");
    let ca = TestCa::new(&certs, "ca");
    let other = TestCa::new(&certs, "other-ca");
    let tls = Terminator::start(plain, &ca.issue("dataplane", &["IP:127.0.0.1"])).await;
    let url = format!("https://{}", tls.addr);

    let dp = adapter_with_ca(&url, PASSWORD, None, Some(ca.pem()));
    assert_eq!(dp.api_version().await.unwrap(), ApiVersion::V3);
    assert_eq!(
        dp.put_server(&spec("pgsurge-t-tls", 6543, 10))
            .await
            .unwrap(),
        PutOutcome::Created
    );
    assert!(fake
        .state
        .lock()
        .unwrap()
        .servers
        .contains_key("pgsurge-t-tls"));

    for ca_file in [None, Some(other.pem())] {
        let e = adapter_with_ca(&url, PASSWORD, None, ca_file.clone())
            .api_version()
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("invalid peer certificate") && e.contains("UnknownIssuer"),
            "{ca_file:?}: {e}"
        );
    }
    // The CA file is only for https URLs, and must hold a certificate.
    let toml = |url: &str, ca: &std::path::Path| {
        format!(
            "[haproxy]\ndataplane_password = \"pw\"\ndataplane_ca_file = {:?}\n\
             [[haproxy.nodes]]\nname = \"n\"\ndataplane_url = \"{url}\"\n",
            ca.display().to_string()
        )
    };
    pgsurge::config::Config::from_toml(&toml(&url, &ca.pem())).unwrap();
    let e = pgsurge::config::Config::from_toml(&toml(&fake.url, &ca.pem()))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("dataplane_ca_file") && e.contains("not https"),
        "{e}"
    );
    let empty = certs.join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let e = pgsurge::config::Config::from_toml(&toml(&url, &empty))
        .unwrap_err()
        .to_string();
    assert!(e.contains("holds no certificate"), "{e}");
}
