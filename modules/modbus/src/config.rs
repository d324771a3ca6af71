//! The module's configuration (module twin desired properties, or `--config FILE`),
//! parsed once into validated types. Every error names its JSON path; all are collected:
//! objects are read field by field (see `fields`), so one wrong field never hides
//! another, and each problem names the field itself.

mod connection;
mod fields;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bridge_core::config::{ConfigErrors, ConfigIssue};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::map::{DeviceMap, bundled_names, bundled_shared, parse_map};
use crate::plan::Limits;

/// Serial parity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Parity {
    /// None.
    None,
    /// Even.
    Even,
    /// Odd.
    Odd,
}

/// How to reach a device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase",
    deny_unknown_fields
)]
pub enum Connection {
    /// Modbus TCP (host name or IP).
    Tcp {
        /// Host name or IP address.
        host: String,
        /// TCP port.
        #[serde(default = "default_tcp_port")]
        port: u16,
        /// Pause between requests on this connection, in ms.
        #[serde(default)]
        frame_gap_ms: u64,
    },
    /// Modbus RTU on a serial port.
    Rtu {
        /// Serial device, e.g. `/dev/ttyUSB0`.
        port: String,
        /// Baud rate.
        #[serde(default = "default_baud")]
        baud_rate: u32,
        /// Parity.
        #[serde(default = "default_parity")]
        parity: Parity,
        /// Data bits (7 or 8).
        #[serde(default = "default_data_bits")]
        data_bits: u8,
        /// Stop bits (1 or 2).
        #[serde(default = "default_stop_bits")]
        stop_bits: u8,
        /// Silence between the last byte of a reply and the next request, in ms
        /// (fractions allowed). Default: 3.5 character times at the baud rate and framing
        /// (4.01 ms at 9600 8E1), 1.75 ms above 19200 baud (Modbus serial line spec 2.5.1.1).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        frame_gap_ms: Option<f64>,
    },
    /// Modbus ASCII on a serial port (':' + hex + LRC + CR LF).
    Ascii {
        /// Serial device, e.g. `/dev/ttyUSB0`.
        port: String,
        /// Baud rate.
        #[serde(default = "default_baud")]
        baud_rate: u32,
        /// Parity (the specification's default for ASCII is even).
        #[serde(default = "default_ascii_parity")]
        parity: Parity,
        /// Data bits (7 or 8; ASCII normally uses 7).
        #[serde(default = "default_ascii_data_bits")]
        data_bits: u8,
        /// Stop bits (1 or 2).
        #[serde(default = "default_stop_bits")]
        stop_bits: u8,
        /// Silence between frames, in ms.
        #[serde(default = "default_rtu_gap")]
        frame_gap_ms: u64,
    },
    /// RTU framing over TCP (serial-to-Ethernet converters).
    RtuOverTcp {
        /// Host name or IP address.
        host: String,
        /// TCP port.
        port: u16,
        /// Silence between the last byte of a reply and the next request, in ms
        /// (default 5: the converter's serial side is unknown).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        frame_gap_ms: Option<f64>,
    },
    /// The built-in simulated device: a Modbus TCP server on loopback serving the map
    /// with changing values (for demos and tests).
    Simulated {},
}

const fn default_tcp_port() -> u16 {
    502
}
const fn default_baud() -> u32 {
    9600
}
const fn default_parity() -> Parity {
    Parity::None
}
const fn default_data_bits() -> u8 {
    8
}
const fn default_ascii_parity() -> Parity {
    Parity::Even
}
const fn default_ascii_data_bits() -> u8 {
    7
}
const fn default_stop_bits() -> u8 {
    1
}
const fn default_rtu_gap() -> u64 {
    5
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
    /// `connection.type` is `rtu` (even when the connection has problems).
    rtu: bool,
    unit_id: u8,
    poll_interval_ms: u64,
    timeout_ms: u64,
    points: Option<Vec<String>>,
    max_gap_registers: u16,
    max_registers_per_read: u16,
    report: Report,
    enabled: bool,
}

/// Longest poll interval (a day), ms.
const MAX_POLL_MS: u64 = 86_400_000;
/// Most points one device may list.
const MAX_POINTS: usize = 10_000;

