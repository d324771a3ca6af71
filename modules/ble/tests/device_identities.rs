//! BLE devices as their own IoT Hub devices (identity mode `device`), end to end: the
//! module binary against btleplug + BlueZ's API served by python-dbusmock, connected to
//! edgehub-sim with the module's connection string.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the failure report

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use bridge_core::identity::SymmetricKey;
use common::*;
use edgehub_sim::{Recorded, Sim, SimOptions};
use serde_json::{Value, json};

const GROUP: &str = "Y2FwdHVyZS10ZXN0LWdyb3VwLWVucm9sbG1lbnQta2V5LTAwMA==";
const T: Duration = Duration::from_secs(30);
const SETPOINT: &str = "12345678-1234-5678-1234-56789abcdef0";

fn telemetry_of<'a>(msgs: &'a [Recorded], identity: &str) -> Option<&'a Recorded> {
    msgs.iter()
        .rev()
        .find(|r| r.identity == identity && r.output.as_deref() == Some("telemetry"))
}

async fn reported(sim: &Sim, id: &str, log: &Path, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + T;
    loop {
        let r = sim.hub.twin(id)["reported"].clone();
        if pred(&r) {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "{id} reported: {r}\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn group_key_file(bus: &Bus) -> std::path::PathBuf {
    let file = bus.dir.path().join("group.key");
    std::fs::write(&file, GROUP).unwrap();
    file
}

#[test]
fn ble_devices_are_their_own_hub_devices_with_writable_characteristics() {
    let bus = Bus::start(true);
    bus.mock_call("AddAdapter", "ss", vec!["hci0".into(), "host".into()]);
    bus.add_le(
        "C0:FF:EE:00:00:01",
        &[],
        &[(BTHOME, &[0x40, 0x02, 0xCA, 0x09, 0x03, 0xBF, 0x13])],
        -60,
    );
    bus.add_le("C0:FF:EE:00:00:02", &[(0x0499, &RUUVI)], &[], -70);
    bus.add_le("C0:FF:EE:00:00:05", &[(0x0499, &RUUVI)], &[], -72);
    // A GATT box with a battery level and a writable setpoint (u8).
    bus.add_le("C0:FF:EE:00:00:20", &[], &[], -50);
    let dev = "/org/bluez/hci0/dev_C0_FF_EE_00_00_20";
    bus.gatt(
        dev,
        (0x10, "0000180f-0000-1000-8000-00805f9b34fb"),
        (
            0x11,
            "00002a19-0000-1000-8000-00805f9b34fb",
            &["read"],
            &[77],
        ),
    );
    bus.mock_call(
        "AddGattCharacteristic",
        "sqsasay",
        vec![
            format!("{dev}/service0010"),
            "0x12".into(),
            SETPOINT.into(),
            "2".into(),
            "read".into(),
            "write".into(),
            "1".into(),
            "5".into(),
        ],
    );
    let rt = runtime();
    let sim = rt.block_on(Sim::start(SimOptions::default())).unwrap();
    sim.hub.add_module(
        "edge-gw",
        "ble",
        SymmetricKey::from_base64(MODULE_KEY).unwrap(),
    );
    let group = SymmetricKey::from_base64(GROUP).unwrap();
    for id in ["thermo-1", "ruuvi-1", "ruuvi-2", "box-1"] {
        sim.hub.add_device(id, group.derive(id));
    }
    let key_file = group_key_file(&bus);
    sim.hub.set_desired(
        "edge-gw/ble",
        &json!({
            "identity": {"mode": "device", "keys": {"source": "groupKey", "file": key_file},
                         "maxConnections": 3, "connectIntervalMs": 50},
            "devices": {
                "box-1": {"address": "C0:FF:EE:00:00:20", "map": "ble-battery", "pollIntervalMs": 300,
                          "writable": [{"name": "setpoint", "characteristic": SETPOINT, "type": "u8", "min": 0, "max": 100}]},
                "thermo-1": {"address": "C0:FF:EE:00:00:01", "map": "bthome-v2"},
                "ruuvi-1": {"address": "C0:FF:EE:00:00:02", "map": "ruuvi-rawv2"},
                "ruuvi-2": {"address": "C0:FF:EE:00:00:05", "map": "ruuvi-rawv2"}
            }
        }),
    );
    let (mut child, log) = bus.module_on_sim(&sim, "module-hub.log");
    rt.block_on(async {
        // Past maxConnections (3) one device falls back to the module identity, with the
        // reason in the module's reported properties; which one depends on scan order.
        let fallback = reported(&sim, "edge-gw/ble", &log, |r| {
            r["deviceIdentity"]
                .as_object()
                .is_some_and(|m| m.values().any(|v| v["error"].as_str().is_some_and(|e| e.contains("cap"))))
        })
        .await;
        let capped: Vec<String> = fallback["deviceIdentity"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, v)| v["error"].is_string())
            .map(|(k, _)| k.clone())
            .collect();
        assert_eq!(capped.len(), 1, "{fallback}");
        let capped = capped[0].clone();
        let own: Vec<&str> = ["thermo-1", "ruuvi-1", "ruuvi-2", "box-1"]
            .into_iter()
            .filter(|id| *id != capped)
            .collect();
        let msgs = sim
            .hub
            .wait_until(T, |m| {
                own.iter().all(|id| telemetry_of(m, id).is_some())
                    && m.iter().any(|r| {
                        r.identity == "edge-gw/ble"
                            && r.output.as_deref() == Some("telemetry")
                            && r.properties.get("deviceId").map(String::as_str) == Some(capped.as_str())
                    })
            })
            .await
            .unwrap_or_else(|_| panic!("telemetry of {own:?} on their own identities and of {capped} on the module's:\n{}", std::fs::read_to_string(&log).unwrap()));
        // Each device on its own topic with its map's model id; nothing else on the module.
        for id in &own {
            let m = telemetry_of(&msgs, id).unwrap();
            assert!(m.topic.starts_with(&format!("devices/{id}/messages/events/")), "{}", m.topic);
            let expected = match *id {
                "thermo-1" => "dtmi:edgebridge:ble:bthome_v2;1",
                "box-1" => "dtmi:edgebridge:ble:ble_battery:d_box_1;1",
                _ => "dtmi:edgebridge:ble:ruuvi_rawv2;1",
            };
            assert_eq!(m.model_id.as_deref(), Some(expected), "{id}");
        }
        if capped != "thermo-1" {
            assert_eq!(telemetry_of(&msgs, "thermo-1").unwrap().json()["temperature"], 25.06);
        }
        assert!(
            msgs.iter().filter(|r| r.identity == "edge-gw/ble" && r.output.as_deref() == Some("telemetry"))
                .all(|r| r.properties.get("deviceId").map(String::as_str) == Some(capped.as_str())),
            "only the capped device uses the module identity"
        );
        // GATT devices open their routes when the scan starts, before any advertiser.
        assert_ne!(capped, "box-1");
        // Health and presence on the device's own twin.
        reported(&sim, own[0], &log, |r| r["health"]["state"] == "online").await;

        // A writable characteristic as a desired property: written, acknowledged 200.
        sim.hub.set_desired("box-1", &json!({"setpoint": 42}));
        let r = reported(&sim, "box-1", &log, |r| r["setpoint"]["ac"] == 200).await;
        assert_eq!(r["setpoint"]["value"], 42);
        // Out of range: 400 with the value still in use, read back from the device.
        sim.hub.set_desired("box-1", &json!({"setpoint": 300}));
        let r = reported(&sim, "box-1", &log, |r| r["setpoint"]["ac"] == 400).await;
        assert_eq!(r["setpoint"]["value"], 42, "{r}");
        assert!(r["setpoint"]["ad"].as_str().unwrap().contains("out of range"), "{r}");
        // The device's own `read` command.
        let (status, body) = sim
            .hub
            .invoke_method("box-1", "read", &json!({"characteristic": SETPOINT}), T)
            .await
            .unwrap();
        assert_eq!((status, body["value"].clone()), (200, json!("2a")), "{body}");
    });
    let mock_log = std::fs::read_to_string(bus.dir.path().join("mock.log")).unwrap();
    assert!(
        mock_log.contains("WriteValue [42]"),
        "the desired setpoint did not reach the peripheral:\n{mock_log}"
    );
    assert!(
        !mock_log.contains("WriteValue [44, 1]"),
        "an out-of-range value was written"
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_ble_device_provisioned_through_dps_carries_the_iot_central_payload() {
    let bus = Bus::start(true);
    bus.mock_call("AddAdapter", "ss", vec!["hci0".into(), "host".into()]);
    bus.add_le(
        "C0:FF:EE:00:00:01",
        &[],
        &[(BTHOME, &[0x40, 0x02, 0xCA, 0x09, 0x03, 0xBF, 0x13])],
        -60,
    );
    let rt = runtime();
    let sim = rt.block_on(Sim::start(SimOptions::default())).unwrap();
    sim.hub.add_module(
        "edge-gw",
        "ble",
        SymmetricKey::from_base64(MODULE_KEY).unwrap(),
    );
    sim.hub
        .add_dps_group("0ne00000001", SymmetricKey::from_base64(GROUP).unwrap());
    let key_file = group_key_file(&bus);
    let ca = bus.dir.path().join("dps-ca.crt");
    std::fs::write(&ca, &sim.certs.ca_pem).unwrap();
    sim.hub.set_desired(
        "edge-gw/ble",
        &json!({
            "identity": {"mode": "device", "keys": {"source": "groupKey", "file": key_file},
                         "provisioning": {"idScope": "0ne00000001", "endpoint": "localhost", "port": sim.tls_addr.port(), "caFile": ca}},
            "devices": {"freezer": {"address": "C0:FF:EE:00:00:01", "map": "bthome-v2"}}
        }),
    );
    let (mut child, log) = bus.module_on_sim(&sim, "module-hub.log");
    rt.block_on(async {
        let msgs = sim
            .hub
            .wait_until(T, |m| telemetry_of(m, "freezer").is_some())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no telemetry from the provisioned device:\n{}",
                    std::fs::read_to_string(&log).unwrap()
                )
            });
        let m = telemetry_of(&msgs, "freezer").unwrap();
        assert_eq!(m.json()["temperature"], 25.06);
        assert_eq!(
            m.model_id.as_deref(),
            Some("dtmi:edgebridge:ble:bthome_v2;1")
        );
        let regs = sim.hub.registrations();
        assert_eq!(regs.len(), 1);
        assert_eq!(regs[0].registration_id, "freezer");
        assert_eq!(
            regs[0].payload["modelId"],
            "dtmi:edgebridge:ble:bthome_v2;1"
        );
        assert_eq!(
            regs[0].payload["iotcGateway"],
            json!({"iotcGatewayId": "edge-gw", "iotcModuleId": "ble"})
        );
    });
    let _ = child.kill();
    let _ = child.wait();
}
