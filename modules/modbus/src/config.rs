//! The module's configuration (module twin desired properties, or `--config FILE`),
//! parsed once into validated types. The document's fields are defined once, in `doc`
//! (their names, types, defaults, bounds and docs, and from them the JSON Schema); every
//! error names its JSON path and all are collected: fields are read leniently (see
//! `fields`), so one wrong field never hides another.

mod connection;
pub mod doc;
mod fields;
pub mod schema;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bridge_core::config::{ConfigErrors, ConfigIssue};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::map::{DeviceMap, bundled_names, bundled_shared, parse_map};
use crate::plan::Limits;
use doc::{ConfigDoc, DeviceDoc, MAX_POINTS, default};

/// Serial parity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Parity {
    /// None.
    None,
    /// Even.
    Even,
    /// Odd.
    Odd,
}

/// How to reach a device, validated (the fields as documented in [`doc::ConnectionDoc`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Connection {
    /// Modbus TCP.
    Tcp {
        /// Host name or IP address.
        host: String,
        /// TCP port.
        port: u16,
        /// Pause between requests, ms.
        frame_gap_ms: u64,
    },
    /// Modbus RTU on a serial port.
    Rtu {
        /// Serial device.
        port: String,
        /// Baud rate.
        baud_rate: u32,
        /// Parity.
        parity: Parity,
        /// Data bits.
        data_bits: u8,
        /// Stop bits.
        stop_bits: u8,
        /// Silence between frames, ms (`None`: 3.5 character times).
        frame_gap_ms: Option<f64>,
    },
    /// Modbus ASCII on a serial port.
    Ascii {
        /// Serial device.
        port: String,
        /// Baud rate.
        baud_rate: u32,
        /// Parity.
        parity: Parity,
        /// Data bits.
        data_bits: u8,
        /// Stop bits.
        stop_bits: u8,
        /// Silence between frames, ms.
        frame_gap_ms: u64,
    },
    /// RTU framing over TCP.
    RtuOverTcp {
        /// Host name or IP address.
        host: String,
        /// TCP port.
        port: u16,
        /// Silence between frames, ms (`None`: 5).
        frame_gap_ms: Option<f64>,
    },
    /// The built-in simulated device.
    Simulated {},
}

impl Connection {
    /// Devices with the same key share one bus task (one connection or serial port).
    pub fn bus_key(&self, device_id: &str) -> String {
        match self {
            Connection::Tcp { host, port, .. } => format!("tcp://{host}:{port}"),
            Connection::RtuOverTcp { host, port, .. } => format!("rtu+tcp://{host}:{port}"),
            Connection::Rtu { port, .. } => format!("rtu://{port}"),
            Connection::Ascii { port, .. } => format!("ascii://{port}"),
            Connection::Simulated {} => format!("simulated://{device_id}"),
        }
    }

    /// Pause between frames (RTU: from the last byte received to the next request).
    pub fn frame_gap(&self) -> Duration {
        let ms = |v: f64| Duration::from_secs_f64(v.clamp(0.0, 60_000.0) / 1000.0);
        match self {
            Connection::Tcp { frame_gap_ms, .. } | Connection::Ascii { frame_gap_ms, .. } => {
                Duration::from_millis(*frame_gap_ms)
            }
            Connection::Rtu {
                frame_gap_ms: Some(v),
                ..
            }
            | Connection::RtuOverTcp {
                frame_gap_ms: Some(v),
                ..
            } => ms(*v),
            Connection::Rtu {
                baud_rate,
                parity,
                data_bits,
                stop_bits,
                ..
            } => crate::bus::rtu::t35(
                *baud_rate,
                1 + u32::from(*data_bits)
                    + u32::from(*parity != Parity::None)
                    + u32::from(*stop_bits),
            ),
            Connection::RtuOverTcp { .. } => Duration::from_millis(5),
            Connection::Simulated {} => Duration::ZERO,
        }
    }
}

/// Report-on-change settings (shared with the other modules).
pub use bridge_core::report::Report;

