//! bridge-ble end to end through btleplug against BlueZ's D-Bus API served by
//! python-dbusmock on a private bus (no Bluetooth hardware or kernel support needed).
//! The module binary runs as a child process with DBUS_SYSTEM_BUS_ADDRESS pointing at the
//! private bus, printing telemetry as JSON lines on stdout.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the failure report

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod common;

use common::*;

#[test]
fn scans_decodes_discovers_and_follows_rssi() {
    let bus = Bus::start(true);
    bus.mock_call("AddAdapter", "ss", vec!["hci0".into(), "host".into()]);
    bus.add_le(
        "C0:FF:EE:00:00:01",
        &[],
        &[(BTHOME, &[0x40, 0x02, 0xCA, 0x09, 0x03, 0xBF, 0x13])],
        -60,
    );
    bus.add_le("C0:FF:EE:00:00:02", &[(0x0499, &RUUVI)], &[], -70);
    bus.add_le(
        "C0:FF:EE:00:00:04",
        &[(0x1234, &[0x69, 0x08, 0x2A])],
        &[],
        -65,
    );
    let (mut child, rx, log) = bus.module(&json!({
        "devices": {
            "tag-1": {"address": "C0:FF:EE:00:00:04", "map": {"name": "acme-tag", "source": {"manufacturerId": 0x1234},
                "fields": {"temperature": {"offset": 0, "type": "i16", "scale": 0.01}, "level": {"offset": 2, "type": "u8"}}}},
            "thermo-1": {"address": "C0:FF:EE:00:00:01", "map": "bthome-v2", "report": {"onChange": true, "deadband": 0.5}},
            "ruuvi-1": {"address": "c0:ff:ee:00:00:02", "map": "ruuvi-rawv2"}
        },
        "discovery": {"enabled": true}
    }));
    let mut rx = Lines {
        seen: Vec::new(),
        rx,
    };
    let t = rx.expect("thermo-1", |b| b["temperature"] == 25.06);
    assert_eq!(t["body"]["humidity"], 50.55);
    assert_eq!(t["body"]["rssi"], -60);
    assert_eq!(t["output"], "telemetry");
    assert_eq!(t["properties"]["format"], "bthome-v2");
    let seen = rx.expect("ruuvi-1", |b| b["state"] == "online");
    assert_eq!(seen["body"]["manufacturerIds"], json!([0x0499]));
    assert_eq!(seen["body"]["localName"], "sensor");
    let r = rx.expect("ruuvi-1", |b| b["temperature"] == 24.3);
    let tag = rx.expect("tag-1", |b| b["temperature"] == 21.53);
    assert_eq!(tag["body"]["level"], 42);
    assert_eq!(r["body"]["pressure"], 1000.44);

    // A pvvx thermometer appears mid-scan; discovery names it from its address.
    let pvvx: [u8; 15] = [
        0x03, 0x00, 0x00, 0xEE, 0xFF, 0xC0, 0x69, 0x08, 0xD7, 0x11, 0x86, 0x0B, 80, 7, 5,
    ];
    bus.add_le("C0:FF:EE:00:00:03", &[], &[(ENV_SENSING, &pvvx)], -55);
    let p = rx.expect("ble-c0ffee000003", |b| b["temperature"] == 21.53);
    assert_eq!(p["body"]["battery"], 80);

    // Only a new RSSI: with report-on-change nothing is sent for thermo-1.
    bus.update(
        "C0:FF:EE:00:00:01",
        &[],
        &[(BTHOME, &[0x40, 0x02, 0xCA, 0x09, 0x03, 0xBF, 0x13])],
        -41,
    );
    // A new reading and a new RSSI from thermo-1.
    bus.update(
        "C0:FF:EE:00:00:01",
        &[],
        &[(BTHOME, &[0x40, 0x02, 0x00, 0x0A])],
        -48,
    );
    let t = rx.expect("thermo-1", |b| b["temperature"] == 25.6);
    assert_eq!(t["body"]["rssi"], -48);

    assert!(
        !rx.seen
            .iter()
            .any(|l| l["deviceId"] == "thermo-1" && l["body"]["rssi"] == -41),
        "an RSSI-only change was reported despite onChange"
    );
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(log).unwrap();
    assert!(text.contains("Scanning for BLE advertisements"), "{text}");
}

