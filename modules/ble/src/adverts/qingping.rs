//! Qingping (ClearGrass) sensors: service data 0xFDCD. Byte 0 is the frame control
//! (bit 6: an event frame), byte 1 the device type, bytes 2–7 the MAC, then objects
//! `id, size, value` (facts from qingping-ble, Home Assistant's parser): 0x01 temperature
//! i16 ×0.1 °C + humidity u16 ×0.1 %, 0x02 battery (0xFF = 100), 0x04 door, 0x07
//! pressure ×0.1 hPa, 0x08 motion + illuminance, 0x09 illuminance, 0x11 light, 0x12
//! PM2.5 + PM10, 0x13 CO2, 0x15 VOC index, 0x19 noise dB.

use super::{Advert, DecodeError, Decoded, round, take};

const NAME: &str = "qingping";

/// Device type byte → model.
const MODELS: &[(u8, &str)] = &[
    (0x01, "CGG1"),
    (0x04, "CGH1"),
    (0x07, "CGG1"),
    (0x09, "CGP1W"),
    (0x0C, "CGD1"),
    (0x0E, "CGDN1"),
    (0x0F, "CGM1"),
    (0x10, "CGDK2"),
    (0x12, "CGPR1"),
    (0x15, "CGF1W"),
    (0x16, "CGG1"),
    (0x18, "CGP23W"),
    (0x1E, "CGC1"),
    (0x24, "CGDN1"),
    (0x26, "CGP23W"),
    (0x33, "CGP22C"),
    (0x4F, "CGG3"),
    (0x52, "CGR1PC"),
    (0x5D, "CGP22C"),
    (0x62, "CGR1PC"),
];

fn u16le(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn object(out: &mut Decoded, id: u8, v: &[u8], event: bool) {
    match (id, v.len()) {
        (0x01, 4) => {
            out.put(
                "temperature",
                round(f64::from(u16le(v, 0) as i16) / 10.0, 1),
            );
            out.put("humidity", round(f64::from(u16le(v, 2)) / 10.0, 1));
        }
        (0x02, 1) => out.put("battery", if v[0] == 0xFF { 100 } else { v[0] }),
        (0x04, 1) => {
            // 0 open, 1 closed, 2 left open (as qingping-ble reads it).
            out.put("doorOpen", matches!(v[0], 0 | 2));
            out.put("doorLeftOpen", v[0] == 2);
        }
        (0x07, 2) => out.put("pressure", round(f64::from(u16le(v, 0)) / 10.0, 1)),
        (0x08, 4) => {
            out.put("motion", v[0] != 0);
            if !event {
                out.put(
                    "illuminance",
                    u32::from(u16le(v, 1)) + (u32::from(v[3]) << 16),
                );
            }
        }
        (0x09, 4) => out.put("illuminance", u32::from_le_bytes([v[0], v[1], v[2], v[3]])),
        (0x11, 1) => out.put("light", v[0] != 0),
        (0x12, 4) => {
            out.put("pm25", u16le(v, 0));
            out.put("pm10", u16le(v, 2));
        }
        (0x13, 2) => out.put("co2", u16le(v, 0)),
        (0x15, 2) => out.put("vocIndex", u16le(v, 0)),
        (0x19, 1) => out.put("noise", v[0]),
        _ => {}
    }
}

/// Decodes Qingping service data.
pub fn decode(ad: &Advert<'_>, _key: Option<&[u8]>) -> Result<Decoded, DecodeError> {
    let d = ad
        .service16(0xFDCD)
        .ok_or(DecodeError::NotThisFormat("Qingping"))?;
    take(d, 0, 8)?;
    let model = MODELS
        .iter()
        .find(|(t, _)| *t == d[1])
        .map(|(_, m)| *m)
        .ok_or(DecodeError::NotThisFormat("Qingping sensor"))?;
    let event = d[0] & 0x40 != 0;
    let mut out = Decoded::new(NAME);
    out.put("model", model);
    let mut at = 8;
    while at + 2 <= d.len() {
        let (id, size) = (d[at], usize::from(d[at + 1]));
        if let Some(v) = d.get(at + 2..at + 2 + size) {
            object(&mut out, id, v, event);
        }
        at += 2 + size;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde_json::json;

    use super::*;
    use crate::adverts::uuid16;

    #[test]
    fn temperature_humidity_battery_pressure() {
        // CGP23W: 21.6 °C, 48.3 %, battery 80, 1013.2 hPa.
        let data = [
            0x08, 0x18, 1, 2, 3, 4, 5, 6, 0x01, 0x04, 0xD8, 0x00, 0xE3, 0x01, 0x02, 0x01, 80, 0x07,
            0x02, 0x94, 0x27,
        ];
        let mfg = HashMap::new();
        let svc = HashMap::from([(uuid16(0xFDCD), data.to_vec())]);
        let ad = Advert {
            address: [6, 5, 4, 3, 2, 1],
            local_name: None,
            manufacturer_data: &mfg,
            service_data: &svc,
            services: &[],
        };
        let d = decode(&ad, None).unwrap();
        assert_eq!(d.values["temperature"], json!(21.6));
        assert_eq!(d.values["humidity"], json!(48.3));
        assert_eq!(d.values["battery"], json!(80));
        assert_eq!(d.values["pressure"], json!(1013.2));
        assert_eq!(d.values["model"], json!("CGP23W"));
    }
}
