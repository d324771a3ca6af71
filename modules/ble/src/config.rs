//! bridge-ble configuration (module twin desired properties or `--config FILE`).

use std::collections::BTreeMap;

use bridge_core::config::{ConfigErrors, ConfigIssue, from_value};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Advertisement decoders a device (or discovery) can use.
pub const ADVERT_MAPS: &[&str] = &[
    "bthome-v2",
    "ruuvi-rawv2",
    "xiaomi-pvvx",
    "ibeacon",
    "eddystone",
];
/// GATT maps (connect, read, subscribe).
pub const GATT_MAPS: &[&str] = &[
    "ble-battery",
    "ble-heart-rate",
    "ble-environmental-sensing",
    "ble-device-information",
];

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum MapRef {
    Name(String),
    Inline(Value),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawDevice {
    address: String,
    map: MapRef,
    #[serde(default)]
    bind_key: Option<String>,
    #[serde(default)]
    min_interval_ms: u64,
    #[serde(default = "default_poll")]
    poll_interval_ms: u64,
    #[serde(default)]
    writable: Vec<String>,
    #[serde(default)]
    report: crate::report::Report,
}

const fn default_poll() -> u64 {
    10_000
}

/// Scan settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Scan {
    /// Most simultaneous GATT connections (adapters manage only a few); others wait in a
    /// fair queue.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// `active` (BlueZ discovery: scan requests, so scan responses such as names arrive)
    /// or `passive` (BlueZ advertisement monitor: listen only, for the advertisement
    /// formats in use; needs BlueZ 5.56+).
    #[serde(default)]
    pub mode: ScanMode,
    /// No advertisement from any device for this long while devices are known: the scan
    /// is restarted, then (still quiet) the adapter session. 0 disables the watchdog.
    #[serde(default = "default_watchdog_ms")]
    pub watchdog_ms: u64,
    /// No adapter (BlueZ gone, adapter removed) for this long: the module exits with
    /// code 3 so the IoT Edge agent restarts it. 0 waits for ever.
    #[serde(default = "default_adapter_lost_exit_ms")]
    pub adapter_lost_exit_ms: u64,
}

const fn default_watchdog_ms() -> u64 {
    60_000
}

const fn default_adapter_lost_exit_ms() -> u64 {
    300_000
}

/// How to scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ScanMode {
    /// BlueZ discovery.
    #[default]
    Active,
    /// BlueZ advertisement monitor with patterns from the configuration.
    Passive,
}

const fn default_max_connections() -> usize {
    4
}

impl Default for Scan {
    fn default() -> Self {
        Self {
            max_connections: default_max_connections(),
            mode: ScanMode::Active,
            watchdog_ms: default_watchdog_ms(),
            adapter_lost_exit_ms: default_adapter_lost_exit_ms(),
        }
    }
}

/// Automatic discovery: any device whose advertisement one of `maps` decodes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Discovery {
    /// On or off.
    #[serde(default)]
    pub enabled: bool,
    /// Decoders to try (default: all advertisement decoders but iBeacon/Eddystone).
    #[serde(default)]
    pub maps: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawConfig {
    #[serde(default)]
    devices: BTreeMap<String, Value>,
    #[serde(default)]
    scan: Scan,
    #[serde(default)]
    discovery: Discovery,
    #[serde(default)]
    maps: BTreeMap<String, Value>,
}

/// The decoders discovery tries: the configured ones, or the default set (iBeacon and
/// Eddystone are left out by default: phones and tags everywhere send them).
pub fn discovery_maps(discovery: &Discovery) -> Vec<&str> {
    if discovery.maps.is_empty() {
        vec!["bthome-v2", "ruuvi-rawv2", "xiaomi-pvvx"]
    } else {
        discovery.maps.iter().map(String::as_str).collect()
    }
}

/// A configured device.
#[derive(Debug, Clone, PartialEq)]
pub struct Device {
    /// Downstream device id.
    pub id: String,
    /// Bluetooth address, upper case `AA:BB:CC:DD:EE:FF`.
    pub address: String,
    /// Decoder name.
    pub map: String,
    /// BTHome bind key.
    pub bind_key: Option<[u8; 16]>,
    /// Publish at most once per this many ms (0 = every changed advertisement).
    pub min_interval_ms: u64,
    /// GATT read interval.
    pub poll_interval_ms: u64,
    /// Characteristic UUIDs the `write` method may write.
    pub writable: Vec<String>,
    /// Report-on-change settings.
    pub report: crate::report::Report,
    /// A map-driven advertisement map (`map` given inline or under `maps`).
    pub custom: Option<std::sync::Arc<crate::custom::AdvertMap>>,
}

