//! Property-based fuzzing of every parser that sees untrusted bytes: no panic, bounded
//! work, and a clean typed error for anything malformed; and of the front door,
//! `Receiver::receive`, with outcome oracles: arbitrary token / Basic / HMAC headers, and
//! SMN messages with arbitrary content signed for real. Runs in CI as part of
//! `cargo test` with fixed case counts (bounded time: 10-25 s in debug on 2 cores).
//!
//! Inputs: arbitrary bytes; arbitrary JSON; and mutations of the real example events
//! (so the fuzzer reaches deep into each format, not just the JSON decoder).

use pgsurge::events::{parse, x509, Webhook};
use pgsurge::model::ClusterState;
use pgsurge::policy::Cron;
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

// ---------------------------------------------------------------------------------------
// The front door, `Receiver::receive`, under arbitrary headers and bodies.
//
// Outcome-based: for each input an oracle written from the documented rules (README
// "Webhook authentication") says whether the sender authenticated; the receiver must
// then refuse with an authentication error, or give exactly what a direct (platform-
// authorised) invocation of the same body gives. Size and JSON checks come first.
// ---------------------------------------------------------------------------------------

use pgsurge::events::AuthConfig;
use pgsurge::events::{
    hmac_signature, Authenticated, EventError, ParamLimits, Receiver, SmnConfig, SmnFetcher,
};
use pgsurge::secret::Secret;
use std::sync::Arc;
use time::OffsetDateTime;

const SECRET: &str = "an-hmac-secret-of-at-least-32-characters";
const TOKEN: &str = "a-token-of-16-chars-or-more";
const NOW: i64 = 1_795_597_200; // 2026-11-25T09:00:00Z
const LIMIT: usize = 2048;

static RT: std::sync::LazyLock<tokio::runtime::Runtime> = std::sync::LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
});

/// No certificate is reachable: an SMN-shaped body without a shared secret can only fail.
struct NoCert;
#[async_trait::async_trait]
impl SmnFetcher for NoCert {
    async fn get(&self, url: &str) -> Result<Vec<u8>, pgsurge::events::FetchError> {
        Err(format!("no certificate in this test ({url})").into())
    }
}

/// Token, HMAC, and SMN verification on (for an allow-listed topic, both demanded): an
/// SMN-shaped body can never pass here (no certificate), whatever secret it carries.
fn secret_auth() -> AuthConfig {
    AuthConfig {
        hmac_secret: Some(Secret::new(SECRET)),
        token: Some(Secret::new(TOKEN)),
        smn: SmnConfig {
            verify_signature: true,
            topic_urns: vec![pgsurge_tests::smn::TOPIC.into()],
            ..SmnConfig::default()
        },
        ..AuthConfig::default()
    }
}

static SECRET_RECEIVER: std::sync::LazyLock<Receiver> = std::sync::LazyLock::new(|| {
    Receiver::with_fetcher(
        &secret_auth(),
        ParamLimits::default(),
        LIMIT,
        Arc::new(NoCert),
    )
});

fn is_auth_error(e: &EventError) -> bool {
    matches!(
        e,
        EventError::Unauthenticated(_)
            | EventError::StaleTimestamp { .. }
            | EventError::BadSignature(_)
            | EventError::Unavailable(_)
    )
}

/// How a header value is made; the test builds it once body and timestamp are known.
#[derive(Debug, Clone)]
enum TokenHeader {
    Right,
    RightPlus(String),
    Random(String),
}

#[derive(Debug, Clone)]
enum AuthorizationHeader {
    Bearer(TokenHeader),
    Basic { user: String, password: TokenHeader },
    BasicGarbage(String),
    Random(String),
}

#[derive(Debug, Clone)]
enum TimestampHeader {
    Offset(i64),
    PaddedOffset(i64),
    Random(String),
}

#[derive(Debug, Clone)]
enum SignatureHeader {
    Right,
    RightUppercase,
    /// The right signature with one hex digit changed (at this index mod 64).
    Flipped(usize),
    RandomHex(Vec<u8>),
    Random(String),
}

fn arb_token() -> impl Strategy<Value = TokenHeader> {
    prop_oneof![
        Just(TokenHeader::Right),
        ".{1,4}".prop_map(TokenHeader::RightPlus),
        ".{0,40}".prop_map(TokenHeader::Random),
    ]
}

