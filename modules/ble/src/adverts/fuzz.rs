//! Random and truncated payloads never panic any decoder (a deterministic fuzz loop).

use super::*;

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[test]
fn random_and_truncated_payloads_never_panic() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let key = [7u8; 16];
    let mac = [1, 2, 3, 4, 5, 6];
    let valid: Vec<Vec<u8>> = vec![
        vec![
            0x40, 0x02, 0xCA, 0x09, 0x03, 0xBF, 0x13, 0x53, 0x02, b'h', b'i', 0x3A, 0x01,
        ],
        vec![
            0x05, 0x12, 0xFC, 0x53, 0x94, 0xC3, 0x7C, 0x00, 0x04, 0xFF, 0xFC, 0x04, 0x0C, 0xAC,
            0x36, 0x42, 0x00, 0xCD, 0xCB, 0xB8, 0x33, 0x4C, 0x88, 0x4F,
        ],
        vec![0x10, 0xF8, 0x03, b'a', 0x07],
        // MiBeacon frames under the loop's key and address: legacy v3 and v5 encrypted
        // (temperature, humidity, battery), so mutations reach both decryption paths.
        xiaomi::encrypt_legacy(mac, 0x045B, 1, &key, MI_OBJECTS),
        xiaomi::encrypt_v5(mac, 0x055B, 2, [1, 2, 3], &key, MI_OBJECTS),
    ];
    for round in 0..200_000u32 {
        let len = (rng.next() % 40) as usize;
        let mut data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        if round % 3 == 0 {
            // Truncations and bit flips of valid payloads reach deeper code paths.
            let v = &valid[(round as usize / 3) % valid.len()];
            data = v[..(rng.next() as usize % (v.len() + 1))].to_vec();
            if let Some(b) = data.get_mut(rng.next() as usize % (v.len() + 1)) {
                *b ^= 1 << (rng.next() % 8);
            }
        }
        if round % 2 == 0 && !data.is_empty() {
            data[0] = [0x40, 0x41, 0x44, 0x05, 0x00, 0x10, 0x20][rng.next() as usize % 7];
        } else if round % 4 == 1 && !data.is_empty() {
            // Type bytes of the manufacturer-data formats (Mopeka, BlueMaestro, Aranet…).
            data[0] = [0x03, 0x0C, 0x17, 0x1B, 0x2B, 0x01, 0x02, 0x04][rng.next() as usize % 8];
        }
        let _ = decode_bthome(&data, mac, Some(&key));
        let _ = decode_bthome(&data, mac, None);
        let _ = decode_ruuvi(&data);
        let _ = decode_pvvx(&data);
        let _ = decode_ibeacon(&data);
        let _ = decode_eddystone(&data);
        every_registered_format(&data, &key, rng.next());
        more_formats(&data, round, &key);
    }
}

/// MiBeacon objects: 23.4 °C, 45.6 %, battery 77 %.
const MI_OBJECTS: &[u8] = &[
    0x04, 0x10, 0x02, 0xEA, 0x00, 0x06, 0x10, 0x02, 0xC8, 0x01, 0x0A, 0x10, 0x01, 77,
];

/// Local names some formats select their model by.
const NAMES: &[Option<&str>] = &[
    None,
    Some("GVH5075_1A2B"),
    Some("Govee_H5179_1234"),
    Some("GVH5177_0001"),
    Some("GV5126"),
    Some("sps"),
    Some("tps"),
    Some("IBS-TH"),
    Some("ThermoBeacon"),
    Some("WoSensorTH"),
];

