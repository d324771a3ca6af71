//! The hot path of every advertisement: decode the device's current advertisement (borrowed
//! from the feed's cache), drop repeats, and hand the telemetry to the device's route. Per
//! advertisement only what the message itself carries is allocated (its JSON text, id and
//! time): addresses and discovered device ids are written on the stack, and the state kept
//! per device (last reading, packet id, presence) is updated in place.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bridge_core::message::Message;
use btleplug::api::{BDAddr, PeripheralProperties};
use serde_json::Value;
use tracing::warn;

use super::{Counters, Presence, advert_of, body, decode, decode_custom, presence_health};
use crate::adverts::{self, DecodeError, Decoded};
use crate::config::BleConfig;
use crate::routes::{Out, Routes};

/// What the scan remembers between advertisements.
#[derive(Debug, Default)]
pub(super) struct Seen {
    /// The JSON text of the last body sent per device, and when.
    last_sent: HashMap<String, (String, Instant)>,
    pub(super) presence: Presence,
    memory: HashMap<String, crate::report::Memory>,
    /// Metrics counters.
    pub(super) counters: Arc<Counters>,
    /// The last packet id (frame counter) per device, to drop repeated readings.
    packet_ids: HashMap<String, u32>,
    /// The key problem last reported per device (`encrypted`, `decryption failed`).
    decode_errors: HashMap<String, &'static str>,
}

impl Seen {
    pub(super) fn new(counters: Arc<Counters>) -> Self {
        Self {
            counters,
            ..Self::default()
        }
    }
}

/// ASCII text of a fixed length, on the stack.
struct Text<const N: usize>([u8; N]);

