//! Liveness of GATT sessions end to end, against BlueZ's D-Bus API served by
//! python-dbusmock: a session wedged forever in a step (the module's test-only hook,
//! `BRIDGE_BLE_TEST_WEDGE_GATT`, as a D-Bus call that never answers would) is found by
//! the core watchdog, restarted with the step named in the reported `liveness` (the module
//! twin on the edgeHub emulator), and notifications resume, without the module exiting;
//! a stuck advertisement consumer ends the module with `EXIT_STALLED`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the failure report

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod common;

use common::*;

#[test]
fn a_wedged_gatt_session_is_restarted_reported_and_notifications_resume() {
    let bus = Bus::start(true);
    bus.mock_call("AddAdapter", "ss", vec!["hci0".into(), "host".into()]);
    bus.add_le("C0:FF:EE:00:00:21", &[], &[], -50);
    let hr_dev = "/org/bluez/hci0/dev_C0_FF_EE_00_00_21";
    let heart = bus.gatt(
        hr_dev,
        (0x20, "0000180d-0000-1000-8000-00805f9b34fb"),
        (
            0x21,
            "00002a37-0000-1000-8000-00805f9b34fb",
            &["notify"],
            &[0x16, 60, 0x00, 0x04],
        ),
    );
    // Through the edgeHub emulator, so `liveness` is checked in the module twin.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let key = "bGl2ZW5lc3MtYmxlLXRlc3Qta2V5LTAxMjM0NTY3ODk=";
    let sim = rt
        .block_on(edgehub_sim::Sim::start(edgehub_sim::SimOptions::default()))
        .unwrap();
    sim.hub.add_module(
        "edge-gw",
        "ble",
        bridge_core::identity::SymmetricKey::from_base64(key).unwrap(),
    );
    sim.hub.set_desired(
        "edge-gw/ble",
        &json!({"devices": {"hr-1": {"address": "C0:FF:EE:00:00:21", "map": "ble-heart-rate"}}}),
    );
    let ca = bus.dir.path().join("ca.crt");
    std::fs::write(&ca, &sim.certs.ca_pem).unwrap();
    let log = bus.dir.path().join("module-hub.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_bridge-ble"))
        .args(["--hub-port", &sim.tls_addr.port().to_string(), "--ca-file"])
        .arg(&ca)
        .arg("--connection-string")
        .arg(format!("HostName=myhub.azure-devices.net;DeviceId=edge-gw;ModuleId=ble;SharedAccessKey={key};GatewayHostName=localhost"))
        .arg("--spool-dir")
        .arg(bus.dir.path().join("spool"))
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
        .env(bridge_ble::connection::TEST_WEDGE_ENV, "hr-1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let heart_rates = || -> Vec<i64> {
        sim.hub
            .messages()
            .iter()
            .filter_map(|m| m.json()["heartRate"].as_i64())
            .collect()
    };
    // The first session subscribes, then wedges: no notification gets through.
    wait_for(Duration::from_secs(30), || {
        read_log().contains("this GATT session wedges now")
    });
    let wedged_at = Instant::now();
    bus.set_value(&heart, &[0x16, 61, 0x00, 0x04]);
    // Step limit: the 15 s GATT timeout + 5 s; the checker runs every 500 ms.
    let stall_key = "gatt_hr-1";
    let mut reported = Value::Null;
    wait_for(Duration::from_secs(40), || {
        reported = sim.hub.twin("edge-gw/ble")["reported"].clone();
        reported["liveness"]["stalls"][stall_key]["reason"].is_string()
    });
    let restarted_after = wedged_at.elapsed();
    let stall = &reported["liveness"]["stalls"][stall_key];
    assert_eq!(stall["task"], "gatt hr-1", "{reported}");
    assert!(
        stall["reason"]
            .as_str()
            .unwrap()
            .starts_with("step 'subscribe' overran"),
        "{stall}"
    );
    assert!(reported["liveness"]["restarts"].as_u64().unwrap() >= 1);
    assert!(
        heart_rates().is_empty(),
        "the wedge really stopped the session: {:?}",
        heart_rates()
    );
    // Notifications resume on the fresh session.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !heart_rates().contains(&72) {
        assert!(
            Instant::now() < deadline,
            "no notification after the restart:\n{}",
            read_log()
        );
        bus.set_value(&heart, &[0x16, 72, 0x00, 0x04]);
        std::thread::sleep(Duration::from_millis(300));
    }
    let mock_log = std::fs::read_to_string(bus.dir.path().join("mock.log")).unwrap();
    assert!(
        mock_log.matches("StartNotify").count() >= 2,
        "not re-subscribed:\n{mock_log}"
    );
    assert!(child.try_wait().unwrap().is_none(), "no module exit");
    println!(
        "GATT session restarted {:.1} s after the wedge; notifications back {:.1} s after the wedge",
        restarted_after.as_secs_f64(),
        wedged_at.elapsed().as_secs_f64()
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// The advertisement consumer wedged (test hook) while advertisements keep arriving: the
/// module exits with `EXIT_STALLED` (the scanner's loop is its main task; the IoT Edge
/// agent restarts the module) after the pipeline's limit, the stall in its log.
#[test]
fn a_stuck_advert_consumer_ends_the_module() {
    let bus = Bus::start(true);
    bus.mock_call("AddAdapter", "ss", vec!["hci0".into(), "host".into()]);
    bus.add_le("C0:FF:EE:00:00:31", &[(0x0499, &RUUVI)], &[], -70);
    let cfg = bus.dir.path().join("config.json");
    std::fs::write(
        &cfg,
        json!({"devices": {"ruuvi-1": {"address": "C0:FF:EE:00:00:31", "map": "ruuvi-rawv2"}}})
            .to_string(),
    )
    .unwrap();
    let log = bus.dir.path().join("module.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_bridge-ble"))
        .args(["--upstream", "stdout", "--config"])
        .arg(&cfg)
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
        .env("RUST_LOG", "info,bridge_core::reporter=debug")
        // Batch 1 is the first advertisement; the next one wedges the consumer.
        .env(bridge_ble::liveness::TEST_WEDGE_ENV, "2")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let started = Instant::now();
    let mut wedged_at = None;
    let mut n: u8 = 0;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(150) {
            let _ = child.kill();
            panic!("the module did not exit:\n{}", read_log());
        }
        // Advertisements keep coming (a new temperature each time).
        n = n.wrapping_add(1);
        let mut data = RUUVI;
        data[2] = n;
        bus.update("C0:FF:EE:00:00:31", &[(0x0499, &data)], &[], -70);
        if wedged_at.is_none() && read_log().contains("advertisement consumer wedges now") {
            wedged_at = Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let text = read_log();
    let wedged_at = wedged_at.unwrap_or_else(|| panic!("never wedged:\n{text}"));
    assert_eq!(
        status.code(),
        Some(bridge_core::watchdog::EXIT_STALLED),
        "{text}"
    );
    assert!(
        text.contains("advert pipeline") && text.contains("no progress for 60000 ms"),
        "{text}"
    );
    println!(
        "stuck consumer to exit: {:.1} s (limit 60 s)",
        wedged_at.elapsed().as_secs_f64()
    );
}
