//! bridge-ble under faults, end to end against the python-dbusmock BlueZ on a private
//! bus: a scanner that goes quiet (watchdog), BlueZ killed and started again mid-run,
//! and an adapter that never comes back (the module exits non-zero).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the failure report

mod common;

use std::time::{Duration, Instant};

use common::{BTHOME, Bus, Hub, wait_until};
use serde_json::{Value, json};

const T1: &str = "C0:FF:EE:00:00:01";

/// BTHome v2: temperature (0.01 °C) and humidity.
fn bthome(centi: u16) -> Vec<u8> {
    let [lo, hi] = centi.to_le_bytes();
    vec![0x40, 0x02, lo, hi, 0x03, 0xBF, 0x13]
}

#[test]
fn a_quiet_scanner_is_restarted_then_its_adapter_session() {
    let mut bus = Bus::start(false);
    bus.start_bluez();
    bus.add_le(T1, &[], &[(BTHOME, &bthome(2506))], -60);
    let hub = Hub::start(&json!({
        "devices": {"thermo-1": {"address": T1, "map": "bthome-v2"}},
        "scan": {"watchdogMs": 1500}
    }));
    let log = bus.module_on_hub(&hub, "module.log");
    hub.expect_body("25.06 °C", |b| b["temperature"] == 25.06);
    // No advertisement from then on: discovery is stopped and started again.
    let starts = |log: &str| log.matches("StartDiscovery").count();
    wait_until(
        Duration::from_secs(20),
        "the watchdog's scan restart",
        || {
            let l = bus.mock_log();
            l.contains("StopDiscovery") && starts(&l) >= 2
        },
    );
    let mock_log = bus.mock_log();
    let stop_at = mock_log.find("StopDiscovery").unwrap();
    assert!(
        mock_log[stop_at..].contains("StartDiscovery"),
        "discovery not started again after the watchdog stopped it:\n{mock_log}"
    );
    let watchdog = |r: &Value| r["bluetooth"]["watchdog"].clone();
    wait_until(
        Duration::from_secs(10),
        "the watchdog in reported properties",
        || watchdog(&hub.reported())["restarts"].as_u64() >= Some(1),
    );
    let w = watchdog(&hub.reported());
    assert!(
        w["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("no advertisement"),
        "{w}"
    );
    // Still quiet: the whole adapter session is restarted (a new scan follows).
    wait_until(
        Duration::from_secs(20),
        "the adapter session restart",
        || watchdog(&hub.reported())["action"] == "restartAdapter",
    );
    let before = starts(&bus.mock_log());
    wait_until(
        Duration::from_secs(20),
        "discovery after the session restart",
        || starts(&bus.mock_log()) > before,
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("The scanner went quiet"), "{text}");
    // The restarted scanner still forwards.
    bus.update(T1, &[], &[(BTHOME, &bthome(2600))], -58);
    hub.expect_body("26.00 °C", |b| b["temperature"] == 26.0);
    assert!(bus.module_exited().is_none(), "the module exited");
}

#[test]
fn bluez_restarted_mid_run_resumes_telemetry_and_gatt_without_a_module_restart() {
    let mut bus = Bus::start(false);
    let hr_dev = "/org/bluez/hci0/dev_C0_FF_EE_00_00_11";
    let setup = |bus: &Bus, centi: u16| -> String {
        bus.add_le(T1, &[], &[(BTHOME, &bthome(centi))], -60);
        bus.add_le("C0:FF:EE:00:00:11", &[], &[], -52);
        bus.gatt(
            hr_dev,
            (0x20, "0000180d-0000-1000-8000-00805f9b34fb"),
            (
                0x21,
                "00002a37-0000-1000-8000-00805f9b34fb",
                &["notify"],
                &[0x16, 60, 0x00, 0x04],
            ),
        )
    };
    bus.start_bluez();
    let heart = setup(&bus, 2506);
    let (rx, log) = bus.module_kept(&json!({"devices": {
        "thermo-1": {"address": T1, "map": "bthome-v2"},
        "hr-1": {"address": "C0:FF:EE:00:00:11", "map": "ble-heart-rate"}
    }}));
    let pid = bus.module_pid();
    let mut seen: Vec<Value> = Vec::new();
    let expect = |seen: &mut Vec<Value>, what: &str, pred: &dyn Fn(&Value) -> bool| {
        if seen.iter().any(pred) {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no {what}; seen {seen:?}"));
            seen.push(line.clone());
            if pred(&line) {
                return;
            }
        }
    };
    let hr = |l: &Value, k: &str, v: Value| l["deviceId"] == "hr-1" && l["body"][k] == v;
    expect(&mut seen, "temperature", &|l| {
        l["body"]["temperature"] == 25.06
    });
    expect(&mut seen, "hr-1 online", &|l| {
        hr(l, "state", json!("online"))
    });
    bus.set_value(&heart, &[0x16, 72, 0x00, 0x04]);
    expect(&mut seen, "a heart rate notification", &|l| {
        hr(l, "heartRate", json!(72))
    });

    // BlueZ dies and comes back with its devices (bluetoothd reloads them).
    bus.kill_bluez();
    std::thread::sleep(Duration::from_millis(500));
    bus.start_bluez();
    let heart = setup(&bus, 2700);
    expect(&mut seen, "telemetry after the restart", &|l| {
        l["body"]["temperature"] == 27.0
    });
    // The GATT device reconnects and subscribes again on the new BlueZ.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !seen.iter().any(|l| hr(l, "heartRate", json!(90))) {
        assert!(
            Instant::now() < deadline,
            "no notification after BlueZ restarted: {seen:?}\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        if bus.mock_log().contains("StartNotify") {
            bus.set_value(&heart, &[0x16, 90, 0x00, 0x04]);
        }
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(300)) {
            seen.push(l);
        }
    }
    let mock_log = bus.mock_log();
    assert!(
        mock_log.contains("Connect") && mock_log.contains("StartNotify"),
        "the new BlueZ saw no connection and subscription:\n{mock_log}"
    );
    assert!(
        bus.module_exited().is_none(),
        "the module restarted instead"
    );
    assert_eq!(bus.module_pid(), pid);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("BlueZ left the bus"), "{text}");
}

