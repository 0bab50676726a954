//! `[runtime]`: the hosts' own settings (body limit, deadlines, the HTTP listener).

use crate::check::{in_range, invalid, ip_address, Checked};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Largest accepted event body; larger ones get 413 / PayloadTooLarge.
    pub max_body_bytes: usize,
    /// Deadline for hosts that do not give one (CLI, HTTP, FunctionGraph without RUNTIME_TIMEOUT).
    pub timeout_secs: u64,
    /// HTTP host port when neither `--port` nor `PORT` is given (FunctionGraph HTTP functions use 8000).
    pub http_port: u16,
    /// HTTP host bind address.
    pub http_bind: String,
    /// HTTP host: the request line and headers must have arrived this many seconds after
    /// the connection opened or the first byte of the request came (slow-header clients).
    pub header_timeout_secs: u64,
    /// HTTP host: the whole body must have arrived this many seconds after the headers;
    /// else 408 and the connection is closed.
    pub body_timeout_secs: u64,
    /// HTTP host: a keep-alive connection with no request for this long is closed. Keep
    /// a proxy's upstream keep-alive below it.
    pub idle_timeout_secs: u64,
    /// HTTP host: open connections at most (webhook listener); beyond it a new
    /// connection gets 503 and is closed at once, never queued.
    pub max_connections: usize,
    /// `host:port` where the HTTP host serves `GET /metrics` (Prometheus text); empty =
    /// not served (metrics are pushed, see `[metrics]`). Never the webhook listener.
    pub metrics_listen: String,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            max_body_bytes: 256 * 1024,
            timeout_secs: 60,
            http_port: 8000,
            http_bind: "127.0.0.1".into(),
            header_timeout_secs: 10,
            body_timeout_secs: 30,
            idle_timeout_secs: 30,
            max_connections: 128,
            metrics_listen: String::new(),
        }
    }
}

impl RuntimeConfig {
    /// Checks for `[runtime]` that types alone cannot express (keys relative to it).
    pub fn validate(&self) -> Checked {
        let r = self;
        in_range("max_body_bytes", r.max_body_bytes, 1024..=10 * 1024 * 1024)?;
        in_range("timeout_secs", r.timeout_secs, 1..=900)?;
        if r.http_bind != "localhost" {
            ip_address("http_bind", &r.http_bind)?;
        }
        in_range("header_timeout_secs", r.header_timeout_secs, 1..=300)?;
        in_range("body_timeout_secs", r.body_timeout_secs, 1..=900)?;
        in_range("idle_timeout_secs", r.idle_timeout_secs, 1..=3600)?;
        in_range("max_connections", r.max_connections, 1..=65_536)?;
        if !r.metrics_listen.is_empty() && r.metrics_listen.parse::<std::net::SocketAddr>().is_err()
        {
            return Err(invalid(
                "metrics_listen",
                format!(
                    "{:?} is not an IP:port (e.g. 127.0.0.1:9464); empty turns /metrics off",
                    r.metrics_listen
                ),
            ));
        }
        Ok(())
    }
}
