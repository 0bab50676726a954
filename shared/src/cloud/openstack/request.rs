//! A hand-built request for the calls the SDK's generated bindings do not cover.
//!
//! The generated endpoints come from the services' OpenAPI specs, which leave out some query
//! filters we need (Cinder's `name` and `metadata` on volume and snapshot lists) and type a
//! few fields loosely (Nova's `boot_index` as a string). For those, [`Request`] implements
//! the SDK's own `RestEndpoint` trait, so it still goes through the SDK's session: token,
//! catalog, endpoint version discovery, microversion header and 401 re-authentication.

use openstack_sdk::api::rest_endpoint::RestEndpoint;
use openstack_sdk::api::{BodyError, QueryParams};
use openstack_sdk::types::ApiVersion;
pub use openstack_sdk::types::ServiceType;
use std::borrow::Cow;

/// One call: method, service, path below the service's endpoint, query, JSON body, microversion.
#[derive(Debug, Clone)]
pub struct Request {
    method: http::Method,
    service: ServiceType,
    path: String,
    query: Vec<(String, String)>,
    body: Option<serde_json::Value>,
    /// A non-JSON body (content type, bytes): Glance's image data upload.
    raw: Option<(&'static str, Vec<u8>)>,
    microversion: Option<ApiVersion>,
    headers: Option<http::HeaderMap>,
}

impl Request {
    pub fn new(method: http::Method, service: ServiceType, path: impl Into<String>) -> Self {
        Request {
            method,
            service,
            path: path.into(),
            query: Vec::new(),
            body: None,
            raw: None,
            microversion: None,
            headers: None,
        }
    }

    pub fn get(service: ServiceType, path: impl Into<String>) -> Self {
        Self::new(http::Method::GET, service, path)
    }

    pub fn post(service: ServiceType, path: impl Into<String>, body: serde_json::Value) -> Self {
        Self::new(http::Method::POST, service, path).body(body)
    }

    pub fn delete(service: ServiceType, path: impl Into<String>) -> Self {
        Self::new(http::Method::DELETE, service, path)
    }

    /// PUT of raw bytes (`application/octet-stream`), e.g. image data to Glance.
    pub fn put_bytes(service: ServiceType, path: impl Into<String>, bytes: Vec<u8>) -> Self {
        let mut r = Self::new(http::Method::PUT, service, path);
        r.raw = Some(("application/octet-stream", bytes));
        r
    }

    pub fn query(mut self, key: &str, value: impl Into<String>) -> Self {
        self.query.push((key.to_string(), value.into()));
        self
    }

    pub fn body(mut self, body: serde_json::Value) -> Self {
        self.body = Some(body);
        self
    }

    /// An extra header (e.g. Keystone's `X-Subject-Token`). Never logged.
    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        if let Ok(v) = http::HeaderValue::from_str(value) {
            let mut v = v;
            v.set_sensitive(true);
            self.headers
                .get_or_insert_with(http::HeaderMap::new)
                .insert(name, v);
        }
        self
    }

    /// `OpenStack-API-Version` for Nova / Cinder (e.g. 2.52 for server tags at create).
    pub fn microversion(mut self, major: u8, minor: u8) -> Self {
        self.microversion = Some(ApiVersion::new(major, minor));
        self
    }
}

impl RestEndpoint for Request {
    fn method(&self) -> http::Method {
        self.method.clone()
    }

    fn endpoint(&self) -> Cow<'static, str> {
        self.path.clone().into()
    }

    fn service_type(&self) -> ServiceType {
        self.service.clone()
    }

    fn parameters(&self) -> QueryParams<'_> {
        let mut p = QueryParams::default();
        for (k, v) in &self.query {
            p.push(k.as_str(), v.as_str());
        }
        p
    }

    fn body(&self) -> Result<Option<(&'static str, Vec<u8>)>, BodyError> {
        if let Some((kind, bytes)) = &self.raw {
            return Ok(Some((kind, bytes.clone())));
        }
        match &self.body {
            None => Ok(None),
            Some(v) => Ok(Some(("application/json", serde_json::to_vec(v)?))),
        }
    }

    /// Neutron's, Designate's and Glance's catalog entries are unversioned: ask the SDK's
    /// discovery for the v2.0 / v2 endpoint (Nova's and Cinder's carry their version in the URL).
    fn api_version(&self) -> Option<ApiVersion> {
        match self.service {
            ServiceType::Network | ServiceType::Dns | ServiceType::Image => {
                Some(ApiVersion::new(2, 0))
            }
            _ => ApiVersion::from_endpoint_url(&self.path),
        }
    }

    fn request_headers(&self) -> Option<&http::HeaderMap> {
        self.headers.as_ref()
    }

    fn min_version(&self) -> Option<ApiVersion> {
        // Neutron, Designate and Glance have no microversions; the SDK adds no header for them.
        self.microversion.or(match self.service {
            ServiceType::Network | ServiceType::Dns | ServiceType::Image => {
                Some(ApiVersion::new(2, 0))
            }
            _ => None,
        })
    }
}
