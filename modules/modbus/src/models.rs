//! DTDL v2 models generated from device maps and the configuration: one interface per
//! device map (telemetry with units, writable properties, facts, commands), and the
//! gateway module's interface (its management properties and a relationship to every
//! device model, which IoT Central uses to link downstream devices to the gateway).
//!
//! Telemetry names and types here are exactly what the poller publishes in identity
//! mode `device` (writable points are properties there, not telemetry).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::config::{ModbusConfig, model_id};
use crate::map::{DataType, DeviceMap, Point};

/// The gateway module's interface id.
pub const GATEWAY_MODEL: &str = "dtmi:edgebridge:modbus:gateway;1";

/// DTDL schema of a point's published value.
pub fn schema_of(p: &Point) -> &'static str {
    let scaled = p.spec.scale.is_some_and(|s| s != 1.0)
        || p.spec.offset.is_some_and(|o| o != 0.0)
        || p.scale_index.is_some();
    match p.spec.data_type {
        DataType::Bool | DataType::Bit => "boolean",
        DataType::String => "string",
        DataType::F32 | DataType::F64 => "double",
        _ if scaled => "double",
        // DTDL `integer` is signed 32-bit and `long` signed 64-bit: each type gets the
        // smallest schema its whole range fits; u64 exceeds `long`, so `double`.
        DataType::U16 | DataType::I16 | DataType::I32 => "integer",
        DataType::U32 | DataType::I64 => "long",
        DataType::U64 => "double",
    }
}

/// DTDL v2 semantic type and unit for common engineering units.
fn semantic(unit: &str) -> Option<(&'static str, &'static str)> {
    Some(match unit {
        "V" => ("Voltage", "volt"),
        "A" => ("Current", "ampere"),
        "W" => ("Power", "watt"),
        "kW" => ("Power", "kilowatt"),
        "kWh" => ("Energy", "kilowattHour"),
        "Hz" => ("Frequency", "hertz"),
        "°C" => ("Temperature", "degreeCelsius"),
        "%RH" | "%" => ("RelativeHumidity", "percent"),
        _ => return None,
    })
}

fn dtdl_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn element(kind: &str, p: &Point) -> Value {
    let mut e = json!({"name": p.name, "schema": schema_of(p)});
    let unit = p.spec.unit.as_deref().unwrap_or("");
    match semantic(unit) {
        Some((semantic_type, dtdl_unit))
            if schema_of(p) == "double" || schema_of(p) == "integer" || schema_of(p) == "long" =>
        {
            e["@type"] = json!([kind, semantic_type]);
            e["unit"] = json!(dtdl_unit);
        }
        _ => e["@type"] = json!(kind),
    }
    if let Some(d) = &p.spec.description {
        e["description"] = json!(d.chars().take(512).collect::<String>());
    }
    if !unit.is_empty() && semantic(unit).is_none() {
        e["comment"] = json!(format!("unit: {unit}"));
    }
    e
}

/// The interface for one device map.
pub fn device_interface(map: &DeviceMap) -> Value {
    let mut contents = Vec::new();
    for p in &map.points {
        if p.spec.static_fact {
            contents.push(element("Property", p));
        } else if p.spec.writable {
            let mut e = element("Property", p);
            e["writable"] = json!(true);
            contents.push(e);
        } else if p.spec.publish {
            contents.push(element("Telemetry", p));
        }
    }
    contents.push(json!({"@type": "Property", "name": "health", "schema": {"@type": "Object", "fields": [
        {"name": "state", "schema": "string"}, {"name": "lastError", "schema": "string"},
        {"name": "lastSuccess", "schema": "dateTime"}, {"name": "consecutiveFailures", "schema": "integer"}
    ]}}));
    contents.push(json!({"@type": "Command", "name": "read", "description": "Reads points now.",
        "request": {"name": "points", "schema": {"@type": "Array", "elementSchema": "string"}},
        "response": {"name": "result", "schema": {"@type": "Map", "mapKey": {"name": "point", "schema": "string"}, "mapValue": {"name": "value", "schema": "string"}}}}));
    contents.push(json!({"@type": "Command", "name": "write", "description": "Writes a writable point.",
        "request": {"name": "request", "schema": {"@type": "Object", "fields": [{"name": "point", "schema": "string"}, {"name": "value", "schema": "double"}]}}}));
    let display = format!(
        "{} {}",
        map.spec.manufacturer.as_deref().unwrap_or(""),
        map.spec.model.as_deref().unwrap_or(&map.name)
    );
    json!({
        "@context": "dtmi:dtdl:context;2",
        "@id": model_id(map),
        "@type": "Interface",
        "displayName": display.trim().chars().take(64).collect::<String>(),
        "contents": contents,
    })
}