#[test]
fn bluez_missing_is_a_clear_error_and_the_module_keeps_running() {
    let bus = Bus::start(false);
    let (mut child, _rx, log) = bus.module(&json!({"devices": {}}));
    wait_for(Duration::from_secs(15), || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("Bluetooth unavailable")
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(child.try_wait().unwrap().is_none(), "the module exited");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("BlueZ is not running") || text.contains("BlueZ is not reachable"),
        "{text}"
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn gatt_reads_notifications_reconnects_and_errors() {
    let bus = Bus::start(true);
    bus.mock_call("AddAdapter", "ss", vec!["hci0".into(), "host".into()]);
    bus.add_le("C0:FF:EE:00:00:10", &[], &[], -50);
    bus.add_le("C0:FF:EE:00:00:11", &[], &[], -52);
    let bat_dev = "/org/bluez/hci0/dev_C0_FF_EE_00_00_10";
    let hr_dev = "/org/bluez/hci0/dev_C0_FF_EE_00_00_11";
    let battery = bus.gatt(
        bat_dev,
        (0x10, "0000180f-0000-1000-8000-00805f9b34fb"),
        (
            0x11,
            "00002a19-0000-1000-8000-00805f9b34fb",
            &["read", "notify"],
            &[85],
        ),
    );
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
    let (mut child, rx, log) = bus.module(&json!({"devices": {
        "bat-1": {"address": "C0:FF:EE:00:00:10", "map": "ble-battery", "pollIntervalMs": 300},
        "hr-1": {"address": "C0:FF:EE:00:00:11", "map": "ble-heart-rate"}
    }}));
    let mut rx = Lines {
        seen: Vec::new(),
        rx,
    };

    // Read on an interval, and a changed value on a later read.
    rx.expect("bat-1", |b| b["battery"] == 85);
    bus.set_value(&battery, &[60]);
    rx.expect("bat-1", |b| b["battery"] == 60);
    // Notifications once connected and subscribed.
    rx.expect("hr-1", |b| b["state"] == "online");
    bus.set_value(&heart, &[0x16, 72, 0x00, 0x04]);
    let hr = rx.expect("hr-1", |b| b["heartRate"] == 72);
    assert_eq!(hr["body"]["rrIntervals"], json!([1.0]));
    // The peripheral drops the link: the module reconnects and subscribes again.
    bus.object_call(
        hr_dev,
        "UpdateProperties",
        "sa{sv}",
        [
            "org.bluez.Device1",
            "2",
            "Connected",
            "b",
            "false",
            "ServicesResolved",
            "b",
            "false",
        ]
        .map(String::from)
        .to_vec(),
    );
    rx.expect("hr-1", |b| b["state"] == "offline");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        bus.set_value(&heart, &[0x16, 90, 0x00, 0x04]);
        if rx
            .seen
            .iter()
            .any(|l| l["deviceId"] == "hr-1" && l["body"]["heartRate"] == 90)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no notification after reconnecting: {:?}",
            rx.seen
        );
        let _ = rx
            .rx
            .recv_timeout(Duration::from_millis(300))
            .map(|l| rx.seen.push(l));
    }
    let mock_log = std::fs::read_to_string(bus.dir.path().join("mock.log")).unwrap();
    assert!(
        mock_log.matches("StartNotify").count() >= 2,
        "not re-subscribed:\n{mock_log}"
    );
    // An injected GATT error is reported, and the module keeps running.
    bus.object_call(
        &battery,
        "AddMethod",
        "sssss",
        [
            "org.bluez.GattCharacteristic1",
            "ReadValue",
            "a{sv}",
            "ay",
            "raise dbus.exceptions.DBusException('boom', name='org.bluez.Error.Failed')",
        ]
        .map(String::from)
        .to_vec(),
    );
    wait_for(Duration::from_secs(15), || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("GATT read failed")
    });
    assert!(child.try_wait().unwrap().is_none());
    let _ = child.kill();
    let _ = child.wait();
}

