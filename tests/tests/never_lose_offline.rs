//! Collecting while the hub is away, and nothing that blocks the link:
//! - a module restarted while edgeHub is unreachable polls at once from the configuration
//!   it kept next to the spool, and applies a desired patch made meanwhile once the hub
//!   answers (pymodbus logs every read, so polling is observed from the device side);
//! - a live bad patch keeps the last good configuration polling.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::path::Path;
use std::time::{Duration, Instant};

use bridge_core::identity::SymmetricKey;
use bridge_e2e::{ModbusRun, PyModbus, init_tracing, reported_until, run_modbus_with};
use edgehub_sim::{Recorded, Sim, SimOptions};
use serde_json::json;

const KEY: &str = "b2ZmbGluZS10ZXN0LWtleS0wMTIzNDU2Nzg5YWJjZGVm";
const T: Duration = Duration::from_secs(30);
const ID: &str = "edge-gw/modbus";

fn reads_of(log: &Path, unit: u8) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.split_whitespace().next() == Some(&unit.to_string()))
        .count()
}

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
async fn a_restart_while_the_hub_is_down_polls_from_the_kept_configuration() {
    init_tracing();
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    sim.hub
        .add_module("edge-gw", "modbus", SymmetricKey::from_base64(KEY).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("requests.log");
    let unit = json!({"input": [{"address": 0, "type": "u16", "value": 7}]});
    let server =
        PyModbus::tcp(&json!({"units": {"1": unit.clone(), "2": unit}, "requestLog": log}))
            .await
            .unwrap();
    let map =
        json!({"name": "one", "points": {"v": {"table": "input", "address": 0, "type": "u16"}}});
    let device = |u: u8| {
        json!({"map": map, "connection": {"type": "tcp", "host": "127.0.0.1", "port": server.port},
               "unitId": u, "pollIntervalMs": 500})
    };
    sim.hub
        .set_desired(ID, &json!({"devices": {"a": device(1)}}));
    let spool = dir.path().join("spool");
    let run = || ModbusRun {
        spool_dir: Some(spool.clone()),
        ..ModbusRun::default()
    };
    let stop = run_modbus_with(&sim, "modbus", KEY, dir.path(), run())
        .await
        .unwrap();
    sim.hub
        .wait_until(T, |m| telemetry_from(m, "a") >= 1)
        .await
        .expect("a publishes");
    let kept_path = spool.join("last-config.json");
    bridge_e2e::eventually(T, "the kept configuration", || kept_path.exists()).await;
    let kept: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&kept_path).unwrap()).unwrap();
    assert_eq!(kept["desired"], json!({"devices": {"a": device(1)}}));
    let text = std::fs::read_to_string(&kept_path).unwrap();
    assert!(
        !text.contains(KEY) && !text.contains("SharedAccessKey"),
        "{text}"
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&kept_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "readable by the module user only");
    }
    stop.cancel();
    tokio::time::sleep(Duration::from_secs(1)).await;

    // edgeHub goes away; meanwhile the operator adds device b.
    sim.pause();
    let version = sim
        .hub
        .set_desired(ID, &json!({"devices": {"b": device(2)}}));
    let before = reads_of(&log, 1);
    let started = Instant::now();
    let stop = run_modbus_with(&sim, "modbus", KEY, dir.path(), run())
        .await
        .unwrap();
    bridge_e2e::eventually(T, "polling without the hub", || reads_of(&log, 1) > before).await;
    let first_poll = started.elapsed();
    println!(
        "kept configuration: first poll {} ms after start with edgeHub down (poll interval 500 ms)",
        first_poll.as_millis()
    );
    assert!(first_poll < Duration::from_millis(1500), "{first_poll:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(reads_of(&log, 1) >= before + 3, "a keeps polling");
    assert_eq!(reads_of(&log, 2), 0, "b is not known yet");
    let offline_start = sim.hub.messages().len();

    // The hub answers: the full GET brings b; what a read meanwhile arrives from the spool.
    sim.resume();
    sim.hub
        .wait_until(T, |m| telemetry_from(m, "b") >= 1)
        .await
        .expect("the patch made meanwhile is applied");
    let r = reported_until(&sim.hub, ID, T, |r| {
        r["configStatus"]["appliedVersion"] == version
    })
    .await;
    assert_eq!(r["configStatus"]["status"], "applied", "{r}");
    let spooled = telemetry_from(&sim.hub.messages()[offline_start..], "a");
    assert!(
        spooled >= 4,
        "readings taken while the hub was away: {spooled}"
    );
    bridge_e2e::eventually(T, "the new version kept", || {
        std::fs::read_to_string(&kept_path)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .is_some_and(|k| k["version"] == version)
    })
    .await;
    stop.cancel();
}

