//! The thin D-Bus side of the feed: our own system-bus connection, match rules for
//! BlueZ's object signals, a `GetManagedObjects` to seed the cache, and a watch on
//! BlueZ's bus name so a restarted BlueZ is seeded afresh. The connection is re-made
//! (with backoff) when it is lost.

use std::sync::Arc;
use std::time::Duration;

use bridge_core::backoff::Backoff;
use dbus::arg::{Iter, ReadAll, TypeMismatchError};
use dbus::channel::MatchingReceiver;
use dbus::message::{MatchRule, MessageType};
use dbus::nonblock::{Proxy, SyncConnection};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::Feed;
use super::parse::Cache;

const CALL_TIMEOUT: Duration = Duration::from_secs(10);
const PROPERTIES: &str = "org.freedesktop.DBus.Properties";
const OBJECT_MANAGER: &str = "org.freedesktop.DBus.ObjectManager";

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

/// Follows BlueZ until `stop`.
pub(super) async fn run(feed: Arc<Feed>, stop: CancellationToken) {
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
    loop {
        let outcome = tokio::select! {
            _ = stop.cancelled() => return,
            r = session(&feed, &mut backoff) => r,
        };
        let e = match outcome {
            Ok(()) => return,
            Err(e) => e,
        };
        warn!(error = %e, "BlueZ's advertisement signals are not followed; reconnecting.");
        feed.disconnected(e.to_string());
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
}

/// One connection: returns when it is lost.
async fn session(feed: &Arc<Feed>, backoff: &mut Backoff) -> Result<(), SignalError> {
    let (resource, conn) =
        dbus_tokio::connection::new_system_sync().map_err(|e| SignalError::Bus(e.to_string()))?;
    let mut io = tokio::spawn(resource);
    // Aborting the connection task on every return closes the connection.
    let _guard = AbortOnDrop(io.abort_handle());
    for rule in MATCHES {
        conn.add_match_no_cb(rule)
            .await
            .map_err(|e| SignalError::Bus(e.to_string()))?;
    }
    // Dispatched inside the connection task as messages arrive: parse, cache, queue.
    for member in [
        (PROPERTIES, "PropertiesChanged"),
        (OBJECT_MANAGER, "InterfacesAdded"),
        (OBJECT_MANAGER, "InterfacesRemoved"),
    ] {
        let f = feed.clone();
        conn.start_receive(
            MatchRule::new_signal(member.0, member.1),
            Box::new(move |msg, _| {
                f.on_signal(&msg);
                true
            }),
        );
    }
    let (owner_tx, mut owner_rx) = mpsc::unbounded_channel::<bool>();
    conn.start_receive(
        MatchRule::new_signal("org.freedesktop.DBus", "NameOwnerChanged")
            .with_type(MessageType::Signal),
        Box::new(move |msg, _| {
            if let Ok((name, _old, new)) = msg.read3::<&str, &str, &str>()
                && name == "org.bluez"
            {
                let _ignored = owner_tx.send(!new.is_empty());
            }
            true
        }),
    );
    seed(feed, &conn).await;
    backoff.reset();
    loop {
        tokio::select! {
            lost = &mut io => {
                let why = lost.map_or_else(|e| e.to_string(), |e| e.to_string());
                return Err(SignalError::Lost(why));
            }
            owner = owner_rx.recv() => match owner {
                Some(true) => {
                    info!("BlueZ appeared on the bus; reading its devices.");
                    seed(feed, &conn).await;
                }
                Some(false) => {
                    warn!("BlueZ left the bus.");
                    feed.lost("BlueZ (org.bluez) left the system bus".into());
                }
                None => return Ok(()),
            },
        }
    }
}

/// Seeds the cache from BlueZ's object manager (best effort: BlueZ may be missing).
async fn seed(feed: &Feed, conn: &Arc<SyncConnection>) {
    let root = Proxy::new("org.bluez", "/", CALL_TIMEOUT, conn.clone());
    let reply: Result<Seed, _> = root
        .method_call(OBJECT_MANAGER, "GetManagedObjects", ())
        .await;
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

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
