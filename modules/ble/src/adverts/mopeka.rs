//! Mopeka tank sensors (Pro Check, Pro Plus, Pro Check Universal, Pro-200, Pro H2O,
//! Lippert BottleCheck, TD40/TD200): manufacturer data of company 0x0059 (10 bytes) in
//! an advertisement that also lists service 0xFEE5. Byte 0 model, 1 battery (/32 V),
//! 2 temperature (+40 °C offset, bit 7 = button), 3–4 time of flight (14 bits, little
//! endian) with the reading quality (0–3) in the top two bits, 8–9 accelerometer.
//! The level in mm is the time of flight scaled by a temperature-dependent polynomial
//! for propane, as mopeka-iot-ble computes it; it is left out at quality 0.

use super::{Advert, DecodeError, Decoded, round, take, uuid16};

const FORMAT: &str = "mopeka";

/// The company id (Nordic Semiconductor's) Mopeka sensors advertise under.
pub const MOPEKA_COMPANY_ID: u16 = 0x0059;
/// The service the sensors list, which tells them from other Nordic-based devices.
pub const MOPEKA_SERVICE_UUID16: u16 = 0xFEE5;

/// Propane coefficients of the level polynomial (mopeka-iot-ble's defaults).
const PROPANE: (f64, f64, f64) = (0.573045, -0.002822, -0.00000535);

/// Model name by model byte.
fn model(byte: u8) -> Option<&'static str> {
    Some(match byte {
        0x03 => "Pro Check",
        0x04 => "Pro-200",
        0x05 => "Pro Check H2O",
        0x06 => "Lippert BottleCheck",
        0x08 => "Pro Plus",
        0x09 => "Pro Plus with Cellular",
        0x0A => "TD40/TD200",
        0x0B => "TD40/TD200 with Cellular",
        0x0C => "Pro Check Universal",
        0x12 => "Pro-200B",
        _ => return None,
    })
}

/// Decodes a Mopeka advertisement (no key).
pub fn decode(ad: &Advert<'_>, _key: Option<&[u8]>) -> Result<Decoded, DecodeError> {
    let data = ad
        .manufacturer(MOPEKA_COMPANY_ID)
        .ok_or(DecodeError::NotThisFormat("Mopeka"))?;
    if !ad.services.contains(&uuid16(MOPEKA_SERVICE_UUID16)) {
        return Err(DecodeError::NotThisFormat("Mopeka"));
    }
    let d = take(data, 0, 10)?;
    if data.len() != 10 {
        return Err(DecodeError::Invalid(
            FORMAT,
            "manufacturer data is not 10 bytes",
        ));
    }
    let name = model(d[0]).ok_or(DecodeError::Invalid(FORMAT, "unknown model byte"))?;
    let mut out = Decoded::new(FORMAT);
    out.put("model", name);
    let battery = f64::from(d[1]) / 32.0;
    out.put("batteryVoltage", battery);
    out.put(
        "battery",
        round(((battery - 2.2) / 0.65 * 100.0).clamp(0.0, 100.0), 1),
    );
    out.put("buttonPressed", d[2] & 0x80 != 0);
    let raw_temp = d[2] & 0x7F;
    out.put("temperature", i32::from(raw_temp) - 40);
    let tof = u16::from_le_bytes([d[3], d[4]]) & 0x3FFF;
    let quality = d[4] >> 6;
    out.put("tankLevelRaw", tof);
    out.put("readingQuality", quality);
    if quality >= 1 {
        let t = f64::from(raw_temp);
        let (a, b, c) = PROPANE;
        let mm = f64::from(tof) * (a + b * t + c * (t * t));
        out.put("tankLevel", mm.trunc() as i64);
    }
    out.put("accelerometerX", d[8]);
    out.put("accelerometerY", d[9]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde_json::json;

    use super::*;

    fn run(data: &[u8], services: &[uuid::Uuid]) -> Result<Decoded, DecodeError> {
        let m = HashMap::from([(MOPEKA_COMPANY_ID, data.to_vec())]);
        let s = HashMap::new();
        let ad = Advert {
            address: [1, 2, 3, 4, 5, 6],
            local_name: None,
            manufacturer_data: &m,
            service_data: &s,
            services,
        };
        decode(&ad, None)
    }

    #[test]
    fn pro_check_level_and_quality() {
        // Pro Check, 3.0 V, 25 °C (raw 65), tof 500 at quality 3, button up.
        let data = [0x03, 96, 65, 0xF4, 0xC1, 0, 0, 0, 5, 250];
        let svc = [uuid16(MOPEKA_SERVICE_UUID16)];
        let d = run(&data, &svc).unwrap();
        assert_eq!(d.values["temperature"], json!(25));
        assert_eq!(d.values["readingQuality"], json!(3));
        assert_eq!(d.values["tankLevelRaw"], json!(500));
        // 500 × (0.573045 − 0.002822·65 − 0.00000535·65²) = 183.91 → 183 mm.
        assert_eq!(d.values["tankLevel"], json!(183));
        assert_eq!(d.values["battery"], json!(100.0));
        let mut poor = data;
        poor[4] = 0x01;
        let d = run(&poor, &svc).unwrap();
        assert!(!d.values.contains_key("tankLevel"));
        assert_eq!(d.values["readingQuality"], json!(0));
    }

    #[test]
    fn needs_the_service_and_ten_bytes() {
        let data = [0x03, 96, 65, 0xF4, 0xC1, 0, 0, 0, 5, 250];
        assert_eq!(run(&data, &[]), Err(DecodeError::NotThisFormat("Mopeka")));
        let svc = [uuid16(MOPEKA_SERVICE_UUID16)];
        assert!(matches!(
            run(&data[..5], &svc),
            Err(DecodeError::Truncated { .. })
        ));
        assert!(run(&[0x77; 10], &svc).is_err());
    }
}
