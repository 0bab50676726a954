//! Logging: `tracing` to stderr, JSON lines when stderr is not a terminal.
//!
//! stdout is reserved for results (the CLI host prints the handler's JSON there), so
//! logs always go to stderr. `RUST_LOG` overrides the default filter ([`DEFAULT_FILTER`]).
//!
//! The default is `info`, except for the OpenStack SDK: it logs every HTTP request at
//! INFO ("Sending request ..." with URL and headers, the token header marked sensitive),
//! which would double every call's line next to our own `openstack call` event (that one
//! carries the request id). At `warn` it still reports 401 re-authentication.

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// What is logged when `RUST_LOG` is not set.
pub const DEFAULT_FILTER: &str = "info,openstack_sdk=warn,openstack_sdk_core=warn";

/// The filter in effect: `RUST_LOG` if set and valid, else [`DEFAULT_FILTER`].
pub fn filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER))
}

/// Install the global subscriber once. Safe to call twice (the second call is a no-op).
pub fn init() {
    let filter = filter();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = if std::io::stderr().is_terminal() {
        builder.compact().try_init()
    } else {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
    };
    // Already installed (tests call this repeatedly): keep the first one.
    drop(result);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::fmt::MakeWriter;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl<'a> MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }

    #[test]
    fn the_sdk_request_lines_are_off_by_default_ours_are_on() {
        let buf = Buf::default();
        let sub = tracing_subscriber::fmt()
            .with_env_filter(EnvFilter::new(DEFAULT_FILTER))
            .with_writer(buf.clone())
            .finish();
        tracing::subscriber::with_default(sub, || {
            // the targets the SDK's events carry (module paths of openstack_sdk 0.22)
            tracing::info!(target: "openstack_sdk::openstack_async", "Sending request 1");
            tracing::info!(target: "openstack_sdk_core::session", "Sending request 2");
            tracing::warn!(target: "openstack_sdk::openstack_async", "Received 401 Unauthorized");
            tracing::info!(target: "pgsurge::cloud::openstack::errors", "openstack call");
        });
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert!(!out.contains("Sending request"), "{out}");
        assert!(out.contains("Received 401"), "{out}");
        assert!(out.contains("openstack call"), "{out}");
    }
}
