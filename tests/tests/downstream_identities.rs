//! Identity mode `device`: two Modbus devices (pymodbus) appear as two IoT Hub device
//! identities through edgehub-sim, each with its own telemetry, twin and commands.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::time::Duration;

use bridge_core::identity::SymmetricKey;
use bridge_e2e::{PyModbus, eventually, init_tracing, reported_until, run_modbus_against};
use edgehub_sim::{Sim, SimOptions};
use serde_json::json;

const KEY: &str = "Y2FwdHVyZS10ZXN0LWtleS0wMTIzNDU2Nzg5YWJjZGVm";
const GROUP: &str =
    "8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw==";
const T: Duration = Duration::from_secs(30);

#[tokio::test]
async fn each_modbus_device_is_its_own_hub_device() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let server = PyModbus::tcp(&json!({"units": {
        "1": {"holding": [{"address": 40, "type": "u16", "value": 100}], "input": [{"address": 0, "type": "u16", "value": 11}]},
        "2": {"holding": [{"address": 40, "type": "u16", "value": 200}], "input": [{"address": 0, "type": "u16", "value": 22}]}
    }}))
    .await
    .unwrap();
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    sim.hub
        .add_module("edge-gw", "modbus", SymmetricKey::from_base64(KEY).unwrap());
    let group = SymmetricKey::from_base64(GROUP).unwrap();
    // The hub knows the devices with keys derived from the group key (DPS convention);
    // "meter-x" is configured in the module but unknown to the hub.
    sim.hub.add_device("meter-a", group.derive("meter-a"));
    sim.hub.add_device("meter-b", group.derive("meter-b"));
    let key_file = dir.path().join("group.key");
    std::fs::write(&key_file, GROUP).unwrap();
    let map = json!({"name": "meter-map", "points": {
        "counter": {"table": "input", "address": 0, "type": "u16"},
        "setpoint": {"table": "holding", "address": 40, "type": "u16", "writable": true, "min": 0, "max": 1000}
    }});
    let conn = json!({"type": "tcp", "host": "127.0.0.1", "port": server.port});
    let desired = json!({
            "identity": {"mode": "device", "keys": {"source": "groupKey", "file": key_file}, "connectIntervalMs": 50},
            "maps": {"meter": map},
            "devices": {
                "meter-a": {"map": "meter", "connection": conn, "unitId": 1, "pollIntervalMs": 300},
                "meter-b": {"map": "meter", "connection": conn, "unitId": 2, "pollIntervalMs": 300},
                "meter-x": {"map": "meter", "connection": conn, "unitId": 1, "pollIntervalMs": 300}
            }
    });
    sim.hub.set_desired("edge-gw/modbus", &desired);
    let stop = run_modbus_against(&sim, "modbus", KEY, dir.path(), None)
        .await
        .unwrap();

    // Telemetry arrives under each device's own identity, with its model id.
    let msgs = sim
        .hub
        .wait_until(T, |m| {
            ["meter-a", "meter-b"].iter().all(|id| {
                m.iter()
                    .any(|r| r.identity == *id && r.output.as_deref() == Some("telemetry"))
            })
        })
        .await
        .expect("telemetry from both device identities");
    let a = msgs
        .iter()
        .rev()
        .find(|r| r.identity == "meter-a" && r.output.as_deref() == Some("telemetry"))
        .unwrap();
    // Writable points are properties of the device, not telemetry.
    assert_eq!(a.json(), json!({"counter": 11}));
    // Field names and types in real telemetry match the generated model.
    let models = bridge_modbus::models::models(
        &bridge_core::runtime::parse_envelope(&bridge_modbus::Modbus::new(), &desired)
            .unwrap()
            .config,
    );
    let model = models
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["@id"] == "dtmi:edgebridge:modbus:meter_map;1")
        .unwrap();
    for (field, value) in a.json().as_object().unwrap() {
        let element = model["contents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == *field)
            .unwrap_or_else(|| panic!("{field} not in the model"));
        let types = element["@type"].to_string();
        assert!(types.contains("Telemetry"), "{field}: {types}");
        let ok = match element["schema"].as_str().unwrap() {
            "integer" | "long" => value.is_i64() || value.is_u64(),
            "double" => value.is_number(),
            "boolean" => value.is_boolean(),
            "string" => value.is_string(),
            other => panic!("unexpected schema {other}"),
        };
        assert!(ok, "{field} = {value} does not fit {}", element["schema"]);
    }
    assert!(
        model["contents"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "setpoint" && c["writable"] == true)
    );
    assert_eq!(
        a.model_id.as_deref(),
        Some("dtmi:edgebridge:modbus:meter_map;1")
    );
    assert!(
        a.topic.starts_with("devices/meter-a/messages/events/"),
        "{}",
        a.topic
    );
    let b = msgs
        .iter()
        .rev()
        .find(|r| r.identity == "meter-b" && r.output.as_deref() == Some("telemetry"))
        .unwrap();
    assert_eq!(b.json(), json!({"counter": 22}));
    assert!(
        !msgs
            .iter()
            .any(|r| r.identity == "edge-gw/modbus" && r.output.as_deref() == Some("telemetry")),
        "telemetry leaked onto the module identity: {:?}",
        msgs.iter()
            .filter(|r| r.identity == "edge-gw/modbus")
            .map(|r| (r.output.clone(), r.json()))
            .collect::<Vec<_>>()
    );
    // The first poll goes at once, so telemetry can arrive before the last connection
    // (paced by connectIntervalMs) was even tried.
    eventually(T, "the unknown device refused by the hub", || {
        sim.hub.refusals().iter().any(|r| r.client_id == "meter-x")
    })
    .await;

    // Health on the device's own twin.
    reported_until(&sim.hub, "meter-a", T, |r| r["health"]["state"] == "online").await;

    // A desired-property write reaches the field device and is acknowledged...
    let v = sim.hub.set_desired("meter-a", &json!({"setpoint": 321}));
    let r = reported_until(&sim.hub, "meter-a", T, |r| r["setpoint"]["av"] == v).await;
    assert_eq!(
        r["setpoint"],
        json!({"value": 321, "ac": 200, "av": v, "ad": "written"})
    );
    let (status, body) = sim
        .hub
        .invoke_method("meter-a", "read", &json!({"points": ["setpoint"]}), T)
        .await
        .unwrap();
    assert_eq!(
        (status, body["values"]["setpoint"].clone()),
        (200, json!(321)),
        "read back from the server: {body}"
    );
    // ...and a bad one is refused with the value in use.
    let v = sim.hub.set_desired("meter-a", &json!({"setpoint": 5000}));
    let r = reported_until(&sim.hub, "meter-a", T, |r| r["setpoint"]["av"] == v).await;
    assert_eq!(r["setpoint"]["ac"], 400);
    assert_eq!(r["setpoint"]["value"], 321);

    // Commands on the device identity itself.
    let (status, body) = sim
        .hub
        .invoke_method(
            "meter-b",
            "write",
            &json!({"point": "setpoint", "value": 7, "verify": true}),
            T,
        )
        .await
        .unwrap();
    assert_eq!(
        (status, body["readBack"].clone()),
        (200, json!(7)),
        "{body}"
    );

    // meter-b keeps flowing although meter-x cannot connect.
    let n = sim
        .hub
        .messages()
        .iter()
        .filter(|r| r.identity == "meter-b")
        .count();
    sim.hub
        .wait_until(T, |m| {
            m.iter().filter(|r| r.identity == "meter-b").count() > n + 2
        })
        .await
        .expect("meter-b flowing");
    stop.cancel();
}

