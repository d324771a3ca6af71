//! ThermoPro thermometers (TP357/TP358/TP359/TP393/TP397 hygrometers, TP960/TP962 and
//! TP970/TP972 meat probes), recognised by the advertised name (`TP35…`, `TP39…`, `TP96…`,
//! `TP97…`). The readings start in the two bytes BLE calls the company id, so the frame
//! is the company id (little endian) followed by the manufacturer data. Layouts as
//! thermopro-ble (Home Assistant) reads them:
//! - TP3xx: temperature i16 ×0.1 °C at 1, humidity % at 3, battery level in the low two
//!   bits of byte 4 (0 → 1 %, 1 → 50 %, 2 → 100 %); `FF FF FF` at 1–3 = no reading.
//! - TP96x/TP970 (7 bytes, or 13 with the base station's address appended): probe index,
//!   internal and ambient temperature u16 +30 °C offset, battery voltage (mV, mapped to %).
//! - TP972 (23 bytes): probe index, ambient u16 °F +54, battery mV, tip/centre/end f32 °F +54.

use super::{Advert, DecodeError, Decoded, round, take};

const FORMAT: &str = "thermopro";

/// Advertised name prefixes of the supported models.
pub const THERMOPRO_NAME_PREFIXES: [&str; 4] = ["TP35", "TP39", "TP96", "TP97"];

/// The TP96x battery curve (a tanh fit of percentage over millivolts, as thermopro-ble).
fn tp96_battery(millivolts: u16) -> f64 {
    let raw = 52.317_286 * (f64::from(millivolts) / 273.624_277_936 - 8.764_854_393_94).tanh()
        + 51.069_25;
    round(raw.clamp(0.0, 100.0), 0)
}

fn fahrenheit_offset_to_celsius(f: f64) -> f64 {
    round((f - 54.0 - 32.0) * 5.0 / 9.0, 1)
}