impl<const N: usize> Text<N> {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

fn hex_digit(nibble: u8, upper: bool) -> u8 {
    let digits = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    digits[usize::from(nibble & 0xF)]
}

/// `C0:FF:EE:00:00:01`, as configured devices are keyed.
fn address_text(address: BDAddr) -> Text<17> {
    let mut out = [b':'; 17];
    for (i, b) in address.into_inner().iter().enumerate() {
        out[i * 3] = hex_digit(b >> 4, true);
        out[i * 3 + 1] = hex_digit(*b, true);
    }
    Text(out)
}

/// `ble-c0ffee000001`: the id of a discovered device.
fn discovered_id(address: BDAddr) -> Text<16> {
    let mut out = *b"ble-000000000000";
    for (i, b) in address.into_inner().iter().enumerate() {
        out[4 + i * 2] = hex_digit(b >> 4, false);
        out[5 + i * 2] = hex_digit(*b, false);
    }
    Text(out)
}

/// What discovery makes of an unconfigured device: the first listed decoder that
/// recognises it (with its key from the keys file, by address), else raw data when raw
/// discovery's filter matches.
fn discover(config: &BleConfig, address: &str, props: &PeripheralProperties) -> Option<Decoded> {
    let key = config.keys_by_address.get(address);
    let discovery = &config.discovery;
    let found = if discovery.maps.is_empty() {
        let ad = advert_of(props);
        let key = key.map(<[u8; 16]>::as_slice);
        adverts::FORMATS
            .iter()
            .filter(|f| f.discover_by_default)
            .find_map(|f| (f.decode)(&ad, key).ok())
    } else {
        discovery
            .maps
            .iter()
            .find_map(|m| decode(m, props, key).ok())
    };
    if found.is_some() {
        return found;
    }
    let raw = &discovery.raw;
    let wanted = raw.enabled
        && (raw
            .company_ids
            .iter()
            .any(|c| props.manufacturer_data.contains_key(c))
            || raw
                .uuids()
                .iter()
                .any(|u| props.service_data.contains_key(u)));
    wanted
        .then(|| adverts::raw::decode(&advert_of(props), None).ok())
        .flatten()
}

/// Reports a device's key problem (or its end) as its health: heard (online), with
/// `lastError` `encrypted` or `decryption failed`, once per change; through the device's
/// route like every health (reported properties and the `status` output). Keys
/// themselves are never logged. False when the route has closed (shutdown).
fn decode_health(
    routes: &mut Routes,
    last: &mut HashMap<String, &'static str>,
    device: &crate::config::Device,
    props: &PeripheralProperties,
    error: Option<&'static str>,
) -> bool {
    if last.get(&device.id).copied() == error {
        return true;
    }
    match error {
        Some(e) => {
            warn!(device = %device.id, error = e, "Advertisement not decoded: check the device's bindKey.");
            last.insert(device.id.clone(), e);
        }
        None => {
            last.remove(&device.id);
        }
    }
    let mut health = presence_health(true, Some(props));
    health.last_error = error.map(str::to_owned);
    routes
        .sink(&device.id, &device.map, &device.writable)
        .send(Out::Health(health))
}

/// The telemetry channel has closed (shutdown).
pub(super) struct Closed;

/// Updates `map[key]` in place, inserting (with an owned key) only the first time.
fn upsert<V>(map: &mut HashMap<String, V>, key: &str, value: V) {
    match map.get_mut(key) {
        Some(slot) => *slot = value,
        None => {
            map.insert(key.to_owned(), value);
        }
    }
}

/// A field of the telemetry body.
enum Field<'a> {
    Decoded(&'a Value),
    Signal(i16),
}

/// Appends `"key":value` (with a comma after the first field).
fn put(out: &mut Vec<u8>, key: &str, value: Field<'_>) {
    if out.len() > 1 {
        out.push(b',');
    }
    let written = serde_json::to_writer(&mut *out, key).and_then(|()| {
        out.push(b':');
        match value {
            Field::Decoded(v) => serde_json::to_writer(&mut *out, v),
            Field::Signal(n) => serde_json::to_writer(&mut *out, &n),
        }
    });
    // Writing JSON into a Vec cannot fail.
    debug_assert!(written.is_ok());
}

/// The telemetry body's JSON text (what [`body`] serialises to), written straight from
/// the decoded values without building the object: keys in serde_json's map order, the
/// advertised `rssi` over a decoded one, the advertised `txPower` unless one is decoded.
fn body_text(values: &BTreeMap<String, Value>, rssi: Option<i16>, tx: Option<i16>) -> String {
    let mut out = Vec::with_capacity(128);
    out.push(b'{');
    let mut signals = [("rssi", rssi), ("txPower", tx)]
        .into_iter()
        .filter_map(|(k, v)| Some((k, v?)))
        .peekable();
    for (key, value) in values {
        while let Some((name, n)) = signals.next_if(|(name, _)| *name < key.as_str()) {
            put(&mut out, name, Field::Signal(n));
        }
        match signals.next_if(|(name, _)| *name == key.as_str()) {
            Some(("rssi", n)) => put(&mut out, key, Field::Signal(n)),
            _ => put(&mut out, key, Field::Decoded(value)),
        }
    }
    for (name, n) in signals {
        put(&mut out, name, Field::Signal(n));
    }
    out.push(b'}');
    String::from_utf8(out).unwrap_or_default()
}

/// Decodes and forwards the current advertisement of one device.
pub(super) fn advert(
    config: &BleConfig,
    props: &PeripheralProperties,
    seen: &mut Seen,
    routes: &mut Routes,
) -> Result<(), Closed> {
    let address = address_text(props.address);
    let address = address.as_str();
    let device = config.devices.get(address);
    let discovered = discovered_id(props.address);
    let (device_id, decoded, min_interval) = match device {
        Some(d) => match d.custom.as_ref().map_or_else(
            || decode(&d.map, props, d.bind_key.as_ref()),
            |m| decode_custom(m, props),
        ) {
            Ok(dec) => {
                if !decode_health(routes, &mut seen.decode_errors, d, props, None) {
                    return Err(Closed);
                }
                (d.id.as_str(), dec, d.min_interval_ms)
            }
            Err(DecodeError::NotThisFormat(_)) => return Ok(()),
            Err(e) => {
                // Key trouble is the device's health; other errors are a bad frame.
                let health = match e {
                    DecodeError::Encrypted => Some("encrypted"),
                    DecodeError::Decrypt => Some("decryption failed"),
                    _ => None,
                };
                if health.is_some() {
                    if !decode_health(routes, &mut seen.decode_errors, d, props, health) {
                        return Err(Closed);
                    }
                } else {
                    warn!(device = %d.id, error = %e, "Advertisement not decoded.");
                }
                return Ok(());
            }
        },
        None if config.discovery.enabled => match discover(config, address, props) {
            Some(dec) => (discovered.as_str(), dec, 0),
            None => return Ok(()),
        },
        None => return Ok(()),
    };
    // A repeat of the same reading (same packet id or frame counter) is not sent again.
    if let Some(id) = decoded.packet_id {
        if seen.packet_ids.get(device_id) == Some(&id) {
            return Ok(());
        }
        upsert(&mut seen.packet_ids, device_id, id);
    }
    seen.counters
        .decoded
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let format = decoded.format;
    // Serialised once, straight from the decoded values: compared with the last one
    // sent, and sent as it is (report-on-change builds the object it needs).
    let text = body_text(&decoded.values, props.rssi, props.tx_power_level);
    // Unchanged advertisements (BlueZ repeats them) are not sent again within the interval.
    let now = Instant::now();
    let min = Duration::from_millis(min_interval.max(1000));
    match seen.last_sent.get_mut(device_id) {
        Some((prev, at)) => {
            let since = now.duration_since(*at);
            if *prev == text && since < min || since < Duration::from_millis(min_interval) {
                return Ok(());
            }
            prev.clone_from(&text);
            *at = now;
        }
        None => {
            seen.last_sent
                .insert(device_id.to_owned(), (text.clone(), now));
        }
    }
    let map = device.map_or(format, |d| d.map.as_str());
    let no_writable: &[crate::config::Writable] = &[];
    let sink = routes.sink(device_id, map, device.map_or(no_writable, |d| &d.writable));
    if seen.presence.saw(device_id, now)
        && !sink.send(Out::Health(presence_health(true, Some(props))))
    {
        return Err(Closed);
    }
    // Discovered devices have no report settings: every change is sent.
    let text = match device.map(|d| &d.report) {
        Some(report) if report.on_change => {
            if !seen.memory.contains_key(device_id) {
                seen.memory.insert(device_id.to_owned(), Default::default());
            }
            let Some(memory) = seen.memory.get_mut(device_id) else {
                return Ok(());
            };
            let selected = memory.select(report, &body(decoded, props), now);
            if selected.is_empty() {
                return Ok(());
            }
            Value::Object(selected).to_string()
        }
        _ => text,
    };
    let msg = Message::json_text("telemetry", text, bridge_core::time::rfc3339_now())
        .with_property("format", format);
    seen.counters
        .messages
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if sink.send(Out::Message(msg)) {
        Ok(())
    } else {
        Err(Closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn addresses_and_discovered_ids_are_written_without_allocating() {
        let a = BDAddr::from([0xC0, 0xFF, 0xEE, 0x0A, 0x00, 0x01]);
        assert_eq!(address_text(a).as_str(), a.to_string());
        assert_eq!(address_text(a).as_str(), "C0:FF:EE:0A:00:01");
        assert_eq!(discovered_id(a).as_str(), "ble-c0ffee0a0001");
    }

    #[test]
    fn body_text_is_the_body_serialised() {
        let cases = [
            json!({}),
            json!({"temperature": 21.5, "humidity": 45}),
            json!({"a": 1, "rssi": -1, "txPower": 4, "z": "x\"y"}),
            json!({"battery": 100, "txPower": 7}),
            json!({"s": true, "u": null, "v": [1, 2]}),
        ];
        for values in cases {
            for (rssi, tx) in [
                (None, None),
                (Some(-60), None),
                (None, Some(-4)),
                (Some(-70), Some(3)),
            ] {
                let decoded = Decoded {
                    format: "t",
                    values: values
                        .as_object()
                        .unwrap()
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                    packet_id: None,
                };
                let props = PeripheralProperties {
                    rssi,
                    tx_power_level: tx,
                    ..PeripheralProperties::default()
                };
                let text = body_text(&decoded.values, rssi, tx);
                let want = Value::Object(body(decoded, &props)).to_string();
                assert_eq!(text, want, "{values} {rssi:?} {tx:?}");
            }
        }
    }
}
