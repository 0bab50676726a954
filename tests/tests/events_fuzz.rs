//! Property-based fuzzing of every parser that sees untrusted bytes: no panic, bounded
//! work, and a clean typed error for anything malformed. Runs in CI as part of
//! `cargo test` with a fixed case count (bounded time: a few seconds).
//!
//! Inputs: arbitrary bytes; arbitrary JSON; and mutations of the real example events
//! (so the fuzzer reaches deep into each format, not just the JSON decoder).

use pgsurge::events::{parse, x509, Webhook};
use pgsurge::policy::Cron;
use pgsurge::state::ClusterState;
use proptest::prelude::*;
use serde_json::Value;

static EXAMPLES: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(examples);

fn examples() -> Vec<String> {
    let dir = pgsurge_tests::workspace_root().join("tests/events");
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    v.sort();
    v
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,20}".prop_map(Value::from),
        prop_oneof![
            Just("firing"),
            Just("resolved"),
            Just("alarm"),
            Just("ok"),
            Just("4"),
            Just("Notification"),
            Just("SubscriptionConfirmation"),
            Just("INSTANCE_LAUNCHING"),
            Just("pgsurge.replicas=2"),
            Just("pgsurge.multiplier=x9"),
            Just("smn"),
        ]
        .prop_map(Value::from),
    ];
    let keys = prop_oneof![
        Just("version".to_string()),
        Just("alerts".to_string()),
        Just("status".to_string()),
        Just("labels".to_string()),
        Just("annotations".to_string()),
        Just("startsAt".to_string()),
        Just("alarm_id".to_string()),
        Just("current".to_string()),
        Just("reason_data".to_string()),
        Just("topic_urn".to_string()),
        Just("type".to_string()),
        Just("message".to_string()),
        Just("subscribe_url".to_string()),
        Just("lifecycle_action_key".to_string()),
        Just("instance_id".to_string()),
        Just("pgsurge".to_string()),
        Just("kind".to_string()),
        Just("record".to_string()),
        Just("smn".to_string()),
        Just("event_source".to_string()),
        Just("alarmValue".to_string()),
        Just("dimension".to_string()),
        Just("params".to_string()),
        "[a-z_]{1,8}",
    ];
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(keys.clone(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Replace one value somewhere in a JSON document (depth-first index `at`).
fn mutate(v: &mut Value, at: &mut usize, with: &Value) -> bool {
    if *at == 0 {
        *v = with.clone();
        return true;
    }
    *at -= 1;
    match v {
        Value::Array(a) => a.iter_mut().any(|x| mutate(x, at, with)),
        Value::Object(o) => o.values_mut().any(|x| mutate(x, at, with)),
        Value::String(s) if s.starts_with('{') => {
            // Embedded JSON (SMN `message`): mutate inside it too.
            if let Ok(mut inner) = serde_json::from_str::<Value>(s) {
                if mutate(&mut inner, at, with) {
                    *s = inner.to_string();
                    return true;
                }
            }
            false
        }
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = parse(&text);
        let _ = x509::parse_cert(&bytes);
        let _ = ClusterState::from_slice("k", &bytes);
        let _ = text.parse::<Cron>();
        let _ = serde_json::from_slice::<Webhook>(&bytes);
    }

    #[test]
    fn arbitrary_json_never_panics(v in arb_json()) {
        let text = v.to_string();
        if let Err(e) = parse(&text) {
            prop_assert!(!e.to_string().is_empty());
        }
        let _ = ClusterState::from_slice("k", text.as_bytes());
        let _ = serde_json::from_value::<Webhook>(v);
    }

    #[test]
    fn mutated_examples_never_panic(which in any::<prop::sample::Index>(), at in 0usize..200, with in arb_json()) {
        let mut doc: Value = match serde_json::from_str(which.get(&EXAMPLES).as_str()) {
            Ok(d) => d,
            Err(_) => return Ok(()), // the truncated example
        };
        let mut i = at;
        mutate(&mut doc, &mut i, &with);
        let _ = parse(&doc.to_string());
    }

    #[test]
    fn mutated_certificate_bytes_never_panic(flips in proptest::collection::vec((0usize..2000, any::<u8>()), 1..8), cut in 0usize..2000) {
        // A structurally valid certificate, then corrupted.
        let mut der = CERT_DER.to_vec();
        for (i, b) in flips {
            let n = der.len();
            der[i % n] ^= b;
        }
        der.truncate(cut.max(1).min(der.len()));
        let _ = x509::parse_cert(&der);
    }
}

/// A real self-signed certificate (RSA 2048, SHA256withRSA), DER, made once with openssl.
static CERT_DER: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
    let dir = tempfile::Builder::new()
        .prefix("pgsurge-i6-fuzz")
        .tempdir()
        .unwrap();
    let out = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "k.pem", "-outform", "DER",
            "-out", "c.der", "-days", "1", "-subj", "/CN=fuzz",
        ])
        .current_dir(dir.path())
        .output()
        .expect("the `openssl` command is needed (Debian package openssl)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let der = std::fs::read(dir.path().join("c.der")).unwrap();
    x509::parse_cert(&der).expect("the unmodified certificate parses");
    der
});
