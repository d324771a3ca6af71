//! The configuration document as written (module twin desired properties or `--config
//! FILE`): the one definition of every field's name, type, default, bounds and meaning.
//! `device-maps/schema/modbus-config.schema.json` and the README's field reference are
//! generated from these types (`schema_files` test); parsing reads them leniently (every
//! field is [`Checked`]) and then validates, collecting every problem with its path.

use std::collections::BTreeMap;

use bridge_core::device::IdentityConfig;
use bridge_core::report::Report;
use schemars::{JsonSchema, Schema, json_schema};
use serde::{Deserialize, Serialize};

use super::Parity;
use super::fields::{Bounds, Checked, MAX_HOST, MAX_NAME, MAX_SERIAL_PATH};
use crate::map::MapSpec;

/// Device ids: IoT Hub's characters that can also be twin property names
/// (`valid_device_id` and `groups::twin_key_char`; a test keeps them equal).
pub(super) const DEVICE_ID_PATTERN: &str = "^[A-Za-z0-9+%_*?!(),:=@'-]{1,128}$";
/// Poll period, ms (up to a day).
pub(super) const POLL_MS: Bounds<u64> = Bounds(10, 86_400_000);
/// Request timeout, ms.
pub(super) const TIMEOUT_MS: Bounds<u64> = Bounds(10, 60_000);
/// Unused registers a merged read may span.
pub(super) const GAP_REGISTERS: Bounds<u16> = Bounds(0, 125);
/// Registers per read request (the protocol's limit is 125).
pub(super) const REGISTERS_PER_READ: Bounds<u16> = Bounds(1, 125);
/// Serial unit ids (0 is broadcast, 248-255 reserved).
pub(super) const SERIAL_UNIT: Bounds<u8> = Bounds(1, 247);
/// Most points one device may list.
pub(super) const MAX_POINTS: usize = 10_000;
/// TCP ports.
pub(super) const TCP_PORT: Bounds<u16> = Bounds(1, 65_535);
/// Pause between frames, whole ms.
pub(super) const FRAME_GAP_MS: Bounds<u64> = Bounds(0, 10_000);
/// Silence between frames on RTU, ms with fractions.
pub(super) const RTU_FRAME_GAP_MS: Bounds<f64> = Bounds(0.0, 10_000.0);
/// Serial line speed, baud.
pub(super) const BAUD: Bounds<u32> = Bounds(1, 4_000_000);
/// Serial data bits.
pub(super) const DATA_BITS: Bounds<u8> = Bounds(7, 8);
/// Serial stop bits.
pub(super) const STOP_BITS: Bounds<u8> = Bounds(1, 2);

/// Defaults, as typed values (the schema's `default` is their JSON).
pub(super) mod default {
    use super::{Checked, Parity};

    pub(in super::super) const UNIT_ID: u8 = 1;
    pub(in super::super) const POLL_INTERVAL_MS: u64 = 1000;
    pub(in super::super) const TIMEOUT_MS: u64 = 1000;
    pub(in super::super) const MAX_GAP_REGISTERS: u16 = 10;
    pub(in super::super) const MAX_REGISTERS_PER_READ: u16 = 125;
    pub(in super::super) const TCP_PORT: u16 = 502;
    pub(in super::super) const BAUD: u32 = 9600;
    pub(in super::super) const ASCII_FRAME_GAP_MS: u64 = 5;

    macro_rules! checked {
        ($($name:ident: $t:ty = $v:expr;)*) => {$(
            pub(in super::super) fn $name() -> Checked<$t> {
                Checked::of(&$v)
            }
        )*};
    }
    checked! {
        unit_id: u8 = UNIT_ID;
        poll_interval_ms: u64 = POLL_INTERVAL_MS;
        timeout_ms: u64 = TIMEOUT_MS;
        max_gap_registers: u16 = MAX_GAP_REGISTERS;
        max_registers_per_read: u16 = MAX_REGISTERS_PER_READ;
        enabled: bool = true;
        tcp_port: u16 = TCP_PORT;
        zero_ms: u64 = 0u64;
        baud: u32 = BAUD;
        parity_none: Parity = Parity::None;
        parity_even: Parity = Parity::Even;
        eight: u8 = 8u8;
        seven: u8 = 7u8;
        one: u8 = 1u8;
        ascii_frame_gap_ms: u64 = ASCII_FRAME_GAP_MS;
    }
}

/// The module twin's desired properties (or `--config FILE`).
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "bridge-modbus configuration")]
pub struct ConfigDoc {
    /// Field devices by downstream device id (1-128 characters of letters, digits and
    /// -+%_*?!(),:=@'; no '.', '$', '#' or space: ids are twin property names).
    #[serde(default)]
    #[schemars(extend("propertyNames" = {"pattern": DEVICE_ID_PATTERN}))]
    pub devices: Checked<BTreeMap<String, DeviceDoc>>,
    /// Fleets of identical devices: one map, connection and settings with hosts and/or
    /// unitIds and an idPattern; expanded into devices (see Fleets).
    #[serde(default)]
    pub groups: Checked<BTreeMap<String, GroupDoc>>,
    /// Device maps defined inline, by name (same shape as device-maps/modbus/*.json).
    #[serde(default)]
    pub maps: Checked<BTreeMap<String, MapSpec>>,
    /// `{"mode": "module"}` (default) or `{"mode": "device", "keys": {...},
    /// "provisioning": {...}}`: each device as its own IoT Hub device (read by the
    /// runtime, the same for every module).
    #[serde(default)]
    pub identity: Checked<IdentityConfig>,
}

