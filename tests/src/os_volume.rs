//! Volumes on the OpenStack test cloud, made the way people make them (not by pgsurge).

use pgsurge::cloud::openstack::request::{Request, ServiceType};
use pgsurge::cloud::openstack::OpenStack;
use pgsurge::cloud::{wait_ready, Cloud, Metadata, Volume};
use serde_json::json;
use std::time::Duration;

/// A bootable 1 GiB volume named `name` with `metadata`, ready within `wait`: what a
/// replica boots from (the test cloud's fake driver stores nothing).
pub async fn bootable_volume(
    os: &OpenStack,
    name: &str,
    metadata: &Metadata,
    wait: Duration,
) -> Volume {
    let body = json!({"volume": {"size": 1, "name": name, "metadata": metadata}});
    let v = os
        .caller()
        .send(
            "create volume",
            Request::post(ServiceType::BlockStorage, "volumes", body),
        )
        .await
        .unwrap()
        .json(Some("volume"))
        .unwrap();
    let id = v["id"].as_str().unwrap().to_string();
    let vol = wait_ready(
        "volume",
        &id,
        wait,
        || os.get_volume(&id),
        |v: &Volume| &v.status,
    )
    .await
    .unwrap();
    // Nova refuses to boot a non-bootable volume; clones of its snapshots inherit the flag.
    os.caller()
        .send(
            "set bootable",
            Request::post(
                ServiceType::BlockStorage,
                format!("volumes/{id}/action"),
                json!({"os-set_bootable": {"bootable": true}}),
            ),
        )
        .await
        .unwrap();
    vol
}