#[derive(Debug)]
enum MapRef {
    Name(String),
    Inline(Value),
}

/// A device's fields as read; `None` where the field had a problem (recorded).
#[derive(Debug)]
struct RawDevice {
    map: Option<MapRef>,
    connection: Option<Connection>,
    unit_id: u8,
    poll_interval_ms: u64,
    timeout_ms: u64,
    points: Option<Vec<String>>,
    max_gap_registers: u16,
    max_registers_per_read: u16,
    report: Report,
    enabled: bool,
}

/// Reads a device's fields, each with its own path, and checks their bounds.
fn read_device(value: &Value, path: &str, issues: &mut Vec<ConfigIssue>) -> Option<RawDevice> {
    let doc: DeviceDoc = fields::read_object(value, path, "A device", issues)?;
    let at = |name: &str| bridge_core::config::join_path(path, name);
    let map = match doc.map.raw() {
        None => {
            issues.push(ConfigIssue::new(at("map"), "map is required."));
            None
        }
        Some(Value::String(name)) => {
            fields::check_len(name, fields::MAX_NAME, &at("map"), "map", issues);
            Some(MapRef::Name(name.clone()))
        }
        Some(inline @ Value::Object(_)) => Some(MapRef::Inline(inline.clone())),
        Some(other) => {
            issues.push(ConfigIssue::new(
                at("map"),
                format!(
                    "map must be a device map name or an inline map object, not {}.",
                    fields::kind(other)
                ),
            ));
            None
        }
    };
    let connection = match doc.connection.raw() {
        None => {
            issues.push(ConfigIssue::new(
                at("connection"),
                "connection is required.",
            ));
            None
        }
        Some(c) => connection::parse_connection(c, &at("connection"), issues),
    };
    let serial = doc
        .connection
        .raw()
        .and_then(|c| c.get("type"))
        .is_some_and(|t| t == "rtu" || t == "ascii");
    let unit_id = doc.unit_id.get(&at("unitId"), issues);
    if serial && let Some(u) = unit_id {
        doc::SERIAL_UNIT.check(u, &at("unitId"), issues);
    }
    let poll_interval_ms =
        (doc.poll_interval_ms).get_in(doc::POLL_MS, &at("pollIntervalMs"), issues);
    let timeout_ms = (doc.timeout_ms).get_in(doc::TIMEOUT_MS, &at("timeoutMs"), issues);
    let points = doc.points.get(&at("points"), issues).flatten();
    if let Some(names) = &points {
        if names.len() > MAX_POINTS {
            issues.push(ConfigIssue::new(
                at("points"),
                format!("At most {MAX_POINTS} points per device."),
            ));
        }
        for (i, n) in names.iter().enumerate() {
            let p = format!("{}[{i}]", at("points"));
            fields::check_len(n, fields::MAX_NAME, &p, "A point name", issues);
        }
    }
    let max_gap_registers =
        (doc.max_gap_registers).get_in(doc::GAP_REGISTERS, &at("maxGapRegisters"), issues);
    let max_registers_per_read = (doc.max_registers_per_read).get_in(
        doc::REGISTERS_PER_READ,
        &at("maxRegistersPerRead"),
        issues,
    );
    let report = match doc.report.raw() {
        None => Report::default(),
        Some(r) => {
            let p = at("report");
            let report = fields::each_field::<Report>(r, &p, "report", issues);
            if let Some(r) = &report {
                issues.extend(r.issues(&p));
            }
            report.unwrap_or_default()
        }
    };
    let enabled = doc.enabled.get(&at("enabled"), issues);
    Some(RawDevice {
        map,
        connection,
        unit_id: unit_id.unwrap_or(default::UNIT_ID),
        poll_interval_ms: poll_interval_ms.unwrap_or(default::POLL_INTERVAL_MS),
        timeout_ms: timeout_ms.unwrap_or(default::TIMEOUT_MS),
        points,
        max_gap_registers: max_gap_registers.unwrap_or(default::MAX_GAP_REGISTERS),
        max_registers_per_read: max_registers_per_read.unwrap_or(default::MAX_REGISTERS_PER_READ),
        report,
        enabled: enabled.unwrap_or(true),
    })
}

