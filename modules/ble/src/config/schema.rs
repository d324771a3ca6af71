//! The JSON Schemas of the configuration and of BLE device maps, generated from the
//! types the parser reads (`doc::ConfigDoc`, `map_doc::MapDoc`). The checked-in copies in
//! `device-maps/schema/` are kept equal by the `schema_files_are_generated` test;
//! regenerate them with `UPDATE_SCHEMAS=1 cargo test -p bridge-modbus -p bridge-ble --lib schema_files`.

use bridge_core::runtime::commands::schema_file;
use serde_json::Value;

use super::doc::ConfigDoc;
use super::map_doc::MapDoc;

/// The schema files this module owns: (file name, schema).
pub fn files() -> Vec<(&'static str, Value)> {
    vec![
        (
            "ble-config.schema.json",
            schema_file::<ConfigDoc>(
                "ble-config.schema.json",
                "The module twin's desired properties (or --config FILE).",
            ),
        ),
        (
            "ble-device-map.schema.json",
            schema_file::<MapDoc>(
                "ble-device-map.schema.json",
                "A BLE device model: an advertisement format (with its decoder or map-driven fields) or a set of GATT characteristics.",
            ),
        ),
    ]
}

/// Paths of properties without a description (tags of tagged enums need none).
#[cfg(test)]
fn undocumented(schema: &Value, path: &str, out: &mut Vec<String>) {
    match schema {
        Value::Object(map) => {
            if let Some(Value::Object(props)) = map.get("properties") {
                for (name, prop) in props {
                    let tag = prop.get("const").is_some();
                    if !tag && prop.get("description").is_none() {
                        out.push(format!("{path}.{name}"));
                    }
                }
            }
            // Conditions (`allOf`/`if`/`then`) restate fields; they are not fields.
            for (k, v) in map.iter().filter(|(k, _)| *k != "allOf") {
                undocumented(v, &format!("{path}/{k}"), out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                undocumented(v, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field has its doc comment (it is the schema's and the README's description).
    #[test]
    fn every_field_is_documented() {
        for (name, schema) in files() {
            let mut missing = Vec::new();
            undocumented(&schema, name, &mut missing);
            assert!(missing.is_empty(), "no doc comment: {missing:?}");
        }
    }

    /// The checked-in schemas are the generated ones (`UPDATE_SCHEMAS=1` rewrites them).
    #[test]
    fn schema_files_are_generated() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../device-maps/schema");
        let mut stale = Vec::new();
        for (name, schema) in files() {
            let text = serde_json::to_string_pretty(&schema).unwrap() + "\n";
            let path = dir.join(name);
            if std::env::var_os("UPDATE_SCHEMAS").is_some() {
                std::fs::write(&path, &text).unwrap();
            } else if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                stale.push(name);
            }
        }
        assert!(
            stale.is_empty(),
            "{stale:?} differ from the Rust types: run UPDATE_SCHEMAS=1 cargo test -p bridge-modbus -p bridge-ble --lib schema_files"
        );
    }
}
