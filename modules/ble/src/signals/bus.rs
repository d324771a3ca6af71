//! The thin D-Bus side of the feed: our own system-bus connection, match rules for
//! BlueZ's object signals, a `GetManagedObjects` to seed the cache, and a watch on
//! BlueZ's bus name so a restarted BlueZ is seeded afresh. The connection is re-made
//! (with backoff) when it is lost.
//!
//! It runs on a thread of its own with a blocking connection, so that reads can be
//! batched: while advertisements keep coming the thread sleeps [`BATCH`] between reads
//! and takes everything that arrived meanwhile, instead of waking the module once per
//! signal (each wake-up is a context switch, an `epoll_wait` and a read; on the
//! 1,000-device benchmark they were a quarter of the CPU per message). A lone
//! advertisement after a quiet spell is taken at once.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bridge_core::backoff::Backoff;
use dbus::arg::{Iter, ReadAll, TypeMismatchError};
use dbus::blocking::LocalConnection;
use dbus::channel::MatchingReceiver;
use dbus::message::{MatchRule, MessageType};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::Feed;
use super::parse::Cache;

const CALL_TIMEOUT: Duration = Duration::from_secs(10);
const PROPERTIES: &str = "org.freedesktop.DBus.Properties";
const OBJECT_MANAGER: &str = "org.freedesktop.DBus.ObjectManager";
/// While signals keep coming, how long they are let accumulate between reads: the
/// latency added to an advertisement under load (none after a quiet spell).
const BATCH: Duration = Duration::from_millis(20);
/// How long a read blocks while nothing comes (the stop request is seen this often).
const IDLE_WAIT: Duration = Duration::from_millis(250);

/// Bus-side filters: only BlueZ's signals reach us (the daemon resolves `sender` to
/// whoever owns `org.bluez` now, so they survive a BlueZ restart).
const MATCHES: [&str; 3] = [
    "type='signal',sender='org.bluez',interface='org.freedesktop.DBus.Properties',member='PropertiesChanged',path_namespace='/org/bluez'",
    "type='signal',sender='org.bluez',interface='org.freedesktop.DBus.ObjectManager'",
    "type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',member='NameOwnerChanged',arg0='org.bluez'",
];

/// Why the signal connection ended.
#[derive(Debug, thiserror::Error)]
enum SignalError {
    /// No system bus, or the bus refused a match rule.
    #[error("cannot follow BlueZ's signals on the system D-Bus: {0}")]
    Bus(String),
    /// The connection dropped.
    #[error("the D-Bus connection of BlueZ's signals was lost: {0}")]
    Lost(String),
}

/// A `GetManagedObjects` reply parsed straight into a cache.
struct Seed(Cache, Vec<String>);

impl ReadAll for Seed {
    fn read(i: &mut Iter<'_>) -> Result<Self, TypeMismatchError> {
        let mut cache = Cache::default();
        let with_data = cache.seed_from(i);
        Ok(Self(cache, with_data))
    }
}

/// Follows BlueZ on a thread of its own until `stop`.
pub(super) fn start(feed: Arc<Feed>, stop: CancellationToken) {
    let spawned = std::thread::Builder::new()
        .name("bluez-signals".into())
        .spawn(move || run(&feed, &stop));
    if let Err(e) = spawned {
        warn!(error = %e, "Could not start the thread following BlueZ's signals.");
    }
}

/// Follows BlueZ until `stop`, reconnecting with backoff.
fn run(feed: &Feed, stop: &CancellationToken) {
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
    while !stop.is_cancelled() {
        let e = match session(feed, stop, &mut backoff) {
            Ok(()) => return,
            Err(e) => e,
        };
        warn!(error = %e, "BlueZ's advertisement signals are not followed; reconnecting.");
        feed.disconnected(e.to_string());
        let delay = backoff.next_delay();
        let step = Duration::from_millis(50);
        let mut waited = Duration::ZERO;
        while waited < delay && !stop.is_cancelled() {
            std::thread::sleep(step);
            waited += step;
        }
    }
}

