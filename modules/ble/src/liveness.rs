//! Liveness of the advertisement pipeline: BlueZ's signals fill the feed on their own
//! task; the scanner's loop takes readings from it in batches. Readings waiting while the
//! scanner takes none for [`PIPELINE_LIMIT`] is a stuck consumer (scanning would go
//! quiet for good); the scanner's loop is the module's main task and cannot be restarted
//! in place, so the core watchdog ends the module (`EXIT_STALLED`) and the IoT Edge agent
//! restarts it. No readings waiting is never a stall (no advertisements, no adapter).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bridge_core::watchdog::{Policy, Stall};

use crate::signals::Feed;

/// How long readings may wait with no batch taken. The scanner's loop turns at least
/// every 5 s (its sweep); an adapter session restart takes a few seconds.
pub const PIPELINE_LIMIT: Duration = Duration::from_secs(60);

const IDLE: u64 = 1 << 63;

/// Test-only, never set in deployments: the scanner's consumer wedges forever when it
/// takes its Nth batch of advertisements (N is the variable's value), as a bug that never
/// returns would (the end-to-end liveness test runs the module binary with it).
pub const TEST_WEDGE_ENV: &str = "BRIDGE_BLE_TEST_WEDGE_PIPELINE";

/// Hangs the consumer at the batch [`TEST_WEDGE_ENV`] names; `batch` counts from 1.
pub async fn test_wedge(batch: u64) {
    static AT: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    let at = AT.get_or_init(|| std::env::var(TEST_WEDGE_ENV).ok()?.parse().ok());
    if *at == Some(batch) {
        tracing::warn!(batch, "Test hook: the advertisement consumer wedges now.");
        std::future::pending::<()>().await;
    }
}

/// The value the watchdog samples, pure: while readings wait, the consumer's batch count
/// (it must move); while none wait, a value new at every sample (nothing is owed).
pub fn progress(waiting: bool, batches: u64, sample: u64) -> u64 {
    if waiting {
        batches & !IDLE
    } else {
        IDLE | sample
    }
}

/// Watches the pipeline of `feed`, whose consumer counts each batch it takes in
/// `batches`; the slot lives as long as the returned [`Stall`].
pub fn watch_pipeline(feed: Arc<Feed>, batches: Arc<AtomicU64>) -> Stall {
    let samples = AtomicU64::new(0);
    bridge_core::watchdog::global().watch_counter(
        "advert pipeline",
        PIPELINE_LIMIT,
        Policy::Exit,
        move || {
            let sample = samples.fetch_add(1, Ordering::Relaxed);
            progress(feed.waiting() > 0, batches.load(Ordering::Relaxed), sample)
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_readings_need_batches_and_an_empty_feed_owes_nothing() {
        // Nothing waits: every sample differs, the counter always "moves".
        assert_ne!(progress(false, 7, 1), progress(false, 7, 2));
        // Readings wait: the value moves only with the consumer's batches.
        assert_eq!(progress(true, 7, 1), progress(true, 7, 2));
        assert_ne!(progress(true, 7, 3), progress(true, 8, 4));
        // The two never collide: the switch from idle to waiting counts as a move.
        assert_ne!(progress(false, 7, 7), progress(true, 7, 7));
    }

    #[tokio::test]
    async fn a_consumer_that_takes_nothing_while_readings_wait_is_a_stall() {
        let wd = bridge_core::watchdog::Watchdog::default();
        let waiting = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let batches = Arc::new(AtomicU64::new(0));
        let samples = AtomicU64::new(0);
        let (w, b) = (waiting.clone(), batches.clone());
        let _slot = wd.watch_counter(
            "advert pipeline",
            Duration::from_secs(60),
            Policy::Exit,
            move || {
                progress(
                    w.load(Ordering::Relaxed),
                    b.load(Ordering::Relaxed),
                    samples.fetch_add(1, Ordering::Relaxed),
                )
            },
        );
        let t0 = tokio::time::Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        // An empty feed for ten minutes: fine.
        for s in (0..600).step_by(30) {
            assert_eq!(wd.check(at(s)), []);
        }
        // Readings wait and batches are taken: fine.
        waiting.store(true, Ordering::Relaxed);
        for s in (600..900).step_by(30) {
            batches.fetch_add(1, Ordering::Relaxed);
            assert_eq!(wd.check(at(s)), []);
        }
        // Readings wait, no batch for longer than the limit: stalled, beyond healing.
        assert_eq!(wd.check(at(930)), []);
        let events = wd.check(at(961));
        assert_eq!(events.len(), 1, "{events:?}");
        assert!(!events[0].restarted);
    }
}
