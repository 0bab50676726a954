//! infra/observability/: the read-tier alert rules (`promtool test rules`), the
//! Alertmanager route (`amtool`), the OpenStack discovery relabelling (a real Prometheus
//! against the project's OpenStack test cloud) and the Grafana dashboard's metric names.
//! Each check also runs on a deliberately broken copy and must fail there.

use pgsurge::cloud::openstack::request::{Request, ServiceType};
use pgsurge::cloud::openstack::OpenStack;
use pgsurge::cloud::openstack::OpenStackConfig;
use pgsurge::cloud::{
    ensure_server, wait_server_ready, Cloud, CloudError, Filter, Metadata, ServerRequest, Volume,
    META_AZ, META_CLUSTER, META_OP, META_REPLICA, META_ROLE,
};
use pgsurge::events::ClusterConfig;
use pgsurge::events::{AlarmState, ClusterScope, Direction, Event};
use pgsurge::model::resource_name;
use pgsurge_tests::os_volume::bootable_volume;
use pgsurge_tests::tools::{run, text};
use pgsurge_tests::{free_port, workspace_root, Proc};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn obs_dir() -> PathBuf {
    workspace_root().join("infra/observability")
}

/// A scratch copy of infra/observability/ to break.
fn copy_of_obs() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("tests")).unwrap();
    for f in ["rules.yml", "alertmanager.yml", "tests/rules.test.yml"] {
        std::fs::copy(obs_dir().join(f), dir.path().join(f)).unwrap();
    }
    dir
}

fn promtool(args: &[&str], dir: &Path) -> (bool, String) {
    let o = run("promtool", "prometheus", args, dir);
    (o.status.success(), text(&o))
}

fn replace_once(path: &Path, from: &str, to: &str) {
    let s = std::fs::read_to_string(path).unwrap();
    assert_eq!(
        s.matches(from).count(),
        1,
        "{from:?} once in {}",
        path.display()
    );
    std::fs::write(path, s.replacen(from, to, 1)).unwrap();
}

#[test]
fn alert_rules_pass_their_promtool_tests() {
    let (ok, out) = promtool(&["check", "rules", "rules.yml"], &obs_dir());
    assert!(ok, "promtool check rules: {out}");
    let (ok, out) = promtool(&["test", "rules", "tests/rules.test.yml"], &obs_dir());
    assert!(ok, "promtool test rules: {out}");
}

/// The rule tests can fail: without `for`, the 3-minute spike fires; a changed threshold
/// no longer matches its pinned annotation; a rule that does not parse is refused.
#[test]
fn broken_rules_fail_their_promtool_tests() {
    let dir = copy_of_obs();
    let rules = dir.path().join("rules.yml");
    let pristine = std::fs::read_to_string(&rules).unwrap();

    let s = pristine.replacen(
        "expr: pgsurge:read_tier_cpu_busy:ratio > 0.75\n        for: 5m\n",
        "expr: pgsurge:read_tier_cpu_busy:ratio > 0.75\n",
        1,
    );
    assert_ne!(
        s, pristine,
        "the CPU rule's `for` is where the test expects it"
    );
    std::fs::write(&rules, s).unwrap();
    let (ok, out) = promtool(&["test", "rules", "tests/rules.test.yml"], dir.path());
    assert!(
        !ok,
        "a rule without `for` must fail the short-spike test: {out}"
    );
    assert!(out.contains("PgsurgeReadTierCpuHigh"), "{out}");

    std::fs::write(&rules, &pristine).unwrap();
    replace_once(&rules, "threshold: \"0.75\"", "threshold: \"0.7\"");
    let (ok, out) = promtool(&["test", "rules", "tests/rules.test.yml"], dir.path());
    assert!(!ok, "a threshold annotation that changed must fail: {out}");

    std::fs::write(&rules, &pristine).unwrap();
    replace_once(
        &rules,
        "pgsurge:read_tier_connections:ratio > 0.8",
        "pgsurge:read_tier_connections:ratio >",
    );
    let (ok, out) = promtool(&["check", "rules", "rules.yml"], dir.path());
    assert!(!ok, "an expression that does not parse must fail: {out}");
}