/// Key source `workload`: the device key is HMAC(module key, deviceId), computed by the
/// module's signer (the workload API under IoT Edge; here the connection string's key).
#[tokio::test]
async fn workload_derived_device_keys() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let server = PyModbus::tcp(
        &json!({"units": {"1": {"input": [{"address": 0, "type": "u16", "value": 11}]}}}),
    )
    .await
    .unwrap();
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    let module_key = SymmetricKey::from_base64(KEY).unwrap();
    sim.hub.add_module("edge-gw", "modbus", module_key.clone());
    sim.hub.add_device("meter-w", module_key.derive("meter-w"));
    sim.hub.set_desired(
        "edge-gw/modbus",
        &json!({
            "identity": {"mode": "device", "keys": {"source": "workload"}},
            "devices": {"meter-w": {"map": {"name": "c", "points": {"counter": {"table": "input", "address": 0, "type": "u16"}}},
                "connection": {"type": "tcp", "host": "127.0.0.1", "port": server.port}, "pollIntervalMs": 300}}
        }),
    );
    let stop = run_modbus_against(&sim, "modbus", KEY, dir.path(), None)
        .await
        .unwrap();
    let msgs = sim
        .hub
        .wait_until(T, |m| {
            m.iter()
                .any(|r| r.identity == "meter-w" && r.output.as_deref() == Some("telemetry"))
        })
        .await
        .expect("telemetry as meter-w");
    assert_eq!(
        msgs.iter()
            .find(|r| r.identity == "meter-w" && r.output.as_deref() == Some("telemetry"))
            .unwrap()
            .json(),
        json!({"counter": 11})
    );
    stop.cancel();
}