/// Decodes a ThermoPro advertisement (no key).
pub fn decode(ad: &Advert<'_>, _key: Option<&[u8]>) -> Result<Decoded, DecodeError> {
    let name = ad.local_name.unwrap_or("");
    if !THERMOPRO_NAME_PREFIXES.iter().any(|p| name.starts_with(p)) {
        return Err(DecodeError::NotThisFormat("ThermoPro"));
    }
    let mut entries = ad.manufacturer_data.iter();
    let (company, rest) = match (entries.next(), entries.next()) {
        (Some(one), None) => one,
        (None, _) => return Err(DecodeError::Truncated { need: 2, got: 0 }),
        // The company id carries readings: with several entries we cannot tell the latest.
        (Some(_), Some(_)) => {
            return Err(DecodeError::Invalid(
                FORMAT,
                "several manufacturer data entries in one advertisement",
            ));
        }
    };
    let mut frame = [0u8; 32];
    let len = 2 + rest.len();
    if len > frame.len() {
        return Err(DecodeError::Invalid(FORMAT, "manufacturer data too long"));
    }
    frame[..2].copy_from_slice(&company.to_le_bytes());
    frame[2..len].copy_from_slice(rest);
    let d = &frame[..len];
    let u16_at = |i: usize| u16::from_le_bytes([d[i], d[i + 1]]);
    let mut out = Decoded::new(FORMAT);
    if len == 23 && name.starts_with("TP97") {
        let f32_at = |i: usize| f64::from(f32::from_le_bytes([d[i], d[i + 1], d[i + 2], d[i + 3]]));
        out.put("probe", u32::from(d[0]) + 1);
        out.put(
            "ambientTemperature",
            fahrenheit_offset_to_celsius(f64::from(u16_at(1))).trunc() as i64,
        );
        out.put("battery", tp96_battery(u16_at(3)));
        for (field, at) in [
            ("internalTemperature", 5),
            ("internalCenterTemperature", 9),
            ("internalEndTemperature", 13),
        ] {
            let v = fahrenheit_offset_to_celsius(f32_at(at));
            if v.is_finite() {
                out.put(field, v);
            }
        }
        return Ok(out);
    }
    if (len == 7 || len == 13) && (name.starts_with("TP96") || name.starts_with("TP97")) {
        out.put("probe", u32::from(d[0]) + 1);
        out.put("internalTemperature", i32::from(u16_at(1)) - 30);
        out.put("battery", tp96_battery(u16_at(3)));
        out.put("ambientTemperature", i32::from(u16_at(5)) - 30);
        return Ok(out);
    }
    if name.starts_with("TP3") {
        let d = take(d, 0, 6)?;
        match d[4] & 3 {
            0 => out.put("battery", 1),
            1 => out.put("battery", 50),
            2 => out.put("battery", 100),
            _ => {}
        }
        if d[1..4] != [0xFF, 0xFF, 0xFF] {
            out.put(
                "temperature",
                round(f64::from(i16::from_le_bytes([d[1], d[2]])) * 0.1, 1),
            );
            out.put("humidity", d[3]);
        }
        return Ok(out);
    }
    Err(DecodeError::Invalid(
        FORMAT,
        "unknown frame length for this model",
    ))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde_json::json;

    use super::*;

    fn ad<'a>(
        name: &'a str,
        m: &'a HashMap<u16, Vec<u8>>,
        s: &'a HashMap<uuid::Uuid, Vec<u8>>,
    ) -> Advert<'a> {
        Advert {
            address: [0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFF],
            local_name: Some(name),
            manufacturer_data: m,
            service_data: s,
            services: &[],
        }
    }

    #[test]
    fn tp357_tp962_tp972() {
        let s = HashMap::new();
        // thermopro-ble's TP357 vector: company 0xF1C2, data 00 1D 02 2C → 24.1 °C, 29 %, 100 %.
        let m = HashMap::from([(0xF1C2, vec![0x00, 0x1D, 0x02, 0x2C])]);
        let d = decode(&ad("TP357 (2142)", &m, &s), None).unwrap();
        assert_eq!(d.values["temperature"], json!(24.1));
        assert_eq!(d.values["humidity"], json!(29));
        assert_eq!(d.values["battery"], json!(100));
        // TP962: probe 2, internal 25 °C, 2950 mV, ambient 22 °C.
        let m = HashMap::from([(0x3701, vec![0x00, 0x86, 0x0B, 0x34, 0x00])]);
        let d = decode(&ad("TP962R", &m, &s), None).unwrap();
        assert_eq!(d.values["probe"], json!(2));
        assert_eq!(d.values["internalTemperature"], json!(25));
        assert_eq!(d.values["ambientTemperature"], json!(22));
        // TP972: ambient 154 °F raw (100 °F → 37 °C), tip 209 °F raw (155 °F → 68.3 °C).
        let mut frame = [0u8; 23];
        frame[1..3].copy_from_slice(&154u16.to_le_bytes());
        frame[3..5].copy_from_slice(&3000u16.to_le_bytes());
        frame[5..9].copy_from_slice(&209.0f32.to_le_bytes());
        let m = HashMap::from([(
            u16::from_le_bytes([frame[0], frame[1]]),
            frame[2..].to_vec(),
        )]);
        let d = decode(&ad("TP972", &m, &s), None).unwrap();
        assert_eq!(d.values["internalTemperature"], json!(68.3));
        assert_eq!(d.values["ambientTemperature"], json!(37));
        assert_eq!(d.values["probe"], json!(1));
    }

    #[test]
    fn other_names_truncation_and_no_reading() {
        let s = HashMap::new();
        let m = HashMap::from([(0xFFFF, vec![0xFF, 0xFF, 0x02, 0x2C])]);
        let d = decode(&ad("TP357S", &m, &s), None).unwrap();
        assert_eq!(d.values.get("temperature"), None);
        assert_eq!(d.values["battery"], json!(100));
        assert!(matches!(
            decode(&ad("TP357", &HashMap::from([(1, vec![2])]), &s), None),
            Err(DecodeError::Truncated { .. })
        ));
        assert_eq!(
            decode(&ad("Govee", &m, &s), None),
            Err(DecodeError::NotThisFormat("ThermoPro"))
        );
        let two = HashMap::from([(1, vec![0; 4]), (2, vec![0; 4])]);
        assert!(matches!(
            decode(&ad("TP357", &two, &s), None),
            Err(DecodeError::Invalid(..))
        ));
    }
}