fn arb_authorization() -> impl Strategy<Value = AuthorizationHeader> {
    prop_oneof![
        arb_token().prop_map(AuthorizationHeader::Bearer),
        (".{0,12}", arb_token())
            .prop_map(|(user, password)| AuthorizationHeader::Basic { user, password }),
        ".{0,40}".prop_map(AuthorizationHeader::BasicGarbage),
        ".{0,60}".prop_map(AuthorizationHeader::Random),
    ]
}

fn arb_timestamp() -> impl Strategy<Value = TimestampHeader> {
    prop_oneof![
        (-600i64..600).prop_map(TimestampHeader::Offset),
        (-400i64..400).prop_map(TimestampHeader::PaddedOffset),
        ".{0,24}".prop_map(TimestampHeader::Random),
    ]
}

fn arb_signature() -> impl Strategy<Value = SignatureHeader> {
    prop_oneof![
        Just(SignatureHeader::Right),
        Just(SignatureHeader::RightUppercase),
        any::<usize>().prop_map(SignatureHeader::Flipped),
        proptest::collection::vec(any::<u8>(), 32).prop_map(SignatureHeader::RandomHex),
        ".{0,80}".prop_map(SignatureHeader::Random),
    ]
}

fn token_text(t: &TokenHeader) -> String {
    match t {
        TokenHeader::Right => TOKEN.to_string(),
        TokenHeader::RightPlus(extra) => format!("{TOKEN}{extra}"),
        TokenHeader::Random(s) => s.clone(),
    }
}

/// A body: an example, a mutated example, arbitrary JSON, or arbitrary bytes.
fn arb_body() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<prop::sample::Index>().prop_map(|i| i.get(&EXAMPLES).clone()),
        (any::<prop::sample::Index>(), 0usize..200, arb_json()).prop_map(|(i, at, with)| {
            let text = i.get(&EXAMPLES);
            match serde_json::from_str::<Value>(text) {
                Ok(mut doc) => {
                    let mut at = at;
                    mutate(&mut doc, &mut at, &with);
                    doc.to_string()
                }
                Err(_) => text.clone(),
            }
        }),
        arb_json().prop_map(|v| v.to_string()),
        proptest::collection::vec(any::<u8>(), 0..3072)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
}

