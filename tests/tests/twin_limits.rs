//! IoT Hub's twin limits in edgehub-sim, as Microsoft's SDK and bridge-modbus meet them:
//! 32 KB per desired and reported section, property-name characters, nesting depth,
//! reported `$version` rising on every patch; a desired patch over 32 KB is refused with
//! 400 and the module keeps running on the configuration it has.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::time::Duration;

use bridge_core::identity::SymmetricKey;
use bridge_e2e::{
    PyModbus, init_tracing, reported_until, run_modbus_against, run_python, sim_on_8883, write_ca,
};
use edgehub_sim::{Sim, SimOptions};
use serde_json::{Value, json};

const KEY: &str = "Y2FwdHVyZS10ZXN0LWtleS0wMTIzNDU2Nzg5YWJjZGVm";
const T: Duration = Duration::from_secs(60);

fn huge_desired() -> Value {
    // 9 × 4000-character values: each value within 4 KB, the section over 32 KB.
    Value::Object(
        (0..9)
            .map(|i| (format!("huge{i}"), json!("y".repeat(4000))))
            .collect(),
    )
}

#[tokio::test]
async fn the_sdk_meets_the_twin_limits_as_in_iot_hub() -> anyhow::Result<()> {
    init_tracing();
    let dir = tempfile::tempdir()?;
    let sim = sim_on_8883(SimOptions {
        control_port: Some(0),
        ..SimOptions::default()
    })
    .await?;
    sim.hub
        .add_module("edge-gw", "mod1", SymmetricKey::from_base64(KEY)?);
    sim.hub.set_desired("edge-gw/mod1", &json!({"interval": 1}));
    let ip = sim.tls_addr.ip();
    let out = run_python(
        "sdk_peer.py",
        &["twin-limits"],
        &[
            ("SIM_CA", write_ca(&sim, dir.path())?.display().to_string()),
            ("SIM_CONTROL", format!("http://{}", sim.control_addr.unwrap())),
            ("MODULE_CS", format!("HostName=myhub.azure-devices.net;DeviceId=edge-gw;ModuleId=mod1;SharedAccessKey={KEY};GatewayHostName={ip}")),
        ],
        T,
    )
    .await?;
    // Each bad reported patch raised in the SDK (a 400 twin response), none was applied.
    let errors = out["reported_errors"].as_array().unwrap();
    assert_eq!(errors.len(), 3);
    assert!(errors.iter().all(|e| e.is_string()), "{out}");
    assert_eq!(out["reported"]["small"], 2);
    assert!(out["reported"].get("big0").is_none() && out["reported"].get("deep").is_none());
    // $version rose with every applied patch: 1 (new) → 2 after the first, 3 after the next.
    assert_eq!(out["versions"], json!([2, 3]), "{out}");
    // The service API refused the oversized desired patch with 400 and a reason.
    assert_eq!(out["desired_status"], 400, "{out}");
    assert!(
        out["desired_message"].as_str().unwrap().contains("32768"),
        "{out}"
    );
    assert_eq!(out["desired_after"]["interval"], 1);
    assert!(out["desired_after"].get("huge0").is_none());
    assert_eq!(out["connected"], true);
    Ok(())
}

#[tokio::test]
async fn a_desired_patch_over_32_kb_is_refused_and_the_module_keeps_polling() {
    init_tracing();
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    sim.hub
        .add_module("edge-gw", "modbus", SymmetricKey::from_base64(KEY).unwrap());
    let server = PyModbus::tcp(
        &json!({"units": {"1": {"input": [{"address": 0, "type": "u16", "value": 7}]}}}),
    )
    .await
    .unwrap();
    let map =
        json!({"name": "one", "points": {"v": {"table": "input", "address": 0, "type": "u16"}}});
    let good = json!({"devices": {"m": {"map": map, "pollIntervalMs": 100,
        "connection": {"type": "tcp", "host": "127.0.0.1", "port": server.port}}}});
    let v = sim.hub.try_set_desired("edge-gw/modbus", &good).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let stop = run_modbus_against(&sim, "modbus", KEY, dir.path(), None)
        .await
        .unwrap();
    reported_until(&sim.hub, "edge-gw/modbus", T, |r| {
        r["configStatus"]["appliedVersion"] == v
    })
    .await;
    // 2,000 explicit devices: far over 32 KB, refused as a whole.
    let explicit: serde_json::Map<String, Value> = (0..2000)
        .map(|i| {
            (format!("meter-{i:04}"), json!({"map": "eastron-sdm120",
                "connection": {"type": "tcp", "host": format!("10.0.{}.{}", i / 250, i % 250 + 1)}}))
        })
        .collect();
    let err = sim
        .hub
        .try_set_desired("edge-gw/modbus", &json!({"devices": explicit}))
        .unwrap_err();
    assert!(err.to_string().contains("32768"), "{err}");
    assert!(
        sim.hub
            .try_set_desired("edge-gw/modbus", &huge_desired())
            .is_err()
    );
    // A device id with a dot cannot be a twin key: refused before the module sees it.
    assert!(
        sim.hub
            .try_set_desired(
                "edge-gw/modbus",
                &json!({"devices": {"meter.1": {"map": "xy-md02"}}})
            )
            .is_err()
    );
    let twin = sim.hub.twin("edge-gw/modbus");
    assert_eq!(twin["desired"]["$version"], v, "nothing was applied");
    // The module stays connected and keeps polling the device it has.
    let before = sim.hub.messages().len();
    sim.hub
        .wait_until(T, |m| m.len() >= before + 5)
        .await
        .expect("telemetry keeps flowing");
    assert!(sim.hub.connected().contains(&"edge-gw/modbus".to_owned()));
    // The same 2,000 devices as a group fit, and the module validates and applies them
    // (disabled here: 2,000 unreachable devices' health is another test's subject).
    let group = json!({"devices": {"m": null}, "groups": {"meters": {"map": "eastron-sdm120",
        "connection": {"type": "tcp", "port": 1},
        "hosts": ["127.0.1.1-127.0.8.208"], "idPattern": "meter-{n:04}", "enabled": false}}});
    assert!(group.to_string().len() < 400);
    let v2 = sim.hub.try_set_desired("edge-gw/modbus", &group).unwrap();
    let r = reported_until(&sim.hub, "edge-gw/modbus", T, |r| {
        r["configStatus"]["appliedVersion"] == v2
    })
    .await;
    assert_eq!(r["configStatus"]["status"], "applied", "{r}");
    stop.cancel();
}
