//! The HTTP host's limits, against the real `scale-up` binary over raw sockets: what a
//! slow, idle or greedy client can hold, measured in the server's own file descriptors.

use pgsurge_tests::{free_port, spawn, wait_http_ok, workspace_root, Proc};
use serde_json::Value;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN: &str = "limits-token-0123456789";

struct Server {
    proc: Proc,
    port: u16,
    base: String,
    metrics: String,
}

/// `scale-up serve` with short limits (seconds) and a metrics listener.
async fn server(header: u64, body: u64, idle: u64, max_connections: usize) -> Server {
    server_with(header, body, idle, max_connections, &[]).await
}

async fn server_with(
    header: u64,
    body: u64,
    idle: u64,
    max_connections: usize,
    extra: &[(&str, String)],
) -> Server {
    let port = free_port();
    let metrics_port = free_port();
    let mut env = vec![
        ("PGSURGE_AUTH__TOKEN", TOKEN.to_string()),
        ("PGSURGE_RUNTIME__HEADER_TIMEOUT_SECS", header.to_string()),
        ("PGSURGE_RUNTIME__BODY_TIMEOUT_SECS", body.to_string()),
        ("PGSURGE_RUNTIME__IDLE_TIMEOUT_SECS", idle.to_string()),
        (
            "PGSURGE_RUNTIME__MAX_CONNECTIONS",
            max_connections.to_string(),
        ),
        (
            "PGSURGE_RUNTIME__METRICS_LISTEN",
            format!("127.0.0.1:{metrics_port}"),
        ),
    ];
    env.extend(extra.iter().cloned());
    let proc = spawn("scale-up", &["serve", "--port", &port.to_string()], &env);
    let base = format!("http://127.0.0.1:{port}");
    wait_http_ok(&format!("{base}/healthz"), 20).await;
    Server {
        proc,
        port,
        base,
        metrics: format!("http://127.0.0.1:{metrics_port}"),
    }
}

