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
//! the handlers in [`handlers`] to [`runtime::start`]; everything else lives here:
//!
//! * [`runtime`] — a `lambda_runtime`-compatible shim. A handler is written once against
//!   [`runtime::LambdaEvent`] and runs under the FunctionGraph custom runtime, the AWS
//!   Lambda runtime API, as an HTTP webhook server, or from the CLI with an event file.
//! * [`config`] — one typed configuration, from TOML plus `PGSURGE_*` environment
//!   overrides, validated before any side effect. Errors name the offending key.
//! * [`events`] — parse and authenticate incoming webhooks (Alertmanager, Aodh,
//!   Cloud Eye via SMN, Auto Scaling lifecycle hooks, a generic JSON form) into one
//!   normalised [`events::Event`].
//! * [`cloud`] — the `Cloud` port (volumes, snapshots, servers) and idempotent `ensure_*` helpers.
//!   [`cloud::local`] implements it on one machine: volumes are directories, snapshots
//!   consistent (copy-on-write) copies, servers `postgres` processes.
//! * [`postgres`] — the `Postgres` readiness port (in recovery, same system id and
//!   timeline, replay lag within bounds) over `tokio-postgres`, and the replica bootstrap
//!   parameters.
//! * [`balancer`] — the `Balancer` port: HAProxy Runtime API and Data Plane API (v2/v3)
//!   adapters, a fan-out that keeps every HAProxy node identical, and drain semantics.
//! * [`ops`] — the orchestration (scale-up, instance-ready, scale-down, instance-deleted,
//!   reconcile) as idempotent, resumable steps written only against the ports.
//! * [`cloud::openstack`] — the OpenStack provider (Cinder, Nova, Neutron lookup, Designate).
//! * [`handlers`] — the body of each function.
//! * [`state`] — the cluster state document and its stores (S3 compare-and-swap with a
//!   start-up probe, PostgreSQL advisory lock, local directory, memory).
//! * [`policy`] — pure scaling decisions: (state, alarm or tick, now, config) → decision.
//! * [`logging`] — `tracing` setup: JSON lines when stderr is not a terminal.
//! * [`metrics`] — Prometheus counters/histograms, pushed after each invocation and
//!   served on `/metrics` by the HTTP host.
//! * [`failpoint`] — named crash points for the crash-safety tests.
//!
//! The rule that keeps this testable: pure decisions never do I/O; I/O sits behind
//! traits with a real implementation per backend, each tested against the real service.

pub mod balancer;
pub mod cloud;
pub mod config;
pub mod events;
pub mod failpoint;
pub mod handlers;
pub mod logging;
pub mod metrics;
pub mod node;
pub mod ops;
pub mod policy;
pub mod postgres;
pub mod runtime;
pub mod secret;
pub mod state;
