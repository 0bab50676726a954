//! # pgsurge — elastic PostgreSQL read replicas from copy-on-write snapshot clones
//!
//! A read tier that must double or triple in minutes cannot wait for `pg_basebackup`
//! to copy 300 GB. pgsurge makes each new replica from a copy-on-write clone of a
//! block-storage snapshot of an existing replica, lets PostgreSQL replay only the WAL
//! written since the snapshot, proves the replica is caught up, and registers it in
//! every HAProxy. Scale-down drains, unregisters and deletes, never touching the primary.
//!
//! ## Architecture
//!
//! Small binaries (`functions/*`) react to webhooks. Each `main.rs` only hands one of
//! the handlers in [`handlers`] to [`app::main`]; everything else lives here. The
//! modules, leaves first (the allowed uses between them are the table in
//! `architecture.rs`, kept by a unit test; ARCHITECTURE.md mirrors it):
//!
//! * [`model`] — the data every layer shares: the cluster state document
//!   ([`model::ClusterState`]: forward- and backward-compatible JSON), the normalised
//!   [`model::Alarm`], [`model::Endpoint`], [`model::resource_name`].
//! * [`check`] — [`check::ConfigError`] and the checks each configuration section is
//!   validated with. [`secret`] — `Secret`, which prints as `***`, and a host's `Credentials`. [`failpoint`] — named
//!   crash points for the crash-safety tests. [`logging`] — `tracing` setup.
//!   [`metrics`] — Prometheus counters/histograms, pushed after each invocation and
//!   served on `/metrics` by the HTTP host.
//! * [`policy`] — pure scaling decisions: (state, alarm or tick, now, config) → decision.
//!   It uses the model only.
//! * Ports and their adapters, each with its own configuration section:
//!   [`events`] (parse and authenticate webhooks — Alertmanager, Aodh, Cloud Eye via
//!   SMN, a generic form — into one [`events::Event`]; its only I/O is the SMN
//!   certificate fetch and subscription confirmation), [`cloud`] (the `Cloud` port;
//!   [`cloud::local`] on one machine, [`cloud::openstack`]), [`balancer`] (HAProxy Runtime
//!   API and Data Plane API v2/v3, fan-out, drain), [`postgres`] (the readiness port over
//!   `tokio-postgres`, TLS, the replica bootstrap parameters), [`state`] (the stores of the
//!   state document: S3 compare-and-swap with a start-up probe, PostgreSQL advisory lock,
//!   local directory, memory; the read → decide → CAS repo).
//! * [`ops`] — the orchestration (scale-up, instance-ready, scale-down, instance-deleted,
//!   reconcile) as idempotent, resumable steps written only against the ports.
//! * [`runtime`] — a `lambda_runtime`-compatible shim: a handler written once against
//!   [`runtime::LambdaEvent`] runs under the FunctionGraph custom runtime, the AWS Lambda
//!   runtime API, as an HTTP webhook server, or from the CLI with an event file.
//! * The root: [`config`] (assembles the sections into one [`config::Config`] from TOML
//!   plus `PGSURGE_*` overrides, validated before any side effect; errors name the key
//!   path), [`app`] (the composition root: builds the receiver and the ports once per
//!   process and starts the host) and [`handlers`] (the body of each function).
//!
//! The rule that keeps this testable: pure decisions never do I/O; I/O sits behind
//! traits with a real implementation per backend, each tested against the real service.

pub mod agent;
pub mod app;
mod architecture;
pub mod balancer;
pub mod check;
pub mod cloud;
pub mod config;
pub mod config_keys;
pub mod events;
pub mod failpoint;
pub mod handlers;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod node;
pub mod ops;
pub mod policy;
pub mod postgres;
pub mod runtime;
pub mod secret;
pub mod state;