/// A field device: which map, how to reach it and how to poll it.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("allOf" = [{
    "if": {
        "properties": {"connection": {"properties": {"type": {"enum": ["rtu", "ascii"]}}, "required": ["type"]}},
        "required": ["connection"]
    },
    "then": {"properties": {"unitId": {"minimum": SERIAL_UNIT.0, "maximum": SERIAL_UNIT.1}}}
}]))]
pub struct DeviceDoc {
    /// A bundled map name (`bridge-modbus maps` lists them), `sunspec` (SunSpec
    /// discovery), a name under `maps`, or an inline map.
    pub map: Checked<MapRef>,
    /// How to reach the device: `tcp`, `rtu`, `ascii`, `rtuOverTcp` or `simulated`.
    pub connection: Checked<ConnectionDoc>,
    /// Modbus unit (slave) id; RTU and ASCII: 1-247.
    #[serde(default = "default::unit_id")]
    pub unit_id: Checked<u8>,
    /// Poll period, ms.
    #[serde(default = "default::poll_interval_ms")]
    #[schemars(range(min = POLL_MS.0, max = POLL_MS.1))]
    pub poll_interval_ms: Checked<u64>,
    /// Timeout of every request, ms.
    #[serde(default = "default::timeout_ms")]
    #[schemars(range(min = TIMEOUT_MS.0, max = TIMEOUT_MS.1))]
    pub timeout_ms: Checked<u64>,
    /// Subset of the map's points to poll (default: all; scale-factor points come along).
    #[schemars(length(max = MAX_POINTS), inner(length(max = MAX_NAME)))]
    pub points: Checked<Option<Vec<String>>>,
    /// Largest run of unused registers a merged read may span.
    #[serde(default = "default::max_gap_registers")]
    #[schemars(range(min = GAP_REGISTERS.0, max = GAP_REGISTERS.1))]
    pub max_gap_registers: Checked<u16>,
    /// Largest read request, registers.
    #[serde(default = "default::max_registers_per_read")]
    #[schemars(range(min = REGISTERS_PER_READ.0, max = REGISTERS_PER_READ.1))]
    pub max_registers_per_read: Checked<u16>,
    /// Report-on-change: `onChange`, absolute `deadband`, `deadbandPercent` (of the last
    /// sent value; with both, a change must exceed both), `pointDeadbands`,
    /// `minIntervalMs` (at most this often), `maxSilenceMs` (at least this often).
    #[serde(default)]
    pub report: Checked<Report>,
    /// false keeps the device configured but not polled.
    #[serde(default = "default::enabled")]
    pub enabled: Checked<bool>,
}

/// A device's map: a name, or the map itself.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum MapRef {
    /// A bundled map, `sunspec`, or a map under `maps`, by name.
    Name(#[schemars(length(max = MAX_NAME))] String),
    /// An inline map (the shape of device-maps/modbus/*.json).
    Inline(Box<MapSpec>),
}

