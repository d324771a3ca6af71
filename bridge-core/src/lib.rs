//! `bridge-core`: everything an Azure IoT Edge translation module needs, and nothing
//! about any field protocol.
//!
//! - [`message`], [`methods`], [`link`], [`backoff`]: the pipeline's own types, used by
//!   every layer below.
//! - [`identity`]: the IoT Edge environment, workload-API signing, connection strings, SAS.
//! - [`hub`]: the MQTT session to edgeHub (twin, direct methods, inputs, telemetry topics).
//! - [`spool`] and [`forwarder`]: store-and-forward; a message leaves only when acknowledged.
//! - [`upstream`]: a plain MQTT broker or stdout; [`hub`] is the edgeHub upstream.
//! - [`mqtt`]: TLS and the publish/ack bookkeeping both MQTT upstreams share.
//! - [`downstream`]: field devices as their own IoT Hub device identities.
//! - [`runtime`]: the command line and the module runtime that wires it all together.

pub mod backoff;
pub mod config;
pub mod device;
pub mod dps;
pub mod forwarder;
pub mod hub;
pub mod identity;
pub mod link;
pub mod message;
pub mod methods;
pub mod metrics;
pub mod mqtt;
pub mod report;
pub mod reporter;
pub mod runtime;
pub mod spool;
pub mod text;
pub mod time;
pub mod upstream;
