//! The replica image on the OpenStack test cloud: a tiny public Glance image the fake
//! Nova driver "boots" (it runs nothing, but Nova's API checks the image exists, is
//! active and fits the flavor, exactly as on a real cloud).
//!
//! Registered by the tests themselves (tests/openstack/up.sh installs Glance but puts no
//! image in it), idempotently and safely in parallel: a fixed id, so two tests racing to
//! create it make one image (the loser gets 409), and an image left `queued` by a killed
//! test gets its data uploaded by the next one.

use pgsurge::cloud::openstack::request::{Request, ServiceType};
use pgsurge::cloud::openstack::OpenStack;
use pgsurge::cloud::CloudError;
use serde_json::json;
use std::time::{Duration, Instant};

/// What `openstack.image` names in the tests.
pub const TEST_IMAGE_NAME: &str = "pgsurge-replica-test";
/// Its fixed id (see the module comment).
pub const TEST_IMAGE_ID: &str = "6e3c9f8a-5b2d-4d7e-9a41-70c5a1b2e3f4";

/// Make sure the test image exists and is active (as `admin`, a session allowed to make
/// public images); its id. Panics with what is wrong when Glance will not give one.
pub async fn ensure_test_image(admin: &OpenStack) -> String {
    let caller = admin.caller();
    caller
        .discover(&ServiceType::Image)
        .await
        .unwrap_or_else(|e| panic!("the test cloud's Glance (image service) does not answer: {e}"));
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let get = Request::get(ServiceType::Image, format!("images/{TEST_IMAGE_ID}"));
        let status = match caller.send("get test image", get).await {
            Ok(r) => r.json(None).expect("image JSON")["status"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            Err(CloudError::NotFound { .. }) => {
                let create = Request::post(
                    ServiceType::Image,
                    "images",
                    json!({
                        "id": TEST_IMAGE_ID,
                        "name": TEST_IMAGE_NAME,
                        "container_format": "bare",
                        "disk_format": "raw",
                        "visibility": "public",
                    }),
                );
                match caller.send("create test image", create).await {
                    // 409: another test created it meanwhile
                    Ok(_) | Err(CloudError::Conflict(_)) => {}
                    Err(e) => panic!("cannot register the replica test image in Glance: {e}"),
                }
                continue;
            }
            Err(e) => panic!("cannot read the replica test image from Glance: {e}"),
        };
        match status.as_str() {
            "active" => return TEST_IMAGE_ID.to_string(),
            "queued" => {
                // 1 MiB of zeros: the fake driver reads none of it
                let upload = Request::put_bytes(
                    ServiceType::Image,
                    format!("images/{TEST_IMAGE_ID}/file"),
                    vec![0u8; 1 << 20],
                );
                match caller.send("upload test image", upload).await {
                    // 409: another test is uploading (or has uploaded) it
                    Ok(_) | Err(CloudError::Conflict(_)) => {}
                    Err(e) => panic!("cannot upload the replica test image to Glance: {e}"),
                }
            }
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "the replica test image {TEST_IMAGE_ID} stays {status:?} in Glance, never active"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// [`ensure_test_image`] once per test process, from synchronous code (a test's
/// configuration builder), as the `pgsurge-admin` identity of `clouds_yaml`. Runs on its
/// own thread and runtime, so it may be called from inside a test's runtime too.
pub fn ensure_test_image_once(clouds_yaml: &std::path::Path) -> String {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        let cfg = pgsurge::cloud::openstack::OpenStackConfig {
            cloud: "pgsurge-admin".into(),
            clouds_yaml: Some(clouds_yaml.to_path_buf()),
            request_timeout_secs: 90,
            ..Default::default()
        };
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            rt.block_on(async {
                let admin = OpenStack::connect(&cfg, None)
                    .await
                    .unwrap_or_else(|e| panic!("connect to the test cloud as admin: {e}"));
                ensure_test_image(&admin).await
            })
        })
        .join()
        .expect("registering the replica test image failed (see the panic above)")
    })
    .clone()
}
