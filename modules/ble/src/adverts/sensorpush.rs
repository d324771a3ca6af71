//! SensorPush HT1, HT.w, HTP.xw and TC.x. The readings are in the manufacturer data,
//! starting in the two bytes BLE calls the company id (frame = company id little endian +
//! data). The HT1 advertises the name `s` and service `ef090000-11d6-42ba-93b8-9dd7ec090aa9`:
//! humidity 12 bits and temperature 14 bits (Sensirion-style conversions). The newer
//! models advertise service `…0ab0` and a page byte (low two bits 0 = readings, bits 2–7 =
//! model: 0 HTP.xw, 1 HT.w, 2 TC.x) followed by one little-endian integer in which each
//! reading is a mixed-radix digit (range/step values each). Layouts as sensorpush-ble.

use uuid::Uuid;

use super::{Advert, DecodeError, Decoded, round, take};

const FORMAT: &str = "sensorpush";

/// Service UUID the HT1 advertises.
pub const SENSORPUSH_HT1_UUID: Uuid = Uuid::from_u128(0xef090000_11d6_42ba_93b8_9dd7ec090aa9);
/// Service UUID the HT.w, HTP.xw and TC.x advertise.
pub const SENSORPUSH_V2_UUID: Uuid = Uuid::from_u128(0xef090000_11d6_42ba_93b8_9dd7ec090ab0);

