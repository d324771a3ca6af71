//! The link between the forwarder and an upstream task (edgeHub session, MQTT broker,
//! stdout): the forwarder hands it numbered messages and learns which ones were
//! *delivered* (PUBACKed, written) from [`LinkEvent::Acked`]. `Down` means everything
//! not yet acked may be lost and must be sent again after the next `Up`.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::message::Message;

/// One spooled message on its way out.
#[derive(Debug, Clone)]
pub struct Outbound {
    /// Spool sequence number; comes back in [`LinkEvent::Acked`].
    pub seq: u64,
    /// The message.
    pub message: Arc<Message>,
}

/// What an upstream tells the forwarder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkEvent {
    /// Connected; sending may start.
    Up,
    /// Connection lost: nothing unacked is guaranteed delivered.
    Down,
    /// Delivered (PUBACK or equivalent).
    Acked(u64),
}

/// The upstream went away for good (its task ended).
#[derive(Debug, thiserror::Error)]
#[error("The upstream task has stopped.")]
pub struct UpstreamClosed;

/// The forwarder's view of an upstream.
pub trait Upstream: Send {
    /// Hands over one message. Returns quickly; delivery shows up as `Acked`.
    fn send(&mut self, out: Outbound) -> impl Future<Output = Result<(), UpstreamClosed>> + Send;
    /// The next event, or `None` when the upstream has stopped.
    fn next_event(&mut self) -> impl Future<Output = Option<LinkEvent>> + Send;
}

/// The forwarder's end of a link to an upstream task.
#[derive(Debug)]
pub struct Link {
    tx: mpsc::Sender<Outbound>,
    events: mpsc::UnboundedReceiver<LinkEvent>,
}

/// The upstream task's end of a link.
#[derive(Debug)]
pub struct LinkEnd {
    /// Messages to deliver.
    pub rx: mpsc::Receiver<Outbound>,
    /// Where to report.
    pub events: mpsc::UnboundedSender<LinkEvent>,
}

impl LinkEnd {
    /// Reports an event; a gone forwarder is not an error for the upstream.
    pub fn emit(&self, event: LinkEvent) {
        // The forwarder only disappears during shutdown.
        let _ignored = self.events.send(event);
    }
}

/// A connected pair; `capacity` bounds messages queued towards the upstream.
pub fn link(capacity: usize) -> (Link, LinkEnd) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let (etx, erx) = mpsc::unbounded_channel();
    (Link { tx, events: erx }, LinkEnd { rx, events: etx })
}

impl Upstream for Link {
    async fn send(&mut self, out: Outbound) -> Result<(), UpstreamClosed> {
        self.tx.send(out).await.map_err(|_| UpstreamClosed)
    }

    async fn next_event(&mut self) -> Option<LinkEvent> {
        self.events.recv().await
    }
}