/// The gateway module's management interface: its desired properties and relationships.
pub fn gateway_interface(maps: &BTreeMap<String, &DeviceMap>) -> Value {
    let device_fields = json!([
        {"name": "map", "schema": "string"},
        {"name": "unitId", "schema": "integer"},
        {"name": "pollIntervalMs", "schema": "long"},
        {"name": "timeoutMs", "schema": "long"}
    ]);
    let mut contents = vec![
        json!({"@type": "Property", "name": "devices", "writable": true, "schema": {"@type": "Map",
            "mapKey": {"name": "deviceId", "schema": "string"},
            "mapValue": {"name": "device", "schema": {"@type": "Object", "fields": device_fields}}}}),
        json!({"@type": "Property", "name": "configStatus", "schema": {"@type": "Object", "fields": [
            {"name": "status", "schema": "string"}, {"name": "desiredVersion", "schema": "long"}, {"name": "appliedVersion", "schema": "long"}
        ]}}),
        json!({"@type": "Command", "name": "read", "request": {"name": "request", "schema": {"@type": "Object", "fields": [{"name": "deviceId", "schema": "string"}]}}}),
        json!({"@type": "Command", "name": "write", "request": {"name": "request", "schema": {"@type": "Object", "fields": [
            {"name": "deviceId", "schema": "string"}, {"name": "point", "schema": "string"}, {"name": "value", "schema": "double"}
        ]}}}),
    ];
    for map in maps.values() {
        contents.push(json!({"@type": "Relationship", "name": format!("rel_{}", dtdl_name(&map.name)).chars().take(64).collect::<String>(), "target": model_id(map)}));
    }
    json!({"@context": "dtmi:dtdl:context;2", "@id": GATEWAY_MODEL, "@type": "Interface", "displayName": "Edge Bridge Modbus gateway", "contents": contents})
}

/// Every model for a configuration: one per map in use, and the gateway's.
pub fn models(config: &ModbusConfig) -> Value {
    let mut maps: BTreeMap<String, &DeviceMap> = BTreeMap::new();
    for d in config.devices.values() {
        maps.insert(model_id(&d.map), &d.map);
    }
    let mut out: Vec<Value> = maps.values().map(|m| device_interface(m)).collect();
    out.push(gateway_interface(&maps));
    Value::Array(out)
}

#[cfg(test)]
mod schema_tests {
    use super::*;

    #[test]
    fn every_type_fits_its_dtdl_schema() {
        let map = crate::map::parse_map(
            &serde_json::json!({"name": "m", "points": {
                "a": {"table": "holding", "address": 0, "type": "u16"},
                "b": {"table": "holding", "address": 1, "type": "i32"},
                "c": {"table": "holding", "address": 3, "type": "u32"},
                "d": {"table": "holding", "address": 5, "type": "i64"},
                "e": {"table": "holding", "address": 9, "type": "u64"},
                "f": {"table": "holding", "address": 13, "type": "u16", "scale": 0.1}
            }}),
            "m",
        )
        .unwrap();
        let got: Vec<&str> = ["a", "b", "c", "d", "e", "f"]
            .iter()
            .map(|n| schema_of(&map.points[map.index_of(n).unwrap()]))
            .collect();
        assert_eq!(
            got,
            ["integer", "integer", "long", "long", "double", "double"]
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::bundled;

    #[test]
    fn sdm120_model_shape() {
        let map = bundled("eastron-sdm120").unwrap().unwrap();
        let i = device_interface(&map);
        assert_eq!(i["@id"], "dtmi:edgebridge:modbus:eastron_sdm120;1");
        let contents = i["contents"].as_array().unwrap();
        let voltage = contents.iter().find(|c| c["name"] == "voltage").unwrap();
        assert_eq!(voltage["@type"], json!(["Telemetry", "Voltage"]));
        assert_eq!(
            (voltage["schema"].as_str(), voltage["unit"].as_str()),
            (Some("double"), Some("volt"))
        );
        let addr = contents
            .iter()
            .find(|c| c["name"] == "modbusAddress")
            .unwrap();
        assert_eq!(
            (addr["@type"].as_str(), addr["writable"].as_bool()),
            (Some("Property"), Some(true))
        );
        let names: Vec<&str> = contents.iter().filter_map(|c| c["name"].as_str()).collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "DTDL names must be unique");
    }
}
