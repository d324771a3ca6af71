//! BlueMaestro Tempo Disc and temperature sensors: manufacturer data of company 0x0133.
//! Byte 0 is the device type, byte 1 the battery (%). The original discs (types 0x08,
//! 0x0D, 0x16, 0x17, 0x1B) are big endian from byte 6: temperature, humidity and dew
//! point or pressure, each ×0.1; the "Maxi" discs (0x29–0x2B) are little endian from byte
//! 15: temperature and humidity ×0.01, pressure i32 ×0.01 hPa, and no dew point (it is
//! computed here with the Magnus formula, as bluemaestro-ble does). Trailing statistics
//! are not read.

use super::{Advert, DecodeError, Decoded, round, take};

const FORMAT: &str = "bluemaestro";

/// BlueMaestro's company id.
pub const BLUEMAESTRO_COMPANY_ID: u16 = 0x0133;

/// Magnus dew point (as bluemaestro-ble rounds it), when the humidity makes sense.
fn dew_point(t: f64, rh: f64) -> Option<f64> {
    if !(rh > 0.0 && rh <= 100.0) || t == -243.5 {
        return None;
    }
    let alpha = (rh / 100.0).ln() + 17.67 * t / (t + 243.5);
    let v = (243.5 * alpha / (17.67 - alpha) * 100.0 + 0.5).floor() / 100.0;
    v.is_finite().then_some(v)
}

/// Decodes a BlueMaestro advertisement (no key).
pub fn decode(ad: &Advert<'_>, _key: Option<&[u8]>) -> Result<Decoded, DecodeError> {
    let data = ad
        .manufacturer(BLUEMAESTRO_COMPANY_ID)
        .ok_or(DecodeError::NotThisFormat("BlueMaestro"))?;
    let kind = take(data, 0, 1)?[0];
    let mut out = Decoded::new(FORMAT);
    let be16 = |i: usize| i16::from_be_bytes([data[i], data[i + 1]]);
    let le16 = |i: usize| i16::from_le_bytes([data[i], data[i + 1]]);
    match kind {
        // Original discs.
        0x08 | 0x0D | 0x16 | 0x17 | 0x1B => {
            let need = if matches!(kind, 0x08 | 0x0D) { 8 } else { 12 };
            take(data, 0, need)?;
            out.put("battery", data[1]);
            out.put("temperature", f64::from(be16(6)) / 10.0);
            if kind != 0x08 && kind != 0x0D {
                out.put(
                    "humidity",
                    f64::from(u16::from_be_bytes([data[8], data[9]])) / 10.0,
                );
                if kind == 0x1B {
                    let p = u16::from_be_bytes([data[10], data[11]]);
                    out.put("pressure", f64::from(p) / 10.0);
                } else {
                    out.put("dewPoint", f64::from(be16(10)) / 10.0);
                }
            }
        }
        0x29..=0x2B => {
            let need = match kind {
                0x29 => 17,
                0x2A => 19,
                _ => 23,
            };
            take(data, 0, need)?;
            out.put("battery", data[1]);
            let t = f64::from(le16(15)) / 100.0;
            out.put("temperature", t);
            if kind >= 0x2A {
                let rh = f64::from(le16(17)) / 100.0;
                out.put("humidity", rh);
                if let Some(dp) = dew_point(t, rh) {
                    out.put("dewPoint", round(dp, 2));
                }
            }
            if kind == 0x2B {
                let p = i32::from_le_bytes([data[19], data[20], data[21], data[22]]);
                out.put("pressure", f64::from(p) / 100.0);
            }
        }
        _ => return Err(DecodeError::NotThisFormat("BlueMaestro")),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde_json::json;

    use super::*;

    fn run(data: &[u8]) -> Result<Decoded, DecodeError> {
        let m = HashMap::from([(BLUEMAESTRO_COMPANY_ID, data.to_vec())]);
        let s = HashMap::new();
        decode(
            &Advert {
                address: [1, 2, 3, 4, 5, 6],
                local_name: None,
                manufacturer_data: &m,
                service_data: &s,
                services: &[],
            },
            None,
        )
    }

    #[test]
    fn thd_and_maxi_thpd() {
        // Type 0x17, battery 100 %, 23.0 °C, 55.5 %, dew point 13.6 °C, then statistics.
        let thd = [
            0x17, 0x64, 0x0E, 0x10, 0x00, 0x7B, 0x00, 0xE6, 0x02, 0x2B, 0x00, 0x88, 0x01, 0x00,
        ];
        let d = run(&thd).unwrap();
        assert_eq!(d.values["temperature"], json!(23.0));
        assert_eq!(d.values["humidity"], json!(55.5));
        assert_eq!(d.values["dewPoint"], json!(13.6));
        assert_eq!(d.values["battery"], json!(100));
        let mut maxi = vec![0x2B, 80];
        maxi.extend([0; 13]);
        maxi.extend(2150i16.to_le_bytes());
        maxi.extend(5000i16.to_le_bytes());
        maxi.extend(101_325i32.to_le_bytes());
        maxi.push(0);
        let d = run(&maxi).unwrap();
        assert_eq!(d.values["temperature"], json!(21.5));
        assert_eq!(d.values["pressure"], json!(1013.25));
        assert_eq!(d.values["dewPoint"], json!(10.65));
    }

    #[test]
    fn truncated_and_unknown() {
        assert!(matches!(
            run(&[0x17, 1, 2]),
            Err(DecodeError::Truncated { .. })
        ));
        assert!(matches!(run(&[]), Err(DecodeError::Truncated { .. })));
        assert_eq!(
            run(&[0x01; 20]),
            Err(DecodeError::NotThisFormat("BlueMaestro"))
        );
    }
}