/// Feeds `data` to every registered decoder, in each place the format looks for it.
fn every_registered_format(data: &[u8], key: &[u8; 16], pick: u64) {
    use std::collections::HashMap;
    let name = NAMES[pick as usize % NAMES.len()];
    for format in FORMATS {
        for m in format.matches {
            let mut mfg = HashMap::new();
            let mut svc = HashMap::new();
            let mut services = Vec::new();
            match *m {
                Match::Service16(u) => {
                    svc.insert(uuid16(u), data.to_vec());
                }
                Match::Service128(u) => {
                    svc.insert(uuid::Uuid::from_u128(u), data.to_vec());
                }
                Match::ServiceList16(u) => services.push(uuid16(u)),
                Match::ServiceList128(u) => services.push(uuid::Uuid::from_u128(u)),
                Match::LocalName(_) => {
                    mfg.insert(
                        u16::from_le_bytes([pick as u8, (pick >> 8) as u8]),
                        data.to_vec(),
                    );
                }
                Match::Manufacturer(company, prefix) => {
                    let mut v = prefix.to_vec();
                    v.extend_from_slice(data);
                    mfg.insert(company, v);
                    mfg.insert(company.wrapping_add(1), data.to_vec());
                }
            }
            let ad = Advert {
                address: [1, 2, 3, 4, 5, 6],
                local_name: name,
                manufacturer_data: &mfg,
                service_data: &svc,
                services: &services,
            };
            // The right-size key, none, and one of the wrong size, in turn.
            let key: Option<&[u8]> = match pick % 3 {
                0 => Some(key),
                1 => None,
                _ => Some(&key[..7]),
            };
            let _ = (format.decode)(&ad, key);
        }
    }
}

/// The manufacturer-data formats that take an `Advert`: the payload under each format's
/// company id (and under a company id made of its first two bytes, for the formats whose
/// readings start in the company id), with each format's name and service.
fn more_formats(data: &[u8], round: u32, key: &[u8; 16]) {
    let names = [
        "TP357",
        "TP962",
        "TP972",
        "s",
        "HT.w",
        "HTP.xw",
        "Aranet4",
        "Aranet2",
        "AranetRn1",
    ];
    let name = names[round as usize % names.len()];
    let services = [
        uuid16(MOPEKA_SERVICE_UUID16),
        SENSORPUSH_HT1_UUID,
        SENSORPUSH_V2_UUID,
    ];
    let service_data = std::collections::HashMap::new();
    let company = u16::from_le_bytes([
        data.first().copied().unwrap_or(0),
        data.get(1).copied().unwrap_or(0),
    ]);
    let rest = data.get(2..).unwrap_or_default().to_vec();
    let ids = [
        ARANET_COMPANY_ID,
        BLUEMAESTRO_COMPANY_ID,
        MOPEKA_COMPANY_ID,
        TILT_COMPANY_ID,
        VICTRON_COMPANY_ID,
    ];
    let id = ids[(round as usize / 2) % ids.len()];
    let m = if round % 5 == 0 {
        // Two entries: the formats that need a single one must refuse, not pick.
        std::collections::HashMap::from([(id, data.to_vec()), (company, rest)])
    } else if round % 5 == 1 {
        std::collections::HashMap::from([(company, rest)])
    } else {
        std::collections::HashMap::from([(id, data.to_vec())])
    };
    let ad = Advert {
        address: [1, 2, 3, 4, 5, 6],
        local_name: Some(name),
        manufacturer_data: &m,
        service_data: &service_data,
        services: &services,
    };
    for decode in [
        decode_aranet,
        decode_bluemaestro,
        decode_mopeka,
        decode_sensorpush,
        decode_thermopro,
        decode_tilt,
        decode_victron,
    ] as [DecodeFn; 7]
    {
        let _ = decode(&ad, Some(key));
        let _ = decode(&ad, None);
    }
    // Victron with the right key check byte reaches the record parsers.
    if let Some(b) = data.get(7) {
        let mut k = *key;
        k[0] = *b;
        let m = std::collections::HashMap::from([(VICTRON_COMPANY_ID, data.to_vec())]);
        let ad = Advert {
            address: [1, 2, 3, 4, 5, 6],
            local_name: None,
            manufacturer_data: &m,
            service_data: &service_data,
            services: &[],
        };
        let _ = decode_victron(&ad, Some(&k));
    }
}
