//! `edgehub-sim`: an offline IoT Edge hub for tests and for users.
//!
//! Speaks edgeHub's MQTT protocol (TLS and plain): SAS-authenticated modules and child
//! devices, twins with versions, desired-patch push, direct methods, module outputs
//! routed by manifest routes to other modules' inputs or `$upstream`, DPS registration
//! with group-derived keys, and the workload API (`sign`, `trust-bundle`) on a unix
//! socket. Its fidelity is tested against Microsoft's Python SDK.

pub mod auth;
pub mod certs;
mod control;
mod dps;
mod http;
pub mod limits;
mod mqtt;
pub mod persist;
pub mod routes;
mod server;
pub mod state;
mod workload;

pub use server::{Sim, SimError, SimOptions};
pub use state::{Hub, MethodError, Recorded, Refusal, Registration};
