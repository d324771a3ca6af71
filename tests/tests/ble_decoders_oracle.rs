//! Our BLE advertisement decoders against independent decoders we did not write
//! (bthome-ble and ruuvitag-ble from PyPI, used by Home Assistant; bleparser from
//! ble_monitor for pvvx, ATC1441 and iBeacon) on the same bytes,
//! including a few hundred randomly generated valid payloads.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::time::Duration;

use bridge_ble::adverts::{decode_bthome, decode_ibeacon, decode_pvvx, decode_ruuvi};
use bridge_e2e::run_python;
use serde_json::{Value, json};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// BTHome numeric objects both decoders handle: (id, size).
const NUMERIC: &[(u8, usize)] = &[
    (0x01, 1),
    (0x02, 2),
    (0x03, 2),
    (0x04, 3),
    (0x05, 3),
    (0x06, 2),
    (0x07, 2),
    (0x08, 2),
    (0x09, 1),
    (0x0A, 3),
    (0x0B, 3),
    (0x0C, 2),
    (0x0D, 2),
    (0x0E, 2),
    (0x12, 2),
    (0x13, 2),
    (0x14, 2),
    (0x2E, 1),
    (0x2F, 1),
    (0x3D, 2),
    (0x3E, 4),
    (0x3F, 2),
    (0x40, 2),
    (0x41, 2),
    (0x42, 3),
    (0x43, 2),
    (0x44, 2),
    (0x45, 2),
    (0x46, 1),
    (0x47, 2),
    (0x48, 2),
    (0x49, 2),
    (0x4A, 2),
    (0x4B, 3),
    (0x4C, 4),
    (0x4D, 4),
    (0x4E, 4),
    (0x4F, 4),
    (0x51, 2),
    (0x52, 2),
    (0x55, 4),
    (0x56, 2),
    (0x57, 1),
    (0x58, 1),
    (0x59, 1),
    (0x5A, 2),
    (0x5B, 4),
    (0x5C, 4),
    (0x5D, 2),
    (0x5E, 2),
    (0x5F, 2),
    (0x60, 1),
    (0x61, 2),
];

/// Objects Home Assistant reports under one key.
fn kind(id: u8) -> u8 {
    match id {
        0x09 | 0x3D | 0x3E | 0x59 | 0x5A | 0x5B => 0x09,
        0x02 | 0x45 | 0x57 | 0x58 => 0x02,
        0x03 | 0x2E => 0x03,
        0x14 | 0x2F => 0x14,
        0x06 | 0x07 => 0x06,
        0x0A | 0x4D => 0x0A,
        0x0B | 0x5C => 0x0B,
        0x0C | 0x4A => 0x0C,
        0x40 | 0x41 => 0x40,
        0x4B | 0x4C => 0x4B,
        0x47 | 0x48 | 0x4E => 0x47,
        0x43 | 0x5D => 0x43,
        other => other,
    }
}

fn numbers(values: impl Iterator<Item = Value>) -> Vec<f64> {
    let mut v: Vec<f64> = values
        .filter_map(|x| x.as_f64())
        .map(|x| (x * 1000.0).round() / 1000.0)
        .collect();
    v.sort_by(f64::total_cmp);
    v
}

