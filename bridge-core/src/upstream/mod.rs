//! Where telemetry goes: edgeHub, a plain MQTT broker, or stdout, all behind [`Upstream`].
//!
//! An upstream is a task on the far side of a [`Link`]: the forwarder hands it
//! numbered messages and learns which ones were *delivered* (PUBACKed, written) from
//! [`LinkEvent::Acked`]. `Down` means everything not yet acked may be lost and must be
//! sent again after the next `Up`.

pub mod mqtt;
pub mod stdout;

pub use crate::link::{Link, LinkEnd, LinkEvent, Outbound, Upstream, UpstreamClosed, link};