/// What the rules' alerts carry (as the promtool tests pin them) is what pgsurge's
/// Alertmanager parser reads: the cluster from `pgsurge_cluster`, the direction from
/// `pgsurge_action`, the size from `pgsurge_replicas`, and the numbers it logs.
#[test]
fn the_alerts_parse_as_pgsurge_alarms_for_their_cluster() {
    let tests: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(obs_dir().join("tests/rules.test.yml")).unwrap(),
    )
    .unwrap();
    let mut alerts = Vec::new();
    for case in tests["tests"].as_sequence().unwrap() {
        for t in case["alert_rule_test"].as_sequence().unwrap() {
            for a in t["exp_alerts"].as_sequence().unwrap() {
                let mut labels: BTreeMap<String, String> =
                    serde_yaml::from_value(a["exp_labels"].clone()).unwrap();
                labels.insert("alertname".into(), t["alertname"].as_str().unwrap().into());
                let annotations: BTreeMap<String, String> =
                    serde_yaml::from_value(a["exp_annotations"].clone()).unwrap();
                alerts.push((labels, annotations));
            }
        }
    }
    assert_eq!(alerts.len(), 4, "every alert rule has a firing case");
    for (labels, annotations) in alerts {
        let name = labels["alertname"].clone();
        let body = json!({"version": "4", "status": "firing", "receiver": "pgsurge-scale-up",
            "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "",
            "alerts": [{"status": "firing", "labels": labels, "annotations": annotations,
                "startsAt": "2026-12-06T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                "fingerprint": "0123456789abcdef"}]});
        let Event::Alarms { alarms } =
            pgsurge::events::parse(&body.to_string()).unwrap_or_else(|e| panic!("{name}: {e}"))
        else {
            panic!("{name}: not an alarm");
        };
        let a = &alarms[0];
        assert_eq!(a.state, AlarmState::Firing);
        let cluster = labels["cluster"].clone();
        assert_eq!(
            a.params.cluster.as_deref(),
            Some(cluster.as_str()),
            "{name}"
        );
        let up = labels["pgsurge_action"] == "scale-up";
        let want = if up {
            Direction::ScaleUp
        } else {
            Direction::ScaleDown
        };
        assert_eq!(a.params.action, Some(want), "{name}");
        assert_eq!(a.params.replicas, up.then_some(1), "{name}");
        assert!(a
            .metric
            .as_deref()
            .unwrap()
            .starts_with("pgsurge:read_tier_"));
        assert!(a.value.is_some() && a.threshold.is_some(), "{name}: {a:?}");
        let scope = |name: &str| {
            ClusterScope::new(&ClusterConfig {
                name: name.into(),
                require_label: true,
            })
        };
        assert_eq!(scope(&cluster).refuses(a), None, "{name}");
        assert!(scope("elsewhere").refuses(a).is_some(), "{name}");
    }
}

fn amtool(args: &[&str], dir: &Path) -> (bool, String) {
    let o = run("amtool", "prometheus-alertmanager", args, dir);
    (o.status.success(), text(&o))
}

#[test]
fn alertmanager_routes_each_direction_to_its_function_with_a_token_file() {
    let (ok, out) = amtool(&["check-config", "alertmanager.yml"], &obs_dir());
    assert!(ok, "amtool check-config: {out}");
    let route = |labels: &[&str]| {
        let mut args = vec!["config", "routes", "test", "--config.file=alertmanager.yml"];
        args.extend_from_slice(labels);
        let (ok, out) = amtool(&args, &obs_dir());
        assert!(ok, "amtool config routes test: {out}");
        out.lines()
            .find(|l| !l.starts_with("Warning"))
            .unwrap_or("")
            .trim()
            .to_string()
    };
    let up = ["alertname=PgsurgeReadTierCpuHigh", "pgsurge_cluster=main"];
    assert_eq!(
        route(&[up[0], up[1], "pgsurge_action=scale-up"]),
        "pgsurge-scale-up"
    );
    assert_eq!(
        route(&[up[0], up[1], "pgsurge_action=scale-down"]),
        "pgsurge-scale-down"
    );
    // an alert naming no cluster would be ignored by pgsurge anyway: not sent
    assert_eq!(route(&[up[0], "pgsurge_action=scale-up"]), "null");

    let cfg: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(obs_dir().join("alertmanager.yml")).unwrap())
            .unwrap();
    for r in cfg["receivers"].as_sequence().unwrap() {
        for w in r["webhook_configs"].as_sequence().into_iter().flatten() {
            let auth = &w["http_config"]["authorization"];
            assert_eq!(auth["type"].as_str(), Some("Bearer"), "{r:?}");
            assert!(auth["credentials_file"].as_str().is_some(), "{r:?}");
            assert!(auth.get("credentials").is_none(), "no inline token: {r:?}");
            let url = w["url"].as_str().unwrap();
            assert!(url.starts_with("https://"), "webhooks go over TLS: {url}");
        }
    }
}

#[test]
fn a_broken_alertmanager_config_fails_amtool() {
    let dir = copy_of_obs();
    let cfg = dir.path().join("alertmanager.yml");
    replace_once(
        &cfg,
        "receiver: pgsurge-scale-down",
        "receiver: pgsurge-scale-dwn",
    );
    let (ok, out) = amtool(&["check-config", "alertmanager.yml"], dir.path());
    assert!(!ok, "a route to an undefined receiver must fail: {out}");
    assert!(out.contains("pgsurge-scale-dwn"), "{out}");
}

// ---- discovery: a real Prometheus against the OpenStack test cloud ----

const CLUSTER: &str = "it-discovery";
const WAIT: Duration = Duration::from_secs(180);

fn clouds_yaml() -> PathBuf {
    let dir = std::env::var("PGSURGE_OS_DIR").unwrap_or_else(|_| "/tmp/pgsurge-openstack".into());
    let p = PathBuf::from(dir).join("clouds.yaml");
    assert!(
        p.exists(),
        "OpenStack test cloud not found ({} missing): the `just test` recipe starts it \
         (tests/openstack/up.sh, as root), or point PGSURGE_OS_DIR at its state directory",
        p.display()
    );
    p
}

async fn connect() -> OpenStack {
    connect_as("pgsurge").await
}

async fn connect_as(cloud: &str) -> OpenStack {
    // Servers boot the replica image (their system disk): the tests register a tiny one.
    pgsurge_tests::os_image::ensure_test_image_once(&clouds_yaml());
    let cfg = OpenStackConfig {
        cloud: cloud.into(),
        clouds_yaml: Some(clouds_yaml()),
        flavor: "m1.tiny".into(),
        image: pgsurge_tests::os_image::TEST_IMAGE_NAME.into(),
        network: "pgsurge-net".into(),
        security_groups: vec!["pgsurge-pg".into()],
        request_timeout_secs: 120,
        max_retries: 2,
        ..OpenStackConfig::default()
    };
    OpenStack::connect(&cfg, None)
        .await
        .unwrap_or_else(|e| panic!("connect to the OpenStack test cloud as {cloud}: {e}"))
}

fn meta(pairs: &[(&str, &str)]) -> Metadata {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A bootable 1 GiB volume (what a replica boots from; the fake driver stores nothing).
async fn volume(os: &OpenStack, suffix: &str) -> Volume {
    let name = resource_name(CLUSTER, suffix);
    bootable_volume(os, &name, &meta(&[(META_CLUSTER, CLUSTER)]), WAIT).await
}

/// Delete this test's servers, then its volumes (a rerun after a killed run starts clean).
async fn clean_up(os: &OpenStack) {
    let ours = Filter {
        name: None,
        metadata: meta(&[(META_CLUSTER, CLUSTER)]),
    };
    let servers = os.list_servers(&ours).await.unwrap();
    for s in &servers {
        os.delete_server(&s.id).await.unwrap();
    }
    for s in &servers {
        os.wait_server_gone(&s.id, WAIT).await.unwrap();
    }
    let started = Instant::now();
    let deadline = started + WAIT;
    let mut admin = None;
    loop {
        let vols = os.list_volumes(&ours).await.unwrap();
        if vols.is_empty() {
            return;
        }
        for v in vols {
            // Nova detaches asynchronously: delete once Cinder calls the volume available
            let status = os.caller().volume_json(&v.id).await.unwrap()["status"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if status == "available" || status == "error" {
                match os.delete_volume(&v.id).await {
                    Ok(()) | Err(CloudError::Conflict(_)) => {}
                    Err(e) => panic!("delete volume {}: {e}", v.id),
                }
            } else if status != "deleting" && started.elapsed() > Duration::from_secs(30) {
                // Our servers are gone: a volume still reserved or attached is left over from
                // a create that timed out in an earlier run. Only an admin can release it.
                if admin.is_none() {
                    admin = Some(connect_as("pgsurge-admin").await);
                }
                let _ = admin
                    .as_ref()
                    .unwrap()
                    .caller()
                    .send(
                        "reset volume status",
                        Request::post(
                            ServiceType::BlockStorage,
                            format!("volumes/{}/action", v.id),
                            json!({"os-reset_status": {"status": "available", "attach_status": "detached"}}),
                        ),
                    )
                    .await;
            }
        }
        assert!(
            Instant::now() < deadline,
            "volumes of {CLUSTER} left behind"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// infra/observability/prometheus.yml with the test cloud's Keystone and credentials in
/// its OpenStack discovery and a short refresh; the relabelling is the file's own.
fn prometheus_config(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(obs_dir().join("prometheus.yml")).unwrap();
    let mut cfg: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let m = cfg.as_mapping_mut().unwrap();
    m.remove("alerting");
    m.insert(
        "rule_files".into(),
        serde_yaml::to_value([obs_dir().join("rules.yml")]).unwrap(),
    );
    m.insert(
        "global".into(),
        serde_yaml::from_str("{scrape_interval: 5s, evaluation_interval: 5s}").unwrap(),
    );
    let mut jobs = 0;
    for job in cfg["scrape_configs"].as_sequence_mut().unwrap() {
        for sd in job["openstack_sd_configs"].as_sequence_mut().unwrap() {
            let sd = sd.as_mapping_mut().unwrap();
            sd.remove("application_credential_id");
            sd.remove("application_credential_secret");
            for (k, v) in [
                ("identity_endpoint", "http://127.0.0.1:5000/v3"),
                ("username", "pgsurge"),
                ("password", "pgsurge-pass"),
                ("project_name", "pgsurge"),
                ("domain_name", "Default"),
                ("region", "RegionOne"),
                // also Prometheus' HTTP timeout towards Keystone and Nova: a loaded
                // 2-core test cloud can take seconds to issue a token
                ("refresh_interval", "20s"),
            ] {
                sd.insert(k.into(), v.into());
            }
        }
        jobs += 1;
    }
    assert_eq!(jobs, 2, "pgsurge-node and pgsurge-postgres");
    let path = dir.join("prometheus.yml");
    std::fs::write(&path, serde_yaml::to_string(&cfg).unwrap()).unwrap();
    path
}

/// Prometheus' active targets of `job` for this test's cluster: their labels.
async fn targets(port: u16, job: &str) -> Vec<BTreeMap<String, String>> {
    let url = format!("http://127.0.0.1:{port}/api/v1/targets?state=active");
    let Ok(r) = reqwest::get(&url).await else {
        return Vec::new();
    };
    let v: Value = r.json().await.unwrap_or(Value::Null);
    v["data"]["activeTargets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| {
            serde_json::from_value::<BTreeMap<String, String>>(t["labels"].clone()).ok()
        })
        .filter(|l| l.get("job").map(String::as_str) == Some(job))
        .filter(|l| l.get("cluster").map(String::as_str) == Some(CLUSTER))
        .collect()
}

/// A base replica (metadata as Terraform sets it) and a surge replica (made through
/// pgsurge's OpenStack provider, which adds the zone) are discovered with exactly
/// `cluster`, `role`, `replica`, `az` (plus Prometheus' own `job`, `instance`); a server
/// of the cluster without a pgsurge role (e.g. the primary) is not scraped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_discovers_base_and_surge_replicas_with_their_labels() {
    let os = connect().await;
    clean_up(&os).await;
    let (v_base, v_surge, v_other) = tokio::join!(
        volume(&os, "base-1"),
        volume(&os, "r1"),
        volume(&os, "primary")
    );
    let zone = v_surge
        .az
        .clone()
        .expect("Cinder reports the volume's zone");
    let req = |suffix: &str, vol: &Volume, az: Option<String>, m: Metadata| ServerRequest {
        name: resource_name(CLUSTER, suffix),
        volume_id: vol.id.clone(),
        flavor: None,
        az,
        metadata: m,
        user_data: None,
    };
    // Terraform's base replica names its zone itself; pgsurge adds pgsurge_az from the
    // zone it asks Nova for.
    let base = req(
        "base-1",
        &v_base,
        None,
        meta(&[
            (META_CLUSTER, CLUSTER),
            (META_ROLE, "base"),
            (META_REPLICA, "base-1"),
            (META_AZ, "az-base"),
        ]),
    );
    let surge = req(
        "r1",
        &v_surge,
        Some(zone.clone()),
        meta(&[
            (META_CLUSTER, CLUSTER),
            (META_ROLE, "surge"),
            (META_REPLICA, "r1"),
            (META_OP, "op-1"),
        ]),
    );
    let other = req("primary", &v_other, None, meta(&[(META_CLUSTER, CLUSTER)]));
    // one at a time: the test cloud's Nova shares two cores with everything else
    let mut ready = Vec::new();
    for r in [&base, &surge, &other] {
        let s = ensure_server(&os, r).await.unwrap();
        ready.push(wait_server_ready(&os, &s.id, WAIT).await.unwrap());
    }
    assert_eq!(
        ready[1].metadata.get(META_AZ),
        Some(&zone),
        "the provider sets pgsurge_az"
    );

    let dir = tempfile::tempdir().unwrap();
    let config = prometheus_config(dir.path());
    let port = free_port();
    let mut prom = Proc::spawn_cmd(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("prometheus.log")).unwrap()),
    );
    let want = |role: &str, replica: &str, az: &str, job: &str| {
        BTreeSet::from([
            ("az".to_string(), az.to_string()),
            ("cluster".to_string(), CLUSTER.to_string()),
            ("job".to_string(), job.to_string()),
            ("replica".to_string(), replica.to_string()),
            ("role".to_string(), role.to_string()),
        ])
    };
    let deadline = Instant::now() + Duration::from_secs(240);
    for (job, port_suffix) in [("pgsurge-node", ":9100"), ("pgsurge-postgres", ":9187")] {
        let found = loop {
            let t = targets(port, job).await;
            if t.len() >= 2 || Instant::now() > deadline {
                break t;
            }
            assert!(
                prom.running(),
                "prometheus exited: {}",
                std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let got: BTreeSet<BTreeSet<(String, String)>> = found
            .iter()
            .map(|l| {
                assert!(l["instance"].ends_with(port_suffix), "{l:?}");
                l.iter()
                    .filter(|(k, _)| *k != "instance")
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .collect();
        assert_eq!(
            got,
            BTreeSet::from([
                want("base", "base-1", "az-base", job),
                want("surge", "r1", &zone, job),
            ]),
            "targets of {job}: {found:?}; log: {}",
            std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
        );
        assert_eq!(
            found.len(),
            2,
            "one target per replica, none for the primary: {found:?}"
        );
    }
    let _ = prom.stop();
    clean_up(&os).await;
}

// ---- the dashboard and the rules query metrics that exist ----

/// The metric names a PromQL expression selects: identifiers outside label matchers,
/// ranges, strings, grouping clauses, function calls and keywords.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut s = String::new();
    // drop "...", {...} and [...] (matchers, ranges, Grafana's $__rate_interval)
    let mut depth = 0;
    let mut quoted = false;
    for c in expr.chars() {
        match c {
            '"' => quoted = !quoted,
            '{' | '[' if !quoted => depth += 1,
            '}' | ']' if !quoted => depth -= 1,
            _ if depth == 0 && !quoted => s.push(c),
            _ => {}
        }
    }
    // drop `by (...)`, `without (...)`, `on (...)`, `ignoring (...)`, group_left/right (...)
    let mut out = String::new();
    let mut rest = s.as_str();
    while let Some((i, len)) = next_clause(rest) {
        out.push_str(&rest[..i]);
        rest = &rest[i + len..];
        let close = rest.find(')').map(|j| j + 1).unwrap_or(rest.len());
        rest = &rest[close..];
    }
    out.push_str(rest);
    let keywords = ["and", "or", "unless", "bool", "offset", "inf", "nan"];
    let mut names = BTreeSet::new();
    let chars: Vec<char> = out.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i])) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let before = if start > 0 { chars[start - 1] } else { ' ' };
            let next = chars[i..].iter().find(|c| !c.is_whitespace());
            let is_call = next == Some(&'(');
            let is_number = before.is_ascii_digit() || before == '.';
            if !is_call && !is_number && before != '$' && !keywords.contains(&word.as_str()) {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// The next grouping/matching clause keyword followed by `(`: (index, length up to and
/// including the parenthesis).
fn next_clause(s: &str) -> Option<(usize, usize)> {
    {
        let words = [
            "by",
            "without",
            "on",
            "ignoring",
            "group_left",
            "group_right",
        ];
        let bytes = s.as_bytes();
        let mut best: Option<(usize, usize)> = None;
        for w in words {
            let mut from = 0;
            while let Some(p) = s[from..].find(w) {
                let i = from + p;
                from = i + w.len();
                let left_ok =
                    i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
                let after = s[i + w.len()..].trim_start();
                if left_ok && after.starts_with('(') {
                    let len = s.len() - after.len() - i + 1;
                    if best.is_none_or(|(b, _)| i < b) {
                        best = Some((i, len));
                    }
                    break;
                }
            }
        }
        best
    }
}

#[test]
fn metric_names_are_found_in_promql() {
    assert_eq!(
        metric_names(
            r#"histogram_quantile(0.9, sum by (le, phase) (rate(pgsurge_phase_duration_seconds_bucket[$__rate_interval])))"#
        ),
        BTreeSet::from(["pgsurge_phase_duration_seconds_bucket".to_string()])
    );
    assert_eq!(
        metric_names(
            r#"a:b:ratio{cluster="x{y"} > 0.5 and on (cluster) count by (role) (up{job="j"} == 1) / 1e3"#
        ),
        BTreeSet::from(["a:b:ratio".to_string(), "up".to_string()])
    );
}

/// Every metric name the running exporters expose (Debian's node_exporter, and
/// postgres_exporter with our extra query file against a real streaming standby).
async fn exporter_metrics() -> BTreeSet<String> {
    use pgsurge_tests::pg::{Pg, Scratch};
    let scratch = Scratch::new("obs-exporter");
    let primary = Pg::primary(&scratch.0, "primary");
    let replica = Pg::replica_of(&primary, &scratch.0, "replica");
    let (node_port, pg_port) = (free_port(), free_port());
    let node = Proc::spawn_cmd(
        Command::new("prometheus-node-exporter")
            .arg(format!("--web.listen-address=127.0.0.1:{node_port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    );
    let pg = Proc::spawn_cmd(
        Command::new("prometheus-postgres-exporter")
            .arg(format!("--web.listen-address=127.0.0.1:{pg_port}"))
            .arg(format!(
                "--extend.query-path={}",
                obs_dir().join("postgres-exporter-queries.yaml").display()
            ))
            .env(
                "DATA_SOURCE_NAME",
                format!(
                    "postgresql://postgres@127.0.0.1:{}/postgres?sslmode=disable",
                    replica.port
                ),
            )
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    );
    let mut names = BTreeSet::new();
    for (port, must) in [(node_port, "node_cpu_seconds_total"), (pg_port, "pg_up")] {
        let url = format!("http://127.0.0.1:{port}/metrics");
        pgsurge_tests::wait_http_ok(&url, 30).await;
        let body = reqwest::get(&url).await.unwrap().text().await.unwrap();
        let found: BTreeSet<String> = body
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| l.split(['{', ' ']).next())
            .map(str::to_string)
            .collect();
        assert!(found.contains(must), "{url} exports no {must}");
        names.extend(found);
    }
    drop((node, pg, replica, primary));
    names
}

/// The metrics pgsurge itself exports: every name given to the registry in
/// shared/src (`.inc("name"` counters, `.observe("name"` histograms with their series).
fn pgsurge_metrics() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut stack = vec![workspace_root().join("shared/src")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let src = std::fs::read_to_string(&p).unwrap();
            for (call, histogram) in [(".inc(", false), (".observe(", true)] {
                for part in src.split(call).skip(1) {
                    let Some(name) = part.trim_start().strip_prefix('"') else {
                        continue;
                    };
                    let name = &name[..name.find('"').unwrap()];
                    if histogram {
                        for s in ["_bucket", "_sum", "_count"] {
                            names.insert(format!("{name}{s}"));
                        }
                    } else {
                        names.insert(name.to_string());
                    }
                }
            }
        }
    }
    assert!(
        names.contains("pgsurge_decisions_total"),
        "the scan finds pgsurge's metrics: {names:?}"
    );
    names
}

fn dashboard_exprs(dashboard: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            out.push(t["expr"].as_str().unwrap().to_string());
        }
    }
    for v in dashboard["templating"]["list"].as_array().unwrap() {
        // label_values(<selector>, <label>): the selector
        if let Some(q) = v["query"]["query"].as_str() {
            let q = q.trim_start_matches("label_values(");
            out.push(q.rsplit_once(',').map_or(q, |(sel, _)| sel).to_string());
        }
    }
    out
}

fn rule_exprs() -> (Vec<String>, BTreeSet<String>) {
    let rules: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(obs_dir().join("rules.yml")).unwrap())
            .unwrap();
    let (mut exprs, mut recorded) = (Vec::new(), BTreeSet::new());
    for g in rules["groups"].as_sequence().unwrap() {
        for r in g["rules"].as_sequence().unwrap() {
            exprs.push(r["expr"].as_str().unwrap().to_string());
            if let Some(name) = r["record"].as_str() {
                recorded.insert(name.to_string());
            }
        }
    }
    (exprs, recorded)
}

/// Names in `exprs` that nothing exports or records.
fn unknown(exprs: &[String], known: &BTreeSet<String>) -> BTreeSet<String> {
    exprs
        .iter()
        .flat_map(|e| metric_names(e))
        .filter(|n| !known.contains(n))
        .collect()
}

/// Every metric the dashboard and the alert rules query is exported by pgsurge, by the
/// running exporters, recorded by rules.yml, or Prometheus' own `up`; a misspelt name in
/// a copy of the dashboard is reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_rules_query_only_metrics_that_exist() {
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(obs_dir().join("grafana-dashboard.json")).unwrap(),
    )
    .unwrap();
    let (rules, recorded) = rule_exprs();
    let mut known = exporter_metrics().await;
    known.extend(pgsurge_metrics());
    known.extend(recorded);
    known.insert("up".into());

    let exprs = dashboard_exprs(&dashboard);
    let used: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    for must in [
        "pgsurge_decisions_total",
        "pgsurge_phase_duration_seconds_bucket",
        "pg_replication_lag",
        "up",
    ] {
        assert!(used.contains(must), "the dashboard shows {must}: {used:?}");
    }
    assert_eq!(unknown(&exprs, &known), BTreeSet::new(), "dashboard");
    assert_eq!(unknown(&rules, &known), BTreeSet::new(), "rules.yml");

    // the check can fail: a misspelt metric in a copy of the dashboard
    let broken: Vec<String> = exprs
        .iter()
        .map(|e| e.replace("pgsurge_decisions_total", "pgsurge_decision_total"))
        .collect();
    assert_eq!(
        unknown(&broken, &known),
        BTreeSet::from(["pgsurge_decision_total".to_string()])
    );
}