fn mac_text(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test]
async fn advert_decoders_match_independent_decoders() {
    let mut rng = Rng(0x1234_5678_9ABC_DEF1);
    let mac = [0x54, 0x48, 0xE6, 0x8F, 0x80, 0xA5];
    let mut cases = Vec::new();
    let mut ours = Vec::new();
    // Random BTHome payloads of 1–4 distinct numeric objects in ascending id order.
    for _ in 0..300 {
        let mut ids: Vec<(u8, usize)> = (0..1 + rng.next() % 4)
            .map(|_| NUMERIC[(rng.next() as usize) % NUMERIC.len()])
            .collect();
        ids.sort_unstable();
        ids.dedup_by_key(|(id, _)| *id);
        // Home Assistant keys values by kind, so two objects of one kind (e.g. 0x0A and
        // 0x4D energy) collapse into one there; keep one per kind.
        let mut kinds = std::collections::BTreeSet::new();
        ids.retain(|(id, _)| kinds.insert(kind(*id)));
        let mut payload = vec![0x40];
        for (id, size) in ids {
            payload.push(id);
            payload.extend((0..size).map(|_| rng.next() as u8));
        }
        let decoded = decode_bthome(&payload, mac, None).unwrap();
        ours.push(numbers(
            decoded
                .values
                .into_iter()
                .filter(|(k, _)| k != "triggerBased" && k != "encrypted")
                .map(|(_, v)| v),
        ));
        cases.push(json!({"format": "bthome", "mac": "54:48:E6:8F:80:A5", "hex": hex(&payload)}));
    }
    // Random Ruuvi RAWv2 payloads (valid ranges, no "not available" markers).
    let mut ruuvi = Vec::new();
    for _ in 0..100 {
        let mut p = vec![5u8];
        p.extend((0..23).map(|_| rng.next() as u8));
        p[1] &= 0x3F; // temperature in range
        p[3] &= 0x7F; // humidity ≤ 81.9 %
        p[5] &= 0x7F;
        p[13] = 0x80 | (p[13] & 0x3F);
        p[15] &= 0x7F;
        let d = decode_ruuvi(&p).unwrap();
        ruuvi.push(d.values);
        cases.push(json!({"format": "ruuvi", "mac": "CB:B8:33:4C:88:4F", "hex": hex(&p)}));
    }
    // Random pvvx custom-format payloads (15 bytes, little endian, MAC reversed).
    let mut pvvx = Vec::new();
    for _ in 0..100 {
        let mac: Vec<u8> = (0..6).map(|_| rng.next() as u8).collect();
        let mut p: Vec<u8> = mac.iter().rev().copied().collect();
        let temp = (rng.next() % 8000) as i16 - 2000;
        let hum = (rng.next() % 10000) as u16;
        let mv = 2000 + (rng.next() % 1500) as u16;
        p.extend_from_slice(&temp.to_le_bytes());
        p.extend_from_slice(&hum.to_le_bytes());
        p.extend_from_slice(&mv.to_le_bytes());
        p.extend([
            (rng.next() % 101) as u8,
            rng.next() as u8,
            rng.next() as u8 & 0x0F,
        ]);
        pvvx.push(decode_pvvx(&p).unwrap().values);
        cases.push(json!({"format": "pvvx", "mac": mac_text(&mac), "hex": hex(&p)}));
    }
    // Random ATC1441-format payloads (13 bytes, big endian, MAC in order).
    let mut atc = Vec::new();
    for _ in 0..50 {
        let mac: Vec<u8> = (0..6).map(|_| rng.next() as u8).collect();
        let mut p = mac.clone();
        let temp = (rng.next() % 800) as i16 - 200;
        p.extend_from_slice(&temp.to_be_bytes());
        p.extend([(rng.next() % 100) as u8, (rng.next() % 101) as u8]);
        p.extend_from_slice(&(2000 + (rng.next() % 1500) as u16).to_be_bytes());
        p.push(rng.next() as u8);
        atc.push(decode_pvvx(&p).unwrap().values);
        cases.push(json!({"format": "atc1441", "mac": mac_text(&mac), "hex": hex(&p)}));
    }
    // Random iBeacon frames (Apple manufacturer data after the company id).
    let mut beacons = Vec::new();
    for _ in 0..50 {
        let mut p = vec![0x02, 0x15];
        p.extend((0..21).map(|_| rng.next() as u8));
        beacons.push(decode_ibeacon(&p).unwrap().values);
        cases.push(json!({"format": "ibeacon", "mac": "C0:FF:EE:00:00:05", "hex": hex(&p)}));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cases.json");
    std::fs::write(&file, Value::Array(cases).to_string()).unwrap();
    let theirs = run_python(
        "ble_oracle.py",
        &[file.to_str().unwrap()],
        &[],
        Duration::from_secs(120),
    )
    .await
    .unwrap();
    let theirs = theirs.as_array().unwrap();
    for (i, mine) in ours.iter().enumerate() {
        let other = numbers(theirs[i].as_object().unwrap().values().cloned());
        // bthome-ble rounds some values for display (0x58: -13.65 °C shown as -13.6).
        let same = mine.len() == other.len()
            && mine.iter().zip(&other).all(|(a, b)| (a - b).abs() <= 0.051);
        assert!(
            same,
            "BTHome case {i}: ours {mine:?} theirs {other:?} ({})",
            theirs[i]
        );
    }
    for (k, mine) in pvvx.iter().enumerate() {
        let other = &theirs[ours.len() + ruuvi.len() + k];
        assert_eq!(
            mine["temperature"].as_f64(),
            other["temperature"].as_f64(),
            "{mine:?} {other}"
        );
        assert_eq!(
            mine["humidity"].as_f64(),
            other["humidity"].as_f64(),
            "{mine:?} {other}"
        );
        assert_eq!(
            mine["batteryVoltage"].as_f64(),
            other["voltage"].as_f64(),
            "{mine:?} {other}"
        );
        assert_eq!(mine["battery"], other["battery"], "{mine:?} {other}");
        assert_eq!(mine["counter"], other["packet"], "{mine:?} {other}");
    }
    let base = ours.len() + ruuvi.len() + pvvx.len();
    for (k, mine) in atc.iter().enumerate() {
        let other = &theirs[base + k];
        assert_eq!(other["firmware"], "ATC (Atc1441)", "{other}");
        for (a, b) in [
            ("temperature", "temperature"),
            ("humidity", "humidity"),
            ("battery", "battery"),
            ("batteryVoltage", "voltage"),
            ("counter", "packet"),
        ] {
            assert_eq!(mine[a].as_f64(), other[b].as_f64(), "{a}: {mine:?} {other}");
        }
    }
    for (k, mine) in beacons.iter().enumerate() {
        let other = &theirs[base + atc.len() + k];
        assert_eq!(
            mine["uuid"].as_str().map(|u| u.replace('-', "")).as_deref(),
            other["uuid"].as_str(),
            "{mine:?} {other}"
        );
        assert_eq!(mine["major"], other["major"], "{mine:?} {other}");
        assert_eq!(mine["minor"], other["minor"], "{mine:?} {other}");
        assert_eq!(mine["txPower"], other["measured power"], "{mine:?} {other}");
    }
    for (j, mine) in ruuvi.iter().enumerate() {
        let other = &theirs[ours.len() + j];
        let close = |a: f64, b: f64, tol: f64| (a - b).abs() <= tol;
        assert!(
            close(
                mine["temperature"].as_f64().unwrap(),
                other["temperature"].as_f64().unwrap(),
                0.01
            ),
            "{mine:?} {other}"
        );
        assert!(
            close(
                mine["humidity"].as_f64().unwrap(),
                other["humidity"].as_f64().unwrap(),
                0.01
            ),
            "{mine:?} {other}"
        );
        assert!(
            close(
                mine["pressure"].as_f64().unwrap(),
                other["pressure"].as_f64().unwrap(),
                0.01
            ),
            "{mine:?} {other}"
        );
        assert!(
            close(
                mine["batteryVoltage"].as_f64().unwrap() * 1000.0,
                other["voltage"].as_f64().unwrap(),
                0.5
            ),
            "{mine:?} {other}"
        );
        assert_eq!(
            mine["movementCounter"], other["movement_counter"],
            "{mine:?} {other}"
        );
        // They report acceleration in m/s² (mG × 9.80665 / 1000, two decimals).
        let ax = mine["accelerationX"].as_f64().unwrap() * 9.806_65 / 1000.0;
        assert!(
            close(ax, other["acceleration_x"].as_f64().unwrap(), 0.006),
            "{mine:?} {other}"
        );
    }
}
