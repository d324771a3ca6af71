//! Benchmark (not a test): BLE advertisements decoded per second on one core, for a mix of
//! BTHome v2 (plain and encrypted), Ruuvi RAWv2, pvvx, iBeacon and Eddystone payloads, then
//! through the format registry (as the scanner decodes) for the stock-firmware formats:
//! MiBeacon (plain and AES-CCM encrypted), Govee, SwitchBot, Inkbird, Qingping, ThermoBeacon.
//!
//! `cargo bench -p bridge-e2e --bench ble_decode`

#![allow(clippy::unwrap_used, clippy::print_stdout)] // a benchmark prints its figures

use std::hint::black_box;
use std::time::Instant;

use bridge_ble::adverts::{
    decode_bthome, decode_eddystone, decode_ibeacon, decode_pvvx, decode_ruuvi,
};
use bridge_e2e::procstat;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let mac = [0x54, 0x48, 0xE6, 0x8F, 0x80, 0xA5];
    let bthome = [0x40, 0x01, 0x5D, 0x02, 0xCA, 0x09, 0x03, 0xBF, 0x13];
    let ruuvi = [
        0x05, 0x12, 0xFC, 0x53, 0x94, 0xC3, 0x7C, 0x00, 0x04, 0xFF, 0xFC, 0x04, 0x0C, 0xAC, 0x36,
        0x42, 0x00, 0xCD, 0xCB, 0xB8, 0x33, 0x4C, 0x88, 0x4F,
    ];
    let pvvx = [
        0x56, 0x34, 0x12, 0x38, 0xC1, 0xA4, 0x69, 0x08, 0xD7, 0x11, 0x86, 0x0B, 80, 7, 5,
    ];
    let mut ibeacon = vec![0x02, 0x15];
    ibeacon.extend_from_slice(&[
        0xE2, 0xC5, 0x6D, 0xB5, 0xDF, 0xFB, 0x48, 0xD2, 0xB0, 0x60, 0xD0, 0xF5, 0xA7, 0x10, 0x96,
        0xE0, 0, 1, 0, 42, 0xC5,
    ]);
    let tlm = [
        0x20, 0x00, 0x0B, 0xB8, 0x15, 0x80, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x64,
    ];
    let n = 1_000_000u64;
    let cpu0 = procstat::cpu_seconds();
    let t0 = Instant::now();
    for i in 0..n {
        let r = match i % 5 {
            0 => decode_bthome(black_box(&bthome), mac, None),
            1 => decode_ruuvi(black_box(&ruuvi)),
            2 => decode_pvvx(black_box(&pvvx)),
            3 => decode_ibeacon(black_box(&ibeacon)),
            _ => decode_eddystone(black_box(&tlm)),
        };
        black_box(r.unwrap());
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = procstat::cpu_seconds() - cpu0;
    println!("ble_decode: {n} advertisements (mix of 5 formats)");
    println!(
        "  {:.0} decoded/s on one core, {:.2} µs CPU per advertisement",
        n as f64 / secs,
        cpu * 1e6 / n as f64
    );
    registry_mix();
}

/// (format, local name, manufacturer data, service data by 16-bit UUID, key)
type BenchCase<'k> = (
    &'static str,
    Option<&'static str>,
    Vec<(u16, Vec<u8>)>,
    Vec<(u16, Vec<u8>)>,
    Option<&'k [u8]>,
);

/// Stock formats through the registry, each advertisement as the scanner sees it.
fn registry_mix() {
    use std::collections::HashMap;

    use bridge_ble::adverts::{Advert, format, uuid16, xiaomi};
    let key = [7u8; 16];
    let mac = [0xA4, 0xC1, 0x38, 0x12, 0x34, 0x56];
    let enc = xiaomi::encrypt_v5(
        mac,
        0x055B,
        7,
        [1, 2, 3],
        &key,
        &[0x04, 0x10, 0x02, 0xD8, 0x00],
    );
    let plain_mi = vec![
        0x50, 0x20, 0xAA, 0x01, 0xDA, 0x56, 0x34, 0x12, 0x38, 0xC1, 0xA4, 0x0D, 0x10, 0x04, 0xFE,
        0x00, 0xAF, 0x01,
    ];
    let mut tb = vec![0u8; 18];
    tb[8..10].copy_from_slice(&2950u16.to_le_bytes());
    let cases: Vec<BenchCase<'_>> = vec![
        (
            "xiaomi-mibeacon",
            None,
            vec![],
            vec![(0xFE95, plain_mi)],
            None,
        ),
        (
            "xiaomi-mibeacon",
            None,
            vec![],
            vec![(0xFE95, enc)],
            Some(&key),
        ),
        (
            "govee",
            Some("GVH5075_1234"),
            vec![(0xEC88, vec![0, 3, 0x88, 0x6F, 0x64, 0])],
            vec![],
            None,
        ),
        (
            "switchbot",
            None,
            vec![],
            vec![(0xFD3D, vec![0x54, 0, 0x62, 3, 0x99, 0x2D])],
            None,
        ),
        (
            "inkbird",
            Some("sps"),
            vec![(0x0A03, vec![0x71, 0x16, 0, 0x3F, 0x7E, 100, 8])],
            vec![],
            None,
        ),
        (
            "qingping",
            None,
            vec![],
            vec![(
                0xFDCD,
                vec![8, 0x18, 1, 2, 3, 4, 5, 6, 1, 4, 0xD8, 0, 0xE3, 1, 2, 1, 80],
            )],
            None,
        ),
        ("thermobeacon", None, vec![(0x0011, tb)], vec![], None),
    ];
    let prepared: Vec<_> = cases
        .into_iter()
        .map(|(f, name, mfg, svc, key)| {
            let mfg: HashMap<u16, Vec<u8>> = mfg.into_iter().collect();
            let svc: HashMap<_, Vec<u8>> = svc.into_iter().map(|(u, d)| (uuid16(u), d)).collect();
            (format(f).unwrap(), name, mfg, svc, key)
        })
        .collect();
    let n = 1_000_000u64;
    let cpu0 = procstat::cpu_seconds();
    let t0 = Instant::now();
    for i in 0..n {
        let (f, name, mfg, svc, key) = &prepared[i as usize % prepared.len()];
        let ad = Advert {
            address: mac,
            local_name: *name,
            manufacturer_data: mfg,
            service_data: svc,
            services: &[],
        };
        black_box((f.decode)(black_box(&ad), *key).unwrap());
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = procstat::cpu_seconds() - cpu0;
    println!(
        "ble_decode: {n} advertisements through the registry (7 stock-format layouts, 1 in 7 AES-CCM)"
    );
    println!(
        "  {:.0} decoded/s on one core, {:.2} µs CPU per advertisement",
        n as f64 / secs,
        cpu * 1e6 / n as f64
    );
}
