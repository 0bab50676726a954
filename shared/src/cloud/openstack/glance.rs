//! Glance (image v2): resolve the configured replica image (`openstack.image`, a name or
//! an id) to the id Nova boots from.
//!
//! Glance, not Nova's `/images` proxy: the proxy is gone from microversion 2.36 on, and
//! every server call here uses 2.52. A name must match exactly one image, and the image
//! must be `active` (Nova refuses anything else, but only after scale-up has already
//! cloned a volume for it: checked first, the error names the image).

use super::cinder::text;
use super::errors::Caller;
use super::request::Request;
use crate::cloud::{CloudError, Result};
use openstack_sdk::types::ServiceType;
use serde_json::Value;

/// A resolved image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub id: String,
    pub name: String,
    pub status: String,
}

fn parse(v: &Value) -> Image {
    Image {
        id: text(v, "id"),
        name: text(v, "name"),
        status: text(v, "status"),
    }
}

/// The one usable image among those Glance listed for `wanted` (pure: unit-tested).
pub fn pick(wanted: &str, found: Vec<Image>) -> Result<Image> {
    let mut found = found;
    match found.len() {
        0 => Err(CloudError::NotFound {
            kind: "image",
            id: wanted.to_string(),
        }),
        1 => usable(found.pop().expect("one")),
        n => Err(CloudError::Conflict(format!(
            "{n} images are named {wanted}; configure openstack.image as an id"
        ))),
    }
}

/// Only an `active` image can be booted.
fn usable(image: Image) -> Result<Image> {
    if image.status == "active" {
        Ok(image)
    } else {
        Err(CloudError::Fatal(format!(
            "image {} ({}) is {}, not active: it cannot be booted",
            image.name, image.id, image.status
        )))
    }
}

/// `8-4-4-4-12` hex digits.
fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

impl Caller {
    /// `openstack.image` → the image (by id first, then by exact name).
    pub async fn resolve_image(&self, name_or_id: &str) -> Result<Image> {
        self.discover(&ServiceType::Image).await?;
        // Glance ids are UUIDs; anything else is looked up as a name only (a name in the
        // id's place is a 400 or 404 depending on the Glance version)
        if is_uuid(name_or_id) {
            let by_id = Request::get(ServiceType::Image, format!("images/{name_or_id}"));
            match self.send(&format!("get image {name_or_id}"), by_id).await {
                Ok(r) => return usable(parse(&r.json(None)?)),
                Err(CloudError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let list = Request::get(ServiceType::Image, "images").query("name", name_or_id);
        let images = self
            .send(&format!("find image {name_or_id}"), list)
            .await?
            .json(Some("images"))?;
        let found = images
            .as_array()
            .into_iter()
            .flatten()
            .map(parse)
            // the filter is exact in Glance; checked again, cheaply, on our side
            .filter(|i| i.name == name_or_id)
            .collect();
        pick(name_or_id, found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(id: &str, status: &str) -> Image {
        Image {
            id: id.into(),
            name: "replica".into(),
            status: status.into(),
        }
    }

    #[test]
    fn one_active_image_or_a_precise_refusal() {
        assert_eq!(
            pick("replica", vec![image("i1", "active")]).unwrap().id,
            "i1"
        );
        assert!(matches!(
            pick("replica", vec![]),
            Err(CloudError::NotFound { kind: "image", .. })
        ));
        let two = pick(
            "replica",
            vec![image("i1", "active"), image("i2", "active")],
        );
        assert!(
            matches!(&two, Err(CloudError::Conflict(m)) if m.contains("2 images")),
            "{two:?}"
        );
        assert!(is_uuid("5f0c1a9e-6b1d-4c53-9d0e-2a7f2b4c8e11"));
        assert!(!is_uuid("pgsurge-replica"));
        let queued = pick("replica", vec![image("i1", "queued")]);
        assert!(
            matches!(&queued, Err(CloudError::Fatal(m)) if m.contains("queued")),
            "{queued:?}"
        );
    }
}
