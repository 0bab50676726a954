//! The runtime shim, end to end: the real function binaries under each host.
//!
//! CLI, HTTP, FunctionGraph custom runtime and Lambda runtime API must give the same
//! answer to the same event, report malformed events clearly, and keep serving.

use pgsurge_tests::runtime_api::{Flavor, RuntimeApi};
use pgsurge_tests::{free_port, invoke_cli, spawn, wait_http_ok, workspace_root, Proc};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

const FUNCTIONS: [&str; 5] = [
    "scale-up",
    "scale-down",
    "instance-ready",
    "instance-deleted",
    "reconcile",
];
const TOKEN: &str = "test-token-0123456789abcdef";
const WAIT: Duration = Duration::from_secs(20);

fn events() -> Vec<PathBuf> {
    let dir = workspace_root().join("tests/events");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.to_string_lossy();
            p.extension().is_some_and(|x| x == "json")
                && !name.contains("malformed")
                && !name.contains("unsupported")
        })
        .collect();
    v.sort();
    assert!(
        v.len() >= 8,
        "expected the example events in {}",
        dir.display()
    );
    v
}

fn env_token() -> Vec<(&'static str, String)> {
    vec![("PGSURGE_AUTH__TOKEN", TOKEN.to_string())]
}

async fn http_server(function: &str, extra: &[(&str, String)]) -> (Proc, String) {
    let port = free_port();
    let mut env = env_token();
    env.extend(extra.iter().cloned());
    let p = spawn(function, &["serve", "--port", &port.to_string()], &env);
    let base = format!("http://127.0.0.1:{port}");
    wait_http_ok(&format!("{base}/healthz"), 20).await;
    (p, base)
}

async fn runtime(function: &str, flavor: Flavor, extra: &[(&str, String)]) -> (Proc, RuntimeApi) {
    let api = RuntimeApi::start(flavor).await;
    let var = match flavor {
        Flavor::FunctionGraph => "RUNTIME_API_ADDR",
        Flavor::Lambda => "AWS_LAMBDA_RUNTIME_API",
    };
    let mut env = env_token();
    env.push((var, api.addr.clone()));
    env.extend(extra.iter().cloned());
    (spawn(function, &[], &env), api)
}

