//! The error a handler returns, and how every host reports it.

use serde::Serialize;
use std::fmt;

/// Broad classes of failure; each host maps them to its own signal (HTTP status,
/// exit code, `errorType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ErrorKind {
    /// The event is malformed or not meant for this function.
    BadRequest,
    /// Missing or wrong credentials / signature.
    Unauthorized,
    /// The body is larger than `runtime.max_body_bytes`.
    PayloadTooLarge,
    /// HTTP host: no such path on this listener.
    NotFound,
    /// HTTP host: the path exists, the method does not.
    MethodNotAllowed,
    /// HTTP host: the body did not arrive within `runtime.body_timeout_secs`.
    RequestTimeout,
    /// Lost a race that could not be retried within the deadline, or the request
    /// conflicts with the current state.
    Conflict,
    /// Well-formed, but cannot be carried out (as configured).
    Unprocessable,
    /// A dependency is down or timed out; retrying later may work.
    Unavailable,
    /// The invocation ran past its deadline.
    Timeout,
    /// A bug or an unexpected failure (including a handler panic).
    Internal,
}

impl ErrorKind {
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::BadRequest => 400,
            ErrorKind::Unauthorized => 401,
            ErrorKind::PayloadTooLarge => 413,
            ErrorKind::NotFound => 404,
            ErrorKind::MethodNotAllowed => 405,
            ErrorKind::RequestTimeout => 408,
            ErrorKind::Conflict => 409,
            ErrorKind::Unprocessable => 422,
            ErrorKind::Unavailable => 503,
            ErrorKind::Timeout => 504,
            ErrorKind::Internal => 500,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "BadRequest",
            ErrorKind::Unauthorized => "Unauthorized",
            ErrorKind::PayloadTooLarge => "PayloadTooLarge",
            ErrorKind::NotFound => "NotFound",
            ErrorKind::MethodNotAllowed => "MethodNotAllowed",
            ErrorKind::RequestTimeout => "RequestTimeout",
            ErrorKind::Conflict => "Conflict",
            ErrorKind::Unprocessable => "Unprocessable",
            ErrorKind::Unavailable => "Unavailable",
            ErrorKind::Timeout => "Timeout",
            ErrorKind::Internal => "Internal",
        }
    }
}

/// What a failed invocation reports: `{"errorType": ..., "errorMessage": ...}`, the
/// shape both the Lambda and FunctionGraph runtime APIs expect.
///
/// Messages are built from typed library errors, which never carry secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FunctionError {
    #[serde(skip)]
    pub kind: ErrorKind,
    #[serde(rename = "errorType")]
    pub error_type: String,
    #[serde(rename = "errorMessage")]
    pub message: String,
}

impl FunctionError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        FunctionError {
            kind,
            error_type: kind.as_str().to_string(),
            message: message.into(),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

impl fmt::Display for FunctionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.error_type, self.message)
    }
}

impl std::error::Error for FunctionError {}