#[tokio::test]
async fn a_bad_live_patch_keeps_the_last_good_configuration_polling() {
    init_tracing();
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    sim.hub
        .add_module("edge-gw", "modbus", SymmetricKey::from_base64(KEY).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("requests.log");
    let unit = json!({"input": [{"address": 0, "type": "u16", "value": 7}]});
    let server = PyModbus::tcp(&json!({"units": {"1": unit}, "requestLog": log}))
        .await
        .unwrap();
    let map =
        json!({"name": "one", "points": {"v": {"table": "input", "address": 0, "type": "u16"}}});
    let good = json!({"map": map, "connection": {"type": "tcp", "host": "127.0.0.1", "port": server.port},
                      "unitId": 1, "pollIntervalMs": 200});
    sim.hub.set_desired(ID, &json!({"devices": {"a": good}}));
    let stop = run_modbus_with(&sim, "modbus", KEY, dir.path(), ModbusRun::default())
        .await
        .unwrap();
    sim.hub
        .wait_until(T, |m| telemetry_from(m, "a") >= 1)
        .await
        .expect("a publishes");
    // Live patches from the corpus: each rejected with its paths, a keeps polling.
    let patches = [
        (
            json!({"devices": {"a": {"pollIntervalMs": "x", "timeoutMs": 0, "unitId": 300}}}),
            vec![
                "devices.a.pollIntervalMs",
                "devices.a.timeoutMs",
                "devices.a.unitId",
            ],
        ),
        (
            json!({"devices": {"a": {"connection": {"port": 0, "tls": true}}}}),
            vec!["devices.a.connection.port", "devices.a.connection.tls"],
        ),
        (
            json!({"devices": {"b": {"map": "xy-md02", "connection": {"type": "tcp", "host": "h".repeat(300)}}}}),
            vec!["devices.b.connection.host"],
        ),
        (
            json!({"devices": {"b": null, "c": [1, 2]}}),
            vec!["devices.c"],
        ),
    ];
    for (patch, paths) in patches {
        let version = sim.hub.set_desired(ID, &patch);
        let r = reported_until(&sim.hub, ID, T, |r| {
            r["configStatus"]["desiredVersion"] == version
        })
        .await;
        assert_eq!(r["configStatus"]["status"], "rejected", "{r}");
        let mut got: Vec<String> = r["configStatus"]["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["path"].as_str().unwrap().to_owned())
            .collect();
        got.sort();
        assert_eq!(got, paths, "{patch}");
        let before = reads_of(&log, 1);
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(
            reads_of(&log, 1) >= before + 2,
            "the last good configuration stopped polling"
        );
        // Undo the bad part so the next patch is judged alone.
        let undo: serde_json::Map<String, serde_json::Value> = patch
            .as_object()
            .unwrap()
            .keys()
            .map(|k| (k.clone(), serde_json::Value::Null))
            .collect();
        sim.hub.set_desired(ID, &serde_json::Value::Object(undo));
        let version = sim.hub.set_desired(ID, &json!({"devices": {"a": good}}));
        reported_until(&sim.hub, ID, T, |r| {
            r["configStatus"]["status"] == "applied"
                && r["configStatus"]["desiredVersion"] == version
        })
        .await;
    }
    // Over IoT Hub's limits the hub itself refuses the patch (the emulator does as IoT
    // Hub does); the module's own 32 KiB check is unit-tested in config_source.
    assert!(
        sim.hub
            .try_set_desired(ID, &json!({"huge": "x".repeat(40 * 1024)}))
            .is_err(),
        "the hub accepted a 40 KB desired patch"
    );
    let before = reads_of(&log, 1);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        reads_of(&log, 1) >= before + 2,
        "the last good configuration stopped polling"
    );
    assert!(sim.hub.connect_count() <= 2, "the hub link dropped");
    stop.cancel();
}
