//! `bridge-modbus`: polls Modbus RTU, TCP and RTU-over-TCP devices through device maps
//! and forwards typed telemetry per downstream device through `bridge-core`.
//!
//! - [`map`]: device maps (one per device model), validated; four bundled.
//! - [`codec`], [`plan`]: pure decoding/encoding and the read planner.
//! - [`config`]: the module configuration (twin desired properties or a file).
//! - [`bus`]: one task per bus (TCP via tokio-modbus, RTU framing of our own).
//! - [`device`], [`poller`]: reading/writing points; one poll task per device.
//! - [`module`]: the `bridge-core` protocol: reconcile on config change, direct methods.
//! - [`simulator`]: the built-in simulated device.
//! - [`commission`]: the `scan`, `read` and `write` commissioning commands.
//! - [`sunspec`]: SunSpec discovery and decoding (`"map": "sunspec"`).

pub mod bus;
pub mod codec;
pub mod commission;
pub mod config;
pub mod deploy;
pub mod device;
pub mod map;
pub mod models;
pub mod module;
pub mod plan;
pub mod poller;
pub mod simulator;
pub mod sunspec;

pub use module::{Modbus, demo_config};