impl Server {
    /// Open file descriptors of the server process.
    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.proc.id()))
            .unwrap()
            .count()
    }

    async fn connect(&self) -> TcpStream {
        TcpStream::connect(("127.0.0.1", self.port)).await.unwrap()
    }

    /// Wait until the server's fds are back to at most `limit` (connections it closed).
    async fn fds_settle(&self, limit: usize, within: Duration) -> usize {
        let until = Instant::now() + within;
        loop {
            let n = self.fds();
            if n <= limit || Instant::now() > until {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Read until the server closes the connection (or `limit` passes): what it sent, and
/// how long after `since` it closed (`None`: still open at the limit).
async fn read_until_closed(
    s: &mut TcpStream,
    since: Instant,
    limit: Duration,
) -> (String, Option<Duration>) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.saturating_sub(since.elapsed());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => return (String::from_utf8_lossy(&got).into(), None),
            Ok(Ok(0)) | Ok(Err(_)) => {
                return (String::from_utf8_lossy(&got).into(), Some(since.elapsed()))
            }
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// The JSON body of a raw HTTP/1.1 response, checked for the one error shape.
fn error_body(raw: &str) -> Value {
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {raw}"));
    assert_error_shape(&v);
    v
}

fn assert_error_shape(v: &Value) {
    let keys: Vec<&String> = v.as_object().expect("an object").keys().collect();
    assert_eq!(keys, ["errorMessage", "errorType"], "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_closed_within_the_header_timeout_and_their_fds_released() {
    let srv = server(2, 30, 30, 512).await;
    let base_fds = srv.fds();
    // 100 clients that send a header line every 400 ms and never finish the head.
    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..100 {
        let mut s = srv.connect().await;
        clients.push(tokio::spawn(async move {
            s.write_all(b"POST /webhook HTTP/1.1\r\nhost: x\r\n")
                .await
                .unwrap();
            let (mut r, mut w) = s.into_split();
            let trickle = tokio::spawn(async move {
                for i in 0.. {
                    tokio::time::sleep(Duration::from_millis(400)).await;
                    if w.write_all(format!("x-slow-{i}: y\r\n").as_bytes())
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
            let mut buf = [0u8; 1024];
            let closed = loop {
                match tokio::time::timeout(Duration::from_secs(10), r.read(&mut buf)).await {
                    Err(_) => break None,
                    Ok(Ok(0)) | Ok(Err(_)) => break Some(started.elapsed()),
                    Ok(Ok(_)) => continue,
                }
            };
            trickle.abort();
            closed
        }));
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let held = srv.fds();
    assert!(
        held >= base_fds + 95,
        "the 100 slow clients are connected: {held} fds vs {base_fds} before"
    );
    let mut slowest = Duration::ZERO;
    for c in clients {
        let closed = c.await.unwrap().expect("a slow header is closed, not kept");
        slowest = slowest.max(closed);
        assert!(
            closed >= Duration::from_millis(1500) && closed < Duration::from_millis(6000),
            "closed after {closed:?}; the header timeout is 2 s"
        );
    }
    let after = srv.fds_settle(base_fds + 2, Duration::from_secs(2)).await;
    assert!(
        after <= base_fds + 2,
        "fds: {base_fds} before, {held} held, {after} after"
    );
    eprintln!(
        "fds: {base_fds} idle, {held} with 100 slow-header clients, {after} after they were \
         closed (the last {slowest:?} after the first connected)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_sent_body_gets_a_json_408_and_is_closed_within_the_body_timeout() {
    let srv = server(10, 2, 30, 64).await;
    let mut s = srv.connect().await;
    s.write_all(
        format!(
            "POST /webhook HTTP/1.1\r\nhost: x\r\nx-pgsurge-token: {TOKEN}\r\n\
             content-type: application/json\r\ncontent-length: 1000\r\n\r\n{{\"alerts\": ["
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let started = Instant::now();
    let (raw, closed) = read_until_closed(&mut s, started, Duration::from_secs(8)).await;
    let closed = closed.expect("a half-sent body is closed, not kept");
    assert!(
        closed >= Duration::from_millis(1500) && closed < Duration::from_millis(6000),
        "closed after {closed:?}; the body timeout is 2 s"
    );
    assert!(raw.starts_with("HTTP/1.1 408"), "{raw}");
    let v = error_body(&raw);
    assert_eq!(v["errorType"], "RequestTimeout", "{v}");
    assert!(
        v["errorMessage"]
            .as_str()
            .unwrap()
            .contains("runtime.body_timeout_secs"),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let srv = server(30, 30, 2, 64).await;
    let mut s = srv.connect().await;
    s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("ok\n"), "{answer}");
    // Kept alive for the next request...
    let answered = Instant::now();
    tokio::time::sleep(Duration::from_millis(800)).await;
    s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // ...and closed once it sits idle for the idle timeout.
    let answered_again = Instant::now();
    let (_, closed) = read_until_closed(&mut s, answered_again, Duration::from_secs(8)).await;
    let closed = closed.expect("an idle keep-alive connection is closed");
    assert!(
        closed >= Duration::from_millis(1500) && closed < Duration::from_millis(6000),
        "closed {closed:?} after the last answer; the idle timeout is 2 s (first answer {:?} ago)",
        answered.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_are_refused_at_once_and_served_again_after() {
    const CAP: usize = 50;
    let srv = server(30, 30, 30, CAP).await;
    let base_fds = srv.fds();
    // Hold the cap with connections that say nothing.
    let mut held = Vec::new();
    for _ in 0..CAP {
        held.push(srv.connect().await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let at_cap = srv.fds();
    // 300 more: each answered 503 and closed at once, none kept.
    let mut refused = 0;
    for _ in 0..300 {
        let mut s = srv.connect().await;
        let t = Instant::now();
        let (raw, closed) = read_until_closed(&mut s, t, Duration::from_secs(2)).await;
        let closed = closed.expect("a connection over the cap is closed, not queued");
        assert!(closed < Duration::from_secs(1), "{closed:?}");
        if raw.starts_with("HTTP/1.1 503") {
            let v = error_body(&raw);
            assert_eq!(v["errorType"], "Unavailable");
            assert!(
                v["errorMessage"]
                    .as_str()
                    .unwrap()
                    .contains("runtime.max_connections = 50"),
                "{v}"
            );
            refused += 1;
        }
    }
    assert_eq!(refused, 300, "every connection over the cap got the 503");
    let during = srv.fds();
    assert!(
        during <= at_cap + 2,
        "refused connections hold no fd: {base_fds} before, {at_cap} at the cap, {during} after 300 refusals"
    );
    assert!(at_cap <= base_fds + CAP + 2, "{base_fds} -> {at_cap}");
    // A normal request cannot get in while the cap is held...
    let blocked = reqwest::Client::new()
        .get(format!("{}/healthz", srv.base))
        .send()
        .await;
    assert!(
        blocked.map(|r| r.status().as_u16()).unwrap_or(503) == 503,
        "served over the cap"
    );
    // ...and is served as soon as they go.
    drop(held);
    let after = srv.fds_settle(base_fds + 2, Duration::from_secs(3)).await;
    assert!(
        after <= base_fds + 2,
        "{base_fds} before, {after} after the held ones left"
    );
    let r = reqwest::get(format!("{}/healthz", srv.base)).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    eprintln!(
        "fds: {base_fds} idle, {at_cap} holding {CAP} (the cap), {during} after 300 refused, {after} after release"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_only_on_their_own_listener_and_errors_are_json() {
    let srv = server(10, 10, 10, 64).await;
    let http = reqwest::Client::new();
    let body = std::fs::read(workspace_root().join("tests/events/generic-alarm.json")).unwrap();
    let r = http
        .post(format!("{}/webhook", srv.base))
        .header("x-pgsurge-token", TOKEN)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    // The webhook listener: no metrics, with or without the token, GET or POST.
    for (method, token) in [("GET", None), ("GET", Some(TOKEN)), ("POST", Some(TOKEN))] {
        let mut req = http.request(method.parse().unwrap(), format!("{}/metrics", srv.base));
        if let Some(t) = token {
            req = req.header("x-pgsurge-token", t);
        }
        let r = req.send().await.unwrap();
        assert_eq!(
            r.status().as_u16(),
            404,
            "{method} /metrics on the webhook port"
        );
        let v: Value = r.json().await.unwrap();
        assert_error_shape(&v);
        assert!(
            v["errorMessage"]
                .as_str()
                .unwrap()
                .contains("runtime.metrics_listen"),
            "{v}"
        );
    }
    let r = http
        .post(format!("{}/healthz", srv.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert_error_shape(&r.json().await.unwrap());
    // Other methods on the webhook listener: 405 in the same shape, with Allow.
    let r = http
        .get(format!("{}/webhook", srv.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    assert_error_shape(&r.json().await.unwrap());

    // The metrics listener: GET /metrics only.
    let text = http
        .get(format!("{}/metrics", srv.metrics))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(
            r#"pgsurge_invocations_total{function="scale-up",host="http",outcome="ok"} 1"#
        ),
        "{text}"
    );
    let r = http
        .post(format!("{}/metrics", srv.metrics))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert_eq!(r.headers()["allow"], "GET");
    let v: Value = r.json().await.unwrap();
    assert_error_shape(&v);
    assert_eq!(v["errorType"], "MethodNotAllowed");
    let r = http
        .get(format!("{}/nothing", srv.metrics))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let v: Value = r.json().await.unwrap();
    assert_error_shape(&v);
    assert_eq!(v["errorType"], "NotFound");
    // The webhook is not on the metrics listener.
    let r = http
        .post(format!("{}/webhook", srv.metrics))
        .header("x-pgsurge-token", TOKEN)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_is_refused_before_the_body_is_read_or_parsed() {
    let srv = server(10, 10, 10, 64).await;
    // Not JSON at all: the token is judged first (401), not the body (400).
    let r = reqwest::Client::new()
        .post(format!("{}/webhook", srv.base))
        .header("x-pgsurge-token", "wrong-token-wrong-token")
        .body("{ not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let v: Value = r.json().await.unwrap();
    assert_error_shape(&v);
    assert_eq!(v["errorType"], "Unauthorized");

    // A wrong token announcing 100 kB it never sends: answered at once, not after the
    // body timeout, and the connection is closed.
    let mut s = srv.connect().await;
    s.write_all(
        b"POST /webhook HTTP/1.1\r\nhost: x\r\nx-pgsurge-token: wrong-token-wrong-token\r\n\
          content-length: 100000\r\n\r\n{",
    )
    .await
    .unwrap();
    let t = Instant::now();
    let (raw, closed) = read_until_closed(&mut s, t, Duration::from_secs(5)).await;
    assert!(raw.starts_with("HTTP/1.1 401"), "{raw}");
    assert_eq!(error_body(&raw)["errorType"], "Unauthorized");
    let closed = closed.expect("closed after the refusal");
    assert!(closed < Duration::from_secs(2), "{closed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_hmac_signature_is_refused_before_the_body_is_parsed() {
    let secret = "limits-hmac-secret-0123456789abcdef";
    let srv = server_with(
        10,
        10,
        10,
        64,
        &[("PGSURGE_AUTH__HMAC_SECRET", secret.to_string())],
    )
    .await;
    let ts = time::OffsetDateTime::now_utc().unix_timestamp();
    let now = ts.to_string();
    let body = "{ not json";
    let sign = |key: &str| pgsurge::events::hmac_signature(key.as_bytes(), ts, body);
    let post = |signature: String| {
        reqwest::Client::new()
            .post(format!("{}/webhook", srv.base))
            .header("x-pgsurge-timestamp", &now)
            .header("x-pgsurge-signature", signature)
            .body(body)
            .send()
    };
    let r = post(sign("another-secret-0123456789abcdef-xx"))
        .await
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        401,
        "judged by the signature, not the body"
    );
    let v: Value = r.json().await.unwrap();
    assert_error_shape(&v);
    // The right signature over the same bytes reaches the parser, which refuses them.
    let r = post(sign(secret)).await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(v["errorMessage"].as_str().unwrap().contains("JSON"), "{v}");
}
