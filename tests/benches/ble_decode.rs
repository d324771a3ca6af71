//! Benchmark (not a test): BLE advertisements decoded per second on one core, for a mix of
//! BTHome v2 (plain and encrypted), Ruuvi RAWv2, pvvx, iBeacon and Eddystone payloads.
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
}
