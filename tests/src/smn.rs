//! The SMN side of message signatures, for the tests: what SMN signs, built from Huawei
//! Cloud's documentation independently of the library's verifier.

use serde_json::Value;

/// The string SMN signs for message `m`: `key\nvalue\n` for each signed key in order,
/// `subject` left out when empty.
pub fn string_to_sign(m: &Value) -> String {
    let keys: &[&str] = if m["type"] == "Notification" {
        &[
            "message",
            "message_id",
            "subject",
            "timestamp",
            "topic_urn",
            "type",
        ]
    } else {
        &[
            "message",
            "message_id",
            "subscribe_url",
            "timestamp",
            "topic_urn",
            "type",
        ]
    };
    keys.iter()
        .filter_map(|k| {
            m[*k]
                .as_str()
                .filter(|v| *k != "subject" || !v.is_empty())
                .map(|v| format!("{k}\n{v}\n"))
        })
        .collect()
}
