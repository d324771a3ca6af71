//! A flapping device (its pymodbus server killed and restarted over and over) announces
//! its state at most once per 5 s after a burst of 3 on the `status` output and in the twin, and its final
//! state is always reported.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::time::{Duration, Instant};

use bridge_core::identity::SymmetricKey;
use bridge_e2e::{ModbusRun, PyModbus, init_tracing, reported_until, run_modbus_with};
use edgehub_sim::{Recorded, Sim, SimOptions};
use serde_json::json;

const KEY: &str = "ZmxhcC10ZXN0LWtleS0wMTIzNDU2Nzg5YWJjZGVmZ2hp";
const ID: &str = "edge-gw/modbus";

fn statuses(messages: &[Recorded]) -> Vec<String> {
    messages
        .iter()
        .filter(|m| m.output.as_deref() == Some("status"))
        .map(|m| m.json()["state"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[tokio::test]
async fn a_flapping_device_is_announced_at_most_every_5_s_and_ends_right() {
    init_tracing();
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    sim.hub
        .add_module("edge-gw", "modbus", SymmetricKey::from_base64(KEY).unwrap());
    let unit = json!({"input": [{"address": 0, "type": "u16", "value": 7}]});
    let mut server = PyModbus::tcp(&json!({"units": {"1": unit}})).await.unwrap();
    let map =
        json!({"name": "one", "points": {"v": {"table": "input", "address": 0, "type": "u16"}}});
    sim.hub.set_desired(
        ID,
        &json!({"devices": {"f": {"map": map, "connection": {"type": "tcp", "host": "127.0.0.1", "port": server.port},
                                  "pollIntervalMs": 100, "timeoutMs": 200}}}),
    );
    let dir = tempfile::tempdir().unwrap();
    let stop = run_modbus_with(&sim, "modbus", KEY, dir.path(), ModbusRun::default())
        .await
        .unwrap();
    sim.hub
        .wait_until(Duration::from_secs(30), |m| statuses(m).len() == 1)
        .await
        .expect("online announced");
    let started = Instant::now();
    for _ in 0..10 {
        server.stop().await;
        tokio::time::sleep(Duration::from_millis(800)).await;
        server.restart().await.unwrap();
        tokio::time::sleep(Duration::from_millis(800)).await;
    }
    let flapping = started.elapsed();
    // Up for good: the final state is announced within the interval.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let seen = statuses(&sim.hub.messages());
    // A burst of 3 (first state, one drop and recovery), then one per 5 s, the last one.
    let allowed = 3 + (flapping.as_secs() / 5) as usize + 1;
    println!(
        "flap: 10 outages in {:.1} s, {} status messages: {seen:?}",
        flapping.as_secs_f64(),
        seen.len()
    );
    assert!(
        seen.len() <= allowed,
        "{} status messages (≤ {allowed})",
        seen.len()
    );
    assert!(
        seen.len() >= 2,
        "the outages were never announced: {seen:?}"
    );
    assert_eq!(seen.last().map(String::as_str), Some("online"));
    reported_until(&sim.hub, ID, Duration::from_secs(10), |r| {
        r["deviceHealth"]["f"]["state"] == "online"
    })
    .await;
    stop.cancel();
}
