//! ThermoBeacon (SensorBlue / Brifit) hygrometers: manufacturer data whose company id is
//! the device type (0x10, 0x11, 0x14, 0x15, 0x18, 0x1B, 0x30). Joined back with the id
//! (little endian) the 20-byte frame carries the button state in bit 7 of byte 3 and, at
//! byte 10, battery mV, temperature and humidity as 1/16 units, little endian (facts from
//! thermobeacon-ble, Home Assistant's parser). The 22-byte frames hold min/max history
//! and no current reading.

use super::{Advert, DecodeError, Decoded, round};

const NAME: &str = "thermobeacon";

/// Company ids that are ThermoBeacon device types.
const TYPES: &[u16] = &[0x10, 0x11, 0x14, 0x15, 0x18, 0x1B, 0x30];

/// Battery % from the cell voltage, piecewise as the vendor app (via thermobeacon-ble).
fn battery(mv: u16) -> f64 {
    let v = f64::from(mv);
    match mv {
        3000.. => 100.0,
        2600.. => 60.0 + (v - 2600.0) * 0.1,
        2500.. => 40.0 + (v - 2500.0) * 0.2,
        2450.. => 20.0 + (v - 2450.0) * 0.4,
        _ => 0.0,
    }
}

/// Decodes a ThermoBeacon advertisement.
pub fn decode(ad: &Advert<'_>, _key: Option<&[u8]>) -> Result<Decoded, DecodeError> {
    let (company, value) = TYPES
        .iter()
        .find_map(|t| ad.manufacturer(*t).map(|v| (*t, v)))
        .ok_or(DecodeError::NotThisFormat("ThermoBeacon"))?;
    let mut d = company.to_le_bytes().to_vec();
    d.extend_from_slice(value);
    match d.len() {
        20 => {}
        22 => {
            return Err(DecodeError::NotThisFormat(
                "ThermoBeacon reading (history frame)",
            ));
        }
        n => return Err(DecodeError::Truncated { need: 20, got: n }),
    }
    let mv = u16::from_le_bytes([d[10], d[11]]);
    let temp = f64::from(i16::from_le_bytes([d[12], d[13]])) / 16.0;
    let hum = f64::from(u16::from_le_bytes([d[14], d[15]])) / 16.0;
    if temp > 100.0 || hum > 100.0 {
        return Err(DecodeError::Invalid(
            NAME,
            "temperature or humidity above 100",
        ));
    }
    let mut out = Decoded::new(NAME);
    out.put("model", format!("ThermoBeacon type {company}"));
    // Sixteenths are exact in four decimals.
    out.put("temperature", round(temp, 4));
    out.put("humidity", round(hum, 4));
    out.put("batteryVoltage", round(f64::from(mv) / 1000.0, 3));
    out.put("battery", battery(mv).round() as u8);
    out.put("button", d[3] & 0x80 != 0);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde_json::json;

    use super::*;

    #[test]
    fn reading() {
        // 2.95 V, 21.5 °C (344/16), 45.25 % (724/16), button pressed.
        let mut v = vec![0u8; 18];
        v[1] = 0x80;
        v[8..10].copy_from_slice(&2950u16.to_le_bytes());
        v[10..12].copy_from_slice(&344i16.to_le_bytes());
        v[12..14].copy_from_slice(&724u16.to_le_bytes());
        let mfg = HashMap::from([(0x0011, v)]);
        let svc = HashMap::new();
        let ad = Advert {
            address: [1; 6],
            local_name: None,
            manufacturer_data: &mfg,
            service_data: &svc,
            services: &[],
        };
        let d = decode(&ad, None).unwrap();
        assert_eq!(d.values["temperature"], json!(21.5));
        assert_eq!(d.values["humidity"], json!(45.25));
        assert_eq!(d.values["battery"], json!(95));
        assert_eq!(d.values["button"], json!(true));
    }
}
