//! MQTT plumbing shared by the hub session and the plain-broker upstream: TLS, and the
//! publish/ack bookkeeping that releases a spooled message only on its PUBACK.

mod acks;
pub mod tls;

use rumqttc::{AsyncClient, Event, Outgoing, Packet, QoS};
use tracing::warn;

pub use acks::{AckTracker, Tag};

use crate::link::{LinkEnd, LinkEvent};

/// One connection's publishing side, owned by the task that polls its event loop:
/// queues QoS 1 publishes on rumqttc's client, ties packet ids back to what was
/// published, and turns PUBACKs of spooled messages into [`LinkEvent::Acked`].
#[derive(Debug)]
pub struct Publisher {
    client: AsyncClient,
    acks: AckTracker,
    max_backlog: usize,
}

impl Publisher {
    /// Publishing on `client`; at most `max_backlog` requests wait in rumqttc's channel
    /// (keep it below the channel's capacity so `try_publish` never fails).
    pub fn new(client: AsyncClient, max_backlog: usize) -> Self {
        Self {
            client,
            acks: AckTracker::default(),
            max_backlog,
        }
    }

    /// The client, for subscriptions and disconnects.
    pub fn client(&self) -> &AsyncClient {
        &self.client
    }

    /// Room for another publish.
    pub fn ready(&self) -> bool {
        self.acks.backlog() < self.max_backlog
    }

    /// Queues a QoS 1 publish whose PUBACK is reported as `tag`.
    pub fn publish(&mut self, topic: String, payload: Vec<u8>, tag: Tag) {
        match self
            .client
            .try_publish(topic, QoS::AtLeastOnce, false, payload)
        {
            Ok(()) => self.acks.queued(tag),
            // Only possible if the channel is full, which `ready` prevents.
            Err(e) => warn!(error = %e, "Could not queue a publish."),
        }
    }

    /// Takes the publish/ack side of an event; true when it was one.
    pub fn on_event(&mut self, event: &Event, link: &LinkEnd) -> bool {
        match event {
            Event::Outgoing(Outgoing::Publish(pkid)) => self.acks.sent(*pkid),
            Event::Incoming(Packet::PubAck(ack)) => {
                if let Some(Tag::Telemetry(seq)) = self.acks.acked(ack.pkid) {
                    link.emit(LinkEvent::Acked(seq));
                }
            }
            _ => return false,
        }
        true
    }
}

/// The error and its sources in one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
