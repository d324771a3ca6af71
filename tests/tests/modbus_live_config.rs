//! Live reconfiguration through the module twin: a removed device stops polling and
//! publishing while another device on the same connection (a pymodbus server with two
//! unit ids) keeps going, and its health entry is removed from the reported properties.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::time::Duration;

use bridge_core::identity::SymmetricKey;
use bridge_e2e::{PyModbus, init_tracing, reported_until, run_modbus_against};
use edgehub_sim::{Recorded, Sim, SimOptions};
use serde_json::json;

const KEY: &str = "bGl2ZS1jb25maWctdGVzdC1rZXktMDEyMzQ1Njc4OQ==";
const T: Duration = Duration::from_secs(20);

fn telemetry_from(messages: &[Recorded], device: &str) -> usize {
    messages
        .iter()
        .filter(|m| {
            m.output.as_deref() == Some("telemetry")
                && m.properties.get("deviceId").map(String::as_str) == Some(device)
        })
        .count()
}

#[tokio::test]
async fn a_removed_device_stops_and_the_others_keep_polling() {
    init_tracing();
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    sim.hub
        .add_module("edge-gw", "modbus", SymmetricKey::from_base64(KEY).unwrap());
    let unit = json!({"input": [{"address": 0, "type": "u16", "value": 7}]});
    let server = PyModbus::tcp(&json!({"units": {"1": unit.clone(), "2": unit}}))
        .await
        .unwrap();
    let map =
        json!({"name": "one", "points": {"v": {"table": "input", "address": 0, "type": "u16"}}});
    let connection = json!({"type": "tcp", "host": "127.0.0.1", "port": server.port});
    sim.hub.set_desired(
        "edge-gw/modbus",
        &json!({"devices": {
            "keep": {"map": map, "connection": connection, "unitId": 1, "pollIntervalMs": 100},
            "drop": {"map": map, "connection": connection, "unitId": 2, "pollIntervalMs": 100}
        }}),
    );
    let dir = tempfile::tempdir().unwrap();
    let stop = run_modbus_against(&sim, "modbus", KEY, dir.path(), None)
        .await
        .unwrap();
    sim.hub
        .wait_until(T, |m| {
            telemetry_from(m, "keep") >= 2 && telemetry_from(m, "drop") >= 2
        })
        .await
        .expect("both devices publish");
    reported_until(&sim.hub, "edge-gw/modbus", T, |r| {
        r["deviceHealth"]["drop"]["state"] == "online"
    })
    .await;

    sim.hub
        .set_desired("edge-gw/modbus", &json!({"devices": {"drop": null}}));
    let reported = reported_until(&sim.hub, "edge-gw/modbus", T, |r| {
        r["deviceHealth"].get("drop").is_none() && r["deviceHealth"]["keep"].is_object()
    })
    .await;
    assert!(reported["deviceHealth"].get("drop").is_none(), "{reported}");
    // Anything already in flight has landed by now; from here on only `keep` publishes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    sim.hub.clear_messages();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let messages = sim.hub.messages();
    assert!(telemetry_from(&messages, "keep") >= 5, "keep stopped too");
    assert_eq!(
        telemetry_from(&messages, "drop"),
        0,
        "the removed device still polls"
    );
    stop.cancel();
}
