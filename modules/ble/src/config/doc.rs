//! The configuration document as written (module twin desired properties or `--config
//! FILE`): the one definition of every field's name, type, default, bounds and meaning.
//! The parser deserialises these types; `device-maps/schema/ble-config.schema.json` and
//! the README's field reference are generated from them (`schema_files` test).

use std::collections::BTreeMap;

use bridge_core::device::IdentityConfig;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::custom::AdvertMap;
use crate::report::Report;

/// Fastest GATT poll, ms.
pub(super) const MIN_POLL_MS: u64 = 100;

/// The module twin's desired properties (or `--config FILE`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(title = "bridge-ble configuration")]
pub struct ConfigDoc {
    /// Configured devices by downstream device id.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, DeviceDoc>")]
    pub devices: BTreeMap<String, Value>,
    /// Scanning: how many GATT connections, active or passive, watchdogs.
    #[serde(default)]
    pub scan: Scan,
    /// Automatic discovery of devices a decoder recognises (and raw forwarding of others).
    #[serde(default)]
    pub discovery: Discovery,
    /// Map-driven advertisement maps defined inline, by name.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, AdvertMap>")]
    pub maps: BTreeMap<String, Value>,
    /// A JSON file of device keys (`{"<device id or address>": "<32 hex digits>"}`) for
    /// formats that encrypt, so keys stay out of the twin.
    #[serde(default)]
    pub keys_file: Option<String>,
    /// `{"mode": "module"}` (default) or `{"mode": "device", "keys": {...},
    /// "provisioning": {...}}`: each device as its own IoT Hub device (read by the
    /// runtime, the same for every module).
    #[serde(default)]
    pub identity: Option<IdentityConfig>,
}

/// A configured BLE device.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeviceDoc {
    /// Bluetooth address, `AA:BB:CC:DD:EE:FF` (either case).
    #[schemars(regex(pattern = r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$"))]
    pub address: String,
    /// An advertisement decoder or GATT map by name (`bridge-ble maps` lists them), a
    /// name under `maps`, or an inline map-driven advertisement map.
    pub map: MapRef,
    /// The device's encryption key, 32 hex digits, for formats that encrypt (BTHome,
    /// Xiaomi MiBeacon, Victron...); or give it in `keysFile`.
    #[serde(default)]
    #[schemars(regex(pattern = "^[0-9A-Fa-f]{32}$"))]
    pub bind_key: Option<String>,
    /// Publish at most once per this many ms (0: every changed advertisement).
    #[serde(default)]
    pub min_interval_ms: u64,
    /// GATT read interval, ms.
    #[serde(default = "default_poll")]
    #[schemars(range(min = MIN_POLL_MS))]
    pub poll_interval_ms: u64,
    /// Characteristics the `write` method may write and (with the device's own
    /// identity) its writable properties: a UUID (hex bytes), or a named, typed property.
    #[serde(default)]
    #[schemars(with = "Vec<WritableRef>")]
    pub writable: Vec<Value>,
    /// Report-on-change: `onChange`, absolute `deadband`, `deadbandPercent`,
    /// `pointDeadbands`, `minIntervalMs`, `maxSilenceMs`.
    #[serde(default)]
    pub report: Report,
}

const fn default_poll() -> u64 {
    10_000
}

/// A device's map: a name, or a map-driven advertisement map.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum MapRef {
    /// A decoder, GATT map or map under `maps`, by name.
    Name(String),
    /// An inline map-driven advertisement map.
    Inline(#[schemars(with = "AdvertMap")] Value),
}

/// A writable characteristic: its UUID alone (written as hex bytes, property
/// `characteristic_<hex digits>`), or a named, typed property.
#[derive(Debug, JsonSchema)]
#[serde(untagged)]
pub enum WritableRef {
    /// The characteristic UUID.
    Uuid(
        #[schemars(regex(
            pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
        ))]
        String,
    ),
    /// A named, typed writable property.
    Named(WritableDoc),
}

/// A writable characteristic given as an object: a named, typed writable property.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WritableDoc {
    /// Property name: a letter, then letters, digits or underscores (at most 64).
    #[schemars(regex(pattern = "^[A-Za-z][A-Za-z0-9_]{0,63}$"))]
    pub name: String,
    /// Characteristic UUID, e.g. `00002a19-0000-1000-8000-00805f9b34fb`.
    pub characteristic: String,
    /// How the value is written.
    #[serde(rename = "type", default)]
    pub kind: WritableType,
    /// Smallest accepted value (numbers).
    #[serde(default)]
    pub min: Option<f64>,
    /// Largest accepted value (numbers).
    #[serde(default)]
    pub max: Option<f64>,
}

/// How a writable characteristic's value is written (GATT numbers are little-endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum WritableType {
    /// Raw bytes, given as a hex string.
    #[default]
    Hex,
    /// Unsigned 8-bit.
    U8,
    /// Signed 8-bit.
    I8,
    /// Unsigned 16-bit.
    U16,
    /// Signed 16-bit.
    I16,
    /// Unsigned 32-bit.
    U32,
    /// Signed 32-bit.
    I32,
}

/// Scan settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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

/// How to scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ScanMode {
    /// BlueZ discovery.
    #[default]
    Active,
    /// BlueZ advertisement monitor with patterns from the configuration.
    Passive,
}

/// Automatic discovery: any device whose advertisement one of `maps` decodes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Discovery {
    /// On or off.
    #[serde(default)]
    pub enabled: bool,
    /// Decoders to try (default: the registry's formats marked for discovery).
    #[serde(default)]
    pub maps: Vec<String>,
    /// Devices no decoder recognises, forwarded raw (hex) when they match a filter.
    #[serde(default)]
    pub raw: RawDiscovery,
}

/// Raw discovery: unknown devices whose advertisement carries one of these company ids
/// or service UUIDs are forwarded as `ble-<address>` with their data as hex.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawDiscovery {
    /// On or off (off by default: phones and tags everywhere advertise).
    #[serde(default)]
    pub enabled: bool,
    /// Manufacturer-data company ids to forward (e.g. 2409 for SwitchBot's 0x0969).
    #[serde(default)]
    pub company_ids: Vec<u16>,
    /// Service-data UUIDs to forward: `fd3d` (16-bit) or a full UUID.
    #[serde(default)]
    pub service_uuids: Vec<String>,
}
