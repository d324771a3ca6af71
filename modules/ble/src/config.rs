//! bridge-ble configuration (module twin desired properties or `--config FILE`): the
//! document's fields are defined once, in `doc` (and from them the JSON Schema), then
//! validated here into [`BleConfig`].

pub mod doc;
pub mod map_doc;
pub mod schema;

use std::collections::BTreeMap;

use bridge_core::config::{ConfigErrors, ConfigIssue, from_value};
use serde_json::Value;

use doc::{ConfigDoc, DeviceDoc, MapRef, WritableDoc};
pub use doc::{Discovery, RawDiscovery, Scan, ScanMode, WritableType};

/// A characteristic the device lets us write: through the `write` method, and (with
/// its own identity) as a writable property named `name`.
#[derive(Debug, Clone, PartialEq)]
pub struct Writable {
    /// Property name (the characteristic UUID's hex digits after `characteristic_`
    /// when the configuration gives only the UUID).
    pub name: String,
    /// Characteristic UUID.
    pub uuid: uuid::Uuid,
    /// Value type.
    pub kind: WritableType,
    /// Smallest accepted value (numbers).
    pub min: Option<f64>,
    /// Largest accepted value (numbers).
    pub max: Option<f64>,
}

impl Writable {
    /// The bytes to write for a desired `value`, or why it cannot be written.
    pub fn encode(&self, value: &Value) -> Result<Vec<u8>, String> {
        if self.kind == WritableType::Hex {
            let hex = value
                .as_str()
                .filter(|h| h.len() % 2 == 0 && h.bytes().all(|b| b.is_ascii_hexdigit()))
                .ok_or_else(|| format!("{} takes hexadecimal bytes, e.g. \"0a1b\".", self.name))?;
            return Ok((0..hex.len())
                .step_by(2)
                .filter_map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
                .collect());
        }
        let n = value
            .as_f64()
            .filter(|n| n.fract() == 0.0)
            .ok_or_else(|| format!("{} takes an integer.", self.name))?;
        let (lo, hi, width) = match self.kind {
            WritableType::U8 => (0.0, 255.0, 1),
            WritableType::I8 => (-128.0, 127.0, 1),
            WritableType::U16 => (0.0, 65_535.0, 2),
            WritableType::I16 => (-32_768.0, 32_767.0, 2),
            WritableType::U32 => (0.0, 4_294_967_295.0, 4),
            WritableType::I32 | WritableType::Hex => (-2_147_483_648.0, 2_147_483_647.0, 4),
        };
        let lo = self.min.map_or(lo, |m| m.max(lo));
        let hi = self.max.map_or(hi, |m| m.min(hi));
        if n < lo || n > hi {
            return Err(format!("{} = {n} is out of range [{lo}, {hi}].", self.name));
        }
        Ok((n as i64).to_le_bytes()[..width].to_vec())
    }

