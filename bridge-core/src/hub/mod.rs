//! The MQTT session to edgeHub (or IoT Hub): twin, direct methods, inputs, telemetry.

mod message;
pub mod methods;
mod session;
pub mod tls;
pub mod topics;
pub mod twin;

pub use message::{Message, new_message_id};
pub use methods::{MethodResponse, MethodRouter};
pub use session::{
    ConnState, HubSession, InputMessage, ReportError, SessionOptions, error_chain as error_text,
    spawn_session,
};
pub use twin::Desired;
