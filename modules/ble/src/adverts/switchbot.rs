//! SwitchBot sensors and plugs, unencrypted advertisement data: service data 0xFD3D
//! (older firmware 0x0D00) whose first byte (bit 7 cleared) names the device type, and
//! manufacturer data of Woan's company id 0x0969 (2409) that starts with the device's MAC.
//! Layouts as PySwitchbot's `parse_advertisement_data` reads them (its parsers are the
//! reference): thermo-hygrometers carry the reading in 3 bytes (tenths in the low nibble
//! of byte 0, whole degrees in bits 0–6 of byte 1 with bit 7 = positive, humidity in
//! bits 0–6 of byte 2 with bit 7 = °F display), battery in bits 0–6 of service byte 2.

use super::{Advert, DecodeError, Decoded};

const NAME: &str = "switchbot";

/// Woan Technology (SwitchBot) company id.
const WOAN: u16 = 0x0969;

/// Device type byte → model name, for the types decoded here.
const TYPES: &[(u8, &str)] = &[
    (b'T', "Meter"),
    (b'i', "Meter Plus"),
    (b'w', "Indoor/Outdoor Thermo-Hygrometer"),
    (b'4', "Meter Pro"),
    (0x14, "Meter Pro"),
    (b'5', "Meter Pro CO2"),
    (0x15, "Meter Pro CO2"),
    (b'd', "Contact Sensor"),
    (b's', "Motion Sensor"),
    (b'g', "Plug Mini (US)"),
    (b'j', "Plug Mini (JP)"),
];

/// The model of a service-data type byte (upper and lower case letters are one type).
fn model(type_byte: u8) -> Option<&'static str> {
    let t = type_byte & 0x7F;
    TYPES
        .iter()
        .find(|(b, _)| b.eq_ignore_ascii_case(&t))
        .map(|(_, m)| *m)
}

fn thermo(out: &mut Decoded, svc: &[u8], mfg: Option<&[u8]>) -> bool {
    let reading = match mfg.filter(|m| m.len() >= 11) {
        Some(m) => &m[8..11],
        None if svc.len() >= 6 => &svc[3..6],
        None => return false,
    };
    let magnitude = f64::from(reading[1] & 0x7F) + f64::from(reading[0] & 0x0F) / 10.0;
    let temp = if reading[1] & 0x80 != 0 {
        magnitude
    } else {
        -magnitude
    };
    let humidity = reading[2] & 0x7F;
    if temp == 0.0 && humidity == 0 {
        // Not measured yet.
        return false;
    }
    out.put("temperature", super::round(temp, 1));
    out.put("humidity", humidity);
    out.put("fahrenheit", reading[2] & 0x80 != 0);
    if svc.len() >= 3 {
        out.put("battery", svc[2] & 0x7F);
    }
    true
}

fn contact(out: &mut Decoded, svc: &[u8], mfg: Option<&[u8]>) -> bool {
    let full_mfg = mfg.filter(|m| m.len() >= 13);
    if full_mfg.is_none() && svc.len() < 9 {
        return false;
    }
    if svc.len() >= 3 {
        out.put("battery", svc[2] & 0x7F);
    }
    if svc.len() >= 2 {
        out.put("tested", svc[1] & 0x80 != 0);
    }
    let (motion, open, timeout, buttons, light) = match full_mfg {
        Some(m) => (
            m[7] & 0x80 != 0,
            m[7] & 0x10 != 0,
            m[7] & 0x20 != 0,
            m[12] & 0x0F,
            m[7] & 0x40 != 0,
        ),
        None => (
            svc[1] & 0x40 != 0,
            svc[3] & 0x02 != 0,
            svc[3] & 0x04 != 0,
            svc[8] & 0x0F,
            svc[3] & 0x01 != 0,
        ),
    };
    out.put("motion", motion);
    // A door left open past the timeout is still open.
    out.put("contactOpen", open || timeout);
    out.put("contactTimeout", timeout);
    out.put("light", light);
    out.put("buttonCount", buttons);
    true
}

fn motion(out: &mut Decoded, svc: &[u8], mfg: Option<&[u8]>) -> bool {
    if svc.len() >= 6 {
        out.put("tested", svc[1] & 0x80 != 0);
        out.put("motion", svc[1] & 0x40 != 0);
        out.put("battery", svc[2] & 0x7F);
        out.put("led", (svc[5] & 0x20) >> 5);
        out.put("iot", (svc[5] & 0x10) >> 4);
        out.put("senseDistance", (svc[5] & 0x0C) >> 2);
        out.put("lightIntensity", svc[5] & 0x03);
        out.put("light", svc[5] & 0x02 != 0);
    }
    if let Some(m) = mfg.filter(|m| m.len() >= 8) {
        out.put("motion", m[7] & 0x40 != 0);
        out.put("light", m[7] & 0x20 != 0);
    }
    !out.values.is_empty()
}