#[derive(Debug, Default)]
struct RawConfig {
    devices: serde_json::Map<String, Value>,
    maps: serde_json::Map<String, Value>,
}

/// The root: an object with `devices` and `maps`, each of the right shape (the runtime
/// takes `identity` out before; groups are expanded before).
fn read_root(value: &Value, issues: &mut Vec<ConfigIssue>) -> RawConfig {
    let Some(doc) = fields::read_object::<ConfigDoc>(value, "", "The configuration", issues) else {
        return RawConfig::default();
    };
    let object = |raw: Option<&Value>, name: &str, issues: &mut Vec<ConfigIssue>| match raw {
        None => serde_json::Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(other) => {
            issues.push(ConfigIssue::new(
                name,
                format!(
                    "{name} must be a JSON object keyed by name, not {}.",
                    fields::kind(other)
                ),
            ));
            serde_json::Map::new()
        }
    };
    let devices = object(doc.devices.raw(), "devices", issues);
    let maps = object(doc.maps.raw(), "maps", issues);
    if doc.identity.raw().is_some() {
        doc.identity.get("identity", issues);
    }
    RawConfig { devices, maps }
}

/// A validated device.
#[derive(Debug, Clone, PartialEq)]
pub struct Device {
    /// Downstream device id.
    pub id: String,
    /// Its map.
    pub map: Arc<DeviceMap>,
    /// How to reach it.
    pub connection: Connection,
    /// Unit (slave) id.
    pub unit_id: u8,
    /// Poll period.
    pub poll_interval: Duration,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Points to poll (indexes into the map).
    pub wanted: Vec<usize>,
    /// Planner limits.
    pub limits: Limits,
    /// Report-on-change.
    pub report: Report,
}

/// The validated module configuration.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModbusConfig {
    /// Enabled devices by id.
    pub devices: BTreeMap<String, Device>,
    /// Maps defined inline under `maps`.
    pub maps: BTreeMap<String, Arc<DeviceMap>>,
}

/// The IoT Plug and Play model id announced for devices of a map.
pub fn model_id(map: &DeviceMap) -> String {
    let name: String = map
        .name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("dtmi:edgebridge:modbus:{};1", name.trim_matches('_'))
}

/// IoT Hub device ids: up to 128 characters from a fixed set.
pub fn valid_device_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.+%_#*?!(),:=@$'".contains(c))
}

/// Parses and validates a desired-properties document (device groups expanded first).
pub fn parse(doc: &Value) -> Result<ModbusConfig, ConfigErrors> {
    let (doc, origins) = groups::expand(doc)?;
    origins.finish(parse_devices(&doc))
}

