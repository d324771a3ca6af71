//! Standard GATT characteristics, pure: the bundled GATT maps (which characteristics to
//! read, subscribe to, or read once as device facts) and their decoders, including the
//! IEEE-11073 SFLOAT/FLOAT formats of the health profiles.

use serde_json::{Value, json};

use crate::adverts::DecodeError;

/// How a characteristic is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Read on the device's poll interval.
    Read,
    /// Subscribe to notifications (and re-subscribe after reconnecting).
    Notify,
    /// Read once per connection; reported as a device fact.
    Fact,
}

/// The bundled GATT map documents: the single source of which characteristics a map
/// reads, subscribes to or reads once.
pub const DOCS: &[&str] = &[
    include_str!("../../../device-maps/ble/ble-battery.json"),
    include_str!("../../../device-maps/ble/ble-heart-rate.json"),
    include_str!("../../../device-maps/ble/ble-environmental-sensing.json"),
    include_str!("../../../device-maps/ble/ble-device-information.json"),
];

/// A GATT map as loaded from its document: name and (16-bit UUID, mode) per characteristic.
type GattMap = (String, Vec<(u16, Mode)>);

/// The documents parsed once. A document that does not parse is left out (the
/// `bundled_gatt_documents_load` test keeps them all loadable).
fn loaded() -> &'static [GattMap] {
    static MAPS: std::sync::OnceLock<Vec<GattMap>> = std::sync::OnceLock::new();
    MAPS.get_or_init(|| DOCS.iter().filter_map(|d| parse_doc(d)).collect())
}

fn parse_doc(text: &str) -> Option<GattMap> {
    use crate::config::map_doc::{CharacteristicMode, MapDoc};
    let doc: MapDoc = serde_json::from_str(text).ok()?;
    let chars = doc
        .characteristics?
        .iter()
        .map(|c| {
            let uuid = uuid::Uuid::parse_str(&c.uuid).ok()?;
            let short = u16::try_from((uuid.as_u128() >> 96) & 0xFFFF).ok()?;
            let mode = match c.mode {
                CharacteristicMode::Read => Mode::Read,
                CharacteristicMode::Notify => Mode::Notify,
                CharacteristicMode::Fact => Mode::Fact,
            };
            Some((short, mode))
        })
        .collect::<Option<Vec<_>>>()?;
    Some((doc.name, chars))
}

/// The characteristics of a bundled GATT map: (16-bit UUID, mode).
pub fn map(name: &str) -> Option<&'static [(u16, Mode)]> {
    loaded()
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, c)| c.as_slice())
}

/// The names of the bundled GATT maps.
pub fn names() -> impl Iterator<Item = &'static str> {
    loaded().iter().map(|(n, _)| n.as_str())
}

/// IEEE-11073 16-bit SFLOAT: 4-bit exponent, 12-bit mantissa (both signed); NaN/NRes/±∞
/// special values give `None`.
pub fn sfloat(raw: u16) -> Option<f64> {
    let mantissa = i32::from(raw & 0x0FFF);
    // NaN, NRes, +INF, -INF and reserved.
    if (0x07FE..=0x0802).contains(&mantissa) {
        return None;
    }
    let mantissa = if mantissa >= 0x0800 {
        mantissa - 0x1000
    } else {
        mantissa
    };
    let exp = i32::from(raw >> 12);
    let exp = if exp >= 8 { exp - 16 } else { exp };
    Some(scaled(mantissa, exp))
}

/// IEEE-11073 32-bit FLOAT: 8-bit exponent, 24-bit mantissa (both signed).
pub fn float32(raw: u32) -> Option<f64> {
    let mantissa = (raw & 0x00FF_FFFF) as i32;
    if (0x007F_FFFE..=0x0080_0002).contains(&mantissa) {
        return None;
    }
    let mantissa = if mantissa >= 0x0080_0000 {
        mantissa - 0x0100_0000
    } else {
        mantissa
    };
    let exp = i32::from((raw >> 24) as u8 as i8);
    Some(scaled(mantissa, exp))
}

/// mantissa × 10^exp, rounded to the digits the exponent implies (36.6, not 36.600000000000001).
fn scaled(mantissa: i32, exp: i32) -> f64 {
    let v = f64::from(mantissa) * 10f64.powi(exp);
    if exp < 0 {
        let f = 10f64.powi(-exp);
        (v * f).round() / f
    } else {
        v
    }
}

fn need(data: &[u8], n: usize) -> Result<(), DecodeError> {
    if data.len() < n {
        Err(DecodeError::Truncated {
            need: n,
            got: data.len(),
        })
    } else {
        Ok(())
    }
}

fn text(data: &[u8]) -> Value {
    json!(String::from_utf8_lossy(data).trim_end_matches('\0'))
}

