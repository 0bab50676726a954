//! Webhook authentication and limits through the receiver: HMAC-SHA256 with timestamp
//! and replay window, tokens, oversize and malformed bodies, per-alarm parameter limits.
//! Every rejection is a precise error.

use pgsurge::events::AuthConfig;
use pgsurge::events::{
    hmac_signature, Event, EventError, ParamLimits, Receiver, SmnFetcher, Webhook,
};
use pgsurge::secret::Secret;
use std::sync::Arc;
use time::OffsetDateTime;

const SECRET: &str = "an-hmac-secret-of-at-least-32-characters";
const NOW: i64 = 1_795_597_200; // 2026-11-25T09:00:00Z

struct NoFetch;
#[async_trait::async_trait]
impl SmnFetcher for NoFetch {
    async fn get(&self, url: &str) -> Result<Vec<u8>, pgsurge::events::FetchError> {
        panic!("nothing should be fetched here ({url})")
    }
}

fn auth() -> AuthConfig {
    AuthConfig {
        hmac_secret: Some(Secret::new(SECRET)),
        token: Some(Secret::new("a-token-of-16-chars-or-more")),
        ..AuthConfig::default()
    }
}

fn receiver(limits: ParamLimits) -> Receiver {
    Receiver::with_fetcher(&auth(), limits, 64 * 1024, Arc::new(NoFetch))
}

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(NOW).unwrap()
}

fn body(name: &str) -> String {
    std::fs::read_to_string(
        pgsurge_tests::workspace_root()
            .join("tests/events")
            .join(name),
    )
    .unwrap()
}

fn http(body: &str, headers: &[(&str, String)]) -> Webhook {
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Webhook::http(&headers, body)
}

fn signed(body: &str, ts: i64) -> Webhook {
    http(
        body,
        &[
            ("x-pgsurge-timestamp", ts.to_string()),
            (
                "x-pgsurge-signature",
                hmac_signature(SECRET.as_bytes(), ts, body),
            ),
        ],
    )
}

async fn refuse(w: &Webhook) -> EventError {
    receiver(ParamLimits::default())
        .receive(w, now())
        .await
        .unwrap_err()
}

#[tokio::test]
async fn a_correct_hmac_signature_is_accepted() {
    let b = body("alertmanager-firing.json");
    let event = receiver(ParamLimits::default())
        .receive(&signed(&b, NOW - 10), now())
        .await
        .unwrap();
    assert!(
        matches!(event, Event::Alarms { ref alarms } if alarms.len() == 1),
        "{event:?}"
    );
}

#[tokio::test]
async fn tampered_bodies_and_signatures_are_rejected() {
    let b = body("alertmanager-firing.json");
    let mut w = signed(&b, NOW);
    w.body = w.body.replace("\"2\"", "\"3\""); // pgsurge_multiplier 2 -> 3
    let err = refuse(&w).await;
    assert!(matches!(err, EventError::BadSignature(_)), "{err}");
    assert!(
        err.to_string()
            .contains("does not match the body and timestamp"),
        "{err}"
    );

    let mut w = signed(&b, NOW);
    let sig = w.headers.get_mut("x-pgsurge-signature").unwrap();
    let flipped = if sig.ends_with('0') { '1' } else { '0' };
    sig.pop();
    sig.push(flipped);
    assert!(matches!(refuse(&w).await, EventError::BadSignature(_)));

    // The timestamp is part of what is signed: moving it breaks the signature.
    let mut w = signed(&b, NOW);
    w.headers
        .insert("x-pgsurge-timestamp".into(), (NOW - 1).to_string());
    assert!(matches!(refuse(&w).await, EventError::BadSignature(_)));

    let mut w = signed(&b, NOW);
    w.headers
        .insert("x-pgsurge-signature".into(), "sha256=xyz".into());
    let err = refuse(&w).await;
    assert!(
        err.to_string().contains("is not `sha256=<64 hex digits>`"),
        "{err}"
    );
}

#[tokio::test]
async fn stale_and_future_timestamps_are_rejected() {
    let b = body("generic-alarm.json");
    let err = refuse(&signed(&b, NOW - 301)).await;
    assert_eq!(
        err,
        EventError::StaleTimestamp {
            age_secs: 301,
            window_secs: 300
        }
    );
    assert!(err.to_string().contains("signed 301s ago"), "{err}");
    let err = refuse(&signed(&b, NOW + 400)).await;
    assert_eq!(
        err,
        EventError::StaleTimestamp {
            age_secs: -400,
            window_secs: 300
        }
    );
    // Inside the window either way: fine.
    receiver(ParamLimits::default())
        .receive(&signed(&b, NOW + 200), now())
        .await
        .unwrap();
}