fn read_device(doc: &Value, path: &str, issues: &mut Vec<ConfigIssue>) -> Option<RawDevice> {
    let mut f = fields::Fields::of(doc, path, "A device", issues)?;
    let map = match f.raw("map") {
        None => {
            issues.push(ConfigIssue::new(f.at("map"), "map is required."));
            None
        }
        Some(Value::String(name)) => {
            fields::check_len(name, fields::MAX_NAME, &f.at("map"), "map", issues);
            Some(MapRef::Name(name.clone()))
        }
        Some(inline @ Value::Object(_)) => Some(MapRef::Inline(inline.clone())),
        Some(other) => {
            issues.push(ConfigIssue::new(
                f.at("map"),
                format!(
                    "map must be a device map name or an inline map object, not {}.",
                    fields::kind(other)
                ),
            ));
            None
        }
    };
    let rtu = f
        .raw("connection")
        .and_then(|c| c.get("type"))
        .is_some_and(|t| t == "rtu" || t == "ascii");
    let connection = match f.raw("connection") {
        None => {
            issues.push(ConfigIssue::new(
                f.at("connection"),
                "connection is required.",
            ));
            None
        }
        Some(c) => connection::parse_connection(c, &f.at("connection"), issues),
    };
    let unit_id = f.or("unitId", default_unit(), issues);
    let poll_interval_ms = f.or("pollIntervalMs", default_poll(), issues);
    let timeout_ms = f.or("timeoutMs", default_timeout(), issues);
    let points: Option<Vec<String>> = f.opt("points", issues);
    if let Some(names) = &points {
        if names.len() > MAX_POINTS {
            issues.push(ConfigIssue::new(
                f.at("points"),
                format!("At most {MAX_POINTS} points per device."),
            ));
        }
        for (i, n) in names.iter().enumerate() {
            fields::check_len(
                n,
                fields::MAX_NAME,
                &format!("{}[{i}]", f.at("points")),
                "A point name",
                issues,
            );
        }
    }
    let max_gap_registers = f.or("maxGapRegisters", default_gap(), issues);
    let max_registers_per_read = f.or("maxRegistersPerRead", default_max_regs(), issues);
    let report = match f.raw("report") {
        None => Report::default(),
        Some(r) => {
            fields::each_field::<Report>(r, &f.at("report"), "report", issues).unwrap_or_default()
        }
    };
    let enabled = f.or("enabled", default_enabled(), issues);
    f.finish(issues);
    Some(RawDevice {
        map,
        connection,
        rtu,
        unit_id,
        poll_interval_ms,
        timeout_ms,
        points,
        max_gap_registers,
        max_registers_per_read,
        report,
        enabled,
    })
}

const fn default_unit() -> u8 {
    1
}
const fn default_poll() -> u64 {
    1000
}
const fn default_timeout() -> u64 {
    1000
}
const fn default_gap() -> u16 {
    10
}
const fn default_max_regs() -> u16 {
    125
}
const fn default_enabled() -> bool {
    true
}

#[derive(Debug, Default)]
struct RawConfig {
    devices: serde_json::Map<String, Value>,
    maps: serde_json::Map<String, Value>,
}

/// The root: an object with `devices` and `maps`, each of the right shape (the runtime
/// takes `identity` out before).
fn read_root(doc: &Value, issues: &mut Vec<ConfigIssue>) -> RawConfig {
    let Some(mut f) = fields::Fields::of(doc, "", "The configuration", issues) else {
        return RawConfig::default();
    };
    let mut object = |f: &mut fields::Fields<'_>, name: &'static str| match f.raw(name) {
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
    let devices = object(&mut f, "devices");
    let maps = object(&mut f, "maps");
    f.finish(issues);
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
        check_device(&dev, &path, &mut issues);
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

fn check_device(dev: &RawDevice, path: &str, issues: &mut Vec<ConfigIssue>) {
    issues.extend(dev.report.issues(&format!("{path}.report")));
    let mut bad =
        |field: &str, msg: &str| issues.push(ConfigIssue::new(format!("{path}.{field}"), msg));
    if !(10..=MAX_POLL_MS).contains(&dev.poll_interval_ms) {
        bad(
            "pollIntervalMs",
            "pollIntervalMs must be 10-86400000 (a day).",
        );
    }
    if dev.max_gap_registers > 125 {
        bad("maxGapRegisters", "maxGapRegisters must be 0-125.");
    }
    if !(10..=60_000).contains(&dev.timeout_ms) {
        bad("timeoutMs", "timeoutMs must be 10-60000.");
    }
    if !(1..=125).contains(&dev.max_registers_per_read) {
        bad("maxRegistersPerRead", "maxRegistersPerRead must be 1-125.");
    }
    if dev.rtu && !(1..=247).contains(&dev.unit_id) {
        bad("unitId", "RTU unit ids are 1-247.");
    }
    // ASCII connections are read by their serde definition (connection.rs): their
    // ranges are checked here.
    if let Some(Connection::Ascii {
        baud_rate,
        data_bits,
        stop_bits,
        port,
        ..
    }) = &dev.connection
    {
        if *baud_rate == 0 {
            bad("connection.baudRate", "baudRate must be positive.");
        }
        if !matches!(data_bits, 7 | 8) {
            bad("connection.dataBits", "dataBits must be 7 or 8.");
        }
        if !matches!(stop_bits, 1 | 2) {
            bad("connection.stopBits", "stopBits must be 1 or 2.");
        }
        if port.is_empty() {
            bad(
                "connection.port",
                "port names the serial device, e.g. /dev/ttyUSB0.",
            );
        }
    }
}

pub mod groups;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod corpus;
