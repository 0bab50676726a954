//! A replica server's side of pgsurge: the instance parameters scale-up writes as the
//! server's user data (`params`: one format, written and parsed here, carrying the
//! callback credential of [`crate::events::callback`]), and the image's
//! first-boot step that reads them and turns the cloned data disk into a standby
//! (`first_boot`, run by `pgsurge node first-boot` in the image).

pub mod config;
pub mod first_boot;
pub mod network;
pub mod params;

pub use config::NodeConfig;
pub use params::{InstanceParams, ParamsError};
