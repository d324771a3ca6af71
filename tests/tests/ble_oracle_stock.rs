//! Our stock-firmware decoders (Xiaomi MiBeacon, Govee, SwitchBot, Inkbird, Qingping,
//! ThermoBeacon) against the parsers their users trust, on the same advertisements:
//! Home Assistant's xiaomi-ble, govee-ble, inkbird-ble, qingping-ble and thermobeacon-ble,
//! PySwitchbot's `parse_advertisement_data`, and the Theengs decoder where it knows the
//! model. Payloads are generated in every layout each format has (and MiBeacon v5 frames
//! encrypted by the Python side with `cryptography`'s AES-CCM, decrypted by both); every
//! field the oracle reports must be ours too, equal within the oracle's rounding. The
//! agreement table is printed (`--nocapture`).

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bridge_ble::adverts::{self, Advert, DecodeError, Decoded};
use bridge_e2e::run_python;
use serde_json::{Map, Value, json};

#[path = "ble_oracle_stock/xiaomi.rs"]
mod xiaomi;
use xiaomi::{xiaomi_cases, xiaomi_legacy_cases, xiaomi_vectors};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn unhex(t: &str) -> Vec<u8> {
    (0..t.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&t[i..i + 2], 16).unwrap())
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// One advertisement and how to hand it to both sides.
#[derive(Default)]
struct Case {
    format: &'static str,
    mac: [u8; 6],
    name: Option<String>,
    mfg: Vec<(u16, Vec<u8>)>,
    svc: Vec<(u16, Vec<u8>)>,
    services: Vec<String>,
    /// Key the frame is encrypted with (and the oracle decrypts with).
    key: Option<[u8; 16]>,
    /// Key we decrypt with, when it differs (a wrong key).
    our_key: Option<[u8; 16]>,
    encrypt: Option<Value>,
    /// Largest difference allowed per field (default 1e-6).
    tolerance: BTreeMap<&'static str, f64>,
    /// A test vector of the oracle's own suite: it may carry objects we do not decode.
    vector: bool,
    /// MiBeacon v2/v3 legacy encryption: the keys above are widened 12-byte keys, which
    /// the oracle is given in their 12-byte form.
    legacy: bool,
}

/// A key as the oracle takes it: a widened legacy key without its four fixed bytes.
fn key_text(key: &[u8; 16], legacy: bool) -> String {
    if legacy {
        hex(&[&key[..6], &key[10..]].concat())
    } else {
        hex(key)
    }
}

impl Case {
    fn json(&self) -> Value {
        let mac = self
            .mac
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":");
        let mut v = json!({
            "format": self.format, "mac": mac, "name": self.name,
            "mfg": self.mfg.iter().map(|(c, d)| (c.to_string(), json!(hex(d)))).collect::<Map<_, _>>(),
            "svc": self.svc.iter().map(|(u, d)| (format!("{u:04x}"), json!(hex(d)))).collect::<Map<_, _>>(),
            "services": self.services,
        });
        if let Some(k) = self.key {
            v["key"] = json!(key_text(&k, self.legacy));
        }
        if let Some(e) = &self.encrypt {
            v["encrypt"] = e.clone();
            if let Some(k) = self.our_key {
                v["decryptKey"] = json!(key_text(&k, self.legacy));
            }
        }
        v
    }

    fn decode(&self, frame: Option<&str>) -> Result<Decoded, DecodeError> {
        let mfg: HashMap<u16, Vec<u8>> = self.mfg.iter().cloned().collect();
        let mut svc: HashMap<uuid::Uuid, Vec<u8>> = self
            .svc
            .iter()
            .map(|(u, d)| (adverts::uuid16(*u), d.clone()))
            .collect();
        if let Some(f) = frame {
            svc.insert(adverts::uuid16(0xFE95), unhex(f));
        }
        let services: Vec<uuid::Uuid> = self.services.iter().map(|s| s.parse().unwrap()).collect();
        let ad = Advert {
            address: self.mac,
            local_name: self.name.as_deref(),
            manufacturer_data: &mfg,
            service_data: &svc,
            services: &services,
        };
        let key = self.our_key.or(self.key);
        (adverts::format(self.format).unwrap().decode)(&ad, key.as_ref().map(|k| k.as_slice()))
    }
}