/// One connection: returns when it is lost (or `stop`).
fn session(
    feed: &Feed,
    stop: &CancellationToken,
    backoff: &mut Backoff,
) -> Result<(), SignalError> {
    let conn = LocalConnection::new_system().map_err(|e| SignalError::Bus(e.to_string()))?;
    for rule in MATCHES {
        conn.add_match_no_cb(rule)
            .map_err(|e| SignalError::Bus(e.to_string()))?;
    }
    // Signals are collected as they are read and applied to the feed a batch at a time
    // (one lock, one wake-up of the scanner); `signals` counts them to tell busy from
    // quiet.
    let signals = Rc::new(Cell::new(0u64));
    let owner: Rc<Cell<Option<bool>>> = Rc::new(Cell::new(None));
    let pending: Rc<RefCell<Vec<dbus::Message>>> = Rc::default();
    for member in [
        (PROPERTIES, "PropertiesChanged"),
        (OBJECT_MANAGER, "InterfacesAdded"),
        (OBJECT_MANAGER, "InterfacesRemoved"),
    ] {
        let pending = pending.clone();
        let signals = signals.clone();
        conn.start_receive(
            MatchRule::new_signal(member.0, member.1),
            Box::new(move |msg, _| {
                signals.set(signals.get() + 1);
                pending.borrow_mut().push(msg);
                true
            }),
        );
    }
    let seen_owner = owner.clone();
    conn.start_receive(
        MatchRule::new_signal("org.freedesktop.DBus", "NameOwnerChanged")
            .with_type(MessageType::Signal),
        Box::new(move |msg, _| {
            if let Ok((name, _old, new)) = msg.read3::<&str, &str, &str>()
                && name == "org.bluez"
            {
                seen_owner.set(Some(!new.is_empty()));
            }
            true
        }),
    );
    seed(feed);
    backoff.reset();
    let lost = |e: dbus::Error| SignalError::Lost(e.message().unwrap_or("closed").to_owned());
    loop {
        if stop.is_cancelled() {
            return Ok(());
        }
        // Quiet: block until something comes; it is applied at once.
        let before = signals.get();
        conn.process(IDLE_WAIT).map_err(lost)?;
        while conn.process(Duration::ZERO).map_err(lost)? {}
        apply(feed, &pending);
        // Busy: let signals accumulate, then take them all, until it is quiet again.
        while signals.get() != before && !stop.is_cancelled() {
            let before = signals.get();
            std::thread::sleep(BATCH);
            while conn.process(Duration::ZERO).map_err(lost)? {}
            apply(feed, &pending);
            if owner_changed(feed, &owner) || signals.get() == before {
                break;
            }
        }
        owner_changed(feed, &owner);
    }
}

/// Applies the signals read, in order, under one lock of the feed.
fn apply(feed: &Feed, pending: &RefCell<Vec<dbus::Message>>) {
    let mut pending = pending.borrow_mut();
    if !pending.is_empty() {
        feed.on_signals(&pending);
        pending.clear();
    }
}

/// BlueZ appeared (seeded afresh) or left the bus; true when it did either.
fn owner_changed(feed: &Feed, owner: &Cell<Option<bool>>) -> bool {
    match owner.take() {
        Some(true) => {
            info!("BlueZ appeared on the bus; reading its devices.");
            seed(feed);
            true
        }
        Some(false) => {
            warn!("BlueZ left the bus.");
            feed.lost("BlueZ (org.bluez) left the system bus".into());
            true
        }
        None => false,
    }
}

/// Seeds the cache from BlueZ's object manager (best effort: BlueZ may be missing).
///
/// On a short-lived connection of its own: the reply (every device BlueZ knows, about
/// 300 KiB at 1,000 devices) would leave the signal connection's read buffer a memory
/// mapping (glibc maps allocations that large and `realloc` keeps them mapped), which
/// libdbus then grows and compacts with two `mremap` calls per read; measured at 6 % of
/// the CPU per message. Signals arriving meanwhile wait on the signal connection and are
/// applied after the seed.
fn seed(feed: &Feed) {
    let reply: Result<Seed, dbus::Error> = LocalConnection::new_system().and_then(|conn| {
        conn.with_proxy("org.bluez", "/", CALL_TIMEOUT).method_call(
            OBJECT_MANAGER,
            "GetManagedObjects",
            (),
        )
    });
    match reply {
        Ok(Seed(cache, with_data)) => {
            debug!(
                devices = cache.devices.len(),
                adapters = cache.adapters.len(),
                "BlueZ's objects read."
            );
            feed.seeded(cache, with_data);
        }
        Err(e) => {
            debug!(error = %e, "BlueZ is not answering on the bus.");
            feed.lost(format!("BlueZ is not running: {e}"));
        }
    }
}
