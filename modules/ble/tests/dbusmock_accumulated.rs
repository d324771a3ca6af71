//! Devices whose company id changes with every reading (ThermoPro, SensorPush), end to
//! end through btleplug and python-dbusmock's BlueZ. BlueZ accumulates `ManufacturerData`
//! per device (every company id ever heard, each with its latest bytes), so each
//! advertisement's dictionary carries the stale readings too; the module must decode the
//! entry that changed, and never send a stale reading again.
//!
//! Expected values were cross-checked with the parsers Home Assistant uses, fed the same
//! accumulated dictionaries: thermopro-ble 1.1.4 and sensorpush-ble 1.9.0.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the failure report

mod common;

use std::time::{Duration, Instant};

use common::{Bus, Lines};
use serde_json::{Value, json};

const TP: &str = "C0:FF:EE:00:01:01";
const SP: &str = "C0:FF:EE:00:01:02";

/// TP357 readings: (company id, data, temperature, humidity).
const TP_READINGS: [(u16, &[u8], f64, i64); 3] = [
    (0xD7C2, &[0x00, 45, 0x02, 0x2C], 21.5, 45),
    (0xD8C2, &[0x00, 46, 0x02, 0x2C], 21.6, 46),
    (0xE6C2, &[0x00, 50, 0x02, 0x2C], 23.0, 50),
];

/// SensorPush HT.w readings (page 0x04, packed temperature and humidity).
const SP_READINGS: [(u16, &[u8], f64, f64); 3] = [
    (0x6804, &[23, 208, 70], 21.5, 45.0),
    (0xA404, &[89, 44, 73], 21.75, 46.5),
    (0xF404, &[122, 90, 74], 22.0, 47.25),
];

/// Temperatures of the telemetry lines of `device`, in arrival order.
fn temperatures(lines: &[Value], device: &str) -> Vec<f64> {
    lines
        .iter()
        .filter(|l| l["deviceId"] == device && l["output"] == "telemetry")
        .filter_map(|l| l["body"]["temperature"].as_f64())
        .collect()
}

/// Every reading seen, and once a reading was seen no earlier one came back.
fn assert_never_stale(seen: &[f64], readings: &[f64], device: &str) {
    let index = |t: f64| {
        readings
            .iter()
            .position(|r| (r - t).abs() < 1e-9)
            .unwrap_or_else(|| panic!("{device}: unknown reading {t} in {seen:?}"))
    };
    let order: Vec<usize> = seen.iter().map(|t| index(*t)).collect();
    assert!(
        order.windows(2).all(|w| w[0] <= w[1]),
        "{device}: a stale reading was sent again: {seen:?}"
    );
    for (i, r) in readings.iter().enumerate() {
        assert!(
            order.contains(&i),
            "{device}: reading {r} missing in {seen:?}"
        );
    }
}

#[test]
fn changing_company_ids_decode_the_newest_entry_only() {
    let bus = Bus::start(true);
    bus.mock_call("AddAdapter", "ss", vec!["hci0".into(), "host".into()]);
    let (c, d, ..) = TP_READINGS[0];
    bus.add_le_named(TP, "TP357 (2142)", &[(c, d)], &[], -60);
    let (c, d, ..) = SP_READINGS[0];
    bus.add_le_named(SP, "SensorPush HT.w 0CA1", &[(c, d)], &[], -61);
    let (mut child, rx, log) = bus.module(&json!({
        "devices": {
            "tp": {"address": TP, "map": "thermopro"},
            "sp": {"address": SP, "map": "sensorpush"}
        }
    }));
    let mut rx = Lines {
        seen: Vec::new(),
        rx,
    };
    let mut tp_dict: Vec<(u16, &[u8])> = Vec::new();
    let mut sp_dict: Vec<(u16, &[u8])> = Vec::new();
    for step in 0..3 {
        let (c, d, t, h) = TP_READINGS[step];
        tp_dict.push((c, d));
        let (sc, sd, st, sh) = SP_READINGS[step];
        sp_dict.push((sc, sd));
        if step > 0 {
            // BlueZ's dictionary: the stale entries and the new one.
            bus.update(TP, &tp_dict, &[], -60 - step as i16);
            bus.update(SP, &sp_dict, &[], -61 - step as i16);
        }
        let line = rx.expect("tp", |b| b["temperature"] == t);
        assert_eq!(line["body"]["humidity"], h, "{line}");
        assert_eq!(line["body"]["battery"], 100, "{line}");
        assert_eq!(line["properties"]["format"], "thermopro", "{line}");
        let line = rx.expect("sp", |b| b["temperature"] == st);
        assert_eq!(line["body"]["humidity"], sh, "{line}");
        assert_eq!(line["properties"]["format"], "sensorpush", "{line}");
    }
    // The same accumulated dictionaries again with another RSSI (BlueZ re-announces the
    // device): nothing stale may come out of it.
    bus.update(TP, &tp_dict, &[], -75);
    bus.update(SP, &sp_dict, &[], -76);
    let deadline = Instant::now() + Duration::from_secs(3);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.rx.recv_timeout(left) {
            Ok(line) => rx.seen.push(line),
            Err(_) => break,
        }
    }
    let tp_seen = temperatures(&rx.seen, "tp");
    let sp_seen = temperatures(&rx.seen, "sp");
    assert_never_stale(&tp_seen, &TP_READINGS.map(|r| r.2), "tp");
    assert_never_stale(&sp_seen, &SP_READINGS.map(|r| r.2), "sp");
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(log).unwrap_or_default();
    assert!(
        !log.contains("several manufacturer data entries"),
        "a decoder was handed the stale entries: {log}"
    );
}