/// A parser's own test vectors (advertisements from its test suite), kept in
/// `tests/python/vectors/<file>.json`.
fn library_vectors(format: &'static str, file: &str, out: &mut Vec<Case>) {
    let path = format!("{}/python/vectors/{file}.json", env!("CARGO_MANIFEST_DIR"));
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    'vectors: for v in doc["vectors"].as_array().unwrap() {
        // macOS vectors carry a CoreBluetooth UUID instead of an address.
        let mac: [u8; 6] = v["address"]
            .as_str()
            .and_then(|a| {
                let b: Vec<u8> = a
                    .split(':')
                    .filter_map(|x| u8::from_str_radix(x, 16).ok())
                    .collect();
                b.try_into().ok()
            })
            .unwrap_or([0xA4, 0xC1, 0x38, 0x00, 0x00, 0x01]);
        let mut svc = Vec::new();
        for (u, d) in v["svc"].as_object().unwrap() {
            let short = u
                .strip_prefix("0000")
                .and_then(|r| r.strip_suffix("-0000-1000-8000-00805f9b34fb"))
                .and_then(|h| u16::from_str_radix(h, 16).ok());
            match short {
                Some(short) => svc.push((short, unhex(d.as_str().unwrap()))),
                None => continue 'vectors,
            }
        }
        out.push(Case {
            format,
            mac,
            name: v["name"]
                .as_str()
                .filter(|n| !n.is_empty())
                .map(str::to_owned),
            mfg: v["mfg"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(c, d)| (c.parse().unwrap(), unhex(d.as_str().unwrap())))
                .collect(),
            svc,
            services: v["services"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect(),
            tolerance: BTreeMap::from([
                ("battery", 1.0),
                ("batteryVoltage", 0.0051),
                ("temperature", 0.0051),
                ("humidity", 0.0051),
            ]),
            vector: true,
            ..Case::default()
        });
    }
}

fn packed(rng: &mut Rng, error_ok: bool) -> Vec<u8> {
    let tenths = rng.below(1500) as i64 - 450;
    let hum = rng.below(1000) as u32;
    let mut v = (tenths.unsigned_abs() as u32) * 1000 + hum;
    if tenths < 0 {
        v |= 0x80_0000;
    }
    let mut b = v.to_be_bytes()[1..].to_vec();
    let err = if error_ok && rng.below(10) == 0 {
        0x80
    } else {
        0
    };
    b.push(rng.below(101) as u8 | err);
    b
}

fn le_reading(rng: &mut Rng) -> Vec<u8> {
    let mut b = ((rng.below(8000) as i16) - 2000).to_le_bytes().to_vec();
    b.extend((rng.below(10000) as u16).to_le_bytes());
    b.push(rng.below(101) as u8);
    b
}

fn govee_cases(rng: &mut Rng, out: &mut Vec<Case>) {
    for i in 0..160 {
        let suffix = format!("{:04X}", rng.below(0x10000));
        let (name, company, data): (String, u16, Vec<u8>) = match i % 11 {
            0 => (
                format!("GVH5075_{suffix}"),
                0xEC88,
                [vec![0], packed(rng, true), vec![0]].concat(),
            ),
            1 => (
                format!("GVH5072_{suffix}"),
                0xEC88,
                [vec![0], packed(rng, true), vec![0]].concat(),
            ),
            2 => (
                format!("Govee_H5101_{suffix}"),
                0x0001,
                [vec![1, 1], packed(rng, true)].concat(),
            ),
            3 => (
                format!("GVH5177_{suffix}"),
                0x0001,
                [vec![1, 1], packed(rng, true)].concat(),
            ),
            4 => (
                format!("GVH5102_{suffix}"),
                0x0001,
                [vec![1, 1], packed(rng, true), vec![2, 0]].concat(),
            ),
            5 => (
                format!("Govee_H5074_{suffix}"),
                0xEC88,
                [vec![0], le_reading(rng), vec![2]].concat(),
            ),
            6 => (
                format!("GVH5052_{suffix}"),
                0xEC88,
                [vec![0], le_reading(rng), vec![0, 0, 0]].concat(),
            ),
            7 => (
                format!("B5178{suffix}"),
                0x0001,
                [
                    vec![1, 1, rng.below(2) as u8],
                    packed(rng, true),
                    vec![0, 0],
                ]
                .concat(),
            ),
            8 => (
                format!("GVH5179_{suffix}"),
                0x8801,
                [vec![0, 0, 0, 0], le_reading(rng)].concat(),
            ),
            9 => {
                let mut d = rng.bytes(8);
                d.extend(((rng.below(30000) as i16) - 2000).to_be_bytes());
                d.extend((rng.below(30000) as i16).to_be_bytes());
                d.push(0);
                d.extend((rng.below(30000) as i16).to_be_bytes());
                d.extend((rng.below(30000) as i16).to_be_bytes());
                (format!("GVH5182_{suffix}"), 0x2730, d)
            }
            _ => {
                let mut d = rng.bytes(8);
                d.extend((rng.below(30000) as i16).to_be_bytes());
                d.extend((rng.below(30000) as i16).to_be_bytes());
                d.extend(rng.bytes(2));
                (format!("GVH5181_{suffix}"), 0xF861, d)
            }
        };
        let mut mac = [0xA4, 0xC1, 0x38, 0, 0, 0];
        mac[3..].copy_from_slice(&rng.bytes(3));
        out.push(Case {
            format: "govee",
            mac,
            name: Some(name),
            mfg: vec![(company, data)],
            ..Case::default()
        });
    }
}