#[test]
fn the_bus_restarted_under_the_module_is_followed_by_a_reconnect() {
    let mut bus = Bus::start(false);
    bus.start_bluez();
    bus.add_le(T1, &[], &[(BTHOME, &bthome(2506))], -60);
    let (rx, log) =
        bus.module_kept(&json!({"devices": {"thermo-1": {"address": T1, "map": "bthome-v2"}}}));
    let wait_temp = |t: f64| {
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).unwrap_or_else(|_| {
                panic!(
                    "no {t} °C; log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            });
            if line["body"]["temperature"] == t {
                return;
            }
        }
    };
    wait_temp(25.06);
    // Every D-Bus connection is lost; a new bus and a new BlueZ take their place.
    bus.restart_daemon();
    bus.start_bluez();
    bus.add_le(T1, &[], &[(BTHOME, &bthome(2800))], -60);
    wait_temp(28.0);
    assert!(bus.module_exited().is_none(), "the module exited");
    let mock_log = bus.mock_log();
    assert!(
        mock_log.contains("StartDiscovery"),
        "discovery not resumed on the new bus:\n{mock_log}"
    );
}

#[test]
fn an_adapter_gone_for_good_makes_the_module_exit_non_zero() {
    let mut bus = Bus::start(false);
    bus.start_bluez();
    bus.add_le(T1, &[], &[(BTHOME, &bthome(2506))], -60);
    let (rx, log) = bus.module_kept(&json!({
        "devices": {"thermo-1": {"address": T1, "map": "bthome-v2"}},
        "scan": {"adapterLostExitMs": 2000}
    }));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !rx
        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        .expect("no telemetry")["body"]["temperature"]
        .eq(&json!(25.06))
    {}
    let gone = Instant::now();
    bus.mock_call("RemoveAdapter", "s", vec!["hci0".into()]);
    wait_until(Duration::from_secs(30), "the module to exit", || {
        bus.module_exited().is_some()
    });
    let after = gone.elapsed();
    let status = bus.module_exited().unwrap();
    assert_eq!(status.code(), Some(3), "{status:?}");
    assert!(
        after >= Duration::from_secs(2),
        "exited after {after:?}, before the configured 2 s"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("did not come back"), "{text}");
    assert!(text.contains("No Bluetooth adapter"), "{text}");
}
