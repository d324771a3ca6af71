//! Benchmark (not a test): advertisements decoded per second on one core for the
//! ThermoPro, SensorPush, BlueMaestro, Mopeka, Victron (AES-CTR), Aranet and Tilt
//! decoders, each on a realistic payload in turn.
//!
//! `cargo bench -p bridge-e2e --bench ble_decode_more`

#![allow(clippy::unwrap_used, clippy::print_stdout)] // a benchmark prints its figures

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

use bridge_ble::adverts::{
    Advert, DecodeFn, SENSORPUSH_V2_UUID, decode_aranet, decode_bluemaestro, decode_mopeka,
    decode_sensorpush, decode_thermopro, decode_tilt, decode_victron, uuid16,
};
use bridge_e2e::procstat;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// One format's advertisement and key (`U`: the advert's UUID type, inferred).
struct Case<'k, U> {
    format: &'static str,
    decode: DecodeFn,
    name: Option<&'static str>,
    company: u16,
    data: Vec<u8>,
    services: Vec<U>,
    key: Option<&'k [u8]>,
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let victron_key = hex("aff4d0995b7d1e176c0c33ecb9e70dcd");
    let cases = [
        Case {
            format: "thermopro",
            decode: decode_thermopro,
            name: Some("TP357 (2142)"),
            company: 0xF1C2,
            data: hex("001d022c"),
            services: vec![],
            key: None,
        },
        Case {
            format: "sensorpush",
            decode: decode_sensorpush,
            name: Some("SensorPush HT.w 0CA1"),
            company: 39428,
            data: hex("c9a546"),
            services: vec![SENSORPUSH_V2_UUID],
            key: None,
        },
        Case {
            format: "bluemaestro",
            decode: decode_bluemaestro,
            name: None,
            company: 0x0133,
            data: hex("17640e10000200f201f200830100010d02ab00f2"),
            services: vec![],
            key: None,
        },
        Case {
            format: "mopeka",
            decode: decode_mopeka,
            name: None,
            company: 0x0059,
            data: hex("0c60383c832aea8c31f8"),
            services: vec![uuid16(0xFEE5)],
            key: None,
        },
        Case {
            format: "victron",
            decode: decode_victron,
            name: None,
            company: 0x02E1,
            data: hex("100289a302b040af925d09a4d89aa0128bdef48c6298a9"),
            services: vec![],
            key: Some(&victron_key),
        },
        Case {
            format: "aranet",
            decode: decode_aranet,
            name: Some("Aranet4 12345"),
            company: 0x0702,
            data: hex("210503010005000143049f018b27350c023c00100055"),
            services: vec![],
            key: None,
        },
        Case {
            format: "tilt",
            decode: decode_tilt,
            name: None,
            company: 0x004C,
            data: hex("0215a495bb20c5b14b44b5121370f02d74de0040041c50"),
            services: vec![],
            key: None,
        },
    ];
    let service_data = HashMap::new();
    let maps: Vec<HashMap<u16, Vec<u8>>> = cases
        .iter()
        .map(|c| HashMap::from([(c.company, c.data.clone())]))
        .collect();
    let adverts: Vec<Advert<'_>> = cases
        .iter()
        .zip(&maps)
        .map(|(c, m)| Advert {
            address: [1, 2, 3, 4, 5, 6],
            local_name: c.name,
            manufacturer_data: m,
            service_data: &service_data,
            services: &c.services,
        })
        .collect();
    let n = 200_000u64;
    println!("ble_decode_more: {n} advertisements per format");
    let mut total = 0.0;
    for (c, ad) in cases.iter().zip(&adverts) {
        let t0 = Instant::now();
        for _ in 0..n {
            black_box((c.decode)(black_box(ad), c.key).unwrap());
        }
        let secs = t0.elapsed().as_secs_f64();
        total += secs;
        println!("  {:<12} {:>10.0} decoded/s", c.format, n as f64 / secs);
    }
    let cpu0 = procstat::cpu_seconds();
    let t0 = Instant::now();
    for i in 0..n {
        let k = (i % cases.len() as u64) as usize;
        black_box((cases[k].decode)(black_box(&adverts[k]), cases[k].key).unwrap());
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = procstat::cpu_seconds() - cpu0;
    println!(
        "  mix          {:>10.0} decoded/s on one core, {:.2} µs CPU per advertisement (sum of per-format runs {:.2} s)",
        n as f64 / secs,
        cpu * 1e6 / n as f64,
        total
    );
}
