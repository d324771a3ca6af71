//! The MQTT session to edgeHub (or IoT Hub): twin, direct methods, inputs, telemetry.

mod session;
pub mod topics;
pub mod twin;

pub use session::{
    ConnState, HubSession, InputMessage, ReportError, SessionOptions, spawn_session,
};
pub use twin::Desired;
