//! Device identities registered through DPS (the emulator's DPS side) with the payload
//! IoT Central needs, and what happens when DPS refuses.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::time::Duration;

use bridge_core::identity::SymmetricKey;
use bridge_e2e::{PyModbus, init_tracing, reported_until, run_modbus_against, write_ca};
use edgehub_sim::{Sim, SimOptions};
use serde_json::{Value, json};

const KEY: &str = "Y2FwdHVyZS10ZXN0LWtleS0wMTIzNDU2Nzg5YWJjZGVm";
const GROUP: &str = "Y2FwdHVyZS10ZXN0LWdyb3VwLWVucm9sbG1lbnQta2V5LTAwMA==";
const T: Duration = Duration::from_secs(30);

async fn setup(group_key_in_file: &str) -> (Sim, PyModbus, tempfile::TempDir, Value) {
    let dir = tempfile::tempdir().unwrap();
    let server = PyModbus::tcp(
        &json!({"units": {"1": {"input": [{"address": 2, "type": "u16", "value": 5}]}}}),
    )
    .await
    .unwrap();
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    sim.hub
        .add_module("edge-gw", "modbus", SymmetricKey::from_base64(KEY).unwrap());
    sim.hub
        .add_dps_group("0ne00000001", SymmetricKey::from_base64(GROUP).unwrap());
    let key_file = dir.path().join("group.key");
    std::fs::write(&key_file, group_key_in_file).unwrap();
    let ca = write_ca(&sim, dir.path()).unwrap();
    let desired = json!({
        "identity": {"mode": "device", "keys": {"source": "groupKey", "file": key_file},
                     "provisioning": {"idScope": "0ne00000001", "endpoint": "localhost", "port": sim.tls_addr.port(), "caFile": ca}},
        "devices": {"th-1": {"map": "xy-md02", "points": ["humidity"], "connection": {"type": "tcp", "host": "127.0.0.1", "port": server.port}, "pollIntervalMs": 300}}
    });
    sim.hub.set_desired("edge-gw/modbus", &desired);
    (sim, server, dir, desired)
}

#[tokio::test]
async fn devices_are_provisioned_through_dps_then_connect_through_the_gateway() {
    init_tracing();
    let (sim, _server, dir, _) = setup(GROUP).await;
    let stop = run_modbus_against(&sim, "modbus", KEY, dir.path(), None)
        .await
        .unwrap();
    let is_telemetry = |r: &edgehub_sim::Recorded| {
        r.identity == "th-1" && r.output.as_deref() == Some("telemetry")
    };
    let msgs = sim
        .hub
        .wait_until(T, |m| m.iter().any(is_telemetry))
        .await
        .expect("telemetry from the provisioned device");
    let m = msgs.iter().find(|r| is_telemetry(r)).unwrap();
    assert_eq!(m.json(), json!({"humidity": 0.5}));
    let regs = sim.hub.registrations();
    assert_eq!(regs.len(), 1);
    assert_eq!(regs[0].registration_id, "th-1");
    assert_eq!(
        regs[0].payload["modelId"],
        "dtmi:edgebridge:modbus:xy_md02;1"
    );
    assert_eq!(
        regs[0].payload["iotcGateway"],
        json!({"iotcGatewayId": "edge-gw", "iotcModuleId": "modbus"})
    );
    // The model id announced at CONNECT matches the DPS payload.
    assert_eq!(
        m.model_id.as_deref(),
        Some("dtmi:edgebridge:modbus:xy_md02;1")
    );

    // The device is deleted from the hub: the module is refused, registers again with
    // DPS, and the device comes back.
    sim.hub.remove_identity("th-1");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = sim
        .hub
        .messages()
        .iter()
        .filter(|r| is_telemetry(r))
        .count();
    sim.hub
        .wait_until(Duration::from_secs(40), |m| {
            m.iter().filter(|r| is_telemetry(r)).count() > before + 2
        })
        .await
        .expect("telemetry after re-provisioning");
    assert_eq!(sim.hub.registrations().len(), 2, "registered again");
    assert!(
        sim.hub
            .refusals()
            .iter()
            .any(|r| r.client_id == "th-1" && r.reason.contains("not known"))
    );
    stop.cancel();
}

#[tokio::test]
async fn dps_refusal_falls_back_to_the_module_identity() {
    init_tracing();
    let (sim, _server, dir, _) = setup("d3Jvbmcta2V5").await;
    let stop = run_modbus_against(&sim, "modbus", KEY, dir.path(), None)
        .await
        .unwrap();
    let msgs = sim
        .hub
        .wait_until(T, |m| {
            m.iter()
                .any(|r| r.identity == "edge-gw/modbus" && r.output.as_deref() == Some("telemetry"))
        })
        .await
        .expect("telemetry keeps flowing on the module identity");
    let m = msgs
        .iter()
        .find(|r| r.output.as_deref() == Some("telemetry"))
        .unwrap();
    assert_eq!(m.properties["deviceId"], "th-1");
    assert!(
        sim.hub.refusals().iter().any(|r| r.client_id == "th-1"),
        "DPS refused the wrong key"
    );
    reported_until(&sim.hub, "edge-gw/modbus", T, |r| {
        r["deviceIdentity"]["th-1"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("Provisioning failed"))
    })
    .await;
    stop.cancel();
}

#[tokio::test]
async fn dps_that_never_answers_times_out_and_telemetry_keeps_flowing() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let server = PyModbus::tcp(
        &json!({"units": {"1": {"input": [{"address": 2, "type": "u16", "value": 5}]}}}),
    )
    .await
    .unwrap();
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    sim.hub
        .add_module("edge-gw", "modbus", SymmetricKey::from_base64(KEY).unwrap());
    // A "DPS" that accepts connections and never says a word.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let key_file = dir.path().join("group.key");
    std::fs::write(&key_file, GROUP).unwrap();
    sim.hub.set_desired(
        "edge-gw/modbus",
        &json!({
            "identity": {"mode": "device", "keys": {"source": "groupKey", "file": key_file},
                         "provisioning": {"idScope": "0ne00000001", "endpoint": "127.0.0.1", "port": port, "timeoutMs": 2000}},
            "devices": {"th-1": {"map": "xy-md02", "points": ["humidity"], "connection": {"type": "tcp", "host": "127.0.0.1", "port": server.port}, "pollIntervalMs": 300}}
        }),
    );
    let stop = run_modbus_against(&sim, "modbus", KEY, dir.path(), None)
        .await
        .unwrap();
    sim.hub
        .wait_until(T, |m| {
            m.iter()
                .any(|r| r.identity == "edge-gw/modbus" && r.output.as_deref() == Some("telemetry"))
        })
        .await
        .expect("telemetry falls back to the module identity");
    let r = sim.hub.twin("edge-gw/modbus")["reported"]["deviceIdentity"]["th-1"]["error"].clone();
    assert!(
        r.as_str()
            .is_some_and(|e| e.contains("did not assign") || e.contains("connection failed")),
        "{r}"
    );
    stop.cancel();
}
