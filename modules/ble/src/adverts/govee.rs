//! Govee thermo-hygrometers and meat thermometers: manufacturer data, where the company
//! id is often not a real one (Govee puts a flags byte there), so the model is chosen as
//! govee-ble (Home Assistant) chooses it: by the payload length, then the local name,
//! then the company id. Formats (facts from govee-ble's parser and Govee's apps):
//! - packed: one 24-bit big-endian number `T·1000 + H` (T in 0.1 °C, H in 0.1 %), bit 23
//!   the sign of T, then a battery byte whose bit 7 flags a sensor error;
//! - `<hHB`: temperature and humidity ×0.01, little endian, then battery %;
//! - probes: big-endian temperature and alarm ×0.01 °C per probe.

use super::{Advert, DecodeError, Decoded, round};

const NAME: &str = "govee";

/// Apple's id: iBeacon frames Govee devices also send.
const APPLE: u16 = 0x004C;

/// The plausible range; outside it (or with the error bit) the sensor reports a fault.
const MIN_TEMP: f64 = -40.0;
const MAX_TEMP: f64 = 100.0;

/// Temperature, humidity, battery and error flag of a packed reading (4 bytes).
fn packed(b: &[u8]) -> (f64, f64, u8, bool) {
    let raw = u32::from_be_bytes([0, b[0], b[1], b[2]]);
    let magnitude = raw & 0x7F_FFFF;
    // Whole tenths of a degree: the thousands of the packed number.
    let mut temp = f64::from(magnitude / 1000) / 10.0;
    if raw & 0x80_0000 != 0 {
        temp = -temp;
    }
    let humidity = f64::from(magnitude % 1000) / 10.0;
    (temp, humidity, b[3] & 0x7F, b[3] & 0x80 != 0)
}

fn put_packed(out: &mut Decoded, b: &[u8]) {
    let (t, h, battery, error) = packed(b);
    if (MIN_TEMP..=MAX_TEMP).contains(&t) && !error {
        out.put("temperature", round(t, 1));
        out.put("humidity", round(h, 1));
    } else {
        out.put("sensorError", true);
    }
    out.put("battery", battery);
}

/// `<hHB`: temperature ×0.01 °C, humidity ×0.01 %, battery %.
fn put_le(out: &mut Decoded, b: &[u8]) {
    let t = i16::from_le_bytes([b[0], b[1]]);
    let h = u16::from_le_bytes([b[2], b[3]]);
    out.put("temperature", round(f64::from(t) / 100.0, 2));
    out.put("humidity", round(f64::from(h) / 100.0, 2));
    out.put("battery", b[4]);
}

/// One probe's temperature and alarm (negative values mean "no probe": 0 as govee-ble).
fn put_probe(out: &mut Decoded, n: u8, b: &[u8]) {
    let value = |x: i16| if x < 0 { 0.0 } else { f64::from(x) / 100.0 };
    let t = i16::from_be_bytes([b[0], b[1]]);
    let alarm = i16::from_be_bytes([b[2], b[3]]);
    out.put(&format!("temperatureProbe{n}"), round(value(t), 2));
    out.put(&format!("alarmProbe{n}"), round(value(alarm), 2));
}

/// The first model name in `name` (`GVH5075_1A2B` → `H5075`).
fn named<'n>(name: &str, models: &[&'n str]) -> Option<&'n str> {
    models.iter().copied().find(|m| name.contains(m))
}

