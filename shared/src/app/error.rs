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
            // The state or the cloud says no (409), or the request cannot be done as
            // configured (422): neither is a server fault.
            OpsError::Refused(r) => {
                let kind = if r.is_conflict() {
                    ErrorKind::Conflict
                } else {
                    ErrorKind::Unprocessable
                };
                FunctionError::new(kind, OpsError::Refused(r).to_string())
            }
            other => FunctionError::new(ErrorKind::Internal, other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::Refusal;

    /// A refusal is the state or the request saying no, never a server fault (500); its
    /// message keeps every fact.
    #[test]
    fn refusals_are_conflicts_or_unprocessable_not_internal_errors() {
        let conflict: FunctionError = OpsError::from(Refusal::StillRouted {
            name: "pgsurge-c-r1".into(),
            why: "node h1 still routes to it".into(),
        })
        .into();
        assert_eq!(conflict.kind.http_status(), 409);
        assert_eq!(
            conflict.message,
            "refused: pgsurge-c-r1: not deleting the replica: node h1 still routes to it; \
             left draining for the next run"
        );
        let unprocessable: FunctionError = OpsError::from(Refusal::BaseReplicaGone {
            replica: "base-1".into(),
        })
        .into();
        assert_eq!(unprocessable.kind.http_status(), 422);
        assert_eq!(unprocessable.error_type, "Unprocessable");
        assert!(unprocessable.message.contains("base-1 is a base replica"));
    }
}
