//! Domain errors → the function error a host reports (and so the HTTP status).
//!
//! The library's modules return their own typed errors and know nothing of the
//! runtime; how each failure is classed for the caller is decided here, at the edge.

use crate::events::EventError;
use crate::ops::OpsError;
use crate::runtime::{ErrorKind, FunctionError};
use crate::state::StateError;

impl From<EventError> for FunctionError {
    fn from(e: EventError) -> Self {
        let kind = match e {
            EventError::Unauthenticated(_)
            | EventError::StaleTimestamp { .. }
            | EventError::BadSignature(_) => ErrorKind::Unauthorized,
            EventError::TooLarge { .. } => ErrorKind::PayloadTooLarge,
            EventError::Unavailable(_) => ErrorKind::Unavailable,
            _ => ErrorKind::BadRequest,
        };
        FunctionError::new(kind, e.to_string())
    }
}

impl From<StateError> for FunctionError {
    fn from(e: StateError) -> Self {
        let kind = match &e {
            StateError::Conflict { .. } | StateError::Contended { .. } => ErrorKind::Conflict,
            StateError::Indeterminate { .. } | StateError::Backend { .. } | StateError::Lock(_) => {
                ErrorKind::Unavailable
            }
            _ => ErrorKind::Internal,
        };
        FunctionError::new(kind, e.to_string())
    }
}

impl From<OpsError> for FunctionError {
    fn from(e: OpsError) -> Self {
        match e {
            OpsError::State(s) => s.into(),
            OpsError::Cloud(c) if c.is_retryable() => {
                FunctionError::new(ErrorKind::Unavailable, c.to_string())
            }
            OpsError::Postgres(p) => FunctionError::new(ErrorKind::Unavailable, p.to_string()),
            other => FunctionError::new(ErrorKind::Internal, other.to_string()),
        }
    }
}