fn switchbot_cases(rng: &mut Rng, out: &mut Vec<Case>) {
    for i in 0..150 {
        let mut mac = [0xC0, 0xFF, 0xEE, 0, 0, 0];
        mac[3..].copy_from_slice(&rng.bytes(3));
        let reading = |rng: &mut Rng| {
            vec![
                (rng.below(10) as u8) | (rng.below(16) as u8) << 4,
                rng.below(70) as u8 | (rng.below(2) as u8) << 7,
                rng.below(100) as u8 | (rng.below(2) as u8) << 7,
            ]
        };
        let mut mfg = Vec::new();
        let svc: Vec<u8> = match i % 9 {
            t @ 0..=3 => {
                let ty = [b'T', b'i', b'w', 0x14][t];
                let mut s = vec![ty, rng.next() as u8, rng.below(101) as u8];
                s.extend(reading(rng));
                s
            }
            4 => {
                let mut m = mac.to_vec();
                m.extend(rng.bytes(2));
                m.extend(reading(rng));
                m.extend(rng.bytes(2));
                m.extend((400 + rng.below(3000) as u16).to_be_bytes());
                mfg.push((0x0969, m));
                vec![b'5', 0, rng.below(101) as u8]
            }
            5 | 6 => {
                let s = [
                    vec![
                        b'd',
                        rng.next() as u8,
                        rng.below(101) as u8,
                        rng.next() as u8,
                    ],
                    rng.bytes(4),
                    vec![rng.next() as u8],
                ]
                .concat();
                if i % 9 == 6 {
                    mfg.push((0x0969, [mac.to_vec(), rng.bytes(7)].concat()));
                }
                s
            }
            7 => {
                if rng.below(2) == 0 {
                    mfg.push((0x0969, [mac.to_vec(), rng.bytes(2)].concat()));
                }
                vec![
                    b's',
                    rng.next() as u8,
                    rng.below(101) as u8,
                    0,
                    0,
                    rng.next() as u8,
                ]
            }
            _ => {
                let mut m = mac.to_vec();
                m.push(0);
                m.push([0x80, 0x00][rng.below(2) as usize]);
                m.push(0);
                m.push(rng.below(100) as u8);
                m.extend((rng.below(30000) as u16).to_be_bytes());
                mfg.push((0x0969, m));
                vec![[b'g', b'j'][rng.below(2) as usize], 0, 0]
            }
        };
        out.push(Case {
            format: "switchbot",
            mac,
            mfg,
            svc: vec![(0xFD3D, svc)],
            ..Case::default()
        });
    }
}

