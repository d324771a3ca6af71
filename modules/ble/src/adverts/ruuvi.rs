//! RuuviTag data format 5 ("RAWv2"), manufacturer data of company 0x0499, 24 bytes, big
//! endian: temperature ×0.005 °C, humidity ×0.0025 %, pressure +50000 Pa, acceleration
//! x/y/z in mG, battery voltage (11 bits, +1600 mV) and TX power (5 bits, ×2 −40 dBm),
//! movement counter, sequence number, MAC. Fields at their "not available" marker are
//! left out.

use super::{DecodeError, Decoded, round, take};

/// Ruuvi Innovations' company id.
pub const RUUVI_COMPANY_ID: u16 = 0x0499;

/// Decodes the manufacturer data (without the company id).
pub fn decode(data: &[u8]) -> Result<Decoded, DecodeError> {
    let d = take(data, 0, 24)?;
    if d[0] != 5 {
        return Err(DecodeError::NotThisFormat("Ruuvi RAWv2"));
    }
    let u16_at = |i: usize| u16::from_be_bytes([d[i], d[i + 1]]);
    let i16_at = |i: usize| i16::from_be_bytes([d[i], d[i + 1]]);
    let mut out = Decoded::new("ruuvi-rawv2");
    if i16_at(1) != i16::MIN {
        out.put("temperature", round(f64::from(i16_at(1)) * 0.005, 3));
    }
    if u16_at(3) != u16::MAX {
        out.put("humidity", round(f64::from(u16_at(3)) * 0.0025, 4));
    }
    if u16_at(5) != u16::MAX {
        out.put(
            "pressure",
            round((f64::from(u16_at(5)) + 50_000.0) / 100.0, 2),
        );
    }
    for (name, at) in [
        ("accelerationX", 7),
        ("accelerationY", 9),
        ("accelerationZ", 11),
    ] {
        if i16_at(at) != i16::MIN {
            out.put(name, i16_at(at));
        }
    }
    let power = u16_at(13);
    if power >> 5 != 0x7FF {
        out.put(
            "batteryVoltage",
            round(f64::from((power >> 5) + 1600) / 1000.0, 3),
        );
    }
    if power & 0x1F != 0x1F {
        out.put("txPower", i32::from(power & 0x1F) * 2 - 40);
    }
    if d[15] != 0xFF {
        out.put("movementCounter", d[15]);
    }
    if u16_at(16) != u16::MAX {
        out.put("measurementSequence", u16_at(16));
    }
    out.put("mac", super::pvvx::mac(&d[18..24]));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ruuvi_valid_test_vector() {
        // The "valid data" vector of Ruuvi's data format 5 specification.
        let data = [
            0x05, 0x12, 0xFC, 0x53, 0x94, 0xC3, 0x7C, 0x00, 0x04, 0xFF, 0xFC, 0x04, 0x0C, 0xAC,
            0x36, 0x42, 0x00, 0xCD, 0xCB, 0xB8, 0x33, 0x4C, 0x88, 0x4F,
        ];
        let d = decode(&data).unwrap();
        assert_eq!(d.values["temperature"], json!(24.3));
        assert_eq!(d.values["humidity"], json!(53.49));
        assert_eq!(d.values["pressure"], json!(1000.44));
        assert_eq!(d.values["accelerationZ"], json!(1036));
        assert_eq!(d.values["batteryVoltage"], json!(2.977));
        assert_eq!(d.values["txPower"], json!(4));
        assert_eq!(d.values["movementCounter"], json!(66));
        assert_eq!(d.values["measurementSequence"], json!(205));
        assert_eq!(d.values["mac"], json!("CB:B8:33:4C:88:4F"));
    }

    #[test]
    fn markers_truncation_and_other_formats() {
        let mut invalid = [0xFFu8; 24];
        invalid[0] = 5;
        invalid[1] = 0x80;
        invalid[2] = 0x00;
        let d = decode(&invalid).unwrap();
        assert!(!d.values.contains_key("temperature") && !d.values.contains_key("humidity"));
        assert!(matches!(
            decode(&[5, 1, 2]),
            Err(DecodeError::Truncated { .. })
        ));
        assert_eq!(
            decode(&[3u8; 24]),
            Err(DecodeError::NotThisFormat("Ruuvi RAWv2"))
        );
    }
}
