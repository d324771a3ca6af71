//! Fault-injection hooks for end-to-end tests that run the module in-process: inert
//! (one relaxed load per poll cycle) unless a test arms them.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

static ARMED: AtomicBool = AtomicBool::new(false);
static WEDGED: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// Wedges the next poll cycle of `device` forever (once), as a bug that never returns
/// would: the watchdog must find the stall and restart the poller.
#[doc(hidden)]
pub fn wedge_next_poll(device: &str) {
    WEDGED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_or_insert_with(HashSet::new)
        .insert(device.to_owned());
    ARMED.store(true, Ordering::Relaxed);
}

/// Hangs if a test wedged this device's next cycle.
pub(crate) async fn poll_cycle(device: &str) {
    if !ARMED.load(Ordering::Relaxed) {
        return;
    }
    let wedged = WEDGED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_mut()
        .is_some_and(|set| set.remove(device));
    if wedged {
        std::future::pending::<()>().await;
    }
}