fn inkbird_cases(rng: &mut Rng, out: &mut Vec<Case>) {
    for i in 0..120 {
        let (name, data): (&str, Vec<u8>) = match i % 6 {
            0 | 1 => {
                let mut d = ((rng.below(8000) as i16) - 2000).to_le_bytes().to_vec();
                d.extend((rng.below(10001) as u16).to_le_bytes());
                d.extend(rng.bytes(3));
                d.push(rng.below(101) as u8);
                d.push(rng.next() as u8);
                (if i % 6 == 0 { "sps" } else { "tps" }, d)
            }
            2 => {
                let mut d = rng.bytes(6);
                d.extend(((rng.below(800) as i16) - 200).to_le_bytes());
                d.extend((rng.below(1001) as u16).to_le_bytes());
                d.push(rng.below(101) as u8);
                d.extend(rng.bytes(7));
                ("ith-11-b", d)
            }
            n => {
                let probes = [1, 2, 4, 6][n - 2];
                let mut d = rng.bytes(10);
                for _ in 0..probes {
                    let t: i16 = if rng.below(5) == 0 {
                        -1
                    } else {
                        (rng.below(3000) as i16) - 100
                    };
                    d.extend(t.to_le_bytes());
                }
                ("iBBQ", d)
            }
        };
        let company = u16::from_le_bytes([data[0], data[1]]);
        let mut mac = [0x49, 0x22, 0x05, 0, 0, 0];
        mac[3..].copy_from_slice(&rng.bytes(3));
        out.push(Case {
            format: "inkbird",
            mac,
            name: Some(name.into()),
            mfg: vec![(company, data[2..].to_vec())],
            services: vec!["0000fff0-0000-1000-8000-00805f9b34fb".into()],
            ..Case::default()
        });
    }
}

fn qingping_cases(rng: &mut Rng, out: &mut Vec<Case>) {
    let types = [
        0x01u8, 0x07, 0x09, 0x0E, 0x10, 0x12, 0x16, 0x18, 0x33, 0x4F, 0x52,
    ];
    for _ in 0..120 {
        let ty = types[rng.below(types.len() as u64) as usize];
        let mut mac = [0x58, 0x2D, 0x34, 0, 0, 0];
        mac[3..].copy_from_slice(&rng.bytes(3));
        let mut d = vec![if rng.below(4) == 0 { 0x48 } else { 0x08 }, ty];
        d.extend(mac.iter().rev());
        for _ in 0..1 + rng.below(3) {
            match rng.below(8) {
                0 => {
                    d.extend([0x01, 4]);
                    d.extend(((rng.below(800) as i16) - 200).to_le_bytes());
                    d.extend((rng.below(1000) as u16).to_le_bytes());
                }
                1 => d.extend([0x02, 1, [rng.below(101) as u8, 0xFF][rng.below(2) as usize]]),
                2 => {
                    d.extend([0x07, 2]);
                    d.extend((9000 + rng.below(2000) as u16).to_le_bytes());
                }
                3 => {
                    d.extend([0x12, 4]);
                    d.extend(rng.bytes(4));
                }
                4 => {
                    d.extend([0x13, 2]);
                    d.extend((400 + rng.below(3000) as u16).to_le_bytes());
                }
                5 => {
                    d.extend([0x08, 4, rng.below(2) as u8]);
                    d.extend(rng.bytes(3));
                }
                6 => {
                    d.extend([0x09, 4]);
                    d.extend((rng.below(100_000) as u32).to_le_bytes());
                }
                _ => d.extend([0x04, 1, rng.below(3) as u8]),
            }
        }
        out.push(Case {
            format: "qingping",
            mac,
            svc: vec![(0xFDCD, d)],
            ..Case::default()
        });
    }
}

fn thermobeacon_cases(rng: &mut Rng, out: &mut Vec<Case>) {
    let types = [0x10u16, 0x11, 0x14, 0x15, 0x18, 0x1B, 0x30];
    for _ in 0..110 {
        let mut v = rng.bytes(18);
        v[1] &= 0x80;
        v[8..10].copy_from_slice(&(2300 + rng.below(1000) as u16).to_le_bytes());
        v[10..12].copy_from_slice(&((rng.below(1900) as i16) - 300).to_le_bytes());
        v[12..14].copy_from_slice(&(rng.below(1601) as u16).to_le_bytes());
        let mut mac = [0x82, 0x6E, 0, 0, 0, 0];
        mac[2..].copy_from_slice(&rng.bytes(4));
        out.push(Case {
            format: "thermobeacon",
            mac,
            mfg: vec![(types[rng.below(7) as usize], v)],
            services: vec!["0000fff0-0000-1000-8000-00805f9b34fb".into()],
            // Home Assistant rounds to 2 decimals and battery % to whole (half to even).
            tolerance: BTreeMap::from([
                ("battery", 1.0),
                ("batteryVoltage", 0.0051),
                ("temperature", 0.0051),
                ("humidity", 0.0051),
            ]),
            ..Case::default()
        });
    }
}