impl Device {
    /// Whether the map is a GATT map (connect) rather than an advertisement decoder.
    pub fn is_gatt(&self) -> bool {
        crate::gatt::map(&self.map).is_some()
    }
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BleConfig {
    /// Devices by address.
    pub devices: BTreeMap<String, Device>,
    /// Scan settings.
    pub scan: Scan,
    /// Discovery.
    pub discovery: Discovery,
}

fn parse_address(text: &str) -> Option<String> {
    let parts: Vec<&str> = text.split(':').collect();
    (parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && u8::from_str_radix(p, 16).is_ok()))
    .then(|| text.to_ascii_uppercase())
}

fn parse_key(text: &str) -> Option<[u8; 16]> {
    let bytes: Vec<u8> = (0..text.len())
        .step_by(2)
        .filter_map(|i| {
            text.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect();
    (text.len() == 32).then_some(())?;
    bytes.try_into().ok()
}

fn check_map(name: &str, path: String, issues: &mut Vec<ConfigIssue>) {
    if !ADVERT_MAPS.contains(&name) && !GATT_MAPS.contains(&name) {
        issues.push(ConfigIssue::new(
            path,
            format!(
                "Unknown device map '{name}'. Known: {}, {}.",
                ADVERT_MAPS.join(", "),
                GATT_MAPS.join(", ")
            ),
        ));
    }
}

/// Parses and validates a desired-properties document.
pub fn parse(doc: &Value) -> Result<BleConfig, ConfigErrors> {
    let raw: RawConfig = from_value(doc, "")?;
    let mut issues = Vec::new();
    let mut custom_maps = BTreeMap::new();
    for (name, doc) in &raw.maps {
        match crate::custom::parse(doc, &format!("maps.{name}")) {
            Ok(m) => {
                custom_maps.insert(name.clone(), std::sync::Arc::new(m));
            }
            Err(e) => issues.extend(e.0),
        }
    }
    let mut devices = BTreeMap::new();
    for (id, v) in &raw.devices {
        let path = format!("devices.{id}");
        let d: RawDevice = match from_value(v, &path) {
            Ok(d) => d,
            Err(e) => {
                issues.extend(e.0);
                continue;
            }
        };
        let Some(address) = parse_address(&d.address) else {
            issues.push(ConfigIssue::new(
                format!("{path}.address"),
                "address must look like AA:BB:CC:DD:EE:FF.",
            ));
            continue;
        };
        let (map_name, custom) = match &d.map {
            MapRef::Name(n) => match custom_maps.get(n) {
                Some(m) => (n.clone(), Some(m.clone())),
                None => {
                    check_map(n, format!("{path}.map"), &mut issues);
                    (n.clone(), None)
                }
            },
            MapRef::Inline(doc) => match crate::custom::parse(doc, &format!("{path}.map")) {
                Ok(m) => (m.name.clone(), Some(std::sync::Arc::new(m))),
                Err(e) => {
                    issues.extend(e.0);
                    continue;
                }
            },
        };
        let bind_key = match &d.bind_key {
            None => None,
            Some(k) => match parse_key(k) {
                Some(k) => Some(k),
                None => {
                    issues.push(ConfigIssue::new(
                        format!("{path}.bindKey"),
                        "bindKey is 32 hexadecimal digits (16 bytes).",
                    ));
                    None
                }
            },
        };
        if devices.contains_key(&address) {
            issues.push(ConfigIssue::new(
                format!("{path}.address"),
                format!("{address} is configured twice."),
            ));
        }
        issues.extend(d.report.issues(&format!("{path}.report")));
        if d.poll_interval_ms < 100 {
            issues.push(ConfigIssue::new(
                format!("{path}.pollIntervalMs"),
                "pollIntervalMs must be at least 100.",
            ));
        }
        let mut writable = Vec::new();
        for (i, w) in d.writable.iter().enumerate() {
            match uuid::Uuid::parse_str(w) {
                Ok(u) => writable.push(u.to_string()),
                Err(_) => issues.push(ConfigIssue::new(
                    format!("{path}.writable[{i}]"),
                    "Characteristic UUIDs look like 00002a19-0000-1000-8000-00805f9b34fb.",
                )),
            }
        }
        devices.insert(
            address.clone(),
            Device {
                id: id.clone(),
                address,
                map: map_name,
                custom,
                bind_key,
                min_interval_ms: d.min_interval_ms,
                poll_interval_ms: d.poll_interval_ms,
                writable,
                report: d.report,
            },
        );
    }
    for (i, m) in raw.discovery.maps.iter().enumerate() {
        check_map(m, format!("discovery.maps[{i}]"), &mut issues);
    }
    let config = BleConfig {
        devices,
        scan: raw.scan,
        discovery: raw.discovery,
    };
    if config.scan.mode == ScanMode::Passive
        && issues.is_empty()
        && crate::monitor::patterns(&config).is_empty()
    {
        issues.push(ConfigIssue::new(
            "scan.mode",
            "Passive scanning listens for the advertisement formats in use, and there are none: add an advertisement device or enable discovery, or scan actively.",
        ));
    }
    if issues.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors(issues))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn valid_and_invalid() {
        let c = parse(&json!({"devices": {"t1": {"address": "c0:ff:ee:00:00:01", "map": "bthome-v2", "bindKey": "231d39c1d7cc1ab1aee224cd096db932"}}})).unwrap();
        assert_eq!(c.devices["C0:FF:EE:00:00:01"].id, "t1");
        let e = parse(&json!({"devices": {
            "a": {"address": "nope", "map": "bthome-v2"},
            "b": {"address": "C0:FF:EE:00:00:02", "map": "ble-thermostat"},
            "c": {"address": "C0:FF:EE:00:00:03", "map": "bthome-v2", "bindKey": "xyz"},
            "d": {"address": "C0:FF:EE:00:00:04", "map": "bthome-v2", "rssiOnly": true}
        }, "discovery": {"maps": ["nope"]}}))
        .unwrap_err();
        let paths: Vec<_> = e.0.iter().map(|i| i.path.as_str()).collect();
        for p in [
            "devices.a.address",
            "devices.b.map",
            "devices.c.bindKey",
            "devices.d.rssiOnly",
            "discovery.maps[0]",
        ] {
            assert!(paths.contains(&p), "{p} not in {paths:?}");
        }
    }
}

#[cfg(test)]
mod map_files {
    use super::*;

    #[test]
    fn passive_scanning_needs_something_to_listen_for() {
        let gatt = serde_json::json!({"address": "C0:FF:EE:00:00:04", "map": "ble-battery"});
        let e = parse(&serde_json::json!({"scan": {"mode": "passive"}, "devices": {"g": gatt}}))
            .unwrap_err();
        assert_eq!(e.0[0].path, "scan.mode");
        let ok = parse(&serde_json::json!({"scan": {"mode": "passive"}, "devices": {"g": gatt}, "discovery": {"enabled": true}})).unwrap();
        assert_eq!(ok.scan.mode, ScanMode::Passive);
        let e = parse(&serde_json::json!({"scan": {"mode": "quiet"}})).unwrap_err();
        assert_eq!(e.0[0].path, "scan.mode", "{e:?}");
    }

    /// The documented map files in device-maps/ble agree with the code.
    #[test]
    fn bundled_map_files_match_the_decoders() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../device-maps/ble");
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let doc: Value =
                serde_json::from_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap())
                    .unwrap();
            let name = doc["name"].as_str().unwrap().to_owned();
            if doc["kind"] == "gatt" {
                let spec = crate::gatt::map(&name)
                    .unwrap_or_else(|| panic!("{name} has no GATT definition"));
                let uuids: Vec<String> = doc["characteristics"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c["uuid"].as_str().unwrap().to_owned())
                    .collect();
                let expected: Vec<String> = spec
                    .iter()
                    .map(|(u, _)| format!("0000{u:04x}-0000-1000-8000-00805f9b34fb"))
                    .collect();
                assert_eq!(uuids, expected, "{name}");
            } else {
                assert!(
                    ADVERT_MAPS.contains(&name.as_str()),
                    "{name} has no decoder"
                );
            }
            names.push(name);
        }
        for n in ADVERT_MAPS.iter().chain(GATT_MAPS) {
            assert!(names.iter().any(|x| x == n), "no map file for {n}");
        }
    }
}
