//! The btleplug side: find the adapter (retrying while BlueZ or the adapter is missing),
//! scan, and turn advertisement events into decoded telemetry per device.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bridge_core::device::DeviceHealth;
use bridge_core::runtime::ModuleContext;
use btleplug::api::{Central, Manager as _, PeripheralProperties, ScanFilter};
use btleplug::platform::{Adapter, Manager};
use serde_json::{Map, Value, json};
use tracing::{info, warn};
use uuid::Uuid;

use crate::adverts::{self, DecodeError, Decoded};

mod forward;
use crate::config::{BleConfig, ScanMode};
use crate::routes::{Out, Routes};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_seen_then_lost_then_seen() {
        let cfg = crate::config::parse(
            &json!({"devices": {"t": {"address": "C0:FF:EE:00:00:01", "map": "bthome-v2"}}}),
        )
        .unwrap();
        let mut p = Presence::default();
        let t0 = Instant::now();
        assert!(p.saw("t", t0));
        assert!(!p.saw("t", t0 + Duration::from_secs(1)));
        assert!(p.sweep(&cfg, t0 + Duration::from_secs(30)).is_empty());
        assert_eq!(
            p.sweep(&cfg, t0 + Duration::from_secs(62)),
            vec![("t".to_owned(), false)]
        );
        assert!(
            p.sweep(&cfg, t0 + Duration::from_secs(70)).is_empty(),
            "reported once"
        );
        assert!(p.saw("t", t0 + Duration::from_secs(71)), "back");
    }
}

/// The advertisement as decoders see it.
pub fn advert_of(props: &PeripheralProperties) -> adverts::Advert<'_> {
    adverts::Advert {
        address: props.address.into_inner(),
        local_name: props.local_name.as_deref(),
        manufacturer_data: &props.manufacturer_data,
        service_data: &props.service_data,
        services: &props.services,
    }
}

/// Decodes an advertisement with the named format of the registry.
pub fn decode(
    map: &str,
    props: &PeripheralProperties,
    bind_key: Option<&[u8; 16]>,
) -> Result<Decoded, DecodeError> {
    let format = adverts::format(map).ok_or(DecodeError::NotThisFormat("known"))?;
    (format.decode)(&advert_of(props), bind_key.map(<[u8; 16]>::as_slice))
}

/// Decodes a map-driven advertisement map.
pub fn decode_custom(
    map: &crate::custom::AdvertMap,
    props: &PeripheralProperties,
) -> Result<Decoded, DecodeError> {
    let data = match (&map.source.manufacturer_id, &map.source.service_uuid) {
        (Some(id), _) => props.manufacturer_data.get(id),
        (None, Some(u)) => Uuid::parse_str(u)
            .ok()
            .and_then(|u| props.service_data.get(&u)),
        (None, None) => None,
    };
    crate::custom::decode(map, data.ok_or(DecodeError::NotThisFormat("advertised"))?)
}

/// The telemetry body: decoded values (moved, not copied), plus RSSI and TX power when
/// known.
pub fn body(decoded: Decoded, props: &PeripheralProperties) -> Map<String, Value> {
    let mut m: Map<String, Value> = decoded.values.into_iter().collect();
    if let Some(rssi) = props.rssi {
        m.insert("rssi".into(), json!(rssi));
    }
    if let Some(tx) = props.tx_power_level {
        m.entry("txPower").or_insert(json!(tx));
    }
    m
}

/// A device not heard for this long is reported lost.
const LOST_AFTER: Duration = Duration::from_secs(60);

/// Which advertising devices are present, pure.
#[derive(Debug, Default)]
pub struct Presence {
    last_seen: HashMap<String, Instant>,
    lost: std::collections::HashSet<String>,
    started: Option<Instant>,
}

impl Presence {
    /// Records a sighting; true when the device was not known to be present.
    pub fn saw(&mut self, id: &str, now: Instant) -> bool {
        // Per advertisement: updated in place, the id is copied only the first time.
        match self.last_seen.get_mut(id) {
            Some(at) => {
                *at = now;
                !self.lost.is_empty() && self.lost.remove(id)
            }
            None => {
                self.last_seen.insert(id.to_owned(), now);
                true
            }
        }
    }

