//! DTDL v2 models for BLE devices, generated from the bundled map documents
//! (`device-maps/ble/*.json`) and map-driven maps: telemetry with units (plus `rssi`),
//! device facts as properties, and the gateway module's interface with relationships.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::config::BleConfig;

/// Every bundled map document: the registry's advertisement formats and the GATT maps.
fn map_docs() -> impl Iterator<Item = &'static str> {
    crate::adverts::FORMATS
        .iter()
        .map(|f| f.doc)
        .chain(crate::gatt::DOCS.iter().copied())
}

/// The model id of a BLE map.
pub fn model_id(map: &str) -> String {
    let name: String = map
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("dtmi:edgebridge:ble:{};1", name.trim_matches('_'))
}

/// The model id a device announces: its map's, or, when it has writable
/// characteristics, its own interface that extends the map's with them.
pub fn device_model_id(map: &str, id: &str, writable: &[crate::config::Writable]) -> String {
    if writable.is_empty() {
        return model_id(map);
    }
    let map_part = model_id(map);
    let map_part = map_part
        .trim_start_matches("dtmi:edgebridge:ble:")
        .trim_end_matches(";1");
    let mut name = String::from("d_");
    for c in id.chars() {
        let c = if c.is_ascii_alphanumeric() { c } else { '_' };
        if !(c == '_' && name.ends_with('_')) {
            name.push(c);
        }
    }
    format!(
        "dtmi:edgebridge:ble:{map_part}:{};1",
        name.trim_end_matches('_')
    )
}

/// The device's own interface: the map's, plus its writable characteristics as
/// writable properties.
fn device_interface(d: &crate::config::Device) -> Value {
    use crate::config::WritableType;
    let contents: Vec<Value> = d
        .writable
        .iter()
        .map(|w| {
            let schema = match w.kind {
                WritableType::Hex => "string",
                WritableType::U32 | WritableType::I32 => "long",
                _ => "integer",
            };
            json!({"@type": "Property", "name": w.name, "schema": schema, "writable": true,
                   "comment": format!("characteristic {}", w.uuid)})
        })
        .collect();
    json!({"@context": "dtmi:dtdl:context;2", "@id": device_model_id(&d.map, &d.id, &d.writable),
           "@type": "Interface", "displayName": d.id, "extends": model_id(&d.map), "contents": contents})
}

fn schema(kind: &str) -> Value {
    match kind {
        "boolean" => json!("boolean"),
        "string" => json!("string"),
        "array" => json!({"@type": "Array", "elementSchema": "double"}),
        "integer" | "u8" | "i8" | "u16" | "i16" | "u24" | "u32" | "i32" => json!("long"),
        _ => json!("double"),
    }
}

fn element(kind: &str, name: &str, f: &Value) -> Value {
    let t = f["type"].as_str().unwrap_or("double");
    let scaled = f.get("scale").is_some();
    let s = if scaled { json!("double") } else { schema(t) };
    let mut e = json!({"@type": kind, "name": name, "schema": s});
    let semantic = match (f["unit"].as_str().unwrap_or(""), s.as_str()) {
        ("°C", Some("double" | "long")) => Some(("Temperature", "degreeCelsius")),
        ("V", Some("double" | "long")) => Some(("Voltage", "volt")),
        ("hPa", Some("double" | "long")) => Some(("Pressure", "millibar")),
        _ => None,
    };
    if let Some((st, unit)) = semantic {
        e["@type"] = json!([kind, st]);
        e["unit"] = json!(unit);
    } else if let Some(u) = f["unit"].as_str() {
        e["comment"] = json!(format!("unit: {u}"));
    }
    e
}

fn interface(name: &str, fields: &[(String, Value, &str)]) -> Value {
    let mut contents: Vec<Value> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (field, spec, kind) in fields {
        if seen.insert(field.clone()) {
            contents.push(element(kind, field, spec));
        }
    }
    if seen.insert("rssi".into()) {
        contents.push(
            json!({"@type": "Telemetry", "name": "rssi", "schema": "long", "comment": "unit: dBm"}),
        );
    }
    json!({"@context": "dtmi:dtdl:context;2", "@id": model_id(name), "@type": "Interface", "displayName": name, "contents": contents})
}

/// Models for the maps a configuration uses, and the gateway interface.
pub fn models(config: &BleConfig) -> Value {
    let docs: BTreeMap<String, Value> = map_docs()
        .filter_map(|t| serde_json::from_str::<Value>(t).ok())
        .filter_map(|d| d["name"].as_str().map(|n| (n.to_owned(), d.clone())))
        .collect();
    let mut out: BTreeMap<String, Value> = BTreeMap::new();
    let mut devices: Vec<Value> = Vec::new();
    for d in config.devices.values() {
        let fields: Vec<(String, Value, &str)> = match (&d.custom, docs.get(&d.map)) {
            (Some(m), _) => m
                .fields
                .iter()
                .map(|(k, f)| {
                    (
                        k.clone(),
                        serde_json::to_value(f).unwrap_or_default(),
                        "Telemetry",
                    )
                })
                .collect(),
            (None, Some(doc)) if doc["kind"] == "gatt" => doc["characteristics"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|c| {
                    let kind = if c["mode"] == "fact" {
                        "Property"
                    } else {
                        "Telemetry"
                    };
                    c["fields"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(move |(k, v)| (k.clone(), v.clone(), kind))
                })
                .collect(),
            (None, Some(doc)) => doc["fields"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.clone(), "Telemetry"))
                .collect(),
            (None, None) => continue,
        };
        out.insert(d.map.clone(), interface(&d.map, &fields));
        if !d.writable.is_empty() {
            devices.push(device_interface(d));
        }
    }
    let mut relationships: Vec<Value> = out
        .keys()
        .map(|m| json!({"@type": "Relationship", "name": format!("rel_{}", m.replace('-', "_")).chars().take(64).collect::<String>(), "target": model_id(m)}))
        .collect();
    for (i, d) in devices.iter().enumerate() {
        relationships.push(
            json!({"@type": "Relationship", "name": format!("rel_device_{i}"), "target": d["@id"]}),
        );
    }
    let mut all: Vec<Value> = out.into_values().collect();
    all.extend(devices);
    let mut gateway = vec![
        json!({"@type": "Property", "name": "bluetooth", "schema": {"@type": "Object", "fields": [{"name": "state", "schema": "string"}, {"name": "error", "schema": "string"}]}}),
    ];
    gateway.push(json!({"@type": "Command", "name": "write", "request": {"name": "request", "schema": {"@type": "Object", "fields": [
        {"name": "deviceId", "schema": "string"}, {"name": "characteristic", "schema": "string"}, {"name": "value", "schema": "string"}]}}}));
    gateway.extend(relationships);
    all.push(json!({"@context": "dtmi:dtdl:context;2", "@id": "dtmi:edgebridge:ble:gateway;1", "@type": "Interface", "displayName": "Edge Bridge BLE gateway", "contents": gateway}));
    Value::Array(all)
}
