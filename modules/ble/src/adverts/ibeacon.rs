//! Apple iBeacon: manufacturer data of company 0x004C starting 0x02 0x15, then a 16-byte
//! proximity UUID, major and minor (big endian) and the calibrated TX power at 1 m.

use super::{DecodeError, Decoded, take};

/// Apple's company id.
pub const APPLE_COMPANY_ID: u16 = 0x004C;

/// Decodes the manufacturer data (without the company id).
pub fn decode(data: &[u8]) -> Result<Decoded, DecodeError> {
    let d = take(data, 0, 23)?;
    if d[0] != 0x02 || d[1] != 0x15 {
        return Err(DecodeError::NotThisFormat("iBeacon"));
    }
    let hex: String = d[2..18].iter().map(|b| format!("{b:02x}")).collect();
    let uuid = format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    );
    let mut out = Decoded::new("ibeacon");
    out.put("uuid", uuid);
    out.put("major", u16::from_be_bytes([d[18], d[19]]));
    out.put("minor", u16::from_be_bytes([d[20], d[21]]));
    out.put("txPower", i8::from_be_bytes([d[22]]));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ibeacon_frame() {
        let mut d = vec![0x02, 0x15];
        d.extend_from_slice(&[
            0xE2, 0xC5, 0x6D, 0xB5, 0xDF, 0xFB, 0x48, 0xD2, 0xB0, 0x60, 0xD0, 0xF5, 0xA7, 0x10,
            0x96, 0xE0,
        ]);
        d.extend_from_slice(&[0x00, 0x01, 0x00, 0x2A, 0xC5]);
        let b = decode(&d).unwrap();
        assert_eq!(
            b.values["uuid"],
            json!("e2c56db5-dffb-48d2-b060-d0f5a71096e0")
        );
        assert_eq!(
            (
                b.values["major"].clone(),
                b.values["minor"].clone(),
                b.values["txPower"].clone()
            ),
            (json!(1), json!(42), json!(-59))
        );
        assert!(matches!(
            decode(&d[..10]),
            Err(DecodeError::Truncated { .. })
        ));
        d[1] = 0x16;
        assert!(decode(&d).is_err());
    }
}