fn plug(out: &mut Decoded, mfg: Option<&[u8]>) -> bool {
    let Some(m) = mfg.filter(|m| m.len() >= 12) else {
        return false;
    };
    out.put("on", m[7] == 0x80);
    out.put("wifiRssi", -i32::from(m[9]));
    let raw = u16::from_be_bytes([m[10], m[11]]) & 0x7FFF;
    out.put("power", super::round(f64::from(raw) / 10.0, 1));
    true
}

/// Decodes a SwitchBot advertisement.
pub fn decode(ad: &Advert<'_>, _key: Option<&[u8]>) -> Result<Decoded, DecodeError> {
    let svc = ad
        .service16(0xFD3D)
        .or_else(|| ad.service16(0x0D00))
        .filter(|s| !s.is_empty())
        .ok_or(DecodeError::NotThisFormat("SwitchBot"))?;
    let name = model(svc[0]).ok_or(DecodeError::NotThisFormat("SwitchBot sensor or plug"))?;
    let mfg = ad.manufacturer(WOAN);
    let mut out = Decoded::new(NAME);
    let decoded = match name {
        "Contact Sensor" => contact(&mut out, svc, mfg),
        "Motion Sensor" => motion(&mut out, svc, mfg),
        "Plug Mini (US)" | "Plug Mini (JP)" => plug(&mut out, mfg),
        _ => {
            let ok = thermo(&mut out, svc, mfg);
            if ok && name == "Meter Pro CO2" {
                if let Some(m) = mfg.filter(|m| m.len() >= 15) {
                    let co2 = u16::from_be_bytes([m[13], m[14]]);
                    // Above the sensor's range: a parsing artefact, not a reading.
                    if co2 <= 9999 {
                        out.put("co2", co2);
                    }
                }
            }
            ok
        }
    };
    if !decoded {
        return Err(DecodeError::Truncated {
            need: 6,
            got: svc.len(),
        });
    }
    out.put("model", name);
    out.put("encrypted", svc[0] & 0x80 != 0);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde_json::json;

    use super::*;
    use crate::adverts::uuid16;

    fn run(svc: &[u8], mfg: Option<&[u8]>) -> Result<Decoded, DecodeError> {
        let mfg: HashMap<u16, Vec<u8>> = mfg.map(|m| (WOAN, m.to_vec())).into_iter().collect();
        let svc = HashMap::from([(uuid16(0xFD3D), svc.to_vec())]);
        decode(
            &Advert {
                address: [0xC0, 0xFF, 0xEE, 0, 0, 1],
                local_name: None,
                manufacturer_data: &mfg,
                service_data: &svc,
                services: &[],
            },
            None,
        )
    }

    #[test]
    fn meter_contact_plug() {
        // Meter: 'T', battery 98 %, 25.3 °C, 45 %.
        let d = run(&[0x54, 0x00, 0x62, 0x03, 0x99, 0x2D], None).unwrap();
        assert_eq!(d.values["temperature"], json!(25.3));
        assert_eq!(d.values["humidity"], json!(45));
        assert_eq!(d.values["battery"], json!(98));
        assert_eq!(d.values["model"], json!("Meter"));
        // Outdoor meter below zero: sign bit clear → −3.5 °C.
        let d = run(&[0x77, 0x00, 0x50, 0x05, 0x03, 0x40], None).unwrap();
        assert_eq!(d.values["temperature"], json!(-3.5));
        // Contact sensor from service data: open, light.
        let d = run(&[0x64, 0x40, 0x5A, 0x03, 0, 0, 0, 0, 0x02], None).unwrap();
        assert_eq!(d.values["contactOpen"], json!(true));
        assert_eq!(d.values["buttonCount"], json!(2));
        // Plug Mini: on, 123.4 W.
        let mfg = [0, 0, 0, 0, 0, 0, 0, 0x80, 0, 50, 0x04, 0xD2];
        let d = run(&[0x67, 0, 0], Some(&mfg)).unwrap();
        assert_eq!(
            (d.values["on"].clone(), d.values["power"].clone()),
            (json!(true), json!(123.4))
        );
        assert!(run(&[0x54, 0x00], None).is_err());
        assert!(run(&[0x48], None).is_err());
    }
}