/// The GATT `write` method through edgeHub (the emulator), checked in the mock's call log,
/// and the adapter being switched off.
#[test]
fn write_method_reaches_the_characteristic_and_adapter_off_is_reported() {
    let bus = Bus::start(true);
    bus.mock_call("AddAdapter", "ss", vec!["hci0".into(), "host".into()]);
    bus.add_le("C0:FF:EE:00:00:20", &[], &[], -50);
    let dev = "/org/bluez/hci0/dev_C0_FF_EE_00_00_20";
    let custom = "12345678-1234-5678-1234-56789abcdef0";
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
            custom.into(),
            "2".into(),
            "read".into(),
            "write".into(),
            "0".into(),
        ],
    );
    let hub = Hub::start(
        &json!({"devices": {"box-1": {"address": "C0:FF:EE:00:00:20", "map": "ble-battery", "pollIntervalMs": 300, "writable": [custom]}}}),
    );
    let (rt, sim) = (&hub.rt, &hub.sim);
    let (mut child, log) = bus.module_on_sim(sim, "module-hub.log");
    rt.block_on(async {
        let msgs = sim
            .hub
            .wait_until(Duration::from_secs(20), |m| {
                m.iter().any(|r| r.json()["battery"] == 77)
            })
            .await;
        assert!(
            msgs.is_ok(),
            "no battery telemetry via the hub: {}",
            std::fs::read_to_string(&log).unwrap()
        );
        let m = msgs
            .unwrap()
            .into_iter()
            .find(|r| r.json()["battery"] == 77)
            .unwrap();
        assert_eq!(m.properties["deviceId"], "box-1");
        let (status, body) = sim
            .hub
            .invoke_method(
                "edge-gw/ble",
                "write",
                &json!({"deviceId": "box-1", "characteristic": custom, "value": "deadbeef"}),
                Duration::from_secs(30),
            )
            .await
            .unwrap();
        assert_eq!(status, 200, "{body}");
        let (status, _) = sim
            .hub
            .invoke_method(
                "edge-gw/ble",
                "write",
                &json!({"deviceId": "box-1", "characteristic": custom, "value": "xyz"}),
                Duration::from_secs(30),
            )
            .await
            .unwrap();
        assert_eq!(status, 400);
        let (status, _) = sim
            .hub
            .invoke_method(
                "edge-gw/ble",
                "write",
                &json!({"deviceId": "nope", "characteristic": custom, "value": "00"}),
                Duration::from_secs(30),
            )
            .await
            .unwrap();
        assert_eq!(status, 404);
        let (status, body) = sim
            .hub
            .invoke_method("edge-gw/ble", "read", &json!({"deviceId": "box-1", "characteristic": "00002a19-0000-1000-8000-00805f9b34fb"}), Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!((status, body["value"].clone(), body["decoded"]["battery"].clone()), (200, json!("4d"), json!(77)), "{body}");
    });
    let mock_log = std::fs::read_to_string(bus.dir.path().join("mock.log")).unwrap();
    assert!(
        mock_log.contains("WriteValue [222, 173, 190, 239]"),
        "write not in the mock's call log:\n{mock_log}"
    );
    // Switch the adapter off.
    bus.busctl(
        &[
            "set-property",
            "org.bluez",
            "/org/bluez/hci0",
            "org.bluez.Adapter1",
            "Powered",
            "b",
            "false",
        ]
        .map(String::from),
    );
    wait_for(Duration::from_secs(15), || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("powered off")
    });
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn manifest_subcommand_binds_the_host_dbus() {
    let example =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../device-maps/examples/ble-config.json");
    let out = Command::new(env!("CARGO_BIN_EXE_bridge-ble"))
        .args(["manifest", "--image", "reg/bridge-ble:0.1.0", "--from"])
        .arg(&example)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m: Value = serde_json::from_slice(&out.stdout).unwrap();
    let module = &m["modulesContent"]["$edgeAgent"]["properties.desired"]["modules"]["bridge-ble"];
    let opts: Value =
        serde_json::from_str(module["settings"]["createOptions"].as_str().unwrap()).unwrap();
    assert_eq!(
        opts["HostConfig"]["Binds"][0],
        "/var/run/dbus:/var/run/dbus"
    );
    assert_eq!(
        m["modulesContent"]["bridge-ble"]["properties.desired"]["devices"]["freezer"]["map"],
        "bthome-v2"
    );
    let bad = std::env::temp_dir().join(format!("bad-ble-{}.json", std::process::id()));
    std::fs::write(
        &bad,
        r#"{"devices": {"x": {"address": "nope", "map": "bthome-v2"}}}"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_bridge-ble"))
        .args(["manifest", "--image", "i", "--from"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("devices.x.address"));
    let _ = std::fs::remove_file(bad);
}

#[test]
fn ibeacon_and_eddystone_adverts() {
    let bus = Bus::start(true);
    bus.mock_call("AddAdapter", "ss", vec!["hci0".into(), "host".into()]);
    let ibeacon: Vec<u8> = [
        &[0x02u8, 0x15][..],
        &[
            0xE2, 0xC5, 0x6D, 0xB5, 0xDF, 0xFB, 0x48, 0xD2, 0xB0, 0x60, 0xD0, 0xF5, 0xA7, 0x10,
            0x96, 0xE0,
        ],
        &[0, 1, 0, 42, 0xC5],
    ]
    .concat();
    bus.add_le(
        "C0:FF:EE:00:00:05",
        &[(0x004C, ibeacon.as_slice())],
        &[],
        -66,
    );
    let tlm = [
        0x20u8, 0x00, 0x0B, 0xB8, 0x15, 0x80, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x64,
    ];
    bus.add_le(
        "C0:FF:EE:00:00:06",
        &[],
        &[("0000feaa-0000-1000-8000-00805f9b34fb", &tlm)],
        -67,
    );
    let (mut child, rx, _log) = bus.module(&json!({"devices": {
        "beacon-1": {"address": "C0:FF:EE:00:00:05", "map": "ibeacon"},
        "eddy-1": {"address": "C0:FF:EE:00:00:06", "map": "eddystone"}}}));
    let mut rx = Lines {
        seen: Vec::new(),
        rx,
    };
    let b = rx.expect("beacon-1", |b| b["major"] == 1);
    assert_eq!(b["body"]["uuid"], "e2c56db5-dffb-48d2-b060-d0f5a71096e0");
    assert_eq!(
        (
            b["body"]["minor"].clone(),
            b["body"]["txPower"].clone(),
            b["body"]["rssi"].clone()
        ),
        (json!(42), json!(-59), json!(-66))
    );
    let e = rx.expect("eddy-1", |b| b["temperature"] == 21.5);
    assert_eq!(
        (
            e["body"]["batteryVoltage"].clone(),
            e["body"]["uptime"].clone()
        ),
        (json!(3.0), json!(10.0))
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn no_adapter_is_a_clear_error() {
    let bus = Bus::start(true);
    let (mut child, _rx, log) = bus.module(&json!({"devices": {}}));
    wait_for(Duration::from_secs(15), || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("No Bluetooth adapter found")
    });
    assert!(child.try_wait().unwrap().is_none(), "the module exited");
    let _ = child.kill();
    let _ = child.wait();
}

impl Bus {
    /// Unique bus names held by process `pid`.
    fn names_of(&self, pid: u32) -> Vec<String> {
        let out = Command::new("busctl")
            .arg(format!("--address={}", self.address))
            .args(["list", "--json=short"])
            .output()
            .expect("busctl");
        let list: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        list.as_array()
            .into_iter()
            .flatten()
            .filter(|n| n["pid"] == pid && n["name"].as_str().is_some_and(|s| s.starts_with(':')))
            .filter_map(|n| n["name"].as_str().map(str::to_owned))
            .collect()
    }

    /// `busctl call` returning JSON, or None when the call fails.
    fn call_json(&self, dest: &str, path: &str, iface: &str, method: &str) -> Option<Value> {
        let out = Command::new("busctl")
            .arg(format!("--address={}", self.address))
            .args(["call", "--json=short", dest, path, iface, method])
            .output()
            .expect("busctl");
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).unwrap_or(Value::Null))
    }
}

#[test]
fn passive_scan_registers_a_monitor_instead_of_discovering() {
    let bus = Bus::start(true);
    bus.mock_call("AddAdapter", "ss", vec!["hci0".into(), "host".into()]);
    bus.mock_call("AddMonitorManager", "s", vec!["hci0".into()]);
    let metrics = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (mut child, rx, log) = bus.module_with(
        &json!({
            "scan": {"mode": "passive"},
            "devices": {
                "thermo-1": {"address": "C0:FF:EE:00:00:01", "map": "bthome-v2"},
                "ruuvi-1": {"address": "C0:FF:EE:00:00:02", "map": "ruuvi-rawv2"}
            }
        }),
        &["--metrics".into(), metrics.to_string()],
    );
    let mock_log = bus.dir.path().join("mock.log");
    let read_log = || std::fs::read_to_string(&mock_log).unwrap_or_default();
    wait_for(Duration::from_secs(20), || {
        read_log().contains("RegisterMonitor")
    });
    assert!(
        read_log().contains("RegisterMonitor \"/io/edgebridge/ble\""),
        "{}",
        read_log()
    );
    // Play BlueZ: read the application's monitors, as bluetoothd does, and activate them.
    let mut objects = None;
    for name in bus.names_of(child.id()) {
        if let Some(v) = bus.call_json(
            &name,
            "/io/edgebridge/ble",
            "org.freedesktop.DBus.ObjectManager",
            "GetManagedObjects",
        ) {
            objects = Some((name, v));
        }
    }
    let (name, objects) = objects.expect("the module exports its monitor");
    let monitor =
        &objects["data"][0]["/io/edgebridge/ble/monitor0"]["org.bluez.AdvertisementMonitor1"];
    assert_eq!(monitor["Type"]["data"], "or_patterns", "{objects}");
    assert_eq!(
        monitor["Patterns"]["data"],
        json!([[0, 0x16, [0xD2, 0xFC]], [0, 0xFF, [0x99, 0x04]]]),
        "BTHome service data and Ruuvi manufacturer data: {objects}"
    );
    assert!(
        bus.call_json(
            &name,
            "/io/edgebridge/ble/monitor0",
            "org.bluez.AdvertisementMonitor1",
            "Activate"
        )
        .is_some()
    );
    // Matching devices then show up through Device1 objects, without discovery.
    bus.add_le(
        "C0:FF:EE:00:00:01",
        &[],
        &[(BTHOME, &[0x40, 0x02, 0xCA, 0x09, 0x03, 0xBF, 0x13])],
        -60,
    );
    bus.add_le("C0:FF:EE:00:00:02", &[(0x0499, &RUUVI)], &[], -70);
    let mut rx = Lines {
        seen: Vec::new(),
        rx,
    };
    assert_eq!(
        rx.expect("thermo-1", |b| b["temperature"] == 25.06)["body"]["rssi"],
        -60
    );
    rx.expect("ruuvi-1", |b| b["temperature"] == 24.3);
    bus.update(
        "C0:FF:EE:00:00:01",
        &[],
        &[(BTHOME, &[0x40, 0x02, 0x2C, 0x0A, 0x03, 0xBF, 0x13])],
        -58,
    );
    rx.expect("thermo-1", |b| b["temperature"] == 26.04);
    assert!(
        !read_log().contains("StartDiscovery"),
        "passive mode started discovery:\n{}",
        read_log()
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("passive"), "{text}");
    // Metrics: the advertisements decoded and the messages sent are counted.
    let scrape = {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(metrics).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    let value = |name: &str| -> f64 {
        scrape
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing:\n{scrape}"))
    };
    assert!(
        value("edgebridge_ble_advertisements_total ") >= 3.0,
        "{scrape}"
    );
    assert!(value("edgebridge_ble_messages_total ") >= 3.0, "{scrape}");
    assert_eq!(value("edgebridge_up{module=\"bridge-ble\"} "), 1.0);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn passive_scan_without_monitor_support_falls_back_to_active_and_says_why() {
    let bus = Bus::start(true);
    bus.mock_call("AddAdapter", "ss", vec!["hci0".into(), "host".into()]);
    bus.add_le(
        "C0:FF:EE:00:00:01",
        &[],
        &[(BTHOME, &[0x40, 0x02, 0xCA, 0x09, 0x03, 0xBF, 0x13])],
        -60,
    );
    let (mut child, rx, log) = bus.module(&json!({
        "scan": {"mode": "passive"},
        "devices": {"thermo-1": {"address": "C0:FF:EE:00:00:01", "map": "bthome-v2"}}
    }));
    let mut rx = Lines {
        seen: Vec::new(),
        rx,
    };
    rx.expect("thermo-1", |b| b["temperature"] == 25.06);
    let mock_log = std::fs::read_to_string(bus.dir.path().join("mock.log")).unwrap();
    assert!(mock_log.contains("StartDiscovery"), "{mock_log}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("Passive scanning is unavailable") && text.contains("5.56"),
        "{text}"
    );
    let _ = child.kill();
    let _ = child.wait();
}