/// Per-device keys from a file, a device missing from it, and the connection cap: devices
/// that cannot have their own identity keep flowing through the module.
#[tokio::test]
async fn device_keys_file_missing_key_and_connection_cap() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let server = PyModbus::tcp(
        &json!({"units": {"1": {"input": [{"address": 0, "type": "u16", "value": 11}]}}}),
    )
    .await
    .unwrap();
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    sim.hub
        .add_module("edge-gw", "modbus", SymmetricKey::from_base64(KEY).unwrap());
    let ka = "a2V5LWZvci1kZXZpY2UtYQ==";
    let kc = "a2V5LWZvci1kZXZpY2UtYw==";
    sim.hub
        .add_device("dev-a", SymmetricKey::from_base64(ka).unwrap());
    sim.hub
        .add_device("dev-c", SymmetricKey::from_base64(kc).unwrap());
    let keys = dir.path().join("keys.json");
    std::fs::write(&keys, json!({"dev-a": ka, "dev-c": kc}).to_string()).unwrap();
    let map = json!({"name": "c", "points": {"counter": {"table": "input", "address": 0, "type": "u16"}}});
    let conn = json!({"type": "tcp", "host": "127.0.0.1", "port": server.port});
    sim.hub.set_desired(
        "edge-gw/modbus",
        &json!({
            "identity": {"mode": "device", "keys": {"source": "deviceKeys", "file": keys}, "maxConnections": 1, "connectIntervalMs": 50},
            "devices": {
                "dev-a": {"map": map, "connection": conn, "pollIntervalMs": 300},
                "dev-b": {"map": map, "connection": conn, "pollIntervalMs": 300},
                "dev-c": {"map": map, "connection": conn, "pollIntervalMs": 300}
            }
        }),
    );
    let stop = run_modbus_against(&sim, "modbus", KEY, dir.path(), None)
        .await
        .unwrap();
    let telemetry = |r: &edgehub_sim::Recorded| r.output.as_deref() == Some("telemetry");
    sim.hub
        .wait_until(T, |m| {
            let via_module: std::collections::BTreeSet<String> = m
                .iter()
                .filter(|r| telemetry(r) && r.identity == "edge-gw/modbus")
                .filter_map(|r| r.properties.get("deviceId").cloned())
                .collect();
            let own = m
                .iter()
                .filter(|r| telemetry(r) && (r.identity == "dev-a" || r.identity == "dev-c"))
                .count();
            via_module.len() == 2 && own > 0
        })
        .await
        .expect("one device on its own identity, two through the module");
    let reported = sim.hub.twin("edge-gw/modbus")["reported"]["deviceIdentity"].clone();
    assert!(
        reported["dev-b"]["error"]
            .as_str()
            .unwrap()
            .contains("has no key"),
        "{reported}"
    );
    assert!(
        reported.to_string().contains("cap of 1 device connections"),
        "{reported}"
    );
    stop.cancel();
}