    /// Configured advertisement devices silent for [`LOST_AFTER`] that were not yet
    /// reported lost: `(id, false)`.
    pub fn sweep(&mut self, config: &BleConfig, now: Instant) -> Vec<(String, bool)> {
        let started = *self.started.get_or_insert(now);
        let mut out = Vec::new();
        for d in config.devices.values().filter(|d| !d.is_gatt()) {
            let since = self.last_seen.get(&d.id).copied().unwrap_or(started);
            if now.duration_since(since) >= LOST_AFTER && self.lost.insert(d.id.clone()) {
                out.push((d.id.clone(), false));
            }
        }
        out
    }
}

/// Presence of an advertising device as its health: online when heard (with what the
/// advertisement says about the device), offline after [`LOST_AFTER`] of silence.
fn presence_health(seen: bool, props: Option<&PeripheralProperties>) -> DeviceHealth {
    let mut health = DeviceHealth::default();
    if seen {
        health.success(bridge_core::time::rfc3339_now(), None);
    } else {
        health.failure(format!("no advertisement for {} s", LOST_AFTER.as_secs()));
    }
    if let Some(p) = props {
        let d = &mut health.detail;
        d.insert("rssi".into(), json!(p.rssi));
        d.insert("localName".into(), json!(p.local_name));
        d.insert("txPower".into(), json!(p.tx_power_level));
        d.insert(
            "serviceUuids".into(),
            json!(
                p.services
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
            ),
        );
        d.insert(
            "manufacturerIds".into(),
            json!(p.manufacturer_data.keys().collect::<Vec<_>>()),
        );
    }
    health
}

/// The first adapter. The manager (btleplug's D-Bus connection) is kept across adapter
/// sessions: btleplug never closes a dropped one's connection.
async fn adapter(kept: &mut Option<Manager>) -> Result<Adapter, String> {
    let manager = match kept {
        Some(m) => m,
        None => kept.insert(Manager::new().await.map_err(|e| format!("BlueZ is not reachable on the system D-Bus ({e}); is bluetoothd running and /var/run/dbus mounted?"))?),
    };
    let adapters = manager
        .adapters()
        .await
        .map_err(|e| format!("BlueZ is not running: no org.bluez on the system bus ({e})."))?;
    adapters
        .into_iter()
        .next()
        .ok_or_else(|| "No Bluetooth adapter found (BlueZ runs, but has no adapter).".to_owned())
}

/// The watchdog's first remedy: stop and start discovery, or register the passive
/// monitor anew.
async fn restart_scanning(
    adapter: &Adapter,
    monitor: Option<crate::monitor::bus::Registration>,
    config: &BleConfig,
) -> Option<crate::monitor::bus::Registration> {
    let passive = monitor.is_some();
    stop_scanning(adapter, monitor).await;
    if passive {
        match crate::monitor::bus::register(&crate::monitor::patterns(config)).await {
            Ok(m) => return Some(m),
            Err(e) => {
                warn!(error = %e, "Could not register the advertisement monitor again; scanning actively.")
            }
        }
    }
    if let Err(e) = adapter.start_scan(ScanFilter::default()).await {
        warn!(error = %e, "Could not restart discovery.");
    }
    None
}

/// Keeps btleplug's adapter event stream open (and empty) while GATT devices are
/// configured: their notifications depend on it. Aborted when dropped.
async fn gatt_event_drain(adapter: &Adapter, config: &BleConfig) -> Option<AbortOnDrop> {
    if !config.devices.values().any(|d| d.is_gatt()) {
        return None;
    }
    let mut events = adapter.events().await.ok()?;
    let task = tokio::spawn(async move {
        use futures::StreamExt;
        while events.next().await.is_some() {}
    });
    Some(AbortOnDrop(task.abort_handle()))
}

/// Aborts a task when dropped.
#[derive(Debug)]
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Retry interval while BlueZ or the adapter is missing.
const RETRY: Duration = Duration::from_secs(10);

async fn stop_scanning(adapter: &Adapter, monitor: Option<crate::monitor::bus::Registration>) {
    // Best effort, and bounded: on a connection that died the call would wait for the
    // D-Bus timeout.
    let stop = async {
        match monitor {
            Some(m) => m.unregister().await,
            None => {
                let _ignored = adapter.stop_scan().await;
            }
        }
    };
    let _ignored = tokio::time::timeout(Duration::from_secs(3), stop).await;
}

/// Write channels of running GATT devices, by device id (for the `write` method).
pub type Writers =
    Arc<std::sync::Mutex<HashMap<String, tokio::sync::mpsc::Sender<crate::connection::WriteCmd>>>>;

