//! Generated DTDL v2 passes Microsoft's DTDL parser (npm @azure/dtdl-parser).

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use bridge_e2e::repo_root;
use serde_json::{Value, json};

/// Runs Microsoft's DTDL parser on `models`; panics with its errors if it rejects them.
/// Returns the ids of the interfaces it accepted.
fn parse_with_dtdl_parser(models: &Value) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("models.json");
    std::fs::write(&file, models.to_string()).unwrap();
    let node_dir = repo_root().join("tests/node");
    assert!(
        node_dir.join("node_modules/@azure/dtdl-parser").exists(),
        "the DTDL parser is missing: run tests/setup-peers.sh"
    );
    let out = std::process::Command::new("node")
        .arg(node_dir.join("check_dtdl.js"))
        .arg(&file)
        .output()
        .expect("node is not installed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the DTDL parser rejected the models:\n{stdout}"
    );
    let result: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    result["interfaces"].as_array().unwrap().clone()
}

#[test]
fn generated_models_pass_the_dtdl_parser() {
    let mut devices = serde_json::Map::new();
    for (i, map) in bridge_modbus::map::bundled_names().into_iter().enumerate() {
        devices.insert(
            format!("dev-{i}"),
            json!({"map": map, "connection": {"type": "tcp", "host": "h"}}),
        );
    }
    let cfg = bridge_modbus::config::parse(&json!({"devices": devices})).unwrap();
    let models = bridge_modbus::models::models(&cfg);
    let interfaces = parse_with_dtdl_parser(&models);
    assert_eq!(
        interfaces.len(),
        bridge_modbus::map::bundled_names().len() + 1
    );
}

#[test]
fn ble_models_pass_the_dtdl_parser() {
    let mut devices = serde_json::Map::new();
    // Every registered advertisement format and every GATT map.
    let maps: Vec<&str> = bridge_ble::adverts::FORMATS
        .iter()
        .map(|f| f.name)
        .chain(bridge_ble::gatt::names())
        .collect();
    for (i, map) in maps.iter().enumerate() {
        devices.insert(
            format!("d{i}"),
            json!({"address": format!("C0:FF:EE:00:00:{i:02X}"), "map": map}),
        );
    }
    devices.insert(
        "custom".into(),
        json!({"address": "C0:FF:EE:00:01:00", "map": {"name": "acme-tag", "source": {"manufacturerId": 4660}, "fields": {"temperature": {"offset": 0, "type": "i16", "scale": 0.01, "unit": "°C"}}}}),
    );
    // Writable characteristics: the device's own interface extends its map's.
    devices.insert(
        "box.1".into(),
        json!({"address": "C0:FF:EE:00:02:00", "map": "ble-battery", "writable": [
            {"name": "setpoint", "characteristic": "12345678-1234-5678-1234-56789abcdef0", "type": "u8", "min": 0, "max": 100},
            "12345678-1234-5678-1234-56789abcdef1"
        ]}),
    );
    let cfg = bridge_ble::config::parse(&json!({"devices": devices})).unwrap();
    let models = bridge_ble::models::models(&cfg);
    let interfaces = parse_with_dtdl_parser(&models);
    assert_eq!(interfaces.len(), maps.len() + 3);
    let own = models
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["@id"] == "dtmi:edgebridge:ble:ble_battery:d_box_1;1")
        .expect("the device's own interface");
    assert_eq!(own["extends"], "dtmi:edgebridge:ble:ble_battery;1");
    assert!(
        own["contents"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "setpoint" && c["writable"] == true)
    );
}
