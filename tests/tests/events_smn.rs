//! SMN message signatures and the subscription handshake, with a test CA, certificates
//! and signatures made by the `openssl` command (an implementation independent of ours).
//!
//! The certificate reaches the verifier through the `SmnFetcher` trait (served from
//! memory here, loopback only), and once for real over HTTPS from `openssl s_server`
//! with a private CA.

use pgsurge::events::AuthConfig;

use pgsurge::config::Config;
use pgsurge::events::{
    Authenticated, Confirmation, Event, EventError, HttpsFetcher, ParamLimits, Receiver, SmnConfig,
    SmnFetcher, Webhook,
};
use pgsurge::secret::Secret;
use pgsurge_tests::smn::{Signer, TestCa, CERT_URL, SMN_HOST, TOPIC};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

const TOKEN: &str = "a-token-of-16-chars-or-more";

/// Serves one certificate for every URL and records every URL asked for.
struct Served {
    cert: Vec<u8>,
    asked: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl SmnFetcher for Served {
    async fn get(&self, url: &str) -> Result<Vec<u8>, pgsurge::events::FetchError> {
        self.asked.lock().unwrap().push(url.to_string());
        Ok(self.cert.clone())
    }
}

impl Served {
    fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap().clone()
    }
}

fn ts(t: OffsetDateTime) -> String {
    t.replace_nanosecond(0).unwrap().format(&Rfc3339).unwrap()
}

fn cloud_eye_message() -> String {
    let example: Value = serde_json::from_str(
        &std::fs::read_to_string(
            pgsurge_tests::workspace_root().join("tests/events/cloudeye-smn-alarm.json"),
        )
        .unwrap(),
    )
    .unwrap();
    example["message"].as_str().unwrap().to_string()
}

fn notification(signer: &Signer, at: OffsetDateTime, cert_url: &str, topic: &str) -> Value {
    let mut m = json!({
        "type": "Notification",
        "topic_urn": topic,
        "message_id": "a3c9f2d7e18b4c6f9d0e1f2a3b4c5d6e",
        "subject": "[Major alarm] pg-read-cpu-high",
        "message": cloud_eye_message(),
        "timestamp": ts(at),
        "signature_version": "v1",
        "signing_cert_url": cert_url,
        "unsubscribe_url": "https://console.hc.sbercloud.ru/smn/subscription/unsubscribe?x=1",
    });
    signer.sign_message(&mut m);
    m
}

fn via_http(m: &Value) -> Webhook {
    Webhook::http(&[], m.to_string())
}

/// With our token in the subscription URL's query string, as SMN sends it back.
fn with_query_token(m: &Value, token: &str) -> Webhook {
    let mut w = via_http(m);
    w.query.insert("token".into(), token.into());
    w
}

/// Verification on for our topic, the test CA trusted, the signature alone enough.
fn smn_config(ca: &TestCa) -> SmnConfig {
    SmnConfig {
        verify_signature: true,
        require_token: false,
        topic_urns: vec![TOPIC.into()],
        ca_file: Some(ca.ca_file()),
        ..SmnConfig::default()
    }
}

fn receiver_with(auth: AuthConfig, cert: &[u8]) -> (Receiver, Arc<Served>) {
    let served = Arc::new(Served {
        cert: cert.to_vec(),
        asked: Mutex::new(Vec::new()),
    });
    (
        Receiver::with_fetcher(&auth, ParamLimits::default(), 256 * 1024, served.clone()),
        served,
    )
}

fn receiver(smn: SmnConfig, cert: &[u8]) -> (Receiver, Arc<Served>) {
    receiver_with(
        AuthConfig {
            smn,
            ..AuthConfig::default()
        },
        cert,
    )
}

