//! Ties rumqttc's packet ids back to what we published, so a spooled message is
//! released only on its PUBACK (rumqttc's `publish` returns when queued, not delivered).
//!
//! Works because one task owns the client: requests enter rumqttc in our order, so
//! `Outgoing::Publish(pkid)` events arrive in the same order. A fresh event loop per
//! connection means no rumqttc-internal retransmissions to confuse the mapping.

use std::collections::{HashMap, VecDeque};

/// What a publish was for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tag {
    /// A spooled telemetry message.
    Telemetry(u64),
    /// Anything whose ack we do not track.
    Untracked,
}

/// FIFO of published-but-not-yet-numbered requests, and pkid → tag.
#[derive(Debug, Default)]
pub struct AckTracker {
    queued: VecDeque<Tag>,
    by_pkid: HashMap<u16, Tag>,
}

impl AckTracker {
    /// A publish request was handed to the client.
    pub fn queued(&mut self, tag: Tag) {
        self.queued.push_back(tag);
    }

    /// rumqttc wrote a publish with this packet id (`Outgoing::Publish`); 0 is QoS 0.
    pub fn sent(&mut self, pkid: u16) {
        if let Some(tag) = self.queued.pop_front()
            && pkid != 0
        {
            self.by_pkid.insert(pkid, tag);
        }
    }

    /// A PUBACK arrived.
    pub fn acked(&mut self, pkid: u16) -> Option<Tag> {
        self.by_pkid.remove(&pkid)
    }

    /// Requests still in rumqttc's channel (not yet written).
    pub fn backlog(&self) -> usize {
        self.queued.len()
    }

    /// Sent and not yet acked.
    pub fn unacked(&self) -> usize {
        self.by_pkid.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_pkids_in_request_order() {
        let mut t = AckTracker::default();
        t.queued(Tag::Telemetry(10));
        t.queued(Tag::Untracked);
        t.queued(Tag::Telemetry(11));
        t.sent(1);
        t.sent(2);
        assert_eq!(t.backlog(), 1);
        t.sent(3);
        assert_eq!(t.acked(3), Some(Tag::Telemetry(11)));
        assert_eq!(t.acked(1), Some(Tag::Telemetry(10)));
        assert_eq!(t.acked(1), None, "double ack");
        assert_eq!(t.acked(99), None, "unknown ack");
        assert_eq!(t.unacked(), 1);
    }
}
