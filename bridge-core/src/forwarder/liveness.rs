//! The forwarder's progress proof, pure: what its heartbeat must promise at each turn of
//! its loop.
//!
//! - The loop turns at least every tick (its ticker syncs the spool), so a turn that
//!   takes longer than the tick plus [`TURN_MARGIN`] is a wedge, whatever the upstream.
//! - While the upstream is up and messages are owed to it (in the spool, unsent or
//!   unacknowledged), one must be sent or acknowledged within the stall limit. A
//!   disconnected upstream is not a stall (the hub session proves its own progress and
//!   reconnects), nor is an empty spool.

use std::time::Duration;

use tokio::time::Instant;

/// Slack on top of the tick for one loop turn: synchronous spool writes and fsyncs on a
/// slow card, and a burst of up to a thousand messages, stay far below it.
pub(super) const TURN_MARGIN: Duration = Duration::from_secs(30);

/// Tracks when owed messages last moved.
#[derive(Debug)]
pub(super) struct Progress {
    limit: Duration,
    since: Option<Instant>,
}

impl Progress {
    /// Owed messages must move at least every `limit`.
    pub(super) fn new(limit: Duration) -> Self {
        Self { limit, since: None }
    }

    /// At a turn at `now`: `owed` when the upstream is up and messages wait for it,
    /// `moved` when one was sent or acknowledged (or the upstream came up) since the
    /// last turn. The time left until the next move is due, or `None` when none is owed.
    pub(super) fn left(&mut self, now: Instant, owed: bool, moved: bool) -> Option<Duration> {
        if !owed {
            self.since = None;
            return None;
        }
        let since = match self.since {
            Some(t) if !moved => t,
            _ => *self.since.insert(now),
        };
        Some((since + self.limit).saturating_duration_since(now))
    }
}

/// The heartbeat's limit for a turn: the loop must turn again within `turn`, and owed
/// messages must move within what [`Progress::left`] gave.
pub(super) fn turn_limit(turn: Duration, owed_left: Option<Duration>) -> Duration {
    owed_left.map_or(turn, |left| left.min(turn))
}

/// What a turn's heartbeat promises, for the stall's reason.
pub(super) fn step(limit: Duration, turn: Duration) -> &'static str {
    if limit < turn {
        "owed messages sent or acknowledged"
    } else {
        "loop turn"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owed_messages_must_move_and_nothing_owed_is_idle() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut p = Progress::new(s(60));
        // Upstream down or nothing in the spool: no progress is owed, however long.
        assert_eq!(p.left(t0, false, false), None);
        assert_eq!(p.left(t0 + s(3600), false, false), None);
        // Owed from now on: the clock starts at the first owed turn.
        assert_eq!(p.left(t0 + s(3600), true, false), Some(s(60)));
        assert_eq!(p.left(t0 + s(3620), true, false), Some(s(40)));
        // An acknowledgement restarts it.
        assert_eq!(p.left(t0 + s(3630), true, true), Some(s(60)));
        assert_eq!(p.left(t0 + s(3700), true, false), Some(s(0)));
        // The upstream went down: not owed; up again later: a fresh limit.
        assert_eq!(p.left(t0 + s(3701), false, false), None);
        assert_eq!(p.left(t0 + s(9000), true, false), Some(s(60)));
    }

    #[test]
    fn the_turn_limit_is_the_nearer_promise() {
        let s = Duration::from_secs;
        assert_eq!(turn_limit(s(30), None), s(30));
        assert_eq!(turn_limit(s(30), Some(s(100))), s(30));
        assert_eq!(turn_limit(s(30), Some(s(5))), s(5));
        assert_eq!(turn_limit(s(30), Some(s(0))), s(0));
        assert_eq!(step(s(30), s(30)), "loop turn");
        assert_eq!(step(s(5), s(30)), "owed messages sent or acknowledged");
    }
}
