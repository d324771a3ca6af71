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
