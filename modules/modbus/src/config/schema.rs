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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field has its doc comment (it is the schema's and the README's description).
    #[test]
    fn every_field_is_documented() {
        for (name, schema) in files() {
            let missing = bridge_core::runtime::commands::undocumented_properties(&schema, name);
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
        let stale = bridge_core::runtime::commands::stale_schema_files(&files(), &dir).unwrap();
        assert!(
            stale.is_empty(),
            "{stale:?} differ from the Rust types: run UPDATE_SCHEMAS=1 cargo test -p bridge-modbus -p bridge-ble --lib schema_files"
        );
    }
}