fn one(
    out: &mut Decoded,
    name: &str,
    company: u16,
    data: &[u8],
    services: &str,
) -> Option<&'static str> {
    let n = data.len();
    if n == 6 && (named(name, &["H5072", "H5075", "H5129"]).is_some() || company == 0xEC88) {
        put_packed(out, &data[1..5]);
        return Some(named(name, &["H5072", "H5075", "H5129"]).unwrap_or("H5072/H5075"));
    }
    const PACKED_AT_2: &[&str] = &[
        "H5108", "H5100", "H5101", "H5102", "H5103", "H5104", "H5105", "H5174", "H5177", "H5110",
        "GV5179",
    ];
    let at2 = named(name, PACKED_AT_2);
    if (n == 6 || n == 8) && (at2.is_some() || (company == 0x0001 && n == 8)) {
        put_packed(out, &data[2..6]);
        return Some(match at2 {
            Some("GV5179") => "H5179",
            Some(m) => m,
            None => "H5101/H5102/H5177",
        });
    }
    if n == 7 && (name.contains("H5074") || company == 0xEC88) {
        put_le(out, &data[1..6]);
        return Some("H5074");
    }
    if n == 9 && (company == 0xEC88 || named(name, &["H5051", "H5052", "H5071"]).is_some()) {
        put_le(out, &data[1..6]);
        return Some(named(name, &["H5071", "H5052"]).unwrap_or("H5051"));
    }
    if n == 9 && (name.contains("H5178") || name.contains("B5178") || company == 0x0001) {
        put_packed(out, &data[3..7]);
        out.put("sensor", if data[2] == 1 { "remote" } else { "primary" });
        return Some("H5178");
    }
    if n == 9 && (name.contains("H5179") || company == 0x8801) {
        put_le(out, &data[4..9]);
        return Some("H5179");
    }
    let probe_service = |m: &str| services.contains(&format!("0000{m}51-0000"));
    if n == 14
        && (name.contains("H5181")
            || [0xF861, 0x388A, 0xEA42, 0xAAA2, 0xD14B].contains(&company)
            || probe_service("81"))
    {
        put_probe(out, 1, &data[8..12]);
        return Some("H5181");
    }
    if n == 17 && (name.contains("H5182") || company == 0x2730 || probe_service("82")) {
        put_probe(out, 1, &data[8..12]);
        put_probe(out, 2, &data[13..17]);
        return Some("H5182");
    }
    if n == 14
        && (name.contains("H5183")
            || [0x67DD, 0xE02F, 0xF79F].contains(&company)
            || probe_service("83"))
    {
        put_probe(out, 1, &data[8..12]);
        return Some("H5183");
    }
    None
}

/// Decodes a Govee advertisement (every manufacturer-data entry but Apple's).
pub fn decode(ad: &Advert<'_>, _key: Option<&[u8]>) -> Result<Decoded, DecodeError> {
    let name = ad.local_name.unwrap_or("");
    let services: String = ad.services.iter().map(|u| format!("{u} ")).collect();
    let mut entries: Vec<(&u16, &Vec<u8>)> = ad.manufacturer_data.iter().collect();
    entries.sort_by_key(|(c, _)| **c);
    for (company, data) in entries {
        if *company == APPLE || data.len() < 6 {
            continue;
        }
        let mut out = Decoded::new(NAME);
        if let Some(model) = one(&mut out, name, *company, data, &services) {
            out.put("model", model);
            return Ok(out);
        }
    }
    Err(DecodeError::NotThisFormat("Govee"))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde_json::json;

    use super::*;

    fn run(name: &str, company: u16, data: &[u8]) -> Result<Decoded, DecodeError> {
        let mfg = HashMap::from([(company, data.to_vec())]);
        let svc = HashMap::new();
        decode(
            &Advert {
                address: [0xA4, 0xC1, 0x38, 1, 2, 3],
                local_name: Some(name),
                manufacturer_data: &mfg,
                service_data: &svc,
                services: &[],
            },
            None,
        )
    }

    #[test]
    fn packed_little_endian_and_negative() {
        // H5075: 0x03886F = 231535 → 23.1 °C, 53.5 %, battery 100.
        let d = run(
            "GVH5075_1A2B",
            0xEC88,
            &[0x00, 0x03, 0x88, 0x6F, 0x64, 0x00],
        )
        .unwrap();
        assert_eq!(d.values["temperature"], json!(23.1));
        assert_eq!(d.values["humidity"], json!(53.5));
        assert_eq!(d.values["battery"], json!(100));
        assert_eq!(d.values["model"], json!("H5075"));
        // Sign bit: −5.2 °C, 40.0 %.
        let v: u32 = 0x80_0000 | 52_400;
        let b = v.to_be_bytes();
        let d = run("GVH5075_1A2B", 0xEC88, &[0, b[1], b[2], b[3], 0x50, 0]).unwrap();
        assert_eq!(d.values["temperature"], json!(-5.2));
        assert_eq!(d.values["humidity"], json!(40.0));
        // H5074: 21.32 °C, 45.67 %, 80 %.
        let d = run(
            "Govee_H5074_ABCD",
            0xEC88,
            &[0, 0x54, 0x08, 0xD7, 0x11, 80, 2],
        )
        .unwrap();
        assert_eq!(d.values["temperature"], json!(21.32));
        assert_eq!(d.values["humidity"], json!(45.67));
        // Error bit: no temperature, battery kept.
        let d = run("GVH5075_1A2B", 0xEC88, &[0, 0x03, 0x88, 0x6F, 0xE4, 0]).unwrap();
        assert!(!d.values.contains_key("temperature"));
        assert_eq!(d.values["battery"], json!(100));
        assert!(run("x", 0x1234, &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]).is_err());
        assert!(run("GVH5075", 0xEC88, &[1]).is_err());
    }
}