/// (field, min, max, step) per packed reading, by model.
type Block = (&'static str, f64, f64, f64);
const HTP_XW: &[Block] = &[
    ("temperature", -40.0, 140.0, 0.0025),
    ("humidity", 0.0, 100.0, 0.0025),
    ("pressure", 30_000.0, 125_000.0, 1.0),
];
const HT_W: &[Block] = &[
    ("temperature", -40.0, 125.0, 0.0025),
    ("humidity", 0.0, 100.0, 0.0025),
];
const TC_X: &[Block] = &[("temperature", -200.0, 1800.0, 0.0625)];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Model {
    Ht1,
    V2,
}

fn model(ad: &Advert<'_>) -> Option<Model> {
    let name = ad.local_name.unwrap_or("");
    if name == "s" && ad.services.contains(&SENSORPUSH_HT1_UUID) {
        return Some(Model::Ht1);
    }
    if ["HTP.xw", "HT.w", "TC"].iter().any(|n| name.contains(n))
        || ad.services.contains(&SENSORPUSH_V2_UUID)
    {
        return Some(Model::V2);
    }
    None
}

/// Decodes a SensorPush advertisement (no key).
pub fn decode(ad: &Advert<'_>, _key: Option<&[u8]>) -> Result<Decoded, DecodeError> {
    let model = model(ad).ok_or(DecodeError::NotThisFormat("SensorPush"))?;
    // The newer models rotate pages; only page 0 carries readings.
    let mut frames = ad
        .manufacturer_data
        .iter()
        .filter(|(company, _)| model == Model::Ht1 || (**company & 0x03) == 0);
    let (company, rest) = match (frames.next(), frames.next()) {
        (Some(one), None) => one,
        (None, _) => return Err(DecodeError::Invalid(FORMAT, "no readings page")),
        (Some(_), Some(_)) => {
            return Err(DecodeError::Invalid(
                FORMAT,
                "several manufacturer data entries in one advertisement",
            ));
        }
    };
    let mut frame = [0u8; 8];
    let len = 2 + rest.len();
    if len > frame.len() {
        return Err(DecodeError::Invalid(FORMAT, "manufacturer data too long"));
    }
    frame[..2].copy_from_slice(&company.to_le_bytes());
    frame[2..len].copy_from_slice(rest);
    let d = &frame[..len];
    let mut out = Decoded::new(FORMAT);
    if model == Model::Ht1 {
        let d = take(d, 0, 4)?;
        if (d[3] & 0x7C) >> 2 != 1 {
            return Err(DecodeError::Invalid(FORMAT, "HT1 device type is not 1"));
        }
        let raw_h = f64::from(u16::from(d[0]) | (u16::from(d[1] & 0x0F) << 8));
        let raw_t = f64::from(
            u16::from(d[1] >> 4) | (u16::from(d[2]) << 4) | (u16::from(d[3] & 0x03) << 12),
        );
        let humidity = (-6.0 + 125.0 * (raw_h / 4096.0)).clamp(0.0, 100.0);
        out.put("temperature", round(-46.85 + 175.72 * (raw_t / 16384.0), 2));
        out.put("humidity", round(humidity, 2));
        return Ok(out);
    }
    let (blocks, need) = match d[0] >> 2 {
        0 => (HTP_XW, 7),
        1 => (HT_W, 5),
        2 => (TC_X, 4),
        _ => return Err(DecodeError::Invalid(FORMAT, "unknown model number")),
    };
    // Frames carry at least the model's digits; longer ones (the TC.x sends 4 or 5 bytes)
    // are read whole, as the reference does.
    if d.len() < need {
        return Err(DecodeError::Truncated {
            need: need - 2,
            got: rest.len(),
        });
    }
    let packed = d[1..]
        .iter()
        .rev()
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    let (mut modulus, mut divisor) = (1u64, 1u64);
    for &(field, min, max, step) in blocks {
        // Same float steps as the reference: values = floor(range / step + step / 2) + 1.
        let count = ((max - min) / step + step / 2.0) as u64 + 1;
        modulus *= count;
        let n = (packed % modulus) / divisor;
        let mut value = round_half_even(n as f64 * step + min);
        if field == "pressure" {
            value /= 100.0; // Pa → hPa
        }
        out.put(field, value);
        divisor *= count;
    }
    Ok(out)
}

/// Rounds to two decimals from the exact binary value, half to even, as Python's
/// `round(x, 2)` does (`round()` would give 12.74 for 12.734999…, 0.01 off the reference).
fn round_half_even(v: f64) -> f64 {
    format!("{v:.2}").parse().unwrap_or(v)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde_json::json;

    use super::*;

    fn decode_with(
        name: &str,
        services: &[Uuid],
        company: u16,
        data: &[u8],
    ) -> Result<Decoded, DecodeError> {
        let m = HashMap::from([(company, data.to_vec())]);
        let s = HashMap::new();
        decode(
            &Advert {
                address: [1, 2, 3, 4, 5, 6],
                local_name: Some(name),
                manufacturer_data: &m,
                service_data: &s,
                services,
            },
            None,
        )
    }

    fn pack(model: u8, digits: &[(u64, u64)]) -> (u16, Vec<u8>) {
        let (mut v, mut mul) = (0u64, 1u64);
        for (n, count) in digits {
            v += n * mul;
            mul *= count;
        }
        let mut frame = vec![model << 2];
        frame.extend_from_slice(
            &v.to_le_bytes()[..match model {
                0 => 6,
                1 => 4,
                _ => 3,
            }],
        );
        (
            u16::from_le_bytes([frame[0], frame[1]]),
            frame[2..].to_vec(),
        )
    }

    #[test]
    fn ht_w_and_htp_xw_packed_values() {
        // 21.5 °C = (21.5 + 40) / 0.0025, 45 % = 18000 steps.
        let (c, d) = pack(1, &[(24_600, 66_001), (18_000, 40_001)]);
        let out = decode_with("SensorPush HT.w 0CA1", &[], c, &d).unwrap();
        assert_eq!(out.values["temperature"], json!(21.5));
        assert_eq!(out.values["humidity"], json!(45.0));
        let (c, d) = pack(0, &[(24_600, 72_001), (18_000, 40_001), (71_325, 95_001)]);
        let out = decode_with("", &[SENSORPUSH_V2_UUID], c, &d).unwrap();
        assert_eq!(out.values["pressure"], json!(1013.25));
    }

    #[test]
    fn ht1_and_errors() {
        // Raw humidity 0x800 → 56.5 %, raw temperature 0x1A00 → 24.54 °C.
        let frame = [0x00, 0x08, 0xA0, 0x05];
        let c = u16::from_le_bytes([frame[0], frame[1]]);
        let out = decode_with("s", &[SENSORPUSH_HT1_UUID], c, &frame[2..]).unwrap();
        assert_eq!(out.values["humidity"], json!(56.5));
        assert_eq!(out.values["temperature"], json!(24.54));
        assert_eq!(
            decode_with("x", &[], 1, &[1, 2]),
            Err(DecodeError::NotThisFormat("SensorPush"))
        );
        assert!(decode_with("s", &[SENSORPUSH_HT1_UUID], c, &[]).is_err());
        assert!(decode_with("HT.w", &[], 0x0004, &[0xFF; 9]).is_err());
    }
}