fn parse_devices(doc: &Value) -> Result<ModbusConfig, ConfigErrors> {
    let mut issues = Vec::new();
    let raw = read_root(doc, &mut issues);
    let mut maps = BTreeMap::new();
    // Maps that failed: their errors are reported once, at the map (an inline map is
    // hoisted under `maps` by the group expansion), not again at each device using it.
    let mut failed_maps = std::collections::BTreeSet::new();
    for (name, map_doc) in &raw.maps {
        match parse_map(map_doc, &format!("maps.{name}")) {
            Ok(m) => {
                maps.insert(name.clone(), Arc::new(m));
            }
            Err(e) => {
                issues.extend(e.0);
                failed_maps.insert(name.clone());
            }
        }
    }
    let mut devices = BTreeMap::new();
    let mut serial: BTreeMap<String, (String, Connection)> = BTreeMap::new();
    for (id, dev_doc) in &raw.devices {
        let path = format!("devices.{id}");
        if !valid_device_id(id) {
            issues.push(ConfigIssue::new(
                &path,
                "Device ids are 1-128 characters: letters, digits and -.+%_#*?!(),:=@$'.",
            ));
        }
        let before = issues.len();
        let Some(dev) = read_device(dev_doc, &path, &mut issues) else {
            continue;
        };
        let (Some(map_ref), Some(connection)) = (&dev.map, &dev.connection) else {
            continue;
        };
        let map = match map_ref {
            MapRef::Name(name) => match maps
                .get(name)
                .cloned()
                .or_else(|| bundled_shared(name))
                .or_else(|| crate::sunspec::placeholder(name))
            {
                Some(m) => m,
                None if failed_maps.contains(name) => continue,
                None => {
                    let mut known: Vec<String> = maps.keys().cloned().collect();
                    known.extend(bundled_names().iter().map(|s| s.to_string()));
                    // SunSpec discovery first: the truncated list must still show it.
                    known.insert(0, crate::sunspec::MAP_NAME.into());
                    // Bounded: the bundled library is long (`bridge-modbus maps` lists it).
                    let more = known.len().saturating_sub(20);
                    known.truncate(20);
                    let tail = if more > 0 {
                        format!(" and {more} more (bridge-modbus maps)")
                    } else {
                        String::new()
                    };
                    issues.push(ConfigIssue::new(
                        format!("{path}.map"),
                        format!(
                            "Unknown device map '{}'. Known: {}{tail}.",
                            fields::clip(name),
                            known.join(", ")
                        ),
                    ));
                    continue;
                }
            },
            MapRef::Inline(doc) => match parse_map(doc, &format!("{path}.map")) {
                Ok(m) => Arc::new(m),
                Err(e) => {
                    issues.extend(e.0);
                    continue;
                }
            },
        };
        if let Connection::Rtu { port, .. } | Connection::Ascii { port, .. } = connection {
            match serial.get(port) {
                Some((other, conn)) if conn != connection => issues.push(ConfigIssue::new(
                    format!("{path}.connection"),
                    format!("Serial port {port} is also used by device '{other}' with different settings; devices on one bus share baud rate, parity, data and stop bits."),
                )),
                _ => {
                    serial.insert(port.clone(), (id.clone(), connection.clone()));
                }
            }
        }
        let wanted = match &dev.points {
            None => (0..map.points.len()).collect(),
            Some(names) => {
                let mut wanted = Vec::new();
                for (i, n) in names.iter().enumerate() {
                    match map.index_of(n) {
                        Some(idx) => wanted.push(idx),
                        None => issues.push(ConfigIssue::new(
                            format!("{path}.points[{i}]"),
                            format!("The map '{}' has no point '{n}'.", map.name),
                        )),
                    }
                }
                // Scale-factor points are read with the points that need them.
                let extra: Vec<usize> = wanted
                    .iter()
                    .filter_map(|&i| map.points[i].scale_index)
                    .collect();
                wanted.extend(extra);
                wanted.sort_unstable();
                wanted.dedup();
                wanted
            }
        };
        for name in dev.report.point_deadbands.keys() {
            if map.index_of(name).is_none() {
                issues.push(ConfigIssue::new(
                    format!("{path}.report.pointDeadbands.{name}"),
                    format!("The map '{}' has no point '{name}'.", map.name),
                ));
            }
        }
        if issues.len() > before || !dev.enabled {
            continue;
        }
        devices.insert(
            id.clone(),
            Device {
                id: id.clone(),
                map,
                connection: connection.clone(),
                unit_id: dev.unit_id,
                poll_interval: Duration::from_millis(dev.poll_interval_ms),
                timeout: Duration::from_millis(dev.timeout_ms),
                wanted,
                limits: Limits {
                    max_registers: dev.max_registers_per_read,
                    max_bits: 2000,
                    max_gap: dev.max_gap_registers,
                },
                report: dev.report,
            },
        );
    }
    if issues.is_empty() {
        Ok(ModbusConfig { devices, maps })
    } else {
        Err(ConfigErrors(issues))
    }
}

pub mod groups;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod corpus;