/// Compares the oracle's fields with ours: (fields compared, mismatches).
fn compare(
    case: &Case,
    ours: &BTreeMap<String, Value>,
    theirs: &Map<String, Value>,
) -> (usize, Vec<String>) {
    let mut bad = Vec::new();
    for (k, want) in theirs {
        let tol = case.tolerance.get(k.as_str()).copied().unwrap_or(1e-6);
        let ok = match (ours.get(k), want) {
            (Some(Value::Bool(a)), Value::Bool(b)) => a == b,
            (Some(a), b) if a.is_number() && b.is_number() => {
                (a.as_f64().unwrap() - b.as_f64().unwrap()).abs() <= tol
            }
            _ => false,
        };
        if !ok {
            bad.push(format!("{k}: ours {:?}, theirs {want}", ours.get(k)));
        }
    }
    (theirs.len(), bad)
}

#[derive(Default)]
struct Row {
    payloads: usize,
    fields: usize,
    theengs_payloads: usize,
    theengs_fields: usize,
    mismatches: usize,
    encrypted: usize,
    vectors: usize,
    not_decoded: usize,
    /// Wrong-key legacy frames the oracle took values from (garbage; we refuse them).
    oracle_garbage: usize,
}

/// The fields a format's map document lists.
fn vocabulary(format: &str) -> Vec<String> {
    let doc: Value = serde_json::from_str(adverts::format(format).unwrap().doc).unwrap();
    doc["fields"].as_object().unwrap().keys().cloned().collect()
}

