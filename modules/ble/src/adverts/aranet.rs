//! Aranet4, Aranet2, Aranet Radiation and Aranet Radon Plus advertisements (SAF Tehnika,
//! company 0x0702), once "Smart Home integrations" is on in the Aranet app. Byte 0 is the
//! device type (1 Aranet2, 2 Radiation, 3 Radon) except on the Aranet4, which has none (it
//! is recognised by its name, or without a name by a 7- or 22-byte payload). Then a flags
//! byte (bit 5 = integrations on) and the firmware version, then the readings, little
//! endian, as the aranet4 package reads them (offsets below count the Aranet4's missing
//! type byte). Invalid-reading markers (high bits set) leave the field out.

use super::{Advert, DecodeError, Decoded, round};

const FORMAT: &str = "aranet";

/// SAF Tehnika's company id.
pub const ARANET_COMPANY_ID: u16 = 0x0702;

/// Decodes an Aranet advertisement (no key).
pub fn decode(ad: &Advert<'_>, _key: Option<&[u8]>) -> Result<Decoded, DecodeError> {
    let data = ad
        .manufacturer(ARANET_COMPANY_ID)
        .ok_or(DecodeError::NotThisFormat("Aranet"))?;
    if data.len() < 5 {
        return Err(DecodeError::Truncated {
            need: 5,
            got: data.len(),
        });
    }
    let name = ad.local_name.unwrap_or("");
    let named = ["Aranet4", "Aranet2", "Aranet\u{2622}", "AranetRn"]
        .iter()
        .any(|p| name.starts_with(p));
    let aranet4 = name.starts_with("Aranet4") || (!named && matches!(data.len(), 7 | 22));
    // The frame as if every model had the type byte.
    let shift = usize::from(aranet4);
    let at = |i: usize| -> Option<u8> {
        if i < shift {
            Some(0)
        } else {
            data.get(i - shift).copied()
        }
    };
    let len = data.len() + shift;
    let u16_at =
        |i: usize| -> u16 { u16::from_le_bytes([at(i).unwrap_or(0), at(i + 1).unwrap_or(0)]) };
    let byte = |i: usize| at(i).unwrap_or(0);
    if byte(1) & 0x20 == 0 {
        return Err(DecodeError::Invalid(
            FORMAT,
            "integrations are off: enable Smart Home integrations in the Aranet app",
        ));
    }
    let (kind, need) = match byte(0) {
        0 => ("Aranet4", 22),
        1 => ("Aranet2", 24),
        2 => ("Aranet Radiation", 24),
        3 => ("Aranet Radon", 24),
        _ => return Err(DecodeError::Invalid(FORMAT, "unknown device type")),
    };
    if len < need {
        return Err(DecodeError::Truncated {
            need: need - shift,
            got: data.len(),
        });
    }
    let mut out = Decoded::new(FORMAT);
    out.put("model", kind);
    let temperature = |raw: u16| (raw >> 14 & 1 == 0).then(|| round(f64::from(raw) * 0.05, 2));
    let tenth = |raw: u16| (raw >> 15 == 0).then(|| round(f64::from(raw) * 0.1, 1));
    let (battery, interval) = match byte(0) {
        0 => {
            if u16_at(9) >> 15 == 0 {
                out.put("co2", u16_at(9));
            }
            if let Some(t) = temperature(u16_at(11)) {
                out.put("temperature", t);
            }
            if let Some(p) = tenth(u16_at(13)) {
                out.put("pressure", p);
            }
            out.put("humidity", byte(15));
            out.put("status", byte(17));
            (16, 18)
        }
        1 => {
            if let Some(t) = temperature(u16_at(10)) {
                out.put("temperature", t);
            }
            if let Some(h) = tenth(u16_at(14)) {
                out.put("humidity", h);
            }
            out.put("humidityStatus", byte(18) & 0x03);
            out.put("temperatureStatus", (byte(18) >> 2) & 0x03);
            (17, 19)
        }
        2 => {
            let u32_at = |i: usize| u32::from(u16_at(i)) | (u32::from(u16_at(i + 2)) << 16);
            out.put("radiationDoseTotal", f64::from(u32_at(6)) / 1_000_000.0);
            out.put("radiationDuration", u32_at(10));
            out.put("radiationDoseRate", f64::from(u16_at(14)) / 1000.0);
            (17, 19)
        }
        _ => {
            if u16_at(8) < 0x1F00 {
                out.put("radon", u16_at(8));
            }
            // The Radon One has no temperature or humidity sensor (zeros).
            let rn1 = name.starts_with("AranetRn1");
            match temperature(u16_at(10)) {
                Some(t) if !rn1 && u16_at(10) != 0 => out.put("temperature", t),
                _ => {}
            }
            if let Some(p) = tenth(u16_at(12)) {
                out.put("pressure", p);
            }
            match tenth(u16_at(14)) {
                Some(h) if !rn1 && u16_at(14) != 0 => out.put("humidity", h),
                _ => {}
            }
            out.put("status", byte(18));
            (17, 19)
        }
    };
    out.put("battery", byte(battery));
    out.put("measurementInterval", u16_at(interval));
    out.put("measurementAge", u16_at(interval + 2));
    // Aranet2/Radiation/Radon frames end with a counter (the aranet4 package's
    // `counter`). The Aranet4's byte at that place is not documented, so it is not used:
    // a wrong packet id would drop readings as repeats.
    if let (false, Some(counter)) = (aranet4, at(interval + 4)) {
        out.packet_id = Some(u32::from(counter));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde_json::json;

    use super::*;

    fn run(name: Option<&str>, data: &[u8]) -> Result<Decoded, DecodeError> {
        let m = HashMap::from([(ARANET_COMPANY_ID, data.to_vec())]);
        let s = HashMap::new();
        let ad = Advert {
            address: [1, 2, 3, 4, 5, 6],
            local_name: name,
            manufacturer_data: &m,
            service_data: &s,
            services: &[],
        };
        decode(&ad, None)
    }

    /// The Aranet4 vector of the aranet4 package's tests (v1.3.5, 1091 ppm, 20.8 °C).
    const ARANET4: &[u8] =
        b"!\x05\x03\x01\x00\x05\x00\x01C\x04\x9f\x01\x8b'5\x0c\x02<\x00\x10\x00U";

    #[test]
    fn aranet4_with_and_without_name() {
        for name in [Some("Aranet4 12345"), None] {
            let d = run(name, ARANET4).unwrap();
            assert_eq!(d.values["co2"], json!(1091));
            assert_eq!(d.values["temperature"], json!(20.75));
            assert_eq!(d.values["pressure"], json!(1012.3));
            assert_eq!(d.values["humidity"], json!(53));
            assert_eq!(d.values["battery"], json!(12));
            assert_eq!(d.values["measurementInterval"], json!(60));
            assert_eq!(d.packet_id, None);
        }
    }

    #[test]
    fn aranet2_radiation_and_errors() {
        let a2 = b"\x01!\x04\x04\x01\x00\x00\x00\x00\x00\x99\x01\x00\x00\n\x02\x00;\x09x\x00R\x00d";
        let d = run(Some("Aranet2 278F8"), a2).unwrap();
        assert_eq!(d.values["temperature"], json!(20.45));
        assert_eq!(d.values["humidity"], json!(52.2));
        assert_eq!(d.values["battery"], json!(59));
        assert_eq!(d.packet_id, Some(0x64));
        let rad = b"\x02!&\x04\x01\x00\xd03\x00\x00l`\x06\x00\x82\x00\x00c\x00,\x01X\x00r";
        let d = run(Some("Aranet\u{2622} 27DB3"), rad).unwrap();
        assert_eq!(d.values["radiationDoseRate"], json!(0.13));
        assert_eq!(d.values["battery"], json!(99));
        // Integrations off, short and unknown frames.
        assert!(matches!(
            run(None, b"\x01\x00\x02\x01\x00\x00\x00"),
            Err(DecodeError::Invalid(..))
        ));
        assert!(matches!(
            run(None, b"\x01\x00"),
            Err(DecodeError::Truncated { .. })
        ));
        assert!(matches!(
            run(Some("Aranet2"), &a2[..20]),
            Err(DecodeError::Truncated { .. })
        ));
        assert!(run(Some("x"), b"\x09!\x00\x00\x00\x00\x00\x00").is_err());
    }
}