fn refusal(r: Result<Event, EventError>) -> String {
    match r {
        Err(e @ (EventError::BadSignature(_) | EventError::Unauthenticated(_))) => e.to_string(),
        other => panic!("expected an authentication refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_message_signed_with_a_certificate_from_the_test_ca_on_an_allowed_topic_is_accepted() {
    let ca = TestCa::new();
    for kind in ["rsa", "ec"] {
        let smn = ca.issue(kind, SMN_HOST, &[SMN_HOST]);
        let (r, served) = receiver(smn_config(&ca), &smn.cert_pem);
        let now = OffsetDateTime::now_utc();
        let m = notification(&smn, now - Duration::seconds(30), CERT_URL, TOPIC);
        // No token, no HMAC (require_token = false): the signature is the proof.
        let (event, how) = r.receive_authenticated(&via_http(&m), now).await.unwrap();
        assert_eq!(how, Authenticated::SmnSignature);
        match event {
            Event::Alarms { alarms } => assert_eq!(alarms[0].name, "pg-read-cpu-high"),
            other => panic!("{other:?}"),
        }
        assert_eq!(served.asked(), [CERT_URL]);
        // The certificate is cached: a second message fetches nothing.
        r.receive(&via_http(&m), now).await.unwrap();
        assert_eq!(served.asked().len(), 1, "{kind}");
        assert_eq!(r.smn().cached_certificates(), 1);
    }
    // The cache is bounded: certificates at many URLs (a rotation, many regions, or
    // someone cycling file names) never hold more than CERT_CACHE_MAX.
    let smn = ca.issue("rsa", SMN_HOST, &[SMN_HOST]);
    let (r, served) = receiver(smn_config(&ca), &smn.cert_pem);
    let now = OffsetDateTime::now_utc();
    for i in 0..pgsurge::events::smn_verify::CERT_CACHE_MAX + 4 {
        let url = format!("https://{SMN_HOST}/smn/SMN_ru-moscow-1_{i}.pem");
        r.receive(&via_http(&notification(&smn, now, &url, TOPIC)), now)
            .await
            .unwrap();
        assert!(r.smn().cached_certificates() <= pgsurge::events::smn_verify::CERT_CACHE_MAX);
    }
    assert_eq!(
        r.smn().cached_certificates(),
        pgsurge::events::smn_verify::CERT_CACHE_MAX
    );
    assert_eq!(
        served.asked().len(),
        pgsurge::events::smn_verify::CERT_CACHE_MAX + 4
    );

    // A certificate naming the SMN host only as its subject CN (no SAN) is accepted too.
    let cn_only = ca.issue("rsa", SMN_HOST, &[]);
    let (r, _) = receiver(smn_config(&ca), &cn_only.cert_pem);
    let now = OffsetDateTime::now_utc();
    let m = notification(&cn_only, now, CERT_URL, TOPIC);
    r.receive(&via_http(&m), now).await.unwrap();
}

/// The review's attack: a self-signed certificate served from an object-storage bucket
/// under the cloud's domain, a message on the attacker's own topic, no token.
#[tokio::test]
async fn the_reviews_forged_message_is_refused_with_a_clear_reason() {
    let ca = TestCa::new();
    let bucket_url = "https://attacker.obs.ru-moscow-1.hc.sbercloud.ru/SMN_ru-moscow-1_x.pem";
    let attacker = ca.self_signed("rsa", "attacker.obs.ru-moscow-1.hc.sbercloud.ru");
    let attackers_topic = "urn:smn:ru-moscow-1:99999999999999999999999999999999:evil";
    let named_smn = ca.self_signed("rsa", SMN_HOST);
    let now = OffsetDateTime::now_utc();
    let (r, served) = receiver(smn_config(&ca), &attacker.cert_pem);

    // Exactly as reviewed.
    let forged = notification(&attacker, now, bucket_url, attackers_topic);
    let text = refusal(r.receive(&via_http(&forged), now).await);
    assert!(
        text.contains(&format!(
            "topic {attackers_topic:?} is not in auth.smn.topic_urns"
        )),
        "{text}"
    );

    // The review's configuration (verification on, `topic_urns = []`), which config
    // validation now refuses: the verifier itself trusts no topic then.
    let (open, _) = receiver(
        SmnConfig {
            topic_urns: vec![],
            ..smn_config(&ca)
        },
        &attacker.cert_pem,
    );
    let text = refusal(open.receive(&via_http(&forged), now).await);
    assert!(
        text.contains("auth.smn.topic_urns is empty, so no topic is trusted"),
        "{text}"
    );

    // Each layer refuses on its own. On our topic, from the bucket:
    let on_our_topic = notification(&attacker, now, bucket_url, TOPIC);
    let text = refusal(r.receive(&via_http(&on_our_topic), now).await);
    assert!(text.contains("is not an SMN endpoint"), "{text}");
    assert!(
        text.contains("\"attacker.obs.ru-moscow-1.hc.sbercloud.ru\""),
        "{text}"
    );

    // Look-alike hosts and shapes: never a subdomain, a port, another path or a query.
    for (url, why) in [
        (
            "https://x.smn.ru-moscow-1.hc.sbercloud.ru.evil.com/smn/SMN_ru-moscow-1_x.pem",
            "is not an SMN endpoint",
        ),
        (
            "https://smn.ru-moscow-1.hc.sbercloud.ru.evil.com/smn/SMN_ru-moscow-1_x.pem",
            "is not an SMN endpoint",
        ),
        (
            "https://a.smn.ru-moscow-1.hc.sbercloud.ru/smn/SMN_ru-moscow-1_x.pem",
            "is not an SMN endpoint",
        ),
        (
            "https://smn.hc.sbercloud.ru/smn/SMN_ru-moscow-1_x.pem",
            "is not an SMN endpoint",
        ),
        (
            "https://smn.ru-moscow-2.hc.sbercloud.ru/smn/SMN_ru-moscow-1_x.pem",
            "not the SMN endpoint of the topic's region \"ru-moscow-1\"",
        ),
        (
            "http://smn.ru-moscow-1.hc.sbercloud.ru/smn/SMN_ru-moscow-1_x.pem",
            "must be https://",
        ),
        (
            "https://smn.ru-moscow-1.hc.sbercloud.ru:8443/smn/SMN_ru-moscow-1_x.pem",
            "must not name a port",
        ),
        (
            "https://smn.ru-moscow-1.hc.sbercloud.ru/bucket/SMN_ru-moscow-1_x.pem",
            "is not an SMN certificate",
        ),
        (
            "https://smn.ru-moscow-1.hc.sbercloud.ru/smn/a/../../x.pem",
            "is not an SMN certificate",
        ),
        (
            "https://smn.ru-moscow-1.hc.sbercloud.ru/smn/SMN_ru-moscow-1_x.pem?redirect=evil",
            "is not an SMN certificate",
        ),
        (
            "https://smn.ru-moscow-1.hc.sbercloud.ru/smn/SMN_ru-moscow-1_x.txt",
            "is not an SMN certificate",
        ),
    ] {
        let m = notification(&attacker, now, url, TOPIC);
        let text = refusal(r.receive(&via_http(&m), now).await);
        assert!(text.contains(why), "{url}: {text}");
    }
    assert!(
        served.asked().is_empty(),
        "nothing fetched from a refused URL"
    );

    // Served at the genuine URL (a compromised path, a poisoned resolver): the
    // self-signed certificate chains to no trusted root.
    let at_smn = notification(&attacker, now, CERT_URL, TOPIC);
    let text = refusal(r.receive(&via_http(&at_smn), now).await);
    assert!(text.contains("does not chain to a trusted root"), "{text}");
    // Even self-signed in the SMN host's name.
    let (r, _) = receiver(smn_config(&ca), &named_smn.cert_pem);
    let m = notification(&named_smn, now, CERT_URL, TOPIC);
    let text = refusal(r.receive(&via_http(&m), now).await);
    assert!(text.contains("does not chain to a trusted root"), "{text}");
    assert_eq!(
        r.smn().cached_certificates(),
        0,
        "a refused certificate is not cached"
    );
}

#[tokio::test]
async fn a_certificate_from_the_test_ca_with_another_subject_is_refused() {
    let ca = TestCa::new();
    for (cn, dns) in [
        // Another host under the same domain: a bucket.
        (
            "bucket.obs.ru-moscow-1.hc.sbercloud.ru",
            vec!["bucket.obs.ru-moscow-1.hc.sbercloud.ru"],
        ),
        // Another region's SMN.
        (
            "smn.ru-moscow-2.hc.sbercloud.ru",
            vec!["smn.ru-moscow-2.hc.sbercloud.ru"],
        ),
        // A wildcard is not the SMN host named exactly.
        (
            "*.ru-moscow-1.hc.sbercloud.ru",
            vec!["*.ru-moscow-1.hc.sbercloud.ru"],
        ),
        // The right name as a suffix of another.
        ("evil-smn.ru-moscow-1.hc.sbercloud.ru", vec![]),
    ] {
        let wrong = ca.issue("rsa", cn, &dns);
        let now = OffsetDateTime::now_utc();
        let (r, _) = receiver(smn_config(&ca), &wrong.cert_pem);
        let m = notification(&wrong, now, CERT_URL, TOPIC);
        let text = refusal(r.receive(&via_http(&m), now).await);
        assert!(
            text.contains("not the SMN service's") && text.contains(SMN_HOST),
            "{cn}: {text}"
        );
        assert!(
            text.contains(cn),
            "names what the certificate carries: {text}"
        );
    }

    // `signing_subjects` replaces the default (the URL's host) with an exact list.
    let named = ca.issue("rsa", "SMN message signing ru-moscow-1", &[]);
    let host_named = ca.issue("rsa", SMN_HOST, &[SMN_HOST]);
    let now = OffsetDateTime::now_utc();
    let listed = SmnConfig {
        signing_subjects: vec!["smn message signing RU-MOSCOW-1".into()],
        ..smn_config(&ca)
    };
    let (r, _) = receiver(listed.clone(), &named.cert_pem);
    let m = notification(&named, now, CERT_URL, TOPIC);
    r.receive(&via_http(&m), now).await.unwrap();
    let (r, _) = receiver(listed, &host_named.cert_pem);
    let m = notification(&host_named, now, CERT_URL, TOPIC);
    let text = refusal(r.receive(&via_http(&m), now).await);
    assert!(text.contains("auth.smn.signing_subjects"), "{text}");
}

#[tokio::test]
async fn tampering_wrong_keys_and_stale_or_expired_messages_are_rejected() {
    let ca = TestCa::new();
    let smn = ca.issue("rsa", SMN_HOST, &[SMN_HOST]);
    let (r, _) = receiver(smn_config(&ca), &smn.cert_pem);
    let now = OffsetDateTime::now_utc();
    let good = notification(&smn, now, CERT_URL, TOPIC);
    r.receive(&via_http(&good), now).await.unwrap();

    let mut tampered = good.clone();
    tampered["message"] = good["message"]
        .as_str()
        .unwrap()
        .replace("pgsurge.multiplier=2", "pgsurge.multiplier=3")
        .into();
    let err = r.receive(&via_http(&tampered), now).await.unwrap_err();
    assert!(matches!(err, EventError::BadSignature(_)), "{err}");
    assert!(
        err.to_string()
            .contains("signature does not match the message (SHA256withRSA"),
        "{err}"
    );

    let mut retimed = good.clone();
    retimed["timestamp"] = ts(now + Duration::seconds(1)).into();
    assert!(matches!(
        r.receive(&via_http(&retimed), now).await.unwrap_err(),
        EventError::BadSignature(_)
    ));

    // Signed by another key from the same CA, pointing at our certificate.
    let other = ca.issue("rsa", SMN_HOST, &[SMN_HOST]);
    let forged = notification(&other, now, CERT_URL, TOPIC);
    assert!(refusal(r.receive(&via_http(&forged), now).await).contains("does not match"));

    let stale = notification(&smn, now - Duration::hours(2), CERT_URL, TOPIC);
    let err = r.receive(&via_http(&stale), now).await.unwrap_err();
    assert!(
        matches!(
            err,
            EventError::StaleTimestamp {
                window_secs: 3600,
                ..
            }
        ),
        "{err}"
    );

    let mut unsigned = good.clone();
    unsigned["signature"] = "not base64!".into();
    assert!(refusal(r.receive(&via_http(&unsigned), now).await).contains("not base64"));

    // A message signed while the certificate was valid, checked after it expired (the
    // cached certificate is re-checked on every use).
    let later = now + Duration::days(3);
    let expired = notification(&smn, later, CERT_URL, TOPIC);
    let text = refusal(r.receive(&via_http(&expired), later).await);
    assert!(text.contains("not valid now"), "{text}");
}

#[tokio::test]
async fn the_token_in_the_subscription_url_is_a_shared_secret_and_can_be_required_too() {
    let ca = TestCa::new();
    let smn = ca.issue("ec", SMN_HOST, &[SMN_HOST]);
    let now = OffsetDateTime::now_utc();
    let m = notification(&smn, now, CERT_URL, TOPIC);
    let auth = |smn: SmnConfig| AuthConfig {
        token: Some(Secret::new(TOKEN)),
        smn,
        ..AuthConfig::default()
    };

    // Both demanded (the default require_token = true): a valid signature alone is not
    // enough, nor is the token on a forged message.
    let both = SmnConfig {
        require_token: true,
        ..smn_config(&ca)
    };
    let (r, _) = receiver_with(auth(both), &smn.cert_pem);
    let text = refusal(r.receive(&via_http(&m), now).await);
    assert!(
        text.contains("auth.smn.require_token") && text.contains("?token=<token>"),
        "{text}"
    );
    let (event, how) = r
        .receive_authenticated(&with_query_token(&m, TOKEN), now)
        .await
        .unwrap();
    assert_eq!(how, Authenticated::SmnSignature);
    assert!(matches!(event, Event::Alarms { .. }));
    let text = refusal(
        r.receive(&with_query_token(&m, "wrong-token-value"), now)
            .await,
    );
    assert!(text.contains("the `token` query parameter"), "{text}");
    assert!(!text.contains("wrong-token-value") && !text.contains(TOKEN));
    let mut tampered = m.clone();
    tampered["message_id"] = "another".into();
    assert!(
        refusal(r.receive(&with_query_token(&tampered, TOKEN), now).await)
            .contains("signature does not match")
    );

    // Signature verification off (the default): the token in the URL authenticates an
    // SMN message like any webhook; without it the message is refused.
    let (r, served) = receiver_with(auth(SmnConfig::default()), &smn.cert_pem);
    let (_, how) = r
        .receive_authenticated(&with_query_token(&m, TOKEN), now)
        .await
        .unwrap();
    assert_eq!(how, Authenticated::SharedSecret);
    let text = refusal(r.receive(&via_http(&m), now).await);
    assert!(text.contains("`token` query parameter"), "{text}");
    assert!(
        served.asked().is_empty(),
        "no signature checked when it is off"
    );
}

fn subscription(signer: &Signer, now: OffsetDateTime, topic: &str, subscribe_url: &str) -> Value {
    let mut m = json!({
        "type": "SubscriptionConfirmation",
        "topic_urn": topic,
        "message_id": "0d1e2f3a4b5c4d6e8f9a0b1c2d3e4f5a",
        "message": format!("You are invited to subscribe to topic: {topic}."),
        "subscribe_url": subscribe_url,
        "timestamp": ts(now),
        "signature_version": "v1",
        "signing_cert_url": CERT_URL,
    });
    signer.sign_message(&mut m);
    m
}

#[tokio::test]
async fn subscriptions_are_confirmed_only_when_authenticated_for_an_allow_listed_topic() {
    let ca = TestCa::new();
    let smn = ca.issue("rsa", SMN_HOST, &[SMN_HOST]);
    let (r, served) = receiver(smn_config(&ca), &smn.cert_pem);
    let now = OffsetDateTime::now_utc();
    let subscribe_url = format!(
        "https://console.hc.sbercloud.ru/smn/subscription/confirm?token=7c2f&topic_urn={TOPIC}&region=ru-moscow-1"
    );
    let mut m = subscription(&smn, now, TOPIC, &subscribe_url);
    let (event, how) = r.receive_authenticated(&via_http(&m), now).await.unwrap();
    assert_eq!(how, Authenticated::SmnSignature);
    let Event::SubscriptionConfirmation(c) = event else {
        panic!("{event:?}")
    };
    assert_eq!(r.confirm(&c, how).await.unwrap(), Confirmation::Confirmed);
    assert_eq!(served.asked().last().unwrap(), &subscribe_url);
    // The regional SMN endpoint is a confirmation host too.
    let regional = format!("https://{SMN_HOST}/smn/subscription/confirm?token=1");
    let c2 = pgsurge::events::SubscriptionConfirmation {
        subscribe_url: regional.clone(),
        ..c.clone()
    };
    assert_eq!(r.confirm(&c2, how).await.unwrap(), Confirmation::Confirmed);

    m["type"] = "UnsubscribeConfirmation".into();
    smn.sign_message(&mut m);
    let (event, how) = r.receive_authenticated(&via_http(&m), now).await.unwrap();
    let Event::SubscriptionConfirmation(c) = event else {
        panic!("{event:?}")
    };
    assert!(c.unsubscribe);
    let asked = served.asked().len();
    assert!(
        matches!(r.confirm(&c, how).await.unwrap(), Confirmation::NotConfirmed(why) if why.contains("never")),
        "never re-subscribe on an unsubscribe message"
    );
    // A confirmation that did not come over HTTP authenticated is never followed.
    m["type"] = "SubscriptionConfirmation".into();
    let (event, how) = r
        .receive_authenticated(&Webhook::direct(m.to_string()), now)
        .await
        .unwrap();
    assert_eq!(how, Authenticated::Platform);
    let Event::SubscriptionConfirmation(c) = event else {
        panic!("{event:?}")
    };
    assert!(matches!(
        r.confirm(&c, how).await.unwrap(),
        Confirmation::NotConfirmed(_)
    ));
    assert_eq!(served.asked().len(), asked);

    // A forged subscription (tampered URL) is refused before anything is visited.
    let mut tampered = subscription(&smn, now, TOPIC, &subscribe_url);
    tampered["subscribe_url"] = format!(
        "https://console.hc.sbercloud.ru/smn/subscription/confirm?token=attacker&topic_urn={TOPIC}"
    )
    .into();
    assert!(refusal(r.receive(&via_http(&tampered), now).await).contains("does not match"));

    // Signed links that are not SMN confirmation links for this topic are not visited.
    for (url, why) in [
        (
            "https://attacker.obs.ru-moscow-1.hc.sbercloud.ru/smn/subscription/confirm".to_string(),
            "is not the SMN endpoint",
        ),
        (
            "https://console.hc.sbercloud.ru.evil.com/smn/subscription/confirm".to_string(),
            "is not the SMN endpoint",
        ),
        (
            "https://console.hc.sbercloud.ru/smn/other".to_string(),
            "is not /smn/subscription/confirm",
        ),
        (
            "https://console.hc.sbercloud.ru/smn/subscription/confirm?topic_urn=urn:smn:ru-moscow-1:x:other"
                .to_string(),
            "names topic",
        ),
    ] {
        let m = subscription(&smn, now, TOPIC, &url);
        let (event, how) = r.receive_authenticated(&via_http(&m), now).await.unwrap();
        let Event::SubscriptionConfirmation(c) = event else {
            panic!("{event:?}")
        };
        let err = r.confirm(&c, how).await.unwrap_err().to_string();
        assert!(err.contains(why), "{url}: {err}");
    }
    assert_eq!(served.asked().len(), asked);

    // A topic that is not allow-listed: with verification on, refused outright; with
    // the token (verification off), authenticated but not auto-confirmed.
    let other_topic = "urn:smn:ru-moscow-1:99999999999999999999999999999999:other";
    let foreign = subscription(
        &smn,
        now,
        other_topic,
        "https://console.hc.sbercloud.ru/smn/subscription/confirm?token=1",
    );
    assert!(refusal(r.receive(&via_http(&foreign), now).await).contains("auth.smn.topic_urns"));
    let by_token = AuthConfig {
        token: Some(Secret::new(TOKEN)),
        smn: SmnConfig {
            topic_urns: vec![TOPIC.into()],
            ..SmnConfig::default()
        },
        ..AuthConfig::default()
    };
    let (r, served) = receiver_with(by_token, &smn.cert_pem);
    let (event, how) = r
        .receive_authenticated(&with_query_token(&foreign, TOKEN), now)
        .await
        .unwrap();
    assert_eq!(how, Authenticated::SharedSecret);
    let Event::SubscriptionConfirmation(c) = event else {
        panic!("{event:?}")
    };
    match r.confirm(&c, how).await.unwrap() {
        Confirmation::NotConfirmed(why) => {
            assert!(why.contains("is not in auth.smn.topic_urns"), "{why}")
        }
        Confirmation::Confirmed => panic!("confirmed a topic that is not allow-listed"),
    }
    // The allow-listed topic, authenticated by the token, is confirmed.
    let ours = subscription(&smn, now, TOPIC, &subscribe_url);
    let (event, how) = r
        .receive_authenticated(&with_query_token(&ours, TOKEN), now)
        .await
        .unwrap();
    let Event::SubscriptionConfirmation(c) = event else {
        panic!("{event:?}")
    };
    assert_eq!(r.confirm(&c, how).await.unwrap(), Confirmation::Confirmed);
    assert_eq!(served.asked(), [subscribe_url]);
}

#[test]
fn signature_verification_needs_allow_listed_topics_and_the_token_when_required() {
    let load = |toml: &str| {
        Config::from_toml(toml)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let err = load("[auth.smn]\nverify_signature = true\n").unwrap_err();
    assert!(
        err.contains("`auth.smn.topic_urns`") && err.contains("verify_signature is on"),
        "{err}"
    );
    let err = load(&format!(
        "[auth.smn]\nverify_signature = true\ntopic_urns = [\"{TOPIC}\"]\n"
    ))
    .unwrap_err();
    assert!(err.contains("`auth.smn.require_token`"), "{err}");
    load(&format!(
        "[auth]\ntoken = \"{TOKEN}\"\n[auth.smn]\nverify_signature = true\ntopic_urns = [\"{TOPIC}\"]\n"
    ))
    .unwrap();
    load(&format!(
        "[auth.smn]\nverify_signature = true\nrequire_token = false\ntopic_urns = [\"{TOPIC}\"]\n"
    ))
    .unwrap();
    let err = load("[auth.smn]\ntopic_urns = [\"pgsurge-alarms\"]\n").unwrap_err();
    assert!(err.contains("urn:smn:<region>"), "{err}");
    let err = load("[auth.smn]\ndomains = [\".hc.sbercloud.ru\"]\n").unwrap_err();
    assert!(err.contains("`auth.smn.domains`"), "{err}");
    let err = load("[auth]\ntoken_query_param = \"to ken\"\n").unwrap_err();
    assert!(err.contains("`auth.token_query_param`"), "{err}");
    // The old suffix list is gone, not silently reinterpreted.
    let err = load("[auth.smn]\ncert_hosts = [\"hc.sbercloud.ru\"]\n").unwrap_err();
    assert!(err.contains("cert_hosts"), "{err}");
    // Off (the default), nothing SMN-specific is needed.
    load("").unwrap();
}

/// One receiver per warm process: the composition root builds it once into the `App`
/// the handlers capture, so the certificate cache survives across invocations. Counted
/// through the handler layer with a fetcher that records every fetch.
#[tokio::test]
async fn the_certificate_cache_hits_across_invocations_of_a_warm_process() {
    use pgsurge::runtime::{Context, Host, LambdaEvent};
    let ca = TestCa::new();
    let smn = ca.issue("rsa", SMN_HOST, &[SMN_HOST]);
    let mut config = Config::default();
    config.auth.smn = smn_config(&ca);
    // A receiver whose fetcher counts (the real one would need the network).
    let (r, served) = receiver(config.auth.smn.clone(), &smn.cert_pem);
    let app = Arc::new(pgsurge::app::App::with_receiver(config, Arc::new(r)));
    for i in 0..3 {
        let now = OffsetDateTime::now_utc();
        let m = notification(&smn, now, CERT_URL, TOPIC);
        let ctx = Context::new(
            format!("req-{i}"),
            "scale-up",
            Host::Http,
            std::time::Duration::from_secs(30),
        );
        // Authenticated (a refusal would be an Err); what the function then decides
        // does not matter here.
        pgsurge::handlers::scale_up(app.clone(), LambdaEvent::new(via_http(&m), ctx))
            .await
            .unwrap();
    }
    assert_eq!(
        served.asked(),
        [CERT_URL],
        "fetched once for three invocations"
    );
}

/// `openssl s_server -WWW` serving a directory over TLS; killed on drop.
struct TlsServer(std::process::Child);
impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn the_real_fetcher_gets_the_certificate_over_verified_https() {
    let ca = TestCa::new();
    let smn = ca.issue("rsa", SMN_HOST, &[SMN_HOST]);
    let d: PathBuf = ca.dir.path().to_path_buf();
    // A TLS server certificate for 127.0.0.1 from the same test CA.
    openssl(
        &d,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "srv.key",
            "-out",
            "srv.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(
        d.join("srv.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        &d,
        &[
            "x509",
            "-req",
            "-in",
            "srv.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-set_serial",
            "999",
            "-days",
            "2",
            "-extfile",
            "srv.ext",
            "-out",
            "srv.pem",
        ],
    );
    let www = d.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("smn.pem"), &smn.cert_pem).unwrap();
    let port = pgsurge_tests::free_port();
    let _server = TlsServer(
        Command::new("openssl")
            .args([
                "s_server",
                "-quiet",
                "-WWW",
                "-accept",
                &format!("127.0.0.1:{port}"),
            ])
            .arg("-cert")
            .arg(d.join("srv.pem"))
            .arg("-key")
            .arg(d.join("srv.key"))
            .current_dir(&www)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let cert_url = format!("https://127.0.0.1:{port}/smn.pem");
    let fetcher = HttpsFetcher::new(&smn_config(&ca)).unwrap();
    let got = fetcher.get(&cert_url).await.unwrap();
    assert_eq!(got, smn.cert_pem);
    // What it fetched verifies a message (served from memory at the SMN URL).
    let (r, _) = receiver(smn_config(&ca), &got);
    let now = OffsetDateTime::now_utc();
    r.receive(&via_http(&notification(&smn, now, CERT_URL, TOPIC)), now)
        .await
        .unwrap();

    // Without the private CA the same fetch fails TLS verification.
    let strict = HttpsFetcher::new(&SmnConfig::default()).unwrap();
    let err = strict.get(&cert_url).await.unwrap_err();
    assert!(err.0.contains(&cert_url), "{err}");
    let err = strict
        .get(&format!("http://127.0.0.1:{port}/smn.pem"))
        .await
        .unwrap_err();
    assert!(!err.0.is_empty());
}

/// The signature covers only the SMN keys. A captured genuine message (still inside the
/// age window) with keys of another format added next to them must not be read as that
/// format: each variant is refused, names the injected keys, and yields no alarm.
#[tokio::test]
async fn a_signed_message_with_injected_keys_of_another_format_is_refused() {
    let ca = TestCa::new();
    let smn = ca.issue("rsa", SMN_HOST, &[SMN_HOST]);
    let (r, _) = receiver(smn_config(&ca), &smn.cert_pem);
    let now = OffsetDateTime::now_utc();
    let genuine = notification(&smn, now - Duration::minutes(10), CERT_URL, TOPIC);
    // The genuine message itself is accepted (so the refusals below are due to the keys).
    let (event, how) = r
        .receive_authenticated(&via_http(&genuine), now)
        .await
        .unwrap();
    assert_eq!(how, Authenticated::SmnSignature);
    assert!(matches!(event, Event::Alarms { .. }), "{event:?}");

    let forged_alerts = json!([{
        "status": "firing",
        "labels": {"alertname": "Forged", "pgsurge_replicas": "10"},
        "annotations": {},
        "startsAt": "2026-11-25T09:00:00Z",
        "fingerprint": "f00d"
    }]);
    let injections: Vec<(Vec<(&str, Value)>, &str)> = vec![
        (
            vec![("version", json!("4")), ("alerts", forged_alerts)],
            "alerts, version",
        ),
        (
            vec![("alarm_id", json!("forged")), ("current", json!("alarm"))],
            "alarm_id, current",
        ),
        (
            vec![
                ("pgsurge", json!(1)),
                ("kind", json!("alarm")),
                ("id", json!("x")),
                ("name", json!("x")),
                ("state", json!("firing")),
            ],
            "pgsurge",
        ),
        (
            vec![
                ("lifecycle_action_key", json!("k")),
                ("instance_id", json!("i")),
            ],
            "lifecycle_action_key",
        ),
    ];
    for (added, named) in injections {
        let mut m = genuine.clone();
        for (k, v) in added {
            m[k] = v;
        }
        let err = r.receive(&via_http(&m), now).await.unwrap_err();
        assert!(matches!(err, EventError::Unauthenticated(_)), "{err}");
        let text = err.to_string();
        assert!(
            text.contains(&format!("keys of another event format ({named})")),
            "{text}"
        );
        assert!(text.contains("signature does not cover"), "{text}");
    }
}
