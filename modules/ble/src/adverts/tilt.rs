//! Tilt and Tilt Pro hydrometers: an iBeacon (Apple manufacturer data 0x004C, `02 15`)
//! whose UUID `A495BBx0-C5B1-4B44-B512-1370F02D74DE` names the colour (x = 1 red … 8
//! pink); major = temperature in °F, minor = specific gravity × 1000, big endian. The Tilt
//! Pro sends ten times the resolution (°F × 10, SG × 10000), recognised by minor ≥ 5000.
//! The measured-power byte is reported as sent.

use super::{Advert, DecodeError, Decoded, round, take};

const FORMAT: &str = "tilt";

/// Apple's company id (the iBeacon frame).
pub const TILT_COMPANY_ID: u16 = 0x004C;

const COLOURS: [&str; 8] = [
    "red", "green", "black", "purple", "orange", "blue", "yellow", "pink",
];

/// Decodes a Tilt advertisement (no key).
pub fn decode(ad: &Advert<'_>, _key: Option<&[u8]>) -> Result<Decoded, DecodeError> {
    let data = ad
        .manufacturer(TILT_COMPANY_ID)
        .ok_or(DecodeError::NotThisFormat("Tilt"))?;
    let d = take(data, 0, 23)?;
    let uuid = &d[2..18];
    let colour = (uuid[3] >> 4) as usize;
    if d[0..2] != [0x02, 0x15]
        || uuid[0..3] != [0xA4, 0x95, 0xBB]
        || uuid[3] & 0x0F != 0
        || uuid[4..]
            != [
                0xC5, 0xB1, 0x4B, 0x44, 0xB5, 0x12, 0x13, 0x70, 0xF0, 0x2D, 0x74, 0xDE,
            ]
        || !(1..=8).contains(&colour)
    {
        return Err(DecodeError::NotThisFormat("Tilt"));
    }
    let major = u16::from_be_bytes([d[18], d[19]]);
    let minor = u16::from_be_bytes([d[20], d[21]]);
    let pro = minor >= 5000;
    let (t_scale, g_scale) = if pro { (10.0, 10_000.0) } else { (1.0, 1000.0) };
    let fahrenheit = f64::from(major) / t_scale;
    let mut out = Decoded::new(FORMAT);
    out.put("color", COLOURS[colour - 1]);
    out.put("pro", pro);
    out.put("temperatureF", fahrenheit);
    out.put("temperature", round((fahrenheit - 32.0) * 5.0 / 9.0, 2));
    out.put("specificGravity", f64::from(minor) / g_scale);
    out.put("txPower", d[22] as i8);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde_json::json;

    use super::*;

    fn run(data: &[u8]) -> Result<Decoded, DecodeError> {
        let m = HashMap::from([(TILT_COMPANY_ID, data.to_vec())]);
        let s = HashMap::new();
        let ad = Advert {
            address: [1, 2, 3, 4, 5, 6],
            local_name: None,
            manufacturer_data: &m,
            service_data: &s,
            services: &[],
        };
        decode(&ad, None)
    }

    fn frame(colour: u8, major: u16, minor: u16) -> Vec<u8> {
        let mut f = vec![0x02, 0x15, 0xA4, 0x95, 0xBB, colour << 4];
        f.extend([
            0xC5, 0xB1, 0x4B, 0x44, 0xB5, 0x12, 0x13, 0x70, 0xF0, 0x2D, 0x74, 0xDE,
        ]);
        f.extend(major.to_be_bytes());
        f.extend(minor.to_be_bytes());
        f.push(0xC5);
        f
    }

    #[test]
    fn tilt_and_tilt_pro() {
        let d = run(&frame(1, 68, 1050)).unwrap();
        assert_eq!(d.values["color"], json!("red"));
        assert_eq!(d.values["temperatureF"], json!(68.0));
        assert_eq!(d.values["temperature"], json!(20.0));
        assert_eq!(d.values["specificGravity"], json!(1.05));
        assert_eq!(d.values["txPower"], json!(-59));
        let d = run(&frame(8, 685, 10_502)).unwrap();
        assert_eq!(d.values["pro"], json!(true));
        assert_eq!(d.values["temperatureF"], json!(68.5));
        assert_eq!(d.values["specificGravity"], json!(1.0502));
    }

    #[test]
    fn other_beacons_and_truncation() {
        assert_eq!(
            run(&frame(9, 1, 1)),
            Err(DecodeError::NotThisFormat("Tilt"))
        );
        let mut other = frame(1, 1, 1);
        other[10] = 0;
        assert_eq!(run(&other), Err(DecodeError::NotThisFormat("Tilt")));
        assert!(matches!(
            run(&frame(1, 1, 1)[..20]),
            Err(DecodeError::Truncated { .. })
        ));
    }
}
