//! Advertisements straight from BlueZ's signals, with no D-Bus round trip per
//! advertisement: a connection of our own follows `PropertiesChanged` on the devices
//! under `/org/bluez` and the object manager's `InterfacesAdded` / `InterfacesRemoved`,
//! parses the advertisement content out of the signal itself ([`parse`]) into a cache
//! per device, and queues the device for forwarding ([`coalesce`]: the newest reading
//! per device wins when forwarding falls behind). One `GetManagedObjects` seeds the
//! cache when the connection starts and whenever BlueZ (re)appears on the bus.
//!
//! btleplug stays in charge of the adapter, discovery and GATT.

mod bus;
pub mod coalesce;
pub mod parse;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use btleplug::api::PeripheralProperties;
use dbus::Message;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use coalesce::Coalescer;
use parse::{Applied, Cache};

/// What the signal connection knows about BlueZ.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BusStatus {
    /// How many times the cache was seeded from BlueZ: it changes when BlueZ restarted
    /// or our connection was re-established.
    pub generation: u64,
    /// How many times our connection was lost and made again (the bus restarted).
    pub reconnects: u64,
    /// BlueZ is on the bus and answered.
    pub bluez: bool,
    /// Adapters BlueZ has.
    pub adapters: usize,
    /// At least one adapter is powered.
    pub powered: bool,
    /// Why the connection or BlueZ is unavailable.
    pub error: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    cache: Cache,
    queue: Coalescer<Arc<str>>,
    last_advert: Option<Instant>,
}

/// The advertisement feed shared by the signal task and the scanner.
#[derive(Debug)]
pub struct Feed {
    state: Mutex<State>,
    ready: Notify,
    status: watch::Sender<BusStatus>,
}

impl Feed {
    /// A feed with nothing in it, not connected (tests and [`Feed::start`]).
    pub fn new() -> Self {
        Self {
            state: Mutex::new(State::default()),
            ready: Notify::new(),
            status: watch::Sender::new(BusStatus::default()),
        }
    }

    /// Starts following BlueZ's signals on the system bus until `stop`; reconnects when
    /// the connection is lost.
    pub fn start(stop: CancellationToken) -> Arc<Self> {
        let feed = Arc::new(Self::new());
        bus::start(feed.clone(), stop);
        feed
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The connection's view of BlueZ, to watch for restarts and lost adapters.
    pub fn status(&self) -> watch::Receiver<BusStatus> {
        self.status.subscribe()
    }

    /// Resolves when devices are waiting to be forwarded.
    pub async fn ready(&self) {
        self.ready.notified().await;
    }

    /// Up to `max` waiting devices' current properties, oldest waiting first (copies;
    /// the scanner uses [`Feed::take_each`]).
    pub fn take(&self, max: usize) -> Vec<PeripheralProperties> {
        let mut out = Vec::new();
        self.take_each(max, |props| {
            out.push(props.clone());
            true
        });
        out
    }

    /// Calls `f` with up to `max` waiting devices' current properties, oldest waiting
    /// first, borrowed from the cache (no copy per advertisement); stops early when `f`
    /// returns false. `f` runs under the feed's lock: it must not call the feed.
    pub fn take_each(&self, max: usize, mut f: impl FnMut(&PeripheralProperties) -> bool) {
        let mut state = self.lock();
        let state = &mut *state;
        for _ in 0..max {
            let Some(path) = state.queue.take() else {
                break;
            };
            if let Some(record) = state.cache.devices.get(&*path)
                && !f(&record.props)
            {
                break;
            }
        }
        if !state.queue.is_empty() {
            self.ready.notify_one();
        }
    }

    /// Wakes [`Feed::ready`] if devices are waiting (a safety net for a wake-up lost
    /// with a cancelled wait).
    pub fn kick(&self) {
        if !self.lock().queue.is_empty() {
            self.ready.notify_one();
        }
    }

    /// When the last advertisement (data or RSSI) arrived from any device.
    pub fn last_advert(&self) -> Option<Instant> {
        self.lock().last_advert
    }

    /// Devices BlueZ currently has.
    pub fn devices(&self) -> usize {
        self.lock().cache.devices.len()
    }

    /// Devices waiting to be forwarded (the pipeline's liveness).
    pub fn waiting(&self) -> usize {
        self.lock().queue.len()
    }

    /// Readings replaced by newer ones before they were forwarded, ever.
    pub fn superseded(&self) -> u64 {
        self.lock().queue.superseded()
    }

    /// One signal from BlueZ.
    pub fn on_signal(&self, msg: &Message) {
        self.on_signals(std::slice::from_ref(msg));
    }

    /// Signals from BlueZ, in order, under one lock; the scanner is woken once.
    pub fn on_signals(&self, msgs: &[Message]) {
        let mut state = self.lock();
        let (mut ready, mut heard, mut adapters_changed) = (false, false, false);
        for msg in msgs {
            match state.cache.apply(msg) {
                Applied::Device(path, change) if change.advert => {
                    heard = true;
                    ready |= state.queue.offer(&path, change.reading);
                }
                Applied::DeviceRemoved => {
                    if let Some(path) = msg.iter_init().get::<dbus::Path<'_>>() {
                        state.queue.forget::<str>(&path);
                    }
                }
                Applied::Adapter => adapters_changed = true,
                Applied::Device(..) | Applied::Nothing => {}
            }
        }
        if heard {
            state.last_advert = Some(Instant::now());
        }
        let now = adapters_changed.then(|| adapters(&state.cache));
        drop(state);
        if ready {
            self.ready.notify_one();
        }
        if let Some((adapters, powered)) = now {
            self.status.send_if_modified(|s| {
                let changed = s.adapters != adapters || s.powered != powered;
                s.adapters = adapters;
                s.powered = powered;
                changed
            });
        }
    }

