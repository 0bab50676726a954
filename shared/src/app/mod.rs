//! The composition root: the one place that knows the whole application.
//!
//! Each function's `main` calls [`main`] with its handler. It loads the configuration,
//! builds what lives as long as the process — the webhook [`Receiver`] (its SMN
//! certificate cache), the ports (cloud, state store, HAProxy nodes, PostgreSQL) — into
//! one [`App`], and hands the runtime a handler that captures it, with the runtime's
//! own settings and the HTTP host's early authentication ([`gate::AuthGate`]). Below
//! this module nothing reads the assembled configuration or the runtime's types; the
//! mapping of domain errors to a function error (and so to an HTTP status) is here too
//! ([`error`]).

mod build;
pub mod error;
mod gate;

pub use build::{build, receiver};
pub use gate::AuthGate;

use crate::config::Config;
use crate::events::{EventError, Receiver};
use crate::ops::{OpsError, Ports};
use crate::runtime::{self, Handler};
use crate::secret::Credentials;
use serde::de::DeserializeOwned;
use std::process::ExitCode;
use std::sync::Arc;
use tokio::sync::Mutex;

/// What a warm process keeps across invocations.
pub struct App {
    pub config: Arc<Config>,
    receiver: Arc<Receiver>,
    ports: Mutex<Option<Built>>,
}

/// The ports built last, with the host credentials they were built from.
struct Built {
    creds: Option<Credentials>,
    ports: Option<Arc<Ports>>,
}

impl App {
    /// With the real webhook receiver (its HTTPS client reads the system CA store).
    pub fn new(config: Config) -> Result<App, EventError> {
        let receiver = Arc::new(receiver(&config)?);
        Ok(App::with_receiver(config, receiver))
    }

    /// With a given receiver (an embedding that brings its own certificate fetcher; the
    /// tests, to count fetches across invocations).
    pub fn with_receiver(config: Config, receiver: Arc<Receiver>) -> App {
        App {
            config: Arc::new(config),
            receiver,
            ports: Mutex::new(None),
        }
    }

    /// The webhook receiver, built once per process.
    ///
    /// Why: it holds the SMN certificate cache and an HTTPS client whose construction
    /// reads the system CA store (~150 files, ~20 ms); built per invocation, the cache
    /// never hit and every SMN message fetched its certificate again. It does not depend
    /// on the host's credentials, so it survives their rotation.
    pub fn receiver(&self) -> &Arc<Receiver> {
        &self.receiver
    }

    /// The ports for the host's current credentials, built once and kept.
    ///
    /// Why: the HTTP and runtime-API hosts serve many invocations from one warm process.
    /// Building per invocation would log in to Keystone, run the object store's
    /// conditional-write probe (a scratch write) and open new connection pools on every
    /// webhook. They are built at the first invocation that needs them (the credentials
    /// arrive with it) and rebuilt when the host's temporary credentials change —
    /// FunctionGraph rotates those, and ports built from expired ones would fail. A
    /// failed build is not kept.
    pub async fn ports(&self, creds: Option<&Credentials>) -> Result<Option<Arc<Ports>>, OpsError> {
        let mut built = self.ports.lock().await;
        if let Some(b) = built.as_ref() {
            if b.creds.as_ref() == creds {
                return Ok(b.ports.clone());
            }
        }
        let ports = build(&self.config, creds).await?.map(Arc::new);
        *built = Some(Built {
            creds: creds.cloned(),
            ports: ports.clone(),
        });
        Ok(ports)
    }

    /// The runtime's own settings, from `[runtime]` and `[metrics]`.
    pub fn runtime_settings(&self) -> runtime::Settings {
        runtime::Settings {
            runtime: self.config.runtime.clone(),
            metrics: self.config.metrics.clone(),
        }
    }
}

/// Entry point of every function binary: logging, arguments, configuration, the
/// [`App`], then the host. `handler` captures the app; it is built once per process.
pub async fn main<T, H>(function: &'static str, handler: impl FnOnce(Arc<App>) -> H) -> ExitCode
where
    T: DeserializeOwned + Send + 'static,
    H: Handler<T>,
{
    crate::logging::init();
    let args = runtime::Args::parse();
    let config = match Config::load(args.config()) {
        Ok(c) => c,
        Err(e) => {
            return runtime::init_failed(function, format!("invalid configuration: {e}")).await
        }
    };
    let app = match App::new(config) {
        Ok(a) => Arc::new(a),
        Err(e) => {
            return runtime::init_failed(function, format!("cannot receive webhooks: {e}")).await
        }
    };
    let gate = Arc::new(AuthGate::new(app.config.auth.clone()));
    let settings = app.runtime_settings();
    runtime::run(function, args, settings, Some(gate), handler(app)).await
}
