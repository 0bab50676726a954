//! Auto Scaling lifecycle hooks (instance launching / terminating): recognised, and
//! refused.
//!
//! A lifecycle hook suspends the instance until someone answers it with the
//! notification's `lifecycle_action_key` (AS API: complete the lifecycle action,
//! CONTINUE / ABANDON). pgsurge has no AS API client, so it could only read the hook and
//! leave the instance suspended until the hook's timeout, then let the default result
//! happen — which looked like handling while deciding nothing. And pgsurge does not
//! manage Auto Scaling groups: it creates and deletes its replicas itself. So the format
//! is refused with a message that says so and what to send instead, rather than
//! accepted and dropped.

use super::EventError;

/// The refusal of any AS lifecycle hook notification (posted directly or through SMN).
pub(super) fn refuse() -> EventError {
    EventError::Unsupported(
        "Auto Scaling lifecycle hooks are not supported: pgsurge cannot answer the hook \
         (it does not call the AS API to complete the lifecycle action), so the instance \
         would stay suspended until the hook times out. pgsurge creates and removes its \
         replicas itself: send scale alarms to scale-up / scale-down, and to report a \
         server use the generic form ({\"pgsurge\": 1, \"kind\": \"instance\", \"event\": \
         \"ready\" | \"deleted\", \"server_id\": ...}); remove the lifecycle hook's \
         subscription to this endpoint"
            .into(),
    )
}