#[tokio::test]
async fn missing_or_malformed_auth_headers_say_what_is_missing() {
    let b = body("generic-alarm.json");
    let err = refuse(&http(&b, &[])).await;
    assert!(
        err.to_string().contains("missing `x-pgsurge-signature`"),
        "{err}"
    );
    let err = refuse(&http(
        &b,
        &[(
            "x-pgsurge-signature",
            hmac_signature(SECRET.as_bytes(), NOW, &b),
        )],
    ))
    .await;
    assert!(
        err.to_string().contains("missing `x-pgsurge-timestamp`"),
        "{err}"
    );
    let err = refuse(&http(
        &b,
        &[
            ("x-pgsurge-signature", "sha256=00".into()),
            ("x-pgsurge-timestamp", "yesterday".into()),
        ],
    ))
    .await;
    assert!(err.to_string().contains("is not a Unix time"), "{err}");
    // A presented token still works (for senders that cannot sign, like Alertmanager).
    let ok = http(
        &b,
        &[("authorization", "Bearer a-token-of-16-chars-or-more".into())],
    );
    receiver(ParamLimits::default())
        .receive(&ok, now())
        .await
        .unwrap();
    let wrong = http(
        &b,
        &[("x-pgsurge-token", "a-token-of-16-chars-or-lesS".into())],
    );
    assert!(refuse(&wrong)
        .await
        .to_string()
        .contains("the token in the `x-pgsurge-token` header does not match"));
}

/// RFC 7235: the auth scheme is case-insensitive. A wrong token's refusal names where
/// the request put it (and never the token).
#[tokio::test]
async fn bearer_is_case_insensitive_and_a_wrong_token_names_the_header_used() {
    let b = body("generic-alarm.json");
    let r = receiver(ParamLimits::default());
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let ok = http(
            &b,
            &[(
                "Authorization",
                format!("{scheme} a-token-of-16-chars-or-more"),
            )],
        );
        r.receive(&ok, now()).await.unwrap();
    }
    let cases: [(&str, String, &str); 4] = [
        (
            "authorization",
            "bearer wrong-token-of-16-chars".into(),
            "the token in `Authorization: Bearer` does not match",
        ),
        (
            "authorization",
            format!("basic {}", {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD.encode("u:wrong-token-of-16-chars")
            }),
            "the token in the password of `Authorization: Basic` does not match",
        ),
        (
            "X-Pgsurge-Token",
            "wrong-token-of-16-chars".into(),
            "the token in the `x-pgsurge-token` header does not match",
        ),
        (
            "authorization",
            "Token wrong-token-of-16-chars".into(),
            "or a token (the `x-pgsurge-token` header",
        ),
    ];
    for (header, value, says) in cases {
        let err = refuse(&http(&b, &[(header, value.clone())])).await;
        let text = err.to_string();
        assert!(matches!(err, EventError::Unauthenticated(_)), "{text}");
        assert!(text.contains(says), "{header}: {value}: {text}");
        assert!(
            !text.contains("wrong-token") && !text.contains("or-more"),
            "{text}"
        );
    }
    // The query parameter (SMN subscription URLs): accepted, and named when wrong.
    let mut q = http(&b, &[]);
    q.query
        .insert("token".into(), "a-token-of-16-chars-or-more".into());
    r.receive(&q, now()).await.unwrap();
    q.query
        .insert("token".into(), "wrong-token-of-16-chars".into());
    let text = refuse(&q).await.to_string();
    assert!(
        text.contains("the token in the `token` query parameter does not match"),
        "{text}"
    );
    assert!(!text.contains("wrong-token"), "{text}");
}

/// The HTTP host hands the query string to the function in the envelope's
/// `queryStringParameters` (as API gateways do): the token there authenticates.
#[tokio::test]
async fn the_token_in_an_envelopes_query_string_authenticates() {
    let b = body("generic-alarm.json");
    let envelope = serde_json::json!({
        "httpMethod": "POST",
        "path": "/",
        "headers": {},
        "queryStringParameters": {"token": "a-token-of-16-chars-or-more"},
        "body": b,
        "isBase64Encoded": false,
    });
    let w: Webhook = serde_json::from_value(envelope.clone()).unwrap();
    assert!(w.via_http);
    receiver(ParamLimits::default())
        .receive(&w, now())
        .await
        .unwrap();
    let mut without = envelope;
    without["queryStringParameters"] = serde_json::Value::Null;
    let w: Webhook = serde_json::from_value(without).unwrap();
    assert!(refuse(&w).await.to_string().contains("query parameter"));
}

