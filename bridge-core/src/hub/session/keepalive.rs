//! Half-open detection, pure. rumqttc sends a PINGREQ every keep-alive period and only
//! notices a missing PINGRESP when the next one is due, so a hub that hangs without a
//! reset is found after up to two periods. We give the answer half a period: anything
//! received in that time proves the link; otherwise it is declared dead, so a hang is
//! detected within 1.5 keep-alive periods of its start.

use std::time::Duration;

use tokio::time::Instant;

/// Tracks the outstanding ping of one connection.
#[derive(Debug, Clone)]
pub(super) struct PingWatch {
    grace: Duration,
    deadline: Option<Instant>,
}

impl PingWatch {
    /// For a connection with this keep-alive period.
    pub(super) fn new(keep_alive: Duration) -> Self {
        Self {
            grace: keep_alive / 2,
            deadline: None,
        }
    }

    /// A PINGREQ went out at `now`; returns the new deadline when one was armed.
    pub(super) fn ping_sent(&mut self, now: Instant) -> Option<Instant> {
        if self.deadline.is_some() {
            return None;
        }
        let at = now + self.grace;
        self.deadline = Some(at);
        Some(at)
    }

    /// Something arrived from the hub: the link is alive.
    pub(super) fn received(&mut self) {
        self.deadline = None;
    }

    /// Whether the link must be declared dead at `now`.
    pub(super) fn expired(&self, now: Instant) -> bool {
        self.deadline.is_some_and(|d| now >= d)
    }

    /// Whether a ping is waiting for its answer.
    pub(super) fn pending(&self) -> bool {
        self.deadline.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_answer_expires_after_half_a_period() {
        let t0 = Instant::now();
        let ka = Duration::from_secs(4);
        let mut w = PingWatch::new(ka);
        assert!(!w.expired(t0 + ka * 10), "nothing outstanding");
        assert_eq!(w.ping_sent(t0), Some(t0 + ka / 2));
        assert_eq!(
            w.ping_sent(t0 + ka),
            None,
            "the first ping's deadline stands"
        );
        assert!(!w.expired(t0 + ka / 4));
        assert!(w.expired(t0 + ka / 2));
        w.received();
        assert!(!w.pending());
        assert!(!w.expired(t0 + ka * 10));
        // A hang that starts just after a ping is found at the next ping plus grace.
        let hang = t0 + Duration::from_millis(1);
        let next_ping = t0 + ka;
        let found = w.ping_sent(next_ping).unwrap();
        assert!(found - hang <= ka + ka / 2);
    }
}
