//! `bridge-core`: everything an Azure IoT Edge translation module needs, and nothing
//! about any field protocol.
//!
//! - [`identity`]: the IoT Edge environment, workload-API signing, connection strings, SAS.
//! - [`hub`]: the MQTT session to edgeHub (twin, direct methods, inputs, telemetry topics).
//! - [`spool`] and [`forwarder`]: store-and-forward; a message leaves only when acknowledged.
//! - [`upstream`]: edgeHub, a plain MQTT broker, or stdout, behind one trait.
//! - [`downstream`]: field devices as their own IoT Hub device identities.
//! - [`runtime`]: the command line and the module runtime that wires it all together.

pub mod config;
pub mod downstream;
pub mod dps;
pub mod forwarder;
pub mod fuzz_entry;
pub mod hub;
pub mod identity;
pub mod metrics;
pub mod report;
pub mod runtime;
pub mod spool;
pub mod text;
pub mod time;
pub mod upstream;
pub mod watchdog;
