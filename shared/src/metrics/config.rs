//! `[metrics]`: where metrics go after each invocation.

use super::PushFormat;
use crate::check::{in_range, invalid, Checked};
use serde::Deserialize;

/// Where metrics go after each invocation.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Base URL of VictoriaMetrics/vmagent or a Pushgateway; empty = do not push.
    pub push_url: String,
    pub push_format: PushFormat,
    /// `job` label of pushed series.
    pub job: String,
    /// Upper bound on one push; a slow metrics server must not eat the function's deadline.
    pub push_timeout_ms: u64,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            push_url: String::new(),
            push_format: PushFormat::Victoriametrics,
            job: "pgsurge".into(),
            push_timeout_ms: 2000,
        }
    }
}

impl MetricsConfig {
    /// Checks for `[metrics]` that types alone cannot express (keys relative to it).
    pub fn validate(&self) -> Checked {
        let m = self;
        if !m.push_url.is_empty() {
            let url = reqwest::Url::parse(&m.push_url)
                .map_err(|e| invalid("push_url", format!("not a URL: {e}")))?;
            if !matches!(url.scheme(), "http" | "https") || url.password().is_some() {
                return Err(invalid(
                    "push_url",
                    "must be an http(s) URL without credentials",
                ));
            }
        }
        if m.job.is_empty()
            || !m
                .job
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(invalid(
                "job",
                format!("{:?} must be non-empty [A-Za-z0-9_-]", m.job),
            ));
        }
        in_range("push_timeout_ms", m.push_timeout_ms, 100..=30_000)
    }
}
