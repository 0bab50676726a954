//! What a handler receives: the typed payload plus the invocation's context.

pub use crate::secret::Credentials;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The event handed to a handler, shaped like `lambda_runtime::LambdaEvent`.
#[derive(Debug, Clone)]
pub struct LambdaEvent<T> {
    pub payload: T,
    pub context: Context,
}

impl<T> LambdaEvent<T> {
    pub fn new(payload: T, context: Context) -> Self {
        LambdaEvent { payload, context }
    }
}

/// Which host delivered the invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Host {
    /// FunctionGraph custom runtime (`RUNTIME_API_ADDR`).
    FunctionGraph,
    /// AWS Lambda runtime API (`AWS_LAMBDA_RUNTIME_API`).
    Lambda,
    /// HTTP function / plain webhook server.
    Http,
    /// `<binary> invoke --event FILE` on a terminal or in a test.
    Cli,
}

impl Host {
    pub fn as_str(self) -> &'static str {
        match self {
            Host::FunctionGraph => "functiongraph",
            Host::Lambda => "lambda",
            Host::Http => "http",
            Host::Cli => "cli",
        }
    }
}

/// Invocation context, a superset of `lambda_runtime::Context`.
#[derive(Debug, Clone)]
pub struct Context {
    pub request_id: String,
    /// Deadline in milliseconds since the Unix epoch, as Lambda reports it.
    pub deadline_ms: u64,
    pub function_name: String,
    pub function_version: String,
    pub memory_mb: Option<u32>,
    pub invoked_function_arn: Option<String>,
    /// FunctionGraph's `X-CFF-Invoke-Type`, Lambda's trace id is not kept.
    pub invoke_type: Option<String>,
    pub host: Host,
    /// Temporary credentials from the host, when it passed any.
    pub credentials: Option<Credentials>,
}

impl Context {
    /// A context for an invocation starting now that must end within `timeout`.
    pub fn new(
        request_id: impl Into<String>,
        function_name: &str,
        host: Host,
        timeout: Duration,
    ) -> Self {
        Context {
            request_id: request_id.into(),
            deadline_ms: now_ms().saturating_add(timeout.as_millis() as u64),
            function_name: function_name.to_string(),
            function_version: "$LATEST".to_string(),
            memory_mb: None,
            invoked_function_arn: None,
            invoke_type: None,
            host,
            credentials: None,
        }
    }

    pub fn deadline(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.deadline_ms)
    }

    /// Time left before the host gives up on this invocation (zero when past).
    pub fn remaining(&self) -> Duration {
        Duration::from_millis(self.deadline_ms.saturating_sub(now_ms()))
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_counts_down_and_saturates() {
        let ctx = Context::new("r", "f", Host::Cli, Duration::from_secs(30));
        assert!(ctx.remaining() <= Duration::from_secs(30));
        assert!(ctx.remaining() > Duration::from_secs(29));
        let past = Context {
            deadline_ms: 1,
            ..ctx
        };
        assert_eq!(past.remaining(), Duration::ZERO);
    }
}