#[tokio::test]
async fn oversize_and_malformed_bodies_are_rejected_before_anything_else() {
    let big = format!(
        "{{\"pgsurge\":1,\"kind\":\"tick\",\"pad\":\"{}\"}}",
        "x".repeat(70 * 1024)
    );
    let err = refuse(&signed(&big, NOW)).await;
    assert!(
        matches!(err, EventError::TooLarge { limit: 65536, .. }),
        "{err}"
    );
    let err = refuse(&signed(&body("malformed-truncated.json"), NOW)).await;
    assert!(matches!(err, EventError::NotJson(_)), "{err}");
    let err = refuse(&signed("[1,2]", NOW)).await;
    assert!(matches!(err, EventError::Unrecognised(_)), "{err}");
    let err = refuse(&signed(
        r#"{"version":"4","alerts":[{"status":"firing"}]}"#,
        NOW,
    ))
    .await;
    assert!(
        err.to_string().contains("alertmanager event is malformed"),
        "{err}"
    );
    let err = refuse(&signed(r#"{"pgsurge":2,"kind":"tick"}"#, NOW)).await;
    assert!(
        err.to_string().contains("version 2 is not supported"),
        "{err}"
    );
}

#[tokio::test]
async fn alarm_parameters_are_validated_against_the_limits() {
    let limits = ParamLimits {
        max_step: 3,
        max_multiplier: 2,
        allowed_flavors: vec!["s7.xlarge.4".into()],
        allowed_azs: vec!["ru-moscow-1a".into()],
    };
    let r = receiver(limits);
    let generic = |params: &str| {
        format!(
            r#"{{"pgsurge":1,"kind":"alarm","id":"x","name":"load","state":"firing","params":{params}}}"#
        )
    };
    let cases = [
        (
            r#"{"replicas":4}"#,
            "replicas=4 is outside 1..=3 (policy.max_step)",
        ),
        (
            r#"{"multiplier":3}"#,
            "multiplier=3 is outside 2..=2 (policy.max_multiplier)",
        ),
        (
            r#"{"replicas":2,"multiplier":2}"#,
            "either replicas or multiplier",
        ),
        (
            r#"{"flavor":"huge"}"#,
            "flavor \"huge\" is not in policy.allowed_flavors",
        ),
        (
            r#"{"az":"elsewhere"}"#,
            "az \"elsewhere\" is not in policy.allowed_azs",
        ),
    ];
    for (params, want) in cases {
        let b = generic(params);
        let err = r.receive(&signed(&b, NOW), now()).await.unwrap_err();
        assert!(
            matches!(err, EventError::InvalidParams { .. }),
            "{params}: {err}"
        );
        assert!(err.to_string().contains(want), "{params}: {err}");
    }
    let ok = generic(r#"{"replicas":3,"flavor":"s7.xlarge.4","az":"ru-moscow-1a"}"#);
    r.receive(&signed(&ok, NOW), now()).await.unwrap();
    // Parameters in alarm text: a typo is an error, not a silent default.
    let err = pgsurge::events::parse(
        r#"{"alarm_id":"a","current":"alarm","reason":"pgsurge.replica=2"}"#,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("unknown pgsurge parameter"),
        "{err}"
    );
}

#[tokio::test]
async fn direct_invocations_are_not_asked_for_a_shared_secret() {
    let w = Webhook::direct(body("generic-tick.json"));
    assert_eq!(
        receiver(ParamLimits::default())
            .receive(&w, now())
            .await
            .unwrap(),
        Event::Tick
    );
}

/// README "Alarm parameters": an unknown key is refused, never silently ignored — in the
/// generic form's `params` object as much as in `pgsurge.*` words.
#[tokio::test]
async fn an_unknown_key_in_generic_params_is_refused_by_name() {
    let r = receiver(ParamLimits::default());
    let b = r#"{"pgsurge":1,"kind":"alarm","id":"x","name":"load","state":"firing","params":{"replica":2}}"#;
    let err = r.receive(&signed(b, NOW), now()).await.unwrap_err();
    assert!(matches!(err, EventError::Malformed { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("`params`: unknown field `replica`, expected one of `replicas`"),
        "{text}"
    );
    // The spelled-right key is accepted, and `params: null` means none.
    let ok = b.replace("\"replica\"", "\"replicas\"");
    match r.receive(&signed(&ok, NOW), now()).await.unwrap() {
        Event::Alarms { alarms } => assert_eq!(alarms[0].params.replicas, Some(2)),
        other => panic!("{other:?}"),
    }
    let none =
        r#"{"pgsurge":1,"kind":"alarm","id":"x","name":"load","state":"firing","params":null}"#;
    match r.receive(&signed(none, NOW), now()).await.unwrap() {
        Event::Alarms { alarms } => assert_eq!(alarms[0].params, Default::default()),
        other => panic!("{other:?}"),
    }
}

/// A parameter set twice (label and annotation, or twice in a text) must agree; which
/// one won would otherwise depend on the order of the maps.
#[tokio::test]
async fn a_parameter_given_twice_with_different_values_is_refused() {
    let r = receiver(ParamLimits::default());
    let alertmanager = |labels: &str, annotations: &str| {
        format!(
            r#"{{"version":"4","status":"firing","alerts":[{{"status":"firing",
            "labels":{{"alertname":"PgReadLoadHigh",{labels}}},
            "annotations":{{{annotations}}},
            "startsAt":"2026-11-25T09:00:00Z","fingerprint":"ab"}}]}}"#
        )
    };
    let conflicting = alertmanager(r#""pgsurge_replicas":"2""#, r#""pgsurge.replicas":"3""#);
    let err = r
        .receive(&signed(&conflicting, NOW), now())
        .await
        .unwrap_err();
    assert!(matches!(err, EventError::Malformed { .. }), "{err}");
    assert!(
        err.to_string().contains(
            "parameter `replicas` is given twice with different values: \
             label pgsurge_replicas=\"2\" and annotation pgsurge.replicas=\"3\""
        ),
        "{err}"
    );
    // The same value twice is fine, also when spelled differently (`x2` and `2`).
    let agreeing = alertmanager(
        r#""pgsurge_multiplier":"x2""#,
        r#""pgsurge.multiplier":"2""#,
    );
    match r.receive(&signed(&agreeing, NOW), now()).await.unwrap() {
        Event::Alarms { alarms } => assert_eq!(alarms[0].params.multiplier, Some(2)),
        other => panic!("{other:?}"),
    }
    // In alarm text (Aodh reason, Cloud Eye description) the same rule holds.
    let err = pgsurge::events::parse(
        r#"{"alarm_id":"a","current":"alarm","reason":"pgsurge.az=a pgsurge.az=b"}"#,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains(
            "`az` is given twice with different values: \
             reason pgsurge.az=\"a\" and reason pgsurge.az=\"b\""
        ),
        "{err}"
    );
    let ok = pgsurge::events::parse(
        r#"{"alarm_id":"a","current":"alarm","reason":"pgsurge.az=a pgsurge.az=a"}"#,
    )
    .unwrap();
    match ok {
        Event::Alarms { alarms } => assert_eq!(alarms[0].params.az.as_deref(), Some("a")),
        other => panic!("{other:?}"),
    }
}

