//! Unit-test fixtures for `ops`: the ports a flow's unit test runs against, with an
//! in-memory state and no HAProxy nodes unless the test brings its own.
#![cfg(test)]

use super::Ports;
use crate::balancer::Balancer;
use crate::cloud::Cloud;
use crate::postgres::{LagBounds, Postgres};
use crate::state::{MemoryStore, StateRepo};
use std::sync::Arc;
use std::time::Duration;

/// Ports for cluster `c` over `cloud`, `nodes` and `pg`; everything else default.
pub(crate) fn ports(
    cloud: Arc<dyn Cloud>,
    nodes: Vec<Arc<dyn Balancer>>,
    pg: Arc<dyn Postgres>,
) -> Ports {
    Ports {
        cluster: "c".into(),
        cloud,
        nodes,
        state: StateRepo::new(Arc::new(MemoryStore::new()), "c", 5),
        pg,
        policy: Default::default(),
        ops: Default::default(),
        lag: LagBounds {
            max_bytes: 0,
            max_age: Duration::ZERO,
        },
        haproxy: Default::default(),
        bootstrap: Default::default(),
        callback: None,
    }
}
