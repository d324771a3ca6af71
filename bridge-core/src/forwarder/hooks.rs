//! Fault-injection hook for end-to-end tests that run the module in-process: inert (one
//! relaxed load per loop turn) unless a test arms it; not reachable from configuration,
//! the command line or the environment.

use std::sync::atomic::{AtomicU64, Ordering};

/// Messages sent before the forwarder wedges; 0: never.
static WEDGE_AFTER: AtomicU64 = AtomicU64::new(0);

/// Wedges the forwarder's loop forever once it has sent `sent` messages upstream, as a
/// bug that never returns would: the watchdog must find the stall and end the module.
#[doc(hidden)]
pub fn wedge_after_sent(sent: u64) {
    WEDGE_AFTER.store(sent.max(1), Ordering::Relaxed);
}

/// Hangs when a test wedged the forwarder and `sent` messages have gone.
pub(super) async fn turn(sent: u64) {
    let after = WEDGE_AFTER.load(Ordering::Relaxed);
    if after != 0 && sent >= after {
        tracing::warn!(sent, "Test hook: the forwarder wedges now.");
        std::future::pending::<()>().await;
    }
}
