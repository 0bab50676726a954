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
//! * [`cloud::openstack`] — the OpenStack provider (Cinder, Nova, Neutron lookup, Designate).
//! * [`handlers`] — the body of each function.
//! * [`logging`] — `tracing` setup: JSON lines when stderr is not a terminal.
//!
//! The rule that keeps this testable: pure decisions never do I/O; I/O sits behind
//! traits with a real implementation per backend, each tested against the real service.

pub mod cloud;
pub mod config;
pub mod events;
pub mod handlers;
pub mod logging;
pub mod runtime;
pub mod secret;
