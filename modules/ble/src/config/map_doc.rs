//! A BLE device map document (`device-maps/ble/*.json`) as a type: the source of
//! `device-maps/schema/ble-device-map.schema.json`. Every bundled document deserialises
//! into it (`every_bundled_map_is_a_map_doc`).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::custom::{ByteOrder, FieldType};

/// A full 128-bit UUID.
pub const UUID_PATTERN: &str =
    "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";
/// Map and decoder names.
const NAME_PATTERN: &str = "^[a-z0-9][a-z0-9-]*$";

/// A BLE device model: an advertisement format (with its decoder or map-driven fields)
/// or a set of GATT characteristics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(title = "BLE device map")]
#[schemars(extend("allOf" = [{
    "if": {"properties": {"kind": {"const": "gatt"}}},
    "then": {"required": ["characteristics"]},
    "else": {"required": ["source", "fields"]}
}]))]
pub struct MapDoc {
    /// JSON Schema reference (ignored).
    #[serde(rename = "$schema", default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// Map name, referenced from device configuration.
    #[schemars(regex(pattern = NAME_PATTERN))]
    pub name: String,
    /// What the map describes.
    pub kind: MapKind,
    /// The registry format that decodes it (modules/ble/src/adverts/registry.rs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = NAME_PATTERN))]
    pub decoder: Option<String>,
    /// What the map covers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The specification or document the format comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Device models this map covers: brand and model as sold (a string), or {vendor,
    /// model, ...} with the fields each sends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<ModelRef>>,
    /// Which advertisement entry carries the data (advertisement maps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceDoc>,
    /// Telemetry fields by name (advertisement maps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("minProperties" = 1))]
    pub fields: Option<BTreeMap<String, FieldDoc>>,
    /// The characteristics read, subscribed to or read once (GATT maps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub characteristics: Option<Vec<CharacteristicDoc>>,
    /// How payloads are encrypted, and which key decrypts them (`bindKey`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<String>,
}

/// What a map describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum MapKind {
    /// Data in advertisements (no connection).
    Advertisement,
    /// GATT characteristics (a connection).
    Gatt,
}

/// A device model: brand and model as sold, or with details.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ModelRef {
    /// Brand and model as sold.
    Name(#[schemars(length(min = 1))] String),
    /// With the fields it sends.
    Model(ModelDoc),
}

/// A device model with details.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ModelDoc {
    /// Brand.
    pub vendor: String,
    /// Model.
    pub model: String,
    /// What it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// How the decoder tells this model: product id, local name, device type byte.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identified_by: Option<String>,
    /// The fields this model sends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<Vec<String>>,
}

/// Where the advertisement data comes from (one or two of these).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(extend("minProperties" = 1, "maxProperties" = 2))]
pub struct SourceDoc {
    /// Manufacturer data of this company id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manufacturer_id: Option<u16>,
    /// Service data of this UUID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = UUID_PATTERN))]
    pub service_uuid: Option<String>,
    /// A service UUID the device lists in its advertisement (not service data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = UUID_PATTERN))]
    pub advertised_service_uuid: Option<String>,
    /// Advertised local names the device is recognised by (prefixes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1), inner(length(min = 1)))]
    pub local_name_prefixes: Option<Vec<String>>,
}

/// A telemetry field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FieldDoc {
    /// Its value type (decoder fields), or its wire type (map-driven fields).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<FieldKind>,
    /// Unit, e.g. `°C`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// Byte offset in the data entry (map-driven fields).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u8>,
    /// Byte order (map-driven fields).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub byte_order: Option<ByteOrder>,
    /// Multiplier (map-driven fields).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<f64>,
}

/// A field's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum FieldKind {
    /// The value's type (fields a decoder produces).
    Value(ValueKind),
    /// The bytes' type (map-driven fields).
    Wire(FieldType),
}

/// The type of a decoded value (its DTDL schema).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ValueKind {
    /// Whole number.
    Integer,
    /// Number with fractions.
    Double,
    /// True or false.
    Boolean,
    /// Text.
    String,
    /// A list.
    Array,
}

/// A GATT characteristic of a map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CharacteristicDoc {
    /// Characteristic UUID.
    #[schemars(regex(pattern = UUID_PATTERN))]
    pub uuid: String,
    /// How it is used.
    pub mode: CharacteristicMode,
    /// The fields its value decodes to.
    pub fields: BTreeMap<String, FieldDoc>,
}

/// How a characteristic is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum CharacteristicMode {
    /// Read on the device's poll interval.
    Read,
    /// Subscribe to notifications (and re-subscribe after reconnecting).
    Notify,
    /// Read once per connection; reported as a device fact.
    Fact,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documented map files in device-maps/ble are all of this type.
    #[test]
    fn every_bundled_map_is_a_map_doc() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../device-maps/ble");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let doc: MapDoc =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            match doc.kind {
                MapKind::Gatt => assert!(doc.characteristics.is_some(), "{}", doc.name),
                MapKind::Advertisement => {
                    assert!(doc.source.is_some() && doc.fields.is_some(), "{}", doc.name)
                }
            }
            n += 1;
        }
        assert!(n >= 20, "{n} maps");
        let bad =
            serde_json::json!({"name": "x", "kind": "gatt", "characteristics": [], "colour": 1});
        assert!(serde_json::from_value::<MapDoc>(bad).is_err());
    }
}
