//! The JSON Schemas of the configuration and of device maps, generated from the types
//! the parser reads (`doc::ConfigDoc`, `map::MapSpec`). The checked-in copies in
//! `device-maps/schema/` are kept equal by the `schema_files_are_generated` test;
//! regenerate them with `UPDATE_SCHEMAS=1 cargo test -p bridge-modbus -p bridge-ble --lib schema_files`.

use bridge_core::runtime::commands::schema_file;
use serde_json::Value;

use super::doc::ConfigDoc;
use crate::map::MapSpec;

/// The schema files this module owns: (file name, schema).
pub fn files() -> Vec<(&'static str, Value)> {
    vec![
        (
            "modbus-config.schema.json",
            schema_file::<ConfigDoc>(
                "modbus-config.schema.json",
                "The module twin's desired properties (or --config FILE).",
            ),
        ),
        (
            "modbus-device-map.schema.json",
            schema_file::<MapSpec>(
                "modbus-device-map.schema.json",
                "One device model: named, typed, scaled points over the four Modbus tables. Addresses are 0-based protocol addresses (Modicon 40001 = holding 0).",
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

    /// The schema's device-id pattern accepts exactly the characters the parser does.
    #[test]
    fn device_id_pattern_matches_the_parser() {
        let class = super::super::doc::DEVICE_ID_PATTERN
            .strip_prefix("^[A-Za-z0-9")
            .and_then(|p| p.strip_suffix("]{1,128}$"))
            .unwrap();
        for c in (0u8..128).map(char::from) {
            let id = format!("a{c}b");
            let parser = super::super::valid_device_id(&id)
                && id.chars().all(super::super::groups::twin_key_char);
            let schema = c.is_ascii_alphanumeric() || class.contains(c);
            assert_eq!(parser, schema, "{c:?}");
        }
    }

    /// The keys a group has besides the device fields (what the group expansion takes
    /// out) are the ones its schema type declares.
    #[test]
    fn group_keys_are_the_group_document_fields() {
        let schema = &files()[0].1;
        let names = |def: &str| -> Vec<String> {
            let mut v: Vec<String> = schema["$defs"][def]["properties"]
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect();
            v.sort();
            v
        };
        let device = names("DeviceDoc");
        let own: Vec<String> = names("GroupDoc")
            .into_iter()
            .filter(|k| !device.contains(k))
            .collect();
        let mut keys: Vec<String> = super::super::groups::GROUP_KEYS
            .iter()
            .map(|k| (*k).to_owned())
            .collect();
        keys.sort();
        assert_eq!(own, keys);
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