/// End to end through the HTTP host (the real `scale-up` binary): the query string
/// reaches the receiver, a token there authenticates, a wrong one is refused naming the
/// query parameter, and neither ever appears in the host's logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_host_passes_the_url_token_to_the_function_and_never_logs_it() {
    const TOKEN: &str = "a-url-token-of-16-chars-or-more";
    let port = pgsurge_tests::free_port();
    let p = pgsurge_tests::spawn(
        "scale-up",
        &["serve", "--port", &port.to_string()],
        &[("PGSURGE_AUTH__TOKEN", TOKEN.to_string())],
    );
    let base = format!("http://127.0.0.1:{port}");
    pgsurge_tests::wait_http_ok(&format!("{base}/healthz"), 20).await;
    let post = |query: String| {
        let url = format!("{base}/webhook{query}");
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .body(body("generic-alarm.json"))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (status, answer) = post(format!("?token={TOKEN}")).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "accepted", "{answer}");
    let (status, answer) = post("?token=wrong-url-token-value".into()).await;
    assert_eq!(status, 401, "{answer}");
    let message = answer["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("the `token` query parameter does not match"),
        "{message}"
    );
    let (status, _) = post("?other=1".into()).await;
    assert_eq!(status, 401);
    let out = p.stop();
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(
        logs.contains("invocation"),
        "the host logged its invocations:\n{logs}"
    );
    assert!(!logs.contains(TOKEN), "token leaked into logs:\n{logs}");
    assert!(
        !logs.contains("wrong-url-token-value"),
        "query leaked into logs:\n{logs}"
    );
}