/// How to reach a device.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase",
    deny_unknown_fields
)]
pub enum ConnectionDoc {
    /// Modbus TCP.
    Tcp {
        /// Host name or IP address.
        #[schemars(length(min = 1, max = MAX_HOST))]
        host: Checked<String>,
        /// TCP port.
        #[serde(default = "default::tcp_port")]
        #[schemars(range(min = TCP_PORT.0, max = TCP_PORT.1))]
        port: Checked<u16>,
        /// Pause between requests on this connection, ms.
        #[serde(default = "default::zero_ms")]
        #[schemars(range(min = FRAME_GAP_MS.0, max = FRAME_GAP_MS.1))]
        frame_gap_ms: Checked<u64>,
    },
    /// Modbus RTU on a serial port.
    Rtu {
        /// Serial device, e.g. `/dev/ttyUSB0`.
        #[schemars(length(min = 1, max = MAX_SERIAL_PATH))]
        port: Checked<String>,
        /// Baud rate.
        #[serde(default = "default::baud")]
        #[schemars(range(min = BAUD.0, max = BAUD.1))]
        baud_rate: Checked<u32>,
        /// Parity.
        #[serde(default = "default::parity_none")]
        parity: Checked<Parity>,
        /// Data bits.
        #[serde(default = "default::eight")]
        #[schemars(range(min = DATA_BITS.0, max = DATA_BITS.1))]
        data_bits: Checked<u8>,
        /// Stop bits.
        #[serde(default = "default::one")]
        #[schemars(range(min = STOP_BITS.0, max = STOP_BITS.1))]
        stop_bits: Checked<u8>,
        /// Silence between the last byte of a reply and the next request, ms (fractions
        /// allowed). Default: 3.5 character times at the baud rate and framing (4.01 ms
        /// at 9600 8E1), 1.75 ms above 19200 baud (Modbus serial line spec 2.5.1.1).
        #[schemars(range(min = RTU_FRAME_GAP_MS.0, max = RTU_FRAME_GAP_MS.1))]
        frame_gap_ms: Checked<Option<f64>>,
    },
    /// Modbus ASCII on a serial port (':' + hex + LRC + CR LF).
    Ascii {
        /// Serial device, e.g. `/dev/ttyUSB0`.
        #[schemars(length(min = 1, max = MAX_SERIAL_PATH))]
        port: Checked<String>,
        /// Baud rate.
        #[serde(default = "default::baud")]
        #[schemars(range(min = BAUD.0, max = BAUD.1))]
        baud_rate: Checked<u32>,
        /// Parity (the specification's default for ASCII is even).
        #[serde(default = "default::parity_even")]
        parity: Checked<Parity>,
        /// Data bits (ASCII normally uses 7).
        #[serde(default = "default::seven")]
        #[schemars(range(min = DATA_BITS.0, max = DATA_BITS.1))]
        data_bits: Checked<u8>,
        /// Stop bits.
        #[serde(default = "default::one")]
        #[schemars(range(min = STOP_BITS.0, max = STOP_BITS.1))]
        stop_bits: Checked<u8>,
        /// Silence between frames, ms.
        #[serde(default = "default::ascii_frame_gap_ms")]
        #[schemars(range(min = FRAME_GAP_MS.0, max = FRAME_GAP_MS.1))]
        frame_gap_ms: Checked<u64>,
    },
    /// RTU framing over TCP (serial-to-Ethernet converters).
    RtuOverTcp {
        /// Host name or IP address.
        #[schemars(length(min = 1, max = MAX_HOST))]
        host: Checked<String>,
        /// TCP port.
        #[schemars(range(min = TCP_PORT.0, max = TCP_PORT.1))]
        port: Checked<u16>,
        /// Silence between the last byte of a reply and the next request, ms (default
        /// 5: the converter's serial side is unknown).
        #[schemars(range(min = RTU_FRAME_GAP_MS.0, max = RTU_FRAME_GAP_MS.1))]
        frame_gap_ms: Checked<Option<f64>>,
    },
    /// The built-in simulated device: a Modbus TCP server on loopback serving the map
    /// with changing values (for demos and tests).
    Simulated {},
}

/// A fleet of identical devices, expanded into `devices` before validation (`groups.rs`).
#[derive(Debug, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields, transform = group_connection)]
pub struct GroupDoc {
    /// Host names, addresses or IPv4 ranges a.b.c.d-a.b.c.e (or a.b.c.d-e); one member
    /// per host (tcp, rtuOverTcp).
    pub hosts: Option<Hosts>,
    /// Unit ids: a number, a range "a-b", or a list of both; one member per unit id (per
    /// host).
    pub unit_ids: Option<UnitIds>,
    /// Device id of each member: {group}, {host} (dots become -), {unitId}, {n}
    /// (1-based), {n:03} (zero-padded).
    #[schemars(length(min = 1))]
    pub id_pattern: String,
    /// The members' device settings, as for `devices.<id>`.
    #[serde(flatten)]
    pub device: DeviceDoc,
}

/// One host (name, address or IPv4 range) or a list of them.
#[derive(Debug, JsonSchema)]
#[serde(untagged)]
pub enum Hosts {
    /// One.
    One(#[schemars(length(min = 1))] String),
    /// Several.
    Many(Vec<String>),
}

/// Unit ids: a number, a range "a-b", or a list of both.
#[derive(Debug, JsonSchema)]
#[serde(untagged)]
pub enum UnitIds {
    /// One unit id.
    One(u8),
    /// A range "a-b".
    Range(String),
    /// Several.
    Many(Vec<UnitIdItem>),
}

/// A unit id or a range "a-b".
#[derive(Debug, JsonSchema)]
#[serde(untagged)]
pub enum UnitIdItem {
    /// One unit id.
    One(u8),
    /// A range "a-b".
    Range(String),
}

/// In a group, `tcp` and `rtuOverTcp` connections take their host from `hosts`.
fn group_connection(schema: &mut Schema) {
    if let Some(props) = schema
        .get_mut("properties")
        .and_then(serde_json::Value::as_object_mut)
    {
        props.insert(
            "connection".into(),
            json_schema!({
                "type": "object",
                "required": ["type"],
                "description": "As devices.<id>.connection; tcp and rtuOverTcp take their host from hosts."
            })
            .to_value(),
        );
    }
    if let Some(required) = schema
        .get_mut("required")
        .and_then(serde_json::Value::as_array_mut)
    {
        required.retain(|r| r != "connection");
        required.push("connection".into());
    }
}