/// What README "Webhook authentication" promises for a request with these headers
/// and query: `true` authenticated, `false` refused. (SMN-shaped bodies go to the SMN
/// verifier, which cannot succeed here: refused.)
fn oracle(
    headers: &std::collections::BTreeMap<String, String>,
    query: Option<&str>,
    body: &Value,
    text: &str,
) -> bool {
    let smn_shaped = ["type", "topic_urn", "signature"]
        .iter()
        .all(|k| body.get(k).is_some_and(Value::is_string));
    if smn_shaped {
        return false;
    }
    if let Some(sig) = headers.get("x-pgsurge-signature") {
        // Judged by the HMAC alone.
        let Some(ts) = headers
            .get("x-pgsurge-timestamp")
            .and_then(|t| t.trim().parse::<i64>().ok())
        else {
            return false;
        };
        let age = NOW.saturating_sub(ts);
        if !(-300..=300).contains(&age) {
            return false;
        }
        let sig = sig.trim();
        let given = hex::decode(sig.strip_prefix("sha256=").unwrap_or(sig));
        let right = hmac_signature(SECRET.as_bytes(), ts, text);
        return given.ok() == hex::decode(&right["sha256=".len()..]).ok();
    }
    // The first place that carries a token is judged: the token header, Authorization
    // (schemes case-insensitive; Basic credentials that do not decode carry no
    // password), the `token` query parameter.
    let authorization = || -> Option<String> {
        let a = headers.get("authorization")?.trim_start();
        let (scheme, rest) = a.split_once([' ', '\t'])?;
        if scheme.eq_ignore_ascii_case("bearer") {
            return Some(rest.trim().to_string());
        }
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        use base64::Engine;
        let password = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()
            .and_then(|raw| String::from_utf8(raw).ok())
            .and_then(|t| t.split_once(':').map(|(_, p)| p.to_string()));
        Some(password.unwrap_or_default())
    };
    let presented = headers
        .get("x-pgsurge-token")
        .cloned()
        .or_else(authorization)
        .or_else(|| query.map(str::to_string));
    presented.as_deref() == Some(TOKEN)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn receive_with_arbitrary_auth_headers_refuses_or_matches_a_direct_invocation(
        body in arb_body(),
        token in proptest::option::of(arb_token()),
        authorization in proptest::option::of(arb_authorization()),
        timestamp in proptest::option::of(arb_timestamp()),
        signature in proptest::option::of(arb_signature()),
        // Header names arrive in any case; the receiver lower-cases them (Webhook::header).
        junk_header in proptest::option::of(("[a-z-]{1,12}", ".{0,30}")),
        // `?token=` in the URL (SMN subscriptions), in any case of its scheme-less form.
        query_token in proptest::option::of(arb_token()),
        bearer_case in proptest::sample::select(vec!["Bearer", "bearer", "BEARER", "Basic", "basic"]),
    ) {
        let mut headers = std::collections::BTreeMap::new();
        if let Some(t) = &token {
            headers.insert("x-pgsurge-token".to_string(), token_text(t));
        }
        if let Some(a) = &authorization {
            use base64::Engine;
            let b64 = |s: String| base64::engine::general_purpose::STANDARD.encode(s);
            let v = match a {
                // The scheme in some case: RFC 7235 says it is case-insensitive.
                AuthorizationHeader::Bearer(t) if !bearer_case.eq_ignore_ascii_case("basic") => {
                    format!("{bearer_case} {}", token_text(t))
                }
                AuthorizationHeader::Bearer(t) => format!("Bearer {}", token_text(t)),
                AuthorizationHeader::Basic { user, password } => {
                    let scheme = if bearer_case.eq_ignore_ascii_case("basic") { bearer_case } else { "Basic" };
                    format!("{scheme} {}", b64(format!("{user}:{}", token_text(password))))
                }
                AuthorizationHeader::BasicGarbage(g) => format!("Basic {g}"),
                AuthorizationHeader::Random(r) => r.clone(),
            };
            headers.insert("authorization".to_string(), v);
        }
        // The time the signature is computed for: the header's, when it is a number.
        let signed_at = match &timestamp {
            Some(TimestampHeader::Offset(o) | TimestampHeader::PaddedOffset(o)) => NOW + o,
            _ => NOW,
        };
        if let Some(t) = &timestamp {
            let v = match t {
                TimestampHeader::Offset(o) => (NOW + o).to_string(),
                TimestampHeader::PaddedOffset(o) => format!(" {} ", NOW + o),
                TimestampHeader::Random(r) => r.clone(),
            };
            headers.insert("x-pgsurge-timestamp".to_string(), v);
        }
        if let Some(s) = &signature {
            let right = hmac_signature(SECRET.as_bytes(), signed_at, &body);
            let v = match s {
                SignatureHeader::Right => right,
                SignatureHeader::RightUppercase => format!("sha256={}", right[7..].to_uppercase()),
                SignatureHeader::Flipped(i) => {
                    let mut hex: Vec<u8> = right[7..].bytes().collect();
                    let i = i % hex.len();
                    hex[i] = if hex[i] == b'0' { b'1' } else { b'0' };
                    format!("sha256={}", String::from_utf8(hex).unwrap())
                }
                SignatureHeader::RandomHex(b) => format!("sha256={}", hex::encode(b)),
                SignatureHeader::Random(r) => r.clone(),
            };
            headers.insert("x-pgsurge-signature".to_string(), v);
        }
        if let Some((k, v)) = &junk_header {
            headers.entry(format!("x-junk-{k}")).or_insert_with(|| v.clone());
        }
        let mut w = Webhook::http(&[], body.clone());
        w.headers = headers.clone();
        let query = query_token.as_ref().map(token_text);
        if let Some(q) = &query {
            w.query.insert("token".into(), q.clone());
        }
        let now = OffsetDateTime::from_unix_timestamp(NOW).unwrap();
        let got = RT.block_on(SECRET_RECEIVER.receive_authenticated(&w, now));

        if body.len() > LIMIT {
            prop_assert!(matches!(got, Err(EventError::TooLarge { .. })), "{got:?}");
            return Ok(());
        }
        let Ok(json) = serde_json::from_str::<Value>(&body) else {
            prop_assert!(matches!(got, Err(EventError::NotJson(_))), "{got:?}");
            return Ok(());
        };
        if oracle(&headers, query.as_deref(), &json, &body) {
            let direct = RT.block_on(SECRET_RECEIVER.receive(&Webhook::direct(body.clone()), now));
            match got {
                Ok((event, how)) => {
                    prop_assert_eq!(how, Authenticated::SharedSecret);
                    prop_assert_eq!(Ok(event), direct);
                }
                Err(e) => {
                    prop_assert!(!is_auth_error(&e), "authenticated but refused: {e}");
                    prop_assert_eq!(Err(e), direct);
                }
            }
        } else {
            match got {
                Err(e) => {
                    prop_assert!(is_auth_error(&e), "should be an auth refusal: {e}");
                    // Secrets never leak into the refusal.
                    let text = e.to_string();
                    prop_assert!(!text.contains(TOKEN) && !text.contains(SECRET), "{text}");
                }
                Ok(ok) => prop_assert!(false, "unauthenticated input accepted: {ok:?}"),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The SMN verifier on arbitrary signed content, signed for real (ring, in-process) with
// a key whose certificate openssl made. Every correctly signed message of a known type
// inside the age window verifies, whatever its content; any change to a signed key,
// unknown types, bad or stale timestamps, and keys of another format are refused.
// ---------------------------------------------------------------------------------------

use pgsurge_tests::smn::{TestCa, CERT_URL, SMN_HOST, TOPIC};

struct SmnKeys {
    ec: ring::signature::EcdsaKeyPair,
    rsa: ring::signature::RsaKeyPair,
    ec_cert: Vec<u8>,
    rsa_cert: Vec<u8>,
    /// Kept alive: its `ca.pem` is the receivers' `auth.smn.ca_file`.
    ca: TestCa,
}

/// Two SMN signing certificates (EC, RSA) issued by a test CA made by openssl.
static SMN_KEYS: std::sync::LazyLock<SmnKeys> = std::sync::LazyLock::new(|| {
    let ca = TestCa::new();
    let ec = ca.issue("ec", SMN_HOST, &[SMN_HOST]);
    let rsa = ca.issue("rsa", SMN_HOST, &[SMN_HOST]);
    SmnKeys {
        ec: ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &ec.pkcs8,
            &ring::rand::SystemRandom::new(),
        )
        .unwrap(),
        rsa: ring::signature::RsaKeyPair::from_pkcs8(&rsa.pkcs8).unwrap(),
        ec_cert: ec.cert_pem,
        rsa_cert: rsa.cert_pem,
        ca,
    }
});

struct ServeCert(Vec<u8>);
#[async_trait::async_trait]
impl SmnFetcher for ServeCert {
    async fn get(&self, url: &str) -> Result<Vec<u8>, pgsurge::events::FetchError> {
        if url == CERT_URL {
            Ok(self.0.clone())
        } else {
            Err(format!("unexpected fetch of {url}").into())
        }
    }
}

/// One receiver per key (SMN only: no shared secret configured, the signature alone
/// trusted for the allow-listed topic), built once.
static SMN_RECEIVERS: std::sync::LazyLock<[Receiver; 2]> = std::sync::LazyLock::new(|| {
    let make = |cert: &[u8]| {
        Receiver::with_fetcher(
            &AuthConfig {
                smn: SmnConfig {
                    verify_signature: true,
                    require_token: false,
                    topic_urns: vec![TOPIC.into()],
                    ca_file: Some(SMN_KEYS.ca.ca_file()),
                    ..SmnConfig::default()
                },
                ..AuthConfig::default()
            },
            ParamLimits::default(),
            64 * 1024,
            Arc::new(ServeCert(cert.to_vec())),
        )
    };
    [make(&SMN_KEYS.ec_cert), make(&SMN_KEYS.rsa_cert)]
});

fn smn_sign(rsa: bool, text: &str) -> String {
    use base64::Engine;
    let rng = ring::rand::SystemRandom::new();
    let sig = if rsa {
        let k = &SMN_KEYS.rsa;
        let mut out = vec![0u8; k.public().modulus_len()];
        k.sign(
            &ring::signature::RSA_PKCS1_SHA256,
            &rng,
            text.as_bytes(),
            &mut out,
        )
        .unwrap();
        out
    } else {
        SMN_KEYS
            .ec
            .sign(&rng, text.as_bytes())
            .unwrap()
            .as_ref()
            .to_vec()
    };
    base64::engine::general_purpose::STANDARD.encode(sig)
}

fn arb_message() -> impl Strategy<Value = String> {
    // The Cloud Eye alarm inside the SMN subscription example.
    let inner = EXAMPLES
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|v| v["message"].as_str().map(str::to_string))
        .find(|m| m.contains("alarm_description"))
        .expect("the Cloud Eye SMN example (tests/events/cloudeye-smn-alarm.json)");
    prop_oneof![
        Just(inner.clone()),
        (0usize..40, arb_json()).prop_map(move |(at, with)| {
            let mut doc: Value = serde_json::from_str(&inner).unwrap();
            let mut at = at;
            mutate(&mut doc, &mut at, &with);
            doc.to_string()
        }),
        arb_json().prop_map(|v| v.to_string()),
        ".{0,300}",
    ]
}

const SMN_TYPES: [&str; 3] = [
    "Notification",
    "SubscriptionConfirmation",
    "UnsubscribeConfirmation",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    #[test]
    fn smn_signed_arbitrary_content_verifies_and_any_change_is_refused(
        rsa in any::<bool>(),
        message in arb_message(),
        message_id in ".{0,40}",
        subject in proptest::option::of(".{0,40}"),
        topic_urn in prop_oneof![3 => Just(TOPIC.to_string()), 1 => ".{0,60}"],
        kind in prop_oneof![
            (0usize..3).prop_map(|i| SMN_TYPES[i].to_string()),
            ".{0,16}",
        ],
        subscribe_url in ".{0,80}",
        age in prop_oneof![(-200i64..3500).prop_map(Ok), (-5000i64..8000).prop_map(Ok), ".{0,24}".prop_map(Err)],
        // Change one signed key after signing (index, replacement).
        tamper in proptest::option::of((0usize..6, ".{0,20}")),
        // Keys of another format added next to the signed ones (unsigned).
        foreign in proptest::option::of(0usize..9),
    ) {
        // The real time: the certificate openssl made (first use) is valid from then on.
        let r = &SMN_RECEIVERS[usize::from(rsa)];
        let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
        let timestamp = match &age {
            Ok(secs) => (now - time::Duration::seconds(*secs))
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap(),
            Err(text) => text.clone(),
        };
        let mut m = serde_json::json!({
            "type": kind,
            "topic_urn": topic_urn,
            "message_id": message_id,
            "message": message,
            "timestamp": timestamp,
            "signature_version": "v1",
            "signing_cert_url": CERT_URL,
        });
        if let Some(s) = &subject {
            m["subject"] = s.clone().into();
        }
        if kind != "Notification" {
            m["subscribe_url"] = subscribe_url.clone().into();
        }
        m["signature"] = smn_sign(rsa, &pgsurge_tests::smn::string_to_sign(&m)).into();
        let signed_text = pgsurge_tests::smn::string_to_sign(&m);
        if let Some((i, with)) = &tamper {
            let k = ["message", "message_id", "subject", "timestamp", "topic_urn", "subscribe_url"][*i];
            m[k] = with.clone().into();
        }
        // Keys the parser dispatches on (see events::parse_value), none signed.
        let markers = ["pgsurge", "alerts", "version", "alarm_id", "current", "record",
                       "lifecycle_action_key", "lifecycle_hook_name", "trigger_type"];
        if let Some(i) = foreign {
            m[markers[i]] = Value::from("injected");
        }
        let w = Webhook::http(&[], m.to_string());
        let got = RT.block_on(r.receive_authenticated(&w, now));

        let known_type = SMN_TYPES.contains(&kind.as_str());
        let changed = pgsurge_tests::smn::string_to_sign(&m) != signed_text;
        let age_ok = matches!(age, Ok(a) if (-300..=3600).contains(&a));
        let ts_ok = age.is_ok();
        // Only the allow-listed topic is trusted (checked before the timestamp).
        let topic_ok = m["topic_urn"] == TOPIC;
        if !known_type || !ts_ok || changed || !topic_ok {
            prop_assert!(matches!(got, Err(EventError::BadSignature(_)) | Err(EventError::StaleTimestamp { .. })),
                "type {kind:?} ts_ok {ts_ok} changed {changed}: {got:?}");
        } else if !age_ok {
            prop_assert!(matches!(got, Err(EventError::StaleTimestamp { window_secs: 3600, .. })), "{got:?}");
        } else if let Some(i) = foreign {
            let Err(EventError::Unauthenticated(text)) = &got else {
                return Err(TestCaseError::fail(format!("injected {}: {got:?}", markers[i])));
            };
            prop_assert!(text.contains(markers[i]) && text.contains("another event format"), "{text}");
        } else {
            // Verified: the result is what parsing the same body as SMN gives — never an
            // authentication error.
            let direct = RT.block_on(r.receive(&Webhook::direct(m.to_string()), now));
            match got {
                Ok((event, how)) => {
                    prop_assert_eq!(how, Authenticated::SmnSignature);
                    prop_assert_eq!(Ok(event), direct);
                }
                Err(e) => {
                    prop_assert!(!is_auth_error(&e), "verified but refused: {e}");
                    prop_assert_eq!(Err(e), direct);
                }
            }
        }
    }
}