async fn post(base: &str, body: Vec<u8>, token: Option<&str>) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{base}/webhook"))
        .body(body);
    if let Some(t) = token {
        req = req.header("x-pgsurge-token", t);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_function_answers_every_example_identically_in_all_four_hosts() {
    let events = events();
    for function in FUNCTIONS {
        let (_http, base) = http_server(function, &[]).await;
        let (_fg, fg) = runtime(function, Flavor::FunctionGraph, &[]).await;
        let (_lambda, lambda) = runtime(function, Flavor::Lambda, &[]).await;
        let mut accepted = 0;
        for event in &events {
            let body = std::fs::read(event).unwrap();
            let (code, cli, stderr) = invoke_cli(function, event, &[]);
            assert_eq!(code, 0, "{function} {}: {cli} {stderr}", event.display());
            let (status, via_http) = post(&base, body.clone(), Some(TOKEN)).await;
            assert_eq!(status, 200, "{function} {}: {via_http}", event.display());
            let fg_result = fg.result(&fg.push(&body, &[]), WAIT).await;
            let lambda_result = lambda.result(&lambda.push(&body, &[]), WAIT).await;
            assert!(fg_result.ok && lambda_result.ok);
            assert_eq!(cli, via_http, "{function} {}: CLI vs HTTP", event.display());
            assert_eq!(
                cli,
                fg_result.body,
                "{function} {}: CLI vs FunctionGraph",
                event.display()
            );
            assert_eq!(
                cli,
                lambda_result.body,
                "{function} {}: CLI vs Lambda",
                event.display()
            );
            assert_eq!(cli["function"], function);
            if cli["status"] == "accepted" {
                accepted += 1;
                // No fake success: accepted work says nothing was changed yet.
                assert_eq!(cli["actions"], json!([]));
            }
        }
        assert!(accepted >= 1, "{function} accepted none of the examples");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_events_normalise_as_documented() {
    let dir = workspace_root().join("tests/events");
    let run = |f: &str, e: &str| invoke_cli(f, &dir.join(e), &[]).1;
    let am = run("scale-up", "alertmanager-firing.json");
    assert_eq!(am["status"], "accepted");
    assert_eq!(am["event"]["alarms"][0]["source"], "alertmanager");
    assert_eq!(am["event"]["alarms"][0]["params"]["multiplier"], 2);
    assert_eq!(am["event"]["alarms"][0]["value"], 82.4);
    assert_eq!(
        run("scale-up", "alertmanager-resolved.json")["status"],
        "ignored"
    );
    let aodh = run("scale-up", "aodh-alarm.json");
    assert_eq!(aodh["event"]["alarms"][0]["params"]["replicas"], 2);
    let ce = run("scale-up", "cloudeye-smn-alarm.json");
    assert_eq!(ce["event"]["alarms"][0]["source"], "cloud-eye");
    assert_eq!(ce["event"]["alarms"][0]["metric"], "cpu_util");
    assert_eq!(ce["event"]["alarms"][0]["value"], 83.6);
    assert_eq!(ce["event"]["alarms"][0]["threshold"], 75.0);
    // AS lifecycle hooks: refused, saying why (pgsurge cannot answer them).
    let (code, lc, _) = invoke_cli(
        "instance-ready",
        &dir.join("unsupported-as-lifecycle-launching.json"),
        &[],
    );
    assert_eq!(code, 1, "{lc}");
    assert_eq!(lc["errorType"], "BadRequest", "{lc}");
    assert!(
        lc["errorMessage"]
            .as_str()
            .unwrap()
            .contains("Auto Scaling lifecycle hooks are not supported"),
        "{lc}"
    );
    assert_eq!(
        run("instance-deleted", "generic-instance-deleted.json")["status"],
        "accepted"
    );
    assert_eq!(
        run("instance-deleted", "generic-instance-ready.json")["status"],
        "ignored"
    );
    assert_eq!(
        run("instance-ready", "generic-tick.json")["status"],
        "accepted"
    );
    assert_eq!(
        run("scale-up", "smn-subscription-confirmation.json")["event"]["kind"],
        "subscription-confirmation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_events_get_clear_errors_everywhere_and_the_runtime_keeps_serving() {
    let malformed = workspace_root().join("tests/events/malformed-truncated.json");
    let good = std::fs::read(workspace_root().join("tests/events/generic-alarm.json")).unwrap();
    let bad = std::fs::read(&malformed).unwrap();
    let not_ours = br#"{"hello": "world"}"#.to_vec();

    let (code, out, _) = invoke_cli("scale-up", &malformed, &[]);
    assert_eq!(code, 1);
    assert_eq!(out["errorType"], "BadRequest");
    assert!(
        out["errorMessage"]
            .as_str()
            .unwrap()
            .contains("not valid JSON"),
        "{out}"
    );

    let (_http, base) = http_server("scale-up", &[]).await;
    let (status, body) = post(&base, bad.clone(), Some(TOKEN)).await;
    assert_eq!(
        (status, body["errorType"].as_str()),
        (400, Some("BadRequest"))
    );
    let (status, body) = post(&base, not_ours.clone(), Some(TOKEN)).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["errorMessage"]
            .as_str()
            .unwrap()
            .contains("unrecognised event"),
        "{body}"
    );
    let (status, _) = post(&base, good.clone(), Some(TOKEN)).await;
    assert_eq!(status, 200, "the HTTP host survives bad requests");

    for flavor in [Flavor::FunctionGraph, Flavor::Lambda] {
        let (_p, api) = runtime("scale-up", flavor, &[]).await;
        let r = api.result(&api.push(&bad, &[]), WAIT).await;
        assert!(!r.ok);
        assert_eq!(r.body["errorType"], "BadRequest", "{flavor:?}");
        if flavor == Flavor::Lambda {
            assert_eq!(
                r.headers
                    .get("lambda-runtime-function-error-type")
                    .map(String::as_str),
                Some("BadRequest")
            );
        }
        let r = api.result(&api.push(&not_ours, &[]), WAIT).await;
        assert!(!r.ok);
        let r = api.result(&api.push(&good, &[]), WAIT).await;
        assert!(
            r.ok,
            "{flavor:?}: runtime must keep serving after errors: {:?}",
            r.body
        );
        assert_eq!(r.body["status"], "accepted");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_host_status_codes_and_no_secret_in_logs() {
    let good = std::fs::read(workspace_root().join("tests/events/generic-alarm.json")).unwrap();
    let (http, base) = http_server(
        "scale-up",
        &[("PGSURGE_RUNTIME__MAX_BODY_BYTES", "4096".into())],
    )
    .await;
    assert_eq!(post(&base, good.clone(), None).await.0, 401);
    let (status, body) = post(&base, good.clone(), Some("wrong-token-wrong-token")).await;
    assert_eq!(
        (status, body["errorType"].as_str()),
        (401, Some("Unauthorized"))
    );
    let big = format!("{{\"pad\": \"{}\"}}", "x".repeat(5000)).into_bytes();
    let (status, body) = post(&base, big, Some(TOKEN)).await;
    assert_eq!(
        (status, body["errorType"].as_str()),
        (413, Some("PayloadTooLarge"))
    );
    assert_eq!(post(&base, good.clone(), Some(TOKEN)).await.0, 200);
    let r = reqwest::Client::new()
        .post(format!("{base}/webhook"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(good.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "Bearer token is accepted too");
    let r = reqwest::get(format!("{base}/webhook")).await.unwrap();
    assert_eq!(r.status().as_u16(), 405, "GET is refused");

    // Stop the server and read everything it logged: one JSON line per invocation, no token.
    let out = http.stop();
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(!logs.contains(TOKEN), "token leaked into logs");
    let invocations: Vec<Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == "invocation finished" || v["message"] == "invocation failed")
        .collect();
    assert_eq!(invocations.len(), 6, "one log line per invocation:\n{logs}");
    for line in &invocations {
        for key in ["request_id", "function", "outcome", "duration_ms"] {
            assert!(line.get(key).is_some(), "log line lacks {key}: {line}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handler_sees_the_hosts_context_and_panics_become_errors() {
    // FunctionGraph: deadline from RUNTIME_TIMEOUT, credentials from the agency headers.
    let fg_env = [
        ("RUNTIME_TIMEOUT", "7".to_string()),
        ("RUNTIME_MEMORY", "256".to_string()),
        ("RUNTIME_FUNC_NAME", "pgsurge-probe".to_string()),
        ("RUNTIME_FUNC_VERSION", "v3".to_string()),
    ];
    let (fg_proc, fg) = runtime("shim-probe", Flavor::FunctionGraph, &fg_env).await;
    let id = fg.push(
        br#"{"hello": 1}"#,
        &[
            ("X-CFF-Access-Key", "AKTESTACCESS"),
            ("X-CFF-Secret-Key", "secret-key-value-never-logged"),
            ("X-CFF-Security-Token", "security-token-never-logged"),
            ("X-CFF-Invoke-Type", "sync"),
        ],
    );
    let r = fg.result(&id, WAIT).await;
    assert!(r.ok, "{:?}", r.body);
    let c = &r.body["context"];
    assert_eq!(c["request_id"], id.as_str());
    assert_eq!(c["host"], "function-graph");
    assert_eq!(c["function_name"], "pgsurge-probe");
    assert_eq!(c["function_version"], "v3");
    assert_eq!(c["memory_mb"], 256);
    assert_eq!(c["invoke_type"], "sync");
    assert_eq!(c["access_key"], "AKTESTACCESS");
    assert_eq!(c["has_security_token"], true);
    let remaining = c["remaining_ms"].as_u64().unwrap();
    assert!(
        (5_000..=7_000).contains(&remaining),
        "deadline from RUNTIME_TIMEOUT: {remaining}"
    );

    let r = fg.result(&fg.push(br#"{"panic": true}"#, &[]), WAIT).await;
    assert!(!r.ok);
    assert_eq!(r.body["errorType"], "Internal");
    assert!(r.body["errorMessage"]
        .as_str()
        .unwrap()
        .contains("panicked"));
    let r = fg
        .result(
            &fg.push(br#"{"fail": "replica pool exhausted"}"#, &[]),
            WAIT,
        )
        .await;
    assert_eq!(
        (r.ok, r.body["errorType"].as_str()),
        (false, Some("Unavailable"))
    );
    let r = fg.result(&fg.push(br#"{"again": true}"#, &[]), WAIT).await;
    assert!(r.ok, "keeps serving after a panic");

    let logs = String::from_utf8_lossy(&fg_proc.stop().stderr).into_owned();
    assert!(
        !logs.contains("never-logged"),
        "credentials leaked into logs:\n{logs}"
    );

    // HTTP, started the way FunctionGraph HTTP functions start it (no subcommand, PORT):
    // a panic is a 500, a handler's Unavailable a 503, the deadline a 504; it keeps serving.
    let port = free_port();
    let _http = spawn(
        "shim-probe",
        &[],
        &[
            ("PORT", port.to_string()),
            ("PGSURGE_RUNTIME__TIMEOUT_SECS", "1".into()),
            // The HTTP host judges the shared secret before the handler runs; this probe
            // is about the host's error mapping, so it runs open (a lab setting).
            ("PGSURGE_AUTH__ALLOW_UNAUTHENTICATED", "true".into()),
        ],
    );
    let base = format!("http://127.0.0.1:{port}");
    wait_http_ok(&format!("{base}/healthz"), 20).await;
    for (body, status, kind) in [
        (json!({"panic": true}), 500, "Internal"),
        (
            json!({"fail": "replica pool exhausted"}),
            503,
            "Unavailable",
        ),
        (json!({"sleep_ms": 3000}), 504, "Timeout"),
    ] {
        let (code, answer) = post(&base, body.to_string().into_bytes(), None).await;
        assert_eq!(
            (code, answer["errorType"].as_str()),
            (status, Some(kind)),
            "{body}: {answer}"
        );
    }
    let (code, answer) = post(&base, br#"{"after": 1}"#.to_vec(), None).await;
    assert_eq!(code, 200, "keeps serving: {answer}");
    assert_eq!(answer["payload"], json!({"after": 1}));
    assert_eq!(answer["context"]["host"], "http");

    // Lambda: deadline and ARN from the next-invocation headers; past the deadline → Timeout.
    let (_l, lambda) = runtime("shim-probe", Flavor::Lambda, &[]).await;
    let r = lambda.result(&lambda.push(br#"{"x": 1}"#, &[]), WAIT).await;
    let c = &r.body["context"];
    assert_eq!(c["host"], "lambda");
    assert!(c["invoked_function_arn"]
        .as_str()
        .unwrap()
        .starts_with("arn:aws:lambda:"));
    assert!(c["remaining_ms"].as_u64().unwrap() > 20_000);
    let soon = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        + 300)
        .to_string();
    let r = lambda
        .result(
            &lambda.push(
                br#"{"sleep_ms": 5000}"#,
                &[("Lambda-Runtime-Deadline-Ms", &soon)],
            ),
            WAIT,
        )
        .await;
    assert_eq!(
        (r.ok, r.body["errorType"].as_str()),
        (false, Some("Timeout")),
        "{:?}",
        r.body
    );

    // CLI: deadline from --timeout-secs.
    let file = std::env::temp_dir().join(format!("probe-{}.json", std::process::id()));
    std::fs::write(&file, br#"{"cli": true}"#).unwrap();
    let out = pgsurge_tests::command(
        "shim-probe",
        &[
            "invoke",
            "--timeout-secs",
            "3",
            "--event",
            file.to_str().unwrap(),
        ],
        &[],
    )
    .output()
    .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["context"]["host"], "cli");
    assert!(v["context"]["remaining_ms"].as_u64().unwrap() <= 3_000);
    std::fs::remove_file(file).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_configuration_is_an_init_error_before_any_invocation() {
    for flavor in [Flavor::FunctionGraph, Flavor::Lambda] {
        let (p, api) = runtime(
            "scale-up",
            flavor,
            &[("PGSURGE_RUNTIME__TIMEOUT_SECS", "0".into())],
        )
        .await;
        let out = tokio::task::spawn_blocking(move || p.wait()).await.unwrap();
        assert_eq!(out.status.code(), Some(2));
        let errors = api.init_errors();
        assert_eq!(errors.len(), 1, "{flavor:?}");
        assert!(
            errors[0]["errorMessage"]
                .as_str()
                .unwrap()
                .contains("runtime.timeout_secs"),
            "{errors:?}"
        );
    }
    let out = pgsurge_tests::command(
        "scale-up",
        &["invoke", "--event", "-"],
        &[("PGSURGE_CLUSTER__NAME", "Bad Name".into())],
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cluster.name"), "{stderr}");
    assert_eq!(out.status.code(), Some(2));
}
