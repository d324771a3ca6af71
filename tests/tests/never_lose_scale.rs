//! No reported patch can stop telemetry: 2,500 devices, 2,000 of them behind a Modbus
//! gateway (pymodbus) that dies during a 12 s edgeHub outage. Their health would once
//! have made a ~350 KB reported patch that broke the link on every reconnect; now the
//! twin gets a summary within IoT Hub's 32 KiB and the 500 live devices keep publishing.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::collections::BTreeSet;
use std::time::Duration;

use bridge_core::identity::SymmetricKey;
use bridge_e2e::{ModbusRun, PyModbus, init_tracing, reported_until, run_modbus_with};
use edgehub_sim::{Sim, SimOptions};
use serde_json::json;

const KEY: &str = "c2NhbGUtdGVzdC1rZXktMDEyMzQ1Njc4OWFiY2RlZmc=";
const ID: &str = "edge-gw/modbus";
const LIVE: usize = 500;
const BEHIND_GATEWAY: usize = 2000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dying_gateway_of_2000_devices_behind_an_outage_never_stops_telemetry() {
    init_tracing();
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    sim.hub
        .add_module("edge-gw", "modbus", SymmetricKey::from_base64(KEY).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let unit = json!({"input": [{"address": 0, "type": "u16", "value": 7}]});
    let mut gateway = PyModbus::tcp(&json!({"units": {"1": unit}})).await.unwrap();
    let map =
        json!({"name": "one", "points": {"v": {"table": "input", "address": 0, "type": "u16"}}});
    let mut devices = serde_json::Map::new();
    for i in 0..LIVE {
        devices.insert(
            format!("live-{i:04}"),
            json!({"map": "eastron-sdm120", "connection": {"type": "simulated"}, "pollIntervalMs": 1000}),
        );
    }
    for i in 0..BEHIND_GATEWAY {
        devices.insert(
            format!("behind-gateway-with-a-long-name-{i:04}"),
            json!({"map": map, "connection": {"type": "tcp", "host": "127.0.0.1", "port": gateway.port},
                   "unitId": 1, "pollIntervalMs": 20000, "timeoutMs": 1000}),
        );
    }
    let config = dir.path().join("site.json");
    std::fs::write(&config, json!({"devices": devices}).to_string()).unwrap();
    let stop = run_modbus_with(
        &sim,
        "modbus",
        KEY,
        dir.path(),
        ModbusRun {
            config_file: Some(config),
            ..ModbusRun::default()
        },
    )
    .await
    .unwrap();
    // Live devices and a good share of the gateway's are online (pymodbus answers a few
    // hundred requests a second on a busy machine, so not all 2,000 in the first round).
    reported_until(&sim.hub, ID, Duration::from_secs(120), |r| {
        r["deviceHealthSummary"]["online"]
            .as_u64()
            .is_some_and(|n| n >= (LIVE + 300) as u64)
    })
    .await;

    // edgeHub goes down; the gateway dies while it is away.
    sim.pause();
    gateway.stop().await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    sim.resume();
    let connects_after_outage = {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while sim.hub.connected().is_empty() {
            assert!(std::time::Instant::now() < deadline, "never reconnected");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        sim.hub.connect_count()
    };
    let r = reported_until(&sim.hub, ID, Duration::from_secs(90), |r| {
        r["deviceHealthSummary"]["offline"] == BEHIND_GATEWAY
    })
    .await;
    let size = r.to_string().len();
    let listed = r["deviceHealth"].as_object().map_or(0, |m| m.len());
    println!(
        "scale: reported section {size} bytes with {listed} devices listed, summary {}",
        r["deviceHealthSummary"]
    );
    assert!(size < 32 * 1024, "reported section of {size} bytes");
    assert_eq!(r["deviceHealthSummary"]["truncated"], true);
    // Live devices keep publishing fresh readings on the same connection.
    sim.hub.clear_messages();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let fresh: BTreeSet<String> = sim
        .hub
        .messages()
        .iter()
        .filter(|m| m.output.as_deref() == Some("telemetry"))
        .filter_map(|m| m.properties.get("deviceId").cloned())
        .filter(|d| d.starts_with("live-"))
        .collect();
    println!(
        "scale: {} of {LIVE} live devices published in 5 s after the outage",
        fresh.len()
    );
    assert!(
        fresh.len() >= LIVE * 9 / 10,
        "{} live devices published",
        fresh.len()
    );
    assert_eq!(
        sim.hub.connect_count(),
        connects_after_outage,
        "the link dropped again after the outage"
    );
    stop.cancel();
}