/// Decodes a characteristic value into named fields.
pub fn decode(uuid16: u16, data: &[u8]) -> Result<Vec<(&'static str, Value)>, DecodeError> {
    Ok(match uuid16 {
        0x2A19 => {
            need(data, 1)?;
            vec![("battery", json!(data[0]))]
        }
        0x2A37 => {
            need(data, 2)?;
            let flags = data[0];
            let mut at = 1;
            let mut out = Vec::new();
            if flags & 0x01 != 0 {
                need(data, 3)?;
                out.push(("heartRate", json!(u16::from_le_bytes([data[1], data[2]]))));
                at = 3;
            } else {
                out.push(("heartRate", json!(data[1])));
                at += 1;
            }
            if flags & 0x06 == 0x06 {
                out.push(("sensorContact", json!(true)));
            } else if flags & 0x06 == 0x04 {
                out.push(("sensorContact", json!(false)));
            }
            if flags & 0x08 != 0 {
                need(data, at + 2)?;
                out.push((
                    "energyExpended",
                    json!(u16::from_le_bytes([data[at], data[at + 1]])),
                ));
                at += 2;
            }
            if flags & 0x10 != 0 {
                let rr: Vec<f64> = data[at..]
                    .chunks_exact(2)
                    .map(|c| {
                        (f64::from(u16::from_le_bytes([c[0], c[1]])) / 1024.0 * 1000.0).round()
                            / 1000.0
                    })
                    .collect();
                out.push(("rrIntervals", json!(rr)));
            }
            out
        }
        0x2A6E => {
            need(data, 2)?;
            vec![(
                "temperature",
                json!(f64::from(i16::from_le_bytes([data[0], data[1]])) / 100.0),
            )]
        }
        0x2A6F => {
            need(data, 2)?;
            vec![(
                "humidity",
                json!(f64::from(u16::from_le_bytes([data[0], data[1]])) / 100.0),
            )]
        }
        0x2A6D => {
            need(data, 4)?;
            // 0.1 Pa resolution, reported in hPa.
            let pa = f64::from(u32::from_le_bytes([data[0], data[1], data[2], data[3]])) / 10.0;
            vec![("pressure", json!((pa / 100.0 * 1000.0).round() / 1000.0))]
        }
        0x2A1C => {
            need(data, 5)?;
            let t = float32(u32::from_le_bytes([data[1], data[2], data[3], data[4]]));
            let name = if data[0] & 0x01 != 0 {
                "temperatureF"
            } else {
                "temperature"
            };
            vec![(
                name,
                t.map_or(Value::Null, |v| json!((v * 1000.0).round() / 1000.0)),
            )]
        }
        0x2A29 => vec![("manufacturer", text(data))],
        0x2A24 => vec![("model", text(data))],
        0x2A25 => vec![("serialNumber", text(data))],
        0x2A26 => vec![("firmware", text(data))],
        0x2A27 => vec![("hardware", text(data))],
        0x2A28 => vec![("software", text(data))],
        _ => return Err(DecodeError::NotThisFormat("known characteristic")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_characteristics() {
        assert_eq!(decode(0x2A19, &[85]).unwrap(), vec![("battery", json!(85))]);
        assert_eq!(
            decode(0x2A6E, &[0x69, 0x08]).unwrap(),
            vec![("temperature", json!(21.53))]
        );
        assert_eq!(
            decode(0x2A6F, &[0xD7, 0x11]).unwrap(),
            vec![("humidity", json!(45.67))]
        );
        assert_eq!(
            decode(0x2A6D, &[0xFC, 0x76, 0x0F, 0x00]).unwrap(),
            vec![("pressure", json!(1013.5))]
        );
        // 8-bit heart rate 72 with contact detected, RR 1024 → 1.0 s.
        let hr = decode(0x2A37, &[0x16, 72, 0x00, 0x04]).unwrap();
        assert_eq!(
            hr,
            vec![
                ("heartRate", json!(72)),
                ("sensorContact", json!(true)),
                ("rrIntervals", json!([1.0]))
            ]
        );
        assert_eq!(
            decode(0x2A37, &[0x01, 0x2C, 0x01]).unwrap()[0],
            ("heartRate", json!(300))
        );
        assert_eq!(
            decode(0x2A26, b"1.2.3\0").unwrap(),
            vec![("firmware", json!("1.2.3"))]
        );
        assert!(matches!(
            decode(0x2A37, &[0x01, 0x2C]),
            Err(DecodeError::Truncated { .. })
        ));
        assert!(decode(0x2A19, &[]).is_err());
    }

    #[test]
    fn bundled_gatt_documents_load() {
        assert_eq!(loaded().len(), DOCS.len());
        assert_eq!(map("ble-battery"), Some(&[(0x2A19, Mode::Read)][..]));
        assert_eq!(map("ble-heart-rate"), Some(&[(0x2A37, Mode::Notify)][..]));
        assert_eq!(
            map("ble-environmental-sensing"),
            Some(
                &[
                    (0x2A6E, Mode::Read),
                    (0x2A6F, Mode::Read),
                    (0x2A6D, Mode::Read)
                ][..]
            )
        );
        let info = map("ble-device-information").unwrap();
        assert_eq!(info.len(), 6);
        assert!(info.iter().all(|(_, m)| *m == Mode::Fact));
        assert_eq!(map("nope"), None);
    }

    #[test]
    fn ieee_11073() {
        assert_eq!(sfloat(0xF16E), Some(36.6)); // exponent -1, mantissa 366
        assert_eq!(sfloat(0x07FF), None);
        assert_eq!(float32(0xFF00_016E), Some(36.6));
        assert_eq!(
            decode(0x2A1C, &[0x00, 0x6E, 0x01, 0x00, 0xFF]).unwrap(),
            vec![("temperature", json!(36.6))]
        );
    }
}