    /// A fresh view of BlueZ (`GetManagedObjects`): every device with data is queued.
    fn seeded(&self, cache: Cache, with_data: Vec<String>) {
        let (adapters, powered) = adapters(&cache);
        let mut state = self.lock();
        state.cache = cache;
        state.queue.clear();
        let State { cache, queue, .. } = &mut *state;
        for path in &with_data {
            if let Some(record) = cache.devices.get(path) {
                queue.offer(&record.path, true);
            }
        }
        drop(state);
        if !with_data.is_empty() {
            self.ready.notify_one();
        }
        self.status.send_modify(|s| {
            s.generation += 1;
            s.bluez = true;
            s.adapters = adapters;
            s.powered = powered;
            s.error = None;
        });
    }

    /// Our connection to the bus was lost.
    fn disconnected(&self, error: String) {
        self.lost(error);
        self.status.send_modify(|s| s.reconnects += 1);
    }

    /// BlueZ left the bus, or our connection is gone.
    fn lost(&self, error: String) {
        let mut state = self.lock();
        state.cache = Cache::default();
        state.queue.clear();
        drop(state);
        self.status.send_modify(|s| {
            s.bluez = false;
            s.adapters = 0;
            s.powered = false;
            s.error = Some(error);
        });
    }
}

impl Default for Feed {
    fn default() -> Self {
        Self::new()
    }
}

fn adapters(cache: &Cache) -> (usize, bool) {
    (
        cache.adapters.len(),
        cache.adapters.values().any(|powered| *powered),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use dbus::arg::{PropMap, RefArg, Variant};

    use super::*;

    fn advert(n: u8, temp: u8) -> Message {
        let mut data: HashMap<u16, Variant<Box<dyn RefArg>>> = HashMap::new();
        data.insert(0x0499, Variant(Box::new(vec![5, temp])));
        let mut props = PropMap::new();
        props.insert("ManufacturerData".into(), Variant(Box::new(data)));
        props.insert("RSSI".into(), Variant(Box::new(-50_i16)));
        Message::new_signal(
            format!("/org/bluez/hci0/dev_C0_FF_EE_00_00_{n:02X}"),
            "org.freedesktop.DBus.Properties",
            "PropertiesChanged",
        )
        .unwrap()
        .append3(parse::DEVICE_IFACE, props, Vec::<String>::new())
    }

    #[test]
    fn a_burst_forwards_the_newest_reading_per_device_and_counts_the_rest() {
        let feed = Feed::new();
        for temp in 0..5 {
            for dev in 0..3 {
                feed.on_signal(&advert(dev, temp));
            }
        }
        assert_eq!(feed.superseded(), 3 * 4);
        assert!(feed.last_advert().is_some());
        let batch = feed.take(2);
        assert_eq!(batch.len(), 2);
        assert_eq!(batch[0].manufacturer_data[&0x0499], vec![5, 4], "newest");
        assert_eq!(batch[0].address.to_string(), "C0:FF:EE:00:00:00");
        let rest = feed.take(10);
        assert_eq!(rest.len(), 1);
        assert!(feed.take(10).is_empty());
        feed.on_signal(&advert(1, 9));
        assert_eq!(feed.take(10)[0].manufacturer_data[&0x0499], vec![5, 9]);
        assert_eq!(
            feed.superseded(),
            12,
            "forwarded readings are not superseded"
        );
        feed.lost("gone".into());
        assert_eq!(feed.devices(), 0);
        assert_eq!(feed.status().borrow().error.as_deref(), Some("gone"));
    }
}