/// Scans until `cx.shutdown`, following configuration changes (which restart the scan and
/// the GATT devices); retries every 10 s when BlueZ or the adapter is missing, and exits
/// the process (code 3) when the adapter stays missing for `scan.adapterLostExitMs`.
pub async fn run(mut cx: ModuleContext<BleConfig>, writers: Writers, counters: Arc<Counters>) {
    // Advertisements come from BlueZ's signals on a connection of our own.
    let feed = crate::signals::Feed::start(cx.shutdown.child_token());
    let _ignored = counters.feed.set(feed.clone());
    let batches = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let _pipeline = crate::liveness::watch_pipeline(feed.clone(), batches.clone());
    let mut bus = feed.status();
    let mut seen = forward::Seen::new(counters);
    let mut loss = crate::watchdog::AdapterLoss::new(Duration::ZERO);
    let (mut manager, mut reconnects) = (None, 0);
    let mut routes = Routes::new(cx.devices.clone(), writers.clone());
    loop {
        routes.refresh();
        let current: Arc<BleConfig> = cx.config.borrow_and_update().clone();
        loss.set_limit(Duration::from_millis(current.scan.adapter_lost_exit_ms));
        // Our signal connection was re-made: btleplug's is likely gone too.
        if std::mem::replace(&mut reconnects, bus.borrow().reconnects) != reconnects {
            manager = None;
        }
        let adapter = match adapter(&mut manager).await {
            Ok(a) => {
                loss.available();
                a
            }
            Err(e) => {
                if loss.unavailable(Instant::now()) {
                    crate::watchdog::exit_adapter_lost(&cx, &e).await;
                }
                warn!(error = %e, "Bluetooth unavailable; retrying in 10 s.");
                cx.reporter
                    .report(json!({"bluetooth": {"state": "unavailable", "error": e}}));
                let wait = loss
                    .remaining(Instant::now())
                    .map_or(RETRY, |left| left.min(RETRY));
                tokio::select! {
                    _ = cx.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(wait) => continue,
                    // BlueZ or an adapter appeared: try at once.
                    _ = bus.changed() => continue,
                }
            }
        };
        let generation = bus.borrow_and_update().generation;
        // GATT notifications stop arriving on btleplug 0.11 (bluez-async 0.8) when no
        // adapter event stream is open; while GATT devices run, one is kept and drained.
        let _drain = gatt_event_drain(&adapter, &current).await;
        // Passive: a BlueZ advertisement monitor instead of discovery; when BlueZ cannot,
        // say why and scan actively rather than not at all.
        let (monitor, fallback) = match current.scan.mode {
            ScanMode::Passive => {
                let gatt: Vec<&str> = current
                    .devices
                    .values()
                    .filter(|d| d.is_gatt())
                    .map(|d| d.id.as_str())
                    .collect();
                if !gatt.is_empty() {
                    // Monitors match advertisement content, not addresses.
                    warn!(devices = ?gatt, "Passive scanning does not look for GATT devices: they connect only if BlueZ already knows them (paired or seen by an earlier active scan).");
                }
                match crate::monitor::bus::register(&crate::monitor::patterns(&current)).await {
                    Ok(m) => (Some(m), None),
                    Err(e) => {
                        warn!(error = %e, "Passive scanning is unavailable; scanning actively.");
                        (None, Some(format!("passive scanning unavailable: {e}")))
                    }
                }
            }
            ScanMode::Active => (None, None),
        };
        let started = match &monitor {
            Some(_) => Ok(()),
            None => adapter.start_scan(ScanFilter::default()).await,
        };
        if let Err(e) = started {
            warn!(error = %e, "Could not start scanning; retrying in 10 s.");
            tokio::select! {
                _ = cx.shutdown.cancelled() => return,
                _ = tokio::time::sleep(RETRY) => continue,
            }
        }
        let mut monitor = monitor;
        let mode = if monitor.is_some() {
            "passive"
        } else {
            "active"
        };
        info!(mode, "Scanning for BLE advertisements.");
        cx.reporter.report(
            json!({"bluetooth": {"state": "scanning", "scanMode": mode, "error": fallback}}),
        );
        let mut sweep = tokio::time::interval(Duration::from_secs(5));
        let quiet = Duration::from_millis(current.scan.watchdog_ms);
        let mut watchdog = crate::watchdog::Watchdog::new(quiet, Instant::now());
        let mut watch_tick = tokio::time::interval(
            (quiet / 4).clamp(Duration::from_millis(100), Duration::from_secs(5)),
        );
        let gatt_stop = cx.shutdown.child_token();
        let slots = Arc::new(tokio::sync::Semaphore::new(
            current.scan.max_connections.max(1),
        ));
        for dev in current.devices.values().filter(|d| d.is_gatt()) {
            let (tx, rx) = tokio::sync::mpsc::channel(8);
            writers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(dev.id.clone(), tx);
            tokio::spawn(crate::connection::run(
                adapter.clone(),
                dev.clone(),
                routes.sink(&dev.id, &dev.map, &dev.writable).clone(),
                slots.clone(),
                rx,
                gatt_stop.clone(),
            ));
        }
        let mut powered = bus.borrow().powered;
        loop {
            tokio::select! {
                _ = cx.shutdown.cancelled() => {
                    stop_scanning(&adapter, monitor).await;
                    return;
                }
                _ = cx.config.changed() => {
                    // Restart GATT devices with the new configuration.
                    writers.lock().unwrap_or_else(|p| p.into_inner()).clear();
                    break;
                }
                // Advertisements parsed from BlueZ's signals: the newest per device,
                // decoded in place in the feed's cache.
                () = feed.ready() => {
                    let batch = batches.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                    crate::liveness::test_wedge(batch).await;
                    let config: Arc<BleConfig> = cx.config.borrow().clone();
                    let mut closed = false;
                    feed.take_each(256, |props| {
                        closed = forward::advert(&config, props, &mut seen, &mut routes).is_err();
                        !closed
                    });
                    if closed {
                        return;
                    }
                }
                changed = bus.changed() => {
                    let status = bus.borrow_and_update().clone();
                    if changed.is_err() || !status.bluez || status.adapters == 0 || status.generation != generation && generation != 0 {
                        // BlueZ restarted or left, our connection was re-made, or the
                        // adapter is gone: a new adapter session (GATT devices reconnect).
                        let reason = status.error.clone().unwrap_or_else(|| "BlueZ restarted".into());
                        warn!(reason = %reason, "BlueZ changed under the scan; restarting the adapter session.");
                        cx.reporter.report(json!({"bluetooth": {"state": "restarting", "error": reason}}));
                        break;
                    }
                    if status.powered != powered {
                        powered = status.powered;
                        if powered {
                            info!("The Bluetooth adapter is powered on.");
                        } else {
                            warn!("The Bluetooth adapter is powered off; waiting for it.");
                        }
                        cx.reporter.report(json!({"bluetooth": {"state": if powered { "scanning" } else { "adapterOff" }, "error": null}}));
                    }
                }
                _ = watch_tick.tick() => {
                    let now = Instant::now();
                    let silent = watchdog.silent_for(now);
                    // Known: heard since start, or configured (BlueZ forgets silent devices).
                    let known = feed.last_advert().is_some() || current.devices.values().any(|d| !d.is_gatt());
                    let Some(action) = watchdog.check(now, feed.last_advert(), known) else {
                        continue;
                    };
                    let reason = format!("no advertisement from any device for {:.1} s", silent.as_secs_f64());
                    seen.counters.watchdog(action);
                    crate::watchdog::report(&cx.reporter, action, &reason, seen.counters.watchdog_total());
                    if action == crate::watchdog::Action::RestartAdapter {
                        break;
                    }
                    monitor = restart_scanning(&adapter, monitor, &current).await;
                }
                _ = sweep.tick() => {
                    feed.kick();
                    let config: Arc<BleConfig> = cx.config.borrow().clone();
                    for (id, present) in seen.presence.sweep(&config, Instant::now()) {
                        if let Some(d) = config.devices.values().find(|d| d.id == id) {
                            routes.sink(&id, &d.map, &d.writable).send(Out::Health(presence_health(present, None)));
                        }
                    }
                }
            }
        }
        gatt_stop.cancel();
        stop_scanning(&adapter, monitor).await;
        info!("Restarting the scan.");
    }
}

/// Module-wide counters for metrics.
#[derive(Debug, Default)]
pub struct Counters {
    /// Advertisements decoded.
    pub decoded: std::sync::atomic::AtomicU64,
    /// Telemetry messages sent from advertisements.
    pub messages: std::sync::atomic::AtomicU64,
    /// The advertisement feed (superseded readings).
    pub feed: std::sync::OnceLock<Arc<crate::signals::Feed>>,
    /// Watchdog restarts: of the scan, of the adapter session.
    pub watchdog: [std::sync::atomic::AtomicU64; 2],
}
