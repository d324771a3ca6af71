//! The scanner watchdog, pure: BLE scanners are known to go quiet without an error
//! (the controller or BlueZ stops reporting), so silence from every device while
//! devices are known is treated as a fault. First the scan is restarted (discovery, or
//! the passive monitor re-registered), then, if it stays quiet, the whole adapter
//! session. Separately, an adapter that stays unavailable for too long makes the module
//! exit non-zero so the IoT Edge agent restarts it (and whatever holds the adapter).

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use bridge_core::runtime::{ModuleContext, Reporter};
use serde_json::json;
use tracing::{error, warn};

use crate::config::BleConfig;

/// Exit code of the module when the adapter never came back.
pub const EXIT_ADAPTER_LOST: i32 = 3;

/// What the watchdog asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Stop and start discovery (or re-register the passive monitor).
    RestartScan,
    /// Drop the adapter session and open a new one.
    RestartAdapter,
}

impl Action {
    /// For logs, reported properties and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RestartScan => "restartScan",
            Self::RestartAdapter => "restartAdapter",
        }
    }
}

/// Silence detector for one adapter session.
#[derive(Debug, Clone)]
pub struct Watchdog {
    quiet: Duration,
    /// Start of the current silence: session start, last advertisement or last action.
    since: Instant,
    /// Actions taken in this silence.
    stage: u8,
}

impl Watchdog {
    /// `quiet` of zero disables the watchdog.
    pub fn new(quiet: Duration, now: Instant) -> Self {
        Self {
            quiet,
            since: now,
            stage: 0,
        }
    }

    /// Checks at `now`, given when the last advertisement arrived and whether any device
    /// is known (silence with no device around is not a fault).
    pub fn check(&mut self, now: Instant, last: Option<Instant>, known: bool) -> Option<Action> {
        if let Some(last) = last
            && last > self.since
        {
            self.since = last;
            self.stage = 0;
        }
        if self.quiet.is_zero() || !known || now.duration_since(self.since) < self.quiet {
            return None;
        }
        self.since = now;
        self.stage = self.stage.saturating_add(1);
        Some(if self.stage == 1 {
            Action::RestartScan
        } else {
            Action::RestartAdapter
        })
    }

    /// How long the current silence has lasted.
    pub fn silent_for(&self, now: Instant) -> Duration {
        now.duration_since(self.since)
    }
}

/// How long the adapter has been unavailable, against the limit.
#[derive(Debug, Clone)]
pub struct AdapterLoss {
    limit: Duration,
    since: Option<Instant>,
}

impl AdapterLoss {
    /// Exit after `limit` without an adapter; zero never exits.
    pub fn new(limit: Duration) -> Self {
        Self { limit, since: None }
    }

    /// A new limit (the configuration changed); the running clock is kept.
    pub fn set_limit(&mut self, limit: Duration) {
        self.limit = limit;
    }

    /// The adapter is there.
    pub fn available(&mut self) {
        self.since = None;
    }

    /// The adapter is not there at `now`: true when it has been missing for the limit.
    pub fn unavailable(&mut self, now: Instant) -> bool {
        let since = *self.since.get_or_insert(now);
        !self.limit.is_zero() && now.duration_since(since) >= self.limit
    }

    /// Time left before the limit (to wake up in time), if one is running.
    pub fn remaining(&self, now: Instant) -> Option<Duration> {
        let since = self.since?;
        (!self.limit.is_zero()).then(|| self.limit.saturating_sub(now.duration_since(since)))
    }
}

impl crate::scanner::Counters {
    /// Counts a watchdog action.
    pub fn watchdog(&self, action: Action) {
        let i = usize::from(action == Action::RestartAdapter);
        self.watchdog[i].fetch_add(1, Relaxed);
    }

    /// Watchdog actions so far.
    pub fn watchdog_total(&self) -> u64 {
        self.watchdog.iter().map(|c| c.load(Relaxed)).sum()
    }
}

/// Logs and reports a watchdog action (reported `bluetooth.watchdog`).
pub fn report(reporter: &Reporter, action: Action, reason: &str, restarts: u64) {
    warn!(
        action = action.as_str(),
        reason, "The scanner went quiet; restarting it."
    );
    reporter.report(json!({"bluetooth": {"watchdog": {
        "action": action.as_str(),
        "reason": reason,
        "restarts": restarts,
        "at": bridge_core::time::rfc3339_now(),
    }}}));
}

/// The adapter did not come back in time: says why (log and reported `bluetooth`), gives
/// the report a moment to leave, and exits with [`EXIT_ADAPTER_LOST`] so the IoT Edge
/// agent restarts the module.
pub async fn exit_adapter_lost(cx: &ModuleContext<BleConfig>, error: &str) -> ! {
    let limit = cx.config.borrow().scan.adapter_lost_exit_ms;
    error!(
        error,
        limit_ms = limit,
        "The Bluetooth adapter did not come back; exiting so the module is restarted."
    );
    cx.reporter.report(json!({"bluetooth": {"state": "lost", "error": format!("no adapter for {limit} ms ({error}); the module exits")}}));
    tokio::time::sleep(Duration::from_millis(500)).await;
    std::process::exit(EXIT_ADAPTER_LOST)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn silence_restarts_the_scan_then_the_adapter_and_an_advert_resets() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(60 * S, t0);
        assert_eq!(w.check(t0 + 59 * S, None, true), None);
        assert_eq!(w.check(t0 + 61 * S, None, false), None, "no device known");
        assert_eq!(w.check(t0 + 61 * S, None, true), Some(Action::RestartScan));
        assert_eq!(w.check(t0 + 100 * S, None, true), None, "a new period");
        assert_eq!(
            w.check(t0 + 122 * S, None, true),
            Some(Action::RestartAdapter)
        );
        // An advertisement after the action: quiet again from there, first stage again.
        assert_eq!(w.check(t0 + 130 * S, Some(t0 + 125 * S), true), None);
        assert_eq!(w.silent_for(t0 + 130 * S), 5 * S);
        assert_eq!(
            w.check(t0 + 186 * S, Some(t0 + 125 * S), true),
            Some(Action::RestartScan)
        );
        let mut off = Watchdog::new(Duration::ZERO, t0);
        assert_eq!(off.check(t0 + 1000 * S, None, true), None);
    }

    #[test]
    fn adapter_missing_for_the_limit_means_exit() {
        let t0 = Instant::now();
        let mut l = AdapterLoss::new(300 * S);
        assert_eq!(l.remaining(t0), None);
        assert!(!l.unavailable(t0));
        assert!(!l.unavailable(t0 + 200 * S));
        assert_eq!(l.remaining(t0 + 200 * S), Some(100 * S));
        l.available();
        assert!(!l.unavailable(t0 + 250 * S), "the clock restarted");
        assert!(l.unavailable(t0 + 550 * S));
        let mut never = AdapterLoss::new(Duration::ZERO);
        assert!(!never.unavailable(t0));
        assert!(!never.unavailable(t0 + 10_000 * S));
    }
}
