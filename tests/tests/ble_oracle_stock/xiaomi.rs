//! The MiBeacon cases of the stock-firmware oracle test: frames generated in every layout
//! (plain v2–v5, v5 and legacy v2/v3 encrypted by the Python side) and xiaomi-ble's own
//! test vectors.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{Case, Rng, hex, unhex};

fn mibeacon_objects(rng: &mut Rng, product: u16) -> Vec<u8> {
    let th: &[u16] = &[0x1004, 0x1006, 0x100D, 0x100A];
    let float_th: &[u16] = &[
        0x1004, 0x1006, 0x100D, 0x100A, 0x4C01, 0x4C02, 0x4C03, 0x4C08,
    ];
    let ids: &[u16] = match product {
        0x0098 => &[0x1004, 0x1007, 0x1008, 0x1009, 0x100A],
        0x098B => &[0x1019, 0x1018, 0x100A],
        0x0A8D | 0x0A83 | 0x07F6 => &[0x000F, 0x1017, 0x1018, 0x100A],
        0x3531 => &[0x4A08, 0x4818, 0x4803],
        0x0863 => &[0x1014, 0x100A],
        0x0997 => &[0x1015, 0x100A],
        0x02DF => &[0x1010, 0x1004, 0x1006, 0x100A],
        0x2832 | 0x1203 => float_th,
        _ => th,
    };
    let mut out = Vec::new();
    let mut used = Vec::new();
    for _ in 0..1 + rng.below(3) {
        let id = ids[rng.below(ids.len() as u64) as usize];
        // One object per reading a frame (as devices send them): parsers differ on
        // which of two temperatures wins.
        let group = |i: u16| match i {
            0x1004 | 0x1006 | 0x100D | 0x4C01 | 0x4C02 | 0x4C08 | 0x1010 => 1,
            0x000F | 0x1017 | 0x1018 | 0x4A08 | 0x4818 | 0x1007 => 2,
            other => u32::from(other),
        };
        if used.iter().any(|u| group(*u) == group(id)) {
            continue;
        }
        used.push(id);
        let f32b = |x: f32| x.to_le_bytes().to_vec();
        let value: Vec<u8> = match id {
            0x1004 => ((rng.below(900) as i16) - 300).to_le_bytes().to_vec(),
            0x1006 => (rng.below(1000) as u16).to_le_bytes().to_vec(),
            0x100D => {
                let mut v = ((rng.below(900) as i16) - 300).to_le_bytes().to_vec();
                v.extend((rng.below(1000) as u16).to_le_bytes());
                v
            }
            0x100A | 0x4803 | 0x4C03 | 0x1008 => vec![rng.below(101) as u8],
            0x1007 => (rng.below(100_000) as u32).to_le_bytes()[..3].to_vec(),
            0x000F => {
                let lux = [0u32, 1, 100, 256, rng.below(2000) as u32][rng.below(5) as usize];
                lux.to_le_bytes()[..3].to_vec()
            }
            0x1009 | 0x1010 => (rng.below(5000) as u16).to_le_bytes().to_vec(),
            0x1017 => [5u32, 30, 31, 60, 120, 1800][rng.below(6) as usize]
                .to_le_bytes()
                .to_vec(),
            0x4818 => [0u16, 30, 60, 300][rng.below(4) as usize]
                .to_le_bytes()
                .to_vec(),
            0x1019 => vec![rng.below(3) as u8],
            0x1018 | 0x1014 | 0x1015 => vec![rng.below(2) as u8],
            0x4C01 => f32b((rng.below(6000) as f32 - 1000.0) / 97.0),
            0x4C02 => vec![rng.below(100) as u8],
            0x4C08 => f32b(rng.below(10000) as f32 / 113.0),
            0x4A08 => f32b(rng.below(100_000) as f32 / 7.0),
            _ => unreachable!(),
        };
        out.extend(id.to_le_bytes());
        out.push(value.len() as u8);
        out.extend(value);
    }
    out
}

/// Product ids the generator covers (a spread of temperature, plant, door and motion).
const MI_PRODUCTS: &[u16] = &[
    0x01AA, 0x0347, 0x055B, 0x0387, 0x066F, 0x16E4, 0x2832, 0x1203, 0x0B48, 0x0098, 0x098B, 0x0A8D,
    0x0A83, 0x07F6, 0x3531, 0x0863, 0x0997, 0x02DF, 0x045B, 0x0576,
];