#[tokio::test]
async fn stock_firmware_decoders_match_the_parsers_users_trust() {
    let mut rng = Rng(0xB1E5_70C4_0DD5_0001);
    let mut cases = Vec::new();
    xiaomi_cases(&mut rng, &mut cases);
    xiaomi_legacy_cases(&mut rng, &mut cases);
    xiaomi_vectors(&mut cases);
    library_vectors("govee", "govee_ble", &mut cases);
    library_vectors("inkbird", "inkbird_ble", &mut cases);
    library_vectors("qingping", "qingping_ble", &mut cases);
    library_vectors("thermobeacon", "thermobeacon_ble", &mut cases);
    library_vectors("switchbot", "pyswitchbot", &mut cases);
    govee_cases(&mut rng, &mut cases);
    switchbot_cases(&mut rng, &mut cases);
    inkbird_cases(&mut rng, &mut cases);
    qingping_cases(&mut rng, &mut cases);
    thermobeacon_cases(&mut rng, &mut cases);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cases.json");
    std::fs::write(
        &file,
        Value::Array(cases.iter().map(Case::json).collect()).to_string(),
    )
    .unwrap();
    let results = run_python(
        "ble_oracle_stock.py",
        &[file.to_str().unwrap()],
        &[],
        Duration::from_secs(300),
    )
    .await
    .unwrap();
    let results = results.as_array().unwrap();
    assert_eq!(results.len(), cases.len());
    let mut table: BTreeMap<&str, Row> = BTreeMap::new();
    let mut failures = Vec::new();
    for (case, res) in cases.iter().zip(results) {
        let row = table
            .entry(if case.legacy {
                "xiaomi (legacy)"
            } else {
                case.format
            })
            .or_default();
        row.payloads += 1;
        let ours = case.decode(res["frame"].as_str());
        let ha = res["ha"].as_object().unwrap();
        if case.encrypt.is_some() || (case.vector && case.key.is_some()) {
            row.encrypted += 1;
        }
        if case.vector {
            row.vectors += 1;
        }
        if case.our_key.is_some() {
            // A wrong key: we say why and decode nothing. The oracle decodes nothing from
            // v4/v5 frames (their 4-byte MIC fails); legacy frames carry no MIC it checks,
            // so a wrong legacy key may give it values from garbage: counted, not equal.
            if case.legacy {
                row.oracle_garbage += usize::from(!ha.is_empty());
            } else {
                assert!(ha.is_empty(), "oracle decoded with a wrong key: {ha:?}");
            }
            assert_eq!(ours, Err(DecodeError::Decrypt), "{}", case.json());
            row.fields += 1;
            continue;
        }
        let values = match &ours {
            Ok(d) => d.values.clone(),
            Err(_) => BTreeMap::new(),
        };
        // In a vector, fields of objects we do not decode (locks, scales, buttons, body
        // thermometers…) are counted as oracle-only, not compared; every field we do
        // decode must agree.
        let ha = &if case.vector {
            let vocabulary = vocabulary(case.format);
            let (known, unknown): (Map<_, _>, Map<_, _>) = ha
                .clone()
                .into_iter()
                .partition(|(k, _)| vocabulary.contains(k) && values.contains_key(k));
            row.not_decoded += unknown.len();
            known
        } else {
            ha.clone()
        };
        let (n, bad) = compare(case, &values, ha);
        row.fields += n;
        if !case.vector
            && ha.is_empty()
            && ours.is_ok()
            && values
                .keys()
                .any(|k| !matches!(k.as_str(), "model" | "productId" | "encrypted"))
        {
            // We decoded a reading the oracle did not.
            if !matches!(case.format, "switchbot") || values.len() > 2 {
                failures.push(format!(
                    "{}: {:?} decoded by us only: {values:?}",
                    case.format,
                    case.json()
                ));
            }
        }
        // Theengs, where it decodes the same model the same way: not Qingping (it reads
        // other object layouts), and only fields Home Assistant's parser accepted too
        // (Theengs ignores Govee's error flag and range). It keeps unrounded digits
        // (ThermoBeacon's 1/16 units) and, for negative Govee temperatures, the
        // humidity digits: hence its wider tolerance.
        let te = res["theengs"]
            .as_object()
            .filter(|_| case.format != "qingping")
            .filter(|_| !values.contains_key("sensorError"))
            // Theengs takes the IBS-P02B for another model.
            .filter(|_| case.name.as_deref() != Some("IBS-P02B"))
            // Theengs reads MiBeacon frames only with the MAC included.
            .filter(|_| {
                case.format != "xiaomi-mibeacon"
                    || case
                        .svc
                        .first()
                        .is_some_and(|(_, d)| d.first().is_some_and(|b| b & 0x10 != 0))
            })
            .map(|t| {
                t.iter()
                    .filter(|(k, _)| ha.contains_key(*k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect::<Map<_, _>>()
            });
        if let Some(te) = te.filter(|t| !t.is_empty()) {
            let mut loose = Case {
                format: case.format,
                ..Case::default()
            };
            for f in ["temperature", "humidity", "battery", "illuminance"] {
                let base = case.tolerance.get(f).copied().unwrap_or(0.0);
                let t = if case.format == "govee" && f == "temperature" {
                    0.1
                } else {
                    0.005
                };
                loose.tolerance.insert(f, base.max(t));
            }
            let (tn, tbad) = compare(&loose, &values, &te);
            row.theengs_payloads += 1;
            row.theengs_fields += tn;
            row.mismatches += tbad.len();
            failures.extend(
                tbad.into_iter()
                    .map(|b| format!("{} theengs: {b} in {}", case.format, case.json())),
            );
        }
        row.mismatches += bad.len();
        failures.extend(
            bad.into_iter()
                .map(|b| format!("{} HA: {b} in {}", case.format, case.json())),
        );
    }
    println!(
        "format           payloads (vectors) encrypted fields(HA) theengs payloads/fields mismatches oracle-only oracle-garbage"
    );
    for (f, r) in &table {
        println!(
            "{f:<16} {:>8} {:>9} {:>9} {:>10} {:>16}/{:<6} {:>10} {:>11} {:>14}",
            r.payloads,
            r.vectors,
            r.encrypted,
            r.fields,
            r.theengs_payloads,
            r.theengs_fields,
            r.mismatches,
            r.not_decoded,
            r.oracle_garbage
        );
    }
    assert!(
        failures.is_empty(),
        "{} disagreements:\n{}",
        failures.len(),
        failures
            .iter()
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    for (f, r) in &table {
        assert!(r.payloads >= 100, "{f}: {} payloads", r.payloads);
        assert!(
            r.fields >= r.payloads,
            "{f}: only {} fields compared",
            r.fields
        );
    }
}
