//! The module's configuration (module twin desired properties, or `--config FILE`),
//! parsed once into validated types. Every error names its JSON path; all are collected.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bridge_core::config::{ConfigErrors, ConfigIssue, from_value};
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

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum MapRef {
    Name(String),
    Inline(Value),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawDevice {
    map: MapRef,
    connection: Connection,
    #[serde(default = "default_unit")]
    unit_id: u8,
    #[serde(default = "default_poll")]
    poll_interval_ms: u64,
    #[serde(default = "default_timeout")]
    timeout_ms: u64,
    #[serde(default)]
    points: Option<Vec<String>>,
    #[serde(default = "default_gap")]
    max_gap_registers: u16,
    #[serde(default = "default_max_regs")]
    max_registers_per_read: u16,
    #[serde(default)]
    report: Report,
    #[serde(default = "default_enabled")]
    enabled: bool,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawConfig {
    #[serde(default)]
    devices: BTreeMap<String, Value>,
    #[serde(default)]
    maps: BTreeMap<String, Value>,
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
    let raw: RawConfig = from_value(doc, "")?;
    let mut issues = Vec::new();
    let mut maps = BTreeMap::new();
    for (name, map_doc) in &raw.maps {
        match parse_map(map_doc, &format!("maps.{name}")) {
            Ok(m) => {
                maps.insert(name.clone(), Arc::new(m));
            }
            Err(e) => issues.extend(e.0),
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
        let dev: RawDevice = match from_value(dev_doc, &path) {
            Ok(d) => d,
            Err(e) => {
                issues.extend(e.0);
                continue;
            }
        };
        let map = match &dev.map {
            MapRef::Name(name) => match maps
                .get(name)
                .cloned()
                .or_else(|| bundled_shared(name))
                .or_else(|| crate::sunspec::placeholder(name))
            {
                Some(m) => m,
                None => {
                    let mut known: Vec<String> = maps.keys().cloned().collect();
                    known.extend(bundled_names().iter().map(|s| s.to_string()));
                    known.push(crate::sunspec::MAP_NAME.into());
                    issues.push(ConfigIssue::new(
                        format!("{path}.map"),
                        format!("Unknown device map '{name}'. Known: {}.", known.join(", ")),
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
        let before = issues.len();
        check_device(&dev, &path, &mut issues);
        if let Connection::Rtu { port, .. } | Connection::Ascii { port, .. } = &dev.connection {
            match serial.get(port) {
                Some((other, conn)) if conn != &dev.connection => issues.push(ConfigIssue::new(
                    format!("{path}.connection"),
                    format!("Serial port {port} is also used by device '{other}' with different settings; devices on one bus share baud rate, parity, data and stop bits."),
                )),
                _ => {
                    serial.insert(port.clone(), (id.clone(), dev.connection.clone()));
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
                connection: dev.connection,
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
    if dev.poll_interval_ms < 10 {
        bad("pollIntervalMs", "pollIntervalMs must be at least 10.");
    }
    if !(10..=60_000).contains(&dev.timeout_ms) {
        bad("timeoutMs", "timeoutMs must be 10-60000.");
    }
    if !(1..=125).contains(&dev.max_registers_per_read) {
        bad("maxRegistersPerRead", "maxRegistersPerRead must be 1-125.");
    }
    match &dev.connection {
        Connection::Rtu {
            baud_rate,
            data_bits,
            stop_bits,
            port,
            ..
        }
        | Connection::Ascii {
            baud_rate,
            data_bits,
            stop_bits,
            port,
            ..
        } => {
            if !(1..=247).contains(&dev.unit_id) {
                bad("unitId", "RTU unit ids are 1-247.");
            }
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
        Connection::Tcp { host, port, .. } | Connection::RtuOverTcp { host, port, .. } => {
            if host.is_empty() {
                bad("connection.host", "host must not be empty.");
            }
            if *port == 0 {
                bad("connection.port", "port must be 1-65535.");
            }
        }
        Connection::Simulated {} => {}
    }
}

pub mod groups;

#[cfg(test)]
mod tests;