pub(super) fn xiaomi_cases(rng: &mut Rng, out: &mut Vec<Case>) {
    for i in 0..260 {
        // The last 40 in the frame layouts the Theengs decoder recognises (MAC included).
        let theengs = [
            (0x01AA, 0x2050),
            (0x02DF, 0x2050),
            (0x045B, 0x3070),
            (0x0098, 0x2070),
        ];
        let fixed = (i >= 220).then(|| theengs[i % theengs.len()]);
        let product = match fixed {
            Some((p, _)) => p,
            None => MI_PRODUCTS[rng.below(MI_PRODUCTS.len() as u64) as usize],
        };
        let mut mac = [0xA4, 0xC1, 0x38, 0, 0, 0];
        mac[3..].copy_from_slice(&rng.bytes(3));
        let objects = mibeacon_objects(rng, product);
        let with_mac = rng.below(2) == 0;
        let mut tolerance = BTreeMap::from([
            ("illuminance", 0.005),
            ("temperature", 0.005),
            ("humidity", 0.005),
        ]);
        if matches!(product, 0x055B | 0x0387) {
            // xiaomi-ble truncates these two models' humidity to whole percent.
            tolerance.insert("humidity", 1.0);
        }
        let mut case = Case {
            format: "xiaomi-mibeacon",
            mac,
            tolerance,
            ..Case::default()
        };
        let counter = rng.below(256) as u8;
        if let Some((_, frctrl)) = fixed {
            let mut f = (frctrl as u16).to_le_bytes().to_vec();
            f.extend(product.to_le_bytes());
            f.push(counter);
            f.extend(mac.iter().rev());
            if frctrl & 0x20 != 0 {
                f.push(0x08);
            }
            f.extend(&objects);
            case.svc.push((0xFE95, f));
        } else if i % 3 == 0 {
            // Encrypted v5 (Python encrypts); every seventh with a wrong key on both sides.
            let key: [u8; 16] = rng.bytes(16).try_into().unwrap();
            case.key = Some(key);
            if i % 7 == 0 {
                let mut wrong = key;
                wrong[0] ^= 0xFF;
                case.our_key = Some(wrong);
            }
            let frctrl = 0x5848 | if with_mac { 0x10 } else { 0 };
            case.encrypt = Some(
                json!({"frctrl": frctrl, "product": product, "counter": counter, "ext": hex(&rng.bytes(3)), "plain": hex(&objects)}),
            );
        } else {
            let version = 2 + rng.below(4) as u16;
            let capability = rng.below(3);
            let frctrl = (version << 12)
                | 0x40
                | if with_mac { 0x10 } else { 0 }
                | if capability > 0 { 0x20 } else { 0 };
            let mut f = frctrl.to_le_bytes().to_vec();
            f.extend(product.to_le_bytes());
            f.push(counter);
            if with_mac {
                f.extend(mac.iter().rev());
            }
            match capability {
                1 => f.push(0x08),
                2 => f.extend([0x28, 0x01]),
                _ => {}
            }
            f.extend(&objects);
            case.svc.push((0xFE95, f));
        }
        out.push(case);
    }
}

/// MiBeacon v2/v3 frames with legacy encryption, sealed by the Python side (the frame
/// layout xiaomi-ble's YLKG07YL vectors have: MAC included, the extension counter and the
/// first byte of a 16-byte CCM tag at the end); every seventh decrypted with a wrong key
/// on both sides.
pub(super) fn xiaomi_legacy_cases(rng: &mut Rng, out: &mut Vec<Case>) {
    for i in 0..130 {
        let product = MI_PRODUCTS[rng.below(MI_PRODUCTS.len() as u64) as usize];
        let mut mac = [0xE7, 0x2E, 0x00, 0, 0, 0];
        mac[3..].copy_from_slice(&rng.bytes(3));
        let objects = mibeacon_objects(rng, product);
        let mut key = [0u8; 16];
        key.copy_from_slice(&bridge_ble::keys::parse_hex(&hex(&rng.bytes(12))).unwrap());
        let mut case = Case {
            format: "xiaomi-mibeacon",
            mac,
            key: Some(key),
            legacy: true,
            tolerance: BTreeMap::from([
                ("illuminance", 0.005),
                ("temperature", 0.005),
                (
                    "humidity",
                    if matches!(product, 0x055B | 0x0387) {
                        1.0
                    } else {
                        0.005
                    },
                ),
            ]),
            ..Case::default()
        };
        if i % 7 == 3 {
            let mut wrong = key;
            wrong[0] ^= 0xFF;
            case.our_key = Some(wrong);
        }
        let version: u16 = 2 + rng.below(2) as u16;
        case.encrypt = Some(json!({
            "frctrl": (version << 12) | 0x58, "product": product, "counter": rng.below(256),
            "ext": hex(&rng.bytes(3)), "plain": hex(&objects)
        }));
        out.push(case);
    }
}

/// xiaomi-ble's own test vectors (payload, address, bind key), kept in
/// `tests/python/vectors/xiaomi_ble.json`.
pub(super) fn xiaomi_vectors(out: &mut Vec<Case>) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/python/vectors/xiaomi_ble.json"
    );
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for v in doc["vectors"].as_array().unwrap() {
        let mac: Vec<u8> = v["mac"]
            .as_str()
            .unwrap()
            .split(':')
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect();
        let mut tolerance = BTreeMap::from([
            ("illuminance", 0.005),
            ("temperature", 0.005),
            ("humidity", 0.005),
        ]);
        let data = unhex(v["hex"].as_str().unwrap());
        if data.len() >= 4 && matches!(u16::from_le_bytes([data[2], data[3]]), 0x055B | 0x0387) {
            tolerance.insert("humidity", 1.0);
        }
        out.push(Case {
            format: "xiaomi-mibeacon",
            mac: mac.try_into().unwrap(),
            svc: vec![(0xFE95, data)],
            // 24 digits: a MiBeacon v2/v3 legacy key, widened as the configuration does.
            key: v["key"]
                .as_str()
                .map(|k| bridge_ble::keys::parse_hex(k).unwrap()),
            legacy: v["key"].as_str().is_some_and(|k| k.len() == 24),
            tolerance,
            vector: true,
            ..Case::default()
        });
    }
}
