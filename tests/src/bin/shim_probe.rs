//! Test binary for the runtime shim (see tests/tests/runtime_hosts.rs).
//!
//! Event `{"panic": true}` panics, `{"fail": "msg"}` returns an error, `{"sleep_ms": N}`
//! sleeps, anything else echoes the payload and the context the host built.

use pgsurge::app;
use pgsurge::runtime::{self, ErrorKind, FunctionError, LambdaEvent};
use serde_json::{json, Value};

async fn probe(event: LambdaEvent<Value>) -> Result<Value, FunctionError> {
    // Over HTTP the payload is the API-gateway-style envelope; the request is its body.
    let inner = event
        .payload
        .get("httpMethod")
        .and(event.payload.get("body"))
        .and_then(|b| b.as_str())
        .and_then(|b| serde_json::from_str::<Value>(b).ok());
    let p = inner.as_ref().unwrap_or(&event.payload);
    if p.get("panic").is_some() {
        panic!("probe asked to panic");
    }
    if let Some(msg) = p.get("fail").and_then(|m| m.as_str()) {
        return Err(FunctionError::new(ErrorKind::Unavailable, msg));
    }
    if let Some(ms) = p.get("sleep_ms").and_then(|m| m.as_u64()) {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    let c = &event.context;
    let creds = c.credentials.as_ref();
    Ok(json!({
        "payload": p,
        "context": {
            "request_id": c.request_id,
            "deadline_ms": c.deadline_ms,
            "remaining_ms": c.remaining().as_millis() as u64,
            "function_name": c.function_name,
            "function_version": c.function_version,
            "memory_mb": c.memory_mb,
            "invoked_function_arn": c.invoked_function_arn,
            "invoke_type": c.invoke_type,
            "host": c.host,
            "access_key": creds.and_then(|c| c.access_key.clone()),
            "has_security_token": creds.map(|c| c.security_token.is_some()).unwrap_or(false),
        }
    }))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    app::main("shim-probe", |_app| runtime::service_fn(probe)).await
}
