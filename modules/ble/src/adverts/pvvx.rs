//! Xiaomi LYWSD03MMC and similar thermometers on the pvvx / ATC custom firmware:
//! service data 0x181A. The pvvx "custom" format is 15 bytes, little endian (MAC reversed,
//! temperature ×0.01 °C, humidity ×0.01 %, battery mV, battery %, counter, flags); the
//! older ATC1441 format is 13 bytes, big endian (MAC, temperature ×0.1 °C, humidity %,
//! battery %, battery mV, counter).

use super::{DecodeError, Decoded, round, take};

/// The Environmental Sensing service UUID the firmware advertises under.
pub const ENVIRONMENTAL_UUID16: u16 = 0x181A;

/// `A4:C1:38:…`, written into one string (this runs per advertisement).
pub(super) fn mac(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0xF)]));
    }
    s
}

/// Decodes the 0x181A service data.
pub fn decode(data: &[u8]) -> Result<Decoded, DecodeError> {
    match data.len() {
        15 | 16 => {
            let d = take(data, 0, 15)?;
            let mut out = Decoded::new("xiaomi-pvvx");
            let mut m = d[0..6].to_vec();
            m.reverse();
            out.put("mac", mac(&m));
            out.put(
                "temperature",
                round(f64::from(i16::from_le_bytes([d[6], d[7]])) * 0.01, 2),
            );
            out.put(
                "humidity",
                round(f64::from(u16::from_le_bytes([d[8], d[9]])) * 0.01, 2),
            );
            out.put(
                "batteryVoltage",
                round(f64::from(u16::from_le_bytes([d[10], d[11]])) / 1000.0, 3),
            );
            out.put("battery", d[12]);
            out.put("counter", d[13]);
            out.put("flags", d[14]);
            Ok(out)
        }
        13 => {
            let mut out = Decoded::new("xiaomi-atc");
            out.put("mac", mac(&data[0..6]));
            out.put(
                "temperature",
                round(f64::from(i16::from_be_bytes([data[6], data[7]])) * 0.1, 1),
            );
            out.put("humidity", data[8]);
            out.put("battery", data[9]);
            out.put(
                "batteryVoltage",
                round(
                    f64::from(u16::from_be_bytes([data[10], data[11]])) / 1000.0,
                    3,
                ),
            );
            out.put("counter", data[12]);
            Ok(out)
        }
        n if n < 13 => Err(DecodeError::Truncated { need: 13, got: n }),
        _ => Err(DecodeError::NotThisFormat("pvvx/ATC")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pvvx_and_atc() {
        // MAC A4:C1:38:12:34:56, 21.53 °C, 45.67 %, 2950 mV, 80 %, counter 7, flags 5.
        let pvvx = [
            0x56, 0x34, 0x12, 0x38, 0xC1, 0xA4, 0x69, 0x08, 0xD7, 0x11, 0x86, 0x0B, 80, 7, 5,
        ];
        let d = decode(&pvvx).unwrap();
        assert_eq!(
            (
                d.values["mac"].clone(),
                d.values["temperature"].clone(),
                d.values["humidity"].clone()
            ),
            (json!("A4:C1:38:12:34:56"), json!(21.53), json!(45.67))
        );
        assert_eq!(d.values["batteryVoltage"], json!(2.95));
        let atc = [
            0xA4, 0xC1, 0x38, 0x12, 0x34, 0x56, 0x00, 0xD7, 46, 80, 0x0B, 0x86, 9,
        ];
        let d = decode(&atc).unwrap();
        assert_eq!(
            (
                d.values["temperature"].clone(),
                d.values["humidity"].clone()
            ),
            (json!(21.5), json!(46))
        );
        assert!(matches!(
            decode(&[1, 2, 3]),
            Err(DecodeError::Truncated { .. })
        ));
        assert!(decode(&[0u8; 20]).is_err());
    }
}