    /// The value of `bytes` as this property's JSON value.
    pub fn decode(&self, bytes: &[u8]) -> Value {
        let int = |signed: bool, width: usize| -> Value {
            let Some(b) = bytes.get(..width) else {
                return Value::Null;
            };
            let mut buf = [0u8; 8];
            buf[..width].copy_from_slice(b);
            let raw = u64::from_le_bytes(buf);
            if signed {
                let shift = 64 - 8 * width as u32;
                Value::from(((raw << shift) as i64) >> shift)
            } else {
                Value::from(raw)
            }
        };
        match self.kind {
            WritableType::Hex => {
                Value::from(bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
            }
            WritableType::U8 => int(false, 1),
            WritableType::I8 => int(true, 1),
            WritableType::U16 => int(false, 2),
            WritableType::I16 => int(true, 2),
            WritableType::U32 => int(false, 4),
            WritableType::I32 => int(true, 4),
        }
    }
}

/// Property names (and DTDL names): a letter, then letters, digits and underscores.
fn valid_property_name(name: &str) -> bool {
    name.len() <= 64
        && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.ends_with('_')
}

fn parse_writable(v: &Value, path: &str, issues: &mut Vec<ConfigIssue>) -> Option<Writable> {
    let bad_uuid = |p: String| {
        ConfigIssue::new(
            p,
            "Characteristic UUIDs look like 00002a19-0000-1000-8000-00805f9b34fb.",
        )
    };
    if let Some(text) = v.as_str() {
        return match uuid::Uuid::parse_str(text) {
            Ok(uuid) => Some(Writable {
                name: format!("characteristic_{}", uuid.simple()),
                uuid,
                kind: WritableType::Hex,
                min: None,
                max: None,
            }),
            Err(_) => {
                issues.push(bad_uuid(path.to_owned()));
                None
            }
        };
    }
    let raw: WritableDoc = match from_value(v, path) {
        Ok(r) => r,
        Err(e) => {
            issues.extend(e.0);
            return None;
        }
    };
    let mut ok = true;
    if !valid_property_name(&raw.name) {
        issues.push(ConfigIssue::new(
            format!("{path}.name"),
            "A property name is a letter, then letters, digits or underscores (at most 64).",
        ));
        ok = false;
    }
    let uuid = uuid::Uuid::parse_str(&raw.characteristic).ok();
    if uuid.is_none() {
        issues.push(bad_uuid(format!("{path}.characteristic")));
    }
    if let (Some(lo), Some(hi)) = (raw.min, raw.max)
        && lo > hi
    {
        issues.push(ConfigIssue::new(
            format!("{path}.min"),
            "min cannot exceed max.",
        ));
        ok = false;
    }
    Some(Writable {
        name: raw.name,
        uuid: uuid?,
        kind: raw.kind,
        min: raw.min,
        max: raw.max,
    })
    .filter(|_| ok)
}

impl RawDiscovery {
    /// The service UUIDs, parsed (invalid ones were refused by [`parse`]).
    pub fn uuids(&self) -> Vec<uuid::Uuid> {
        self.service_uuids
            .iter()
            .filter_map(|u| parse_uuid(u))
            .collect()
    }
}

/// A service UUID: 4 hex digits (16-bit, on the Bluetooth base UUID) or in full.
pub fn parse_uuid(text: &str) -> Option<uuid::Uuid> {
    if text.len() == 4 {
        return u16::from_str_radix(text, 16)
            .ok()
            .map(crate::adverts::uuid16);
    }
    uuid::Uuid::parse_str(text).ok()
}

/// The decoders discovery tries: the configured ones, or the default set (iBeacon and
/// Eddystone are left out by default: phones and tags everywhere send them).
pub fn discovery_maps(discovery: &Discovery) -> Vec<&str> {
    if discovery.maps.is_empty() {
        crate::adverts::FORMATS
            .iter()
            .filter(|f| f.discover_by_default)
            .map(|f| f.name)
            .collect()
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
    /// The device's key (`bindKey`, or its entry in the keys file), for formats that
    /// encrypt.
    pub bind_key: Option<[u8; 16]>,
    /// Publish at most once per this many ms (0 = every changed advertisement).
    pub min_interval_ms: u64,
    /// GATT read interval.
    pub poll_interval_ms: u64,
    /// Characteristics the `write` method may write (and, with the device's own
    /// identity, its writable properties).
    pub writable: Vec<Writable>,
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
    /// Keys file entries by MAC address, for discovered devices.
    pub keys_by_address: BTreeMap<String, [u8; 16]>,
}

/// Whether `text` is a Bluetooth address `AA:BB:CC:DD:EE:FF` (either case).
pub fn is_address(text: &str) -> bool {
    parse_address(text).is_some()
}

fn parse_address(text: &str) -> Option<String> {
    let parts: Vec<&str> = text.split(':').collect();
    (parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && u8::from_str_radix(p, 16).is_ok()))
    .then(|| text.to_ascii_uppercase())
}

fn check_map(name: &str, path: String, issues: &mut Vec<ConfigIssue>) {
    if crate::adverts::format(name).is_none() && crate::gatt::map(name).is_none() {
        let adverts: Vec<&str> = crate::adverts::FORMATS.iter().map(|f| f.name).collect();
        issues.push(ConfigIssue::new(
            path,
            format!(
                "Unknown device map '{name}'. Known: {}, {}.",
                adverts.join(", "),
                crate::gatt::names().collect::<Vec<_>>().join(", ")
            ),
        ));
    }
}

/// Parses and validates a desired-properties document.
pub fn parse(doc: &Value) -> Result<BleConfig, ConfigErrors> {
    let raw: ConfigDoc = from_value(doc, "")?;
    let mut issues = Vec::new();
    let file_keys = match &raw.keys_file {
        Some(path) => crate::keys::load(path).unwrap_or_else(|e| {
            issues.extend(e);
            BTreeMap::new()
        }),
        None => BTreeMap::new(),
    };
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
        let d: DeviceDoc = match from_value(v, &path) {
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
            None => file_keys
                .get(id)
                .or_else(|| file_keys.get(&address))
                .copied(),
            Some(k) => match crate::keys::parse_hex(k) {
                Some(k) => Some(k),
                None => {
                    issues.push(ConfigIssue::new(
                        format!("{path}.bindKey"),
                        "bindKey is 32 hexadecimal digits (16 bytes), or 24 for a legacy MiBeacon.",
                    ));
                    None
                }
            },
        };
        let takes_key = custom.is_none()
            && crate::adverts::format(&map_name)
                .is_some_and(|f| f.key != crate::adverts::KeyKind::None);
        if d.bind_key.is_some() && !takes_key {
            issues.push(ConfigIssue::new(
                format!("{path}.bindKey"),
                format!("The map '{map_name}' is never encrypted and takes no bindKey."),
            ));
        }
        if devices.contains_key(&address) {
            issues.push(ConfigIssue::new(
                format!("{path}.address"),
                format!("{address} is configured twice."),
            ));
        }
        issues.extend(d.report.issues(&format!("{path}.report")));
        if d.poll_interval_ms < doc::MIN_POLL_MS {
            issues.push(ConfigIssue::new(
                format!("{path}.pollIntervalMs"),
                format!("pollIntervalMs must be at least {}.", doc::MIN_POLL_MS),
            ));
        }
        let mut writable: Vec<Writable> = Vec::new();
        for (i, w) in d.writable.iter().enumerate() {
            let at = format!("{path}.writable[{i}]");
            if let Some(w) = parse_writable(w, &at, &mut issues) {
                if writable
                    .iter()
                    .any(|o| o.name == w.name || o.uuid == w.uuid)
                {
                    issues.push(ConfigIssue::new(
                        at,
                        "The characteristic or name is listed twice.",
                    ));
                } else {
                    writable.push(w);
                }
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
    for (i, u) in raw.discovery.raw.service_uuids.iter().enumerate() {
        if parse_uuid(u).is_none() {
            issues.push(ConfigIssue::new(
                format!("discovery.raw.serviceUuids[{i}]"),
                "Service UUIDs are 4 hex digits (fd3d) or a full UUID.",
            ));
        }
    }
    let keys_by_address = file_keys
        .into_iter()
        .filter(|(k, _)| is_address(k))
        .collect();
    let config = BleConfig {
        devices,
        scan: raw.scan,
        discovery: raw.discovery,
        keys_by_address,
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
mod key_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_from_config_or_file_only_where_a_format_encrypts() {
        let e = parse(&json!({"devices": {"p": {"address": "C0:FF:EE:00:00:01", "map": "xiaomi-pvvx", "bindKey": "231d39c1d7cc1ab1aee224cd096db932"}}})).unwrap_err();
        assert_eq!(e.0[0].path, "devices.p.bindKey");
        assert!(!e.0[0].message.contains("231d"), "the key is not echoed");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keys.json");
        std::fs::write(&file, r#"{"lywsd": "814aac74c4f17632442131e5d4542a6a", "A4:C1:38:00:00:09": "00000000000000000000000000000009"}"#).unwrap();
        let c = parse(&json!({"keysFile": file.to_str().unwrap(), "devices": {
            "lywsd": {"address": "A4:C1:38:00:00:01", "map": "xiaomi-mibeacon"},
            "own": {"address": "A4:C1:38:00:00:02", "map": "xiaomi-mibeacon", "bindKey": "231d39c1d7cc1ab1aee224cd096db932"}
        }, "discovery": {"enabled": true, "maps": ["xiaomi-mibeacon", "govee", "switchbot"],
            "raw": {"enabled": true, "companyIds": [2409], "serviceUuids": ["fd3d"]}}}))
        .unwrap();
        assert_eq!(c.devices["A4:C1:38:00:00:01"].bind_key.unwrap()[0], 0x81);
        assert_eq!(c.devices["A4:C1:38:00:00:02"].bind_key.unwrap()[0], 0x23);
        assert_eq!(c.keys_by_address["A4:C1:38:00:00:09"][15], 9);
        assert_eq!(
            c.discovery.raw.uuids(),
            vec![crate::adverts::uuid16(0xFD3D)]
        );
        let e = parse(&json!({"keysFile": "/nonexistent.json"})).unwrap_err();
        assert_eq!(e.0[0].path, "keysFile");
        let e = parse(&json!({"discovery": {"raw": {"serviceUuids": ["xyz"]}}})).unwrap_err();
        assert_eq!(e.0[0].path, "discovery.raw.serviceUuids[0]");
        // Every registry name is a valid discovery map and device map.
        for f in crate::adverts::FORMATS {
            parse(&json!({"devices": {"d": {"address": "C0:FF:EE:00:00:01", "map": f.name}}, "discovery": {"maps": [f.name]}})).unwrap();
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
                    crate::adverts::format(&name).is_some(),
                    "{name} has no decoder"
                );
            }
            names.push(name);
        }
        for n in crate::adverts::FORMATS
            .iter()
            .map(|f| f.name)
            .chain(crate::gatt::names())
        {
            assert!(names.iter().any(|x| x == n), "no map file for {n}");
        }
    }
}
