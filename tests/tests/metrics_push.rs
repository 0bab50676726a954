//! Metrics leave the function: pushed to a real VictoriaMetrics, served on /metrics.

use pgsurge_tests::{free_port, invoke_cli, spawn, wait_http_ok, workspace_root};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

const VM: &str = "/usr/bin/victoria-metrics";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_invocation_pushes_its_metrics_to_victoriametrics() {
    assert!(
        Path::new(VM).exists(),
        "{VM} not found: install it with `apt-get install victoria-metrics` (`just deps` does, as root)"
    );
    let data = tempdir("vm");
    let port = free_port();
    let _vm = pgsurge_tests::Proc::spawn_cmd(
        std::process::Command::new(VM)
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .arg(format!("-storageDataPath={}", data.display()))
            .arg("-retentionPeriod=1d")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    );
    let base = format!("http://127.0.0.1:{port}");
    wait_http_ok(&format!("{base}/health"), 30).await;

    let event = workspace_root().join("tests/events/alertmanager-firing.json");
    let env = [
        ("PGSURGE_METRICS__PUSH_URL", base.clone()),
        ("PGSURGE_METRICS__JOB", "pgsurge-test".into()),
    ];
    let (code, out, stderr) = invoke_cli("scale-up", &event, &env);
    assert_eq!(code, 0, "{out} {stderr}");
    assert!(!stderr.contains("metrics push failed"), "{stderr}");

    // VictoriaMetrics makes pushed samples searchable after a short flush.
    let url = format!("{base}/api/v1/export?match[]=pgsurge_invocations_total");
    let mut series = Vec::new();
    for _ in 0..100 {
        let body = reqwest::get(&url).await.unwrap().text().await.unwrap();
        series = body
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .collect();
        if !series.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(series.len(), 1, "expected one pushed series: {series:?}");
    let metric = &series[0]["metric"];
    assert_eq!(metric["function"], "scale-up");
    assert_eq!(metric["outcome"], "ok");
    assert_eq!(metric["host"], "cli");
    assert_eq!(metric["job"], "pgsurge-test");
    assert_eq!(series[0]["values"][0], 1.0);
    std::fs::remove_dir_all(&data).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_host_serves_metrics_and_an_unreachable_push_target_is_not_fatal() {
    let port = free_port();
    let metrics = format!("127.0.0.1:{}", free_port());
    let dead = format!("http://127.0.0.1:{}", free_port());
    let env = [
        ("PGSURGE_RUNTIME__METRICS_LISTEN", metrics.clone()),
        (
            "PGSURGE_AUTH__TOKEN",
            "metrics-token-0123456789".to_string(),
        ),
        ("PGSURGE_METRICS__PUSH_URL", dead),
    ];
    let _p = spawn("scale-up", &["serve", "--port", &port.to_string()], &env);
    let base = format!("http://127.0.0.1:{port}");
    wait_http_ok(&format!("{base}/healthz"), 20).await;
    let body = std::fs::read(workspace_root().join("tests/events/generic-alarm.json")).unwrap();
    let r = reqwest::Client::new()
        .post(&base)
        .header("x-pgsurge-token", "metrics-token-0123456789")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        200,
        "a failing push does not fail the invocation"
    );
    let text = reqwest::get(format!("http://{metrics}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("# TYPE pgsurge_invocations_total counter"),
        "{text}"
    );
    assert!(
        text.contains(
            r#"pgsurge_invocations_total{function="scale-up",host="http",outcome="ok"} 1"#
        ),
        "{text}"
    );
}

fn tempdir(label: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("pgsurge-{label}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
