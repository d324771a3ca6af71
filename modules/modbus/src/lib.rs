//! `bridge-modbus`: polls Modbus RTU, TCP and RTU-over-TCP devices through device maps
//! and forwards typed telemetry per downstream device through `bridge-core`.

pub mod bus;
pub mod codec;
pub mod config;
pub mod map;
pub mod plan;
