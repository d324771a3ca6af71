//! BTHome v2 (service data UUID 0xFCD2), from the public specification at bthome.io:
//! a device-info byte (bit 0 encrypted, bit 2 trigger-based, bits 5–7 version = 2), then
//! objects `id, value` with a fixed size per id, little endian. Repeated ids are numbered
//! (`temperature`, `temperature_2`). Encrypted payloads are AES-CCM with the device's
//! 16-byte bind key: ciphertext, 4-byte counter, 4-byte MIC; nonce = MAC address + UUID
//! (little endian) + device-info byte + counter.

use aes::Aes128;
use ccm::aead::{AeadInPlace, KeyInit};
use ccm::consts::{U4, U13};
use serde_json::{Value, json};

use super::{DecodeError, Decoded, round, take};

/// The BTHome service data UUID.
pub const BTHOME_UUID16: u16 = 0xFCD2;

#[derive(Clone, Copy)]
enum Kind {
    /// Integer scaled by a factor.
    Num {
        signed: bool,
        factor: f64,
        digits: i32,
    },
    /// 0/1 state.
    Binary,
    /// Button events (1 byte) or dimmer events (2 bytes).
    Button,
    Dimmer,
    /// Length-prefixed text / raw bytes.
    Text,
    Raw,
    /// Seconds since the epoch.
    Timestamp,
    /// Firmware version (4 or 3 bytes, little endian: build last).
    Firmware,
}

const fn num(signed: bool, factor: f64, digits: i32) -> Kind {
    Kind::Num {
        signed,
        factor,
        digits,
    }
}

/// (id, field name, bytes, kind). Bytes 0 = length-prefixed.
const OBJECTS: &[(u8, &str, usize, Kind)] = &[
    (0x00, "packetId", 1, num(false, 1.0, 0)),
    (0x01, "battery", 1, num(false, 1.0, 0)),
    (0x02, "temperature", 2, num(true, 0.01, 2)),
    (0x03, "humidity", 2, num(false, 0.01, 2)),
    (0x04, "pressure", 3, num(false, 0.01, 2)),
    (0x05, "illuminance", 3, num(false, 0.01, 2)),
    (0x06, "massKg", 2, num(false, 0.01, 2)),
    (0x07, "massLb", 2, num(false, 0.01, 2)),
    (0x08, "dewPoint", 2, num(true, 0.01, 2)),
    (0x09, "count", 1, num(false, 1.0, 0)),
    (0x0A, "energy", 3, num(false, 0.001, 3)),
    (0x0B, "power", 3, num(false, 0.01, 2)),
    (0x0C, "voltage", 2, num(false, 0.001, 3)),
    (0x0D, "pm25", 2, num(false, 1.0, 0)),
    (0x0E, "pm10", 2, num(false, 1.0, 0)),
    (0x0F, "generic", 1, Kind::Binary),
    (0x10, "powerOn", 1, Kind::Binary),
    (0x11, "opening", 1, Kind::Binary),
    (0x12, "co2", 2, num(false, 1.0, 0)),
    (0x13, "tvoc", 2, num(false, 1.0, 0)),
    (0x14, "moisture", 2, num(false, 0.01, 2)),
    (0x15, "batteryLow", 1, Kind::Binary),
    (0x16, "batteryCharging", 1, Kind::Binary),
    (0x17, "carbonMonoxide", 1, Kind::Binary),
    (0x18, "cold", 1, Kind::Binary),
    (0x19, "connectivity", 1, Kind::Binary),
    (0x1A, "door", 1, Kind::Binary),
    (0x1B, "garageDoor", 1, Kind::Binary),
    (0x1C, "gas", 1, Kind::Binary),
    (0x1D, "heat", 1, Kind::Binary),
    (0x1E, "light", 1, Kind::Binary),
    (0x1F, "lock", 1, Kind::Binary),
    (0x20, "moist", 1, Kind::Binary),
    (0x21, "motion", 1, Kind::Binary),
    (0x22, "moving", 1, Kind::Binary),
    (0x23, "occupancy", 1, Kind::Binary),
    (0x24, "plug", 1, Kind::Binary),
    (0x25, "presence", 1, Kind::Binary),
    (0x26, "problem", 1, Kind::Binary),
    (0x27, "running", 1, Kind::Binary),
    (0x28, "safety", 1, Kind::Binary),
    (0x29, "smoke", 1, Kind::Binary),
    (0x2A, "sound", 1, Kind::Binary),
    (0x2B, "tamper", 1, Kind::Binary),
    (0x2C, "vibration", 1, Kind::Binary),
    (0x2D, "window", 1, Kind::Binary),
    (0x2E, "humidity", 1, num(false, 1.0, 0)),
    (0x2F, "moisture", 1, num(false, 1.0, 0)),
    (0x3A, "button", 1, Kind::Button),
    (0x3C, "dimmer", 2, Kind::Dimmer),
    (0x3D, "count", 2, num(false, 1.0, 0)),
    (0x3E, "count", 4, num(false, 1.0, 0)),
    (0x3F, "rotation", 2, num(true, 0.1, 1)),
    (0x40, "distanceMm", 2, num(false, 1.0, 0)),
    (0x41, "distanceM", 2, num(false, 0.1, 1)),
    (0x42, "duration", 3, num(false, 0.001, 3)),
    (0x43, "current", 2, num(false, 0.001, 3)),
    (0x44, "speed", 2, num(false, 0.01, 2)),
    (0x45, "temperature", 2, num(true, 0.1, 1)),
    (0x46, "uvIndex", 1, num(false, 0.1, 1)),
    (0x47, "volumeL", 2, num(false, 0.1, 1)),
    (0x48, "volumeMl", 2, num(false, 1.0, 0)),
    (0x49, "volumeFlowRate", 2, num(false, 0.001, 3)),
    (0x4A, "voltage", 2, num(false, 0.1, 1)),
    (0x4B, "gas", 3, num(false, 0.001, 3)),
    (0x4C, "gas", 4, num(false, 0.001, 3)),
    (0x4D, "energy", 4, num(false, 0.001, 3)),
    (0x4E, "volumeL", 4, num(false, 0.001, 3)),
    (0x4F, "water", 4, num(false, 0.001, 3)),
    (0x50, "timestamp", 4, Kind::Timestamp),
    (0x51, "acceleration", 2, num(false, 0.001, 3)),
    (0x52, "gyroscope", 2, num(false, 0.001, 3)),
    (0x53, "text", 0, Kind::Text),
    (0x54, "raw", 0, Kind::Raw),
    (0x55, "volumeStorage", 4, num(false, 0.001, 3)),
    (0x56, "conductivity", 2, num(false, 1.0, 0)),
    (0x57, "temperature", 1, num(true, 1.0, 0)),
    (0x58, "temperature", 1, num(true, 0.35, 2)),
    (0x59, "count", 1, num(true, 1.0, 0)),
    (0x5A, "count", 2, num(true, 1.0, 0)),
    (0x5B, "count", 4, num(true, 1.0, 0)),
    (0x5C, "power", 4, num(true, 0.01, 2)),
    (0x5D, "current", 2, num(true, 0.001, 3)),
    (0x5E, "direction", 2, num(false, 0.01, 2)),
    (0x5F, "precipitation", 2, num(false, 0.1, 1)),
    (0x60, "channel", 1, num(false, 1.0, 0)),
    (0x61, "rotationalSpeed", 2, num(false, 1.0, 0)),
    (0xF0, "deviceTypeId", 2, num(false, 1.0, 0)),
    (0xF1, "firmwareVersion", 4, Kind::Firmware),
    (0xF2, "firmwareVersion", 3, Kind::Firmware),
];

const BUTTON_EVENTS: &[&str] = &[
    "none",
    "press",
    "double_press",
    "triple_press",
    "long_press",
    "long_double_press",
    "long_triple_press",
    "hold_press",
];

fn le(bytes: &[u8], signed: bool) -> i64 {
    let mut v: u64 = 0;
    for (i, b) in bytes.iter().enumerate() {
        v |= u64::from(*b) << (8 * i);
    }
    if signed && !bytes.is_empty() && bytes[bytes.len() - 1] & 0x80 != 0 {
        let bits = 8 * bytes.len() as u32;
        (v as i64) - (1i64 << bits)
    } else {
        v as i64
    }
}

/// Decodes BTHome v2 service data for the device with `mac` (6 bytes, as printed, most
/// significant first). `bind_key` decrypts encrypted payloads.
pub fn decode(
    data: &[u8],
    mac: [u8; 6],
    bind_key: Option<&[u8; 16]>,
) -> Result<Decoded, DecodeError> {
    let info = *data
        .first()
        .ok_or(DecodeError::Truncated { need: 1, got: 0 })?;
    if info >> 5 != 2 {
        return Err(DecodeError::NotThisFormat("BTHome v2"));
    }
    let mut out = Decoded::new("bthome-v2");
    out.put("triggerBased", info & 0x04 != 0);
    let plain;
    let objects: &[u8] = if info & 0x01 != 0 {
        let key = bind_key.ok_or(DecodeError::Encrypted)?;
        let body = &data[1..];
        if body.len() < 8 {
            return Err(DecodeError::Truncated {
                need: 9,
                got: data.len(),
            });
        }
        let (cipher, tail) = body.split_at(body.len() - 8);
        let (counter, mic) = tail.split_at(4);
        let mut nonce = Vec::with_capacity(13);
        nonce.extend_from_slice(&mac);
        nonce.extend_from_slice(&BTHOME_UUID16.to_le_bytes());
        nonce.push(info);
        nonce.extend_from_slice(counter);
        let ccm = ccm::Ccm::<Aes128, U4, U13>::new(key.into());
        let mut buf = cipher.to_vec();
        ccm.decrypt_in_place_detached(nonce.as_slice().into(), &[], &mut buf, mic.into())
            .map_err(|_| DecodeError::Decrypt)?;
        out.put("encrypted", true);
        plain = buf;
        &plain
    } else {
        out.put("encrypted", false);
        &data[1..]
    };
    let mut at = 0;
    while at < objects.len() {
        let id = objects[at];
        let &(_, name, len, kind) = OBJECTS
            .iter()
            .find(|(oid, ..)| *oid == id)
            .ok_or(DecodeError::UnknownObject(id))?;
        at += 1;
        let len = if len == 0 {
            usize::from(*take(objects, at, 1)?.first().unwrap_or(&0)) + 1
        } else {
            len
        };
        let raw = take(objects, at, len)?;
        at += len;
        let value: Value = match kind {
            Kind::Num {
                signed,
                factor,
                digits,
            } => {
                let v = le(raw, signed);
                if factor == 1.0 {
                    json!(v)
                } else {
                    json!(round(v as f64 * factor, digits))
                }
            }
            Kind::Binary => json!(raw[0] != 0),
            Kind::Button => json!(
                BUTTON_EVENTS
                    .get(usize::from(raw[0]))
                    .copied()
                    .unwrap_or("unknown")
            ),
            Kind::Dimmer => json!(match raw[0] {
                0 => "none".to_owned(),
                1 => format!("rotate_left {}", raw[1]),
                2 => format!("rotate_right {}", raw[1]),
                _ => "unknown".to_owned(),
            }),
            Kind::Text => json!(String::from_utf8_lossy(&raw[1..])),
            Kind::Raw => json!(
                raw[1..]
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
            ),
            Kind::Timestamp => json!(le(raw, false)),
            Kind::Firmware => json!(
                raw.iter()
                    .rev()
                    .map(u8::to_string)
                    .collect::<Vec<_>>()
                    .join(".")
            ),
        };
        out.put_numbered(name, value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x54, 0x48, 0xE6, 0x8F, 0x80, 0xA5];

    #[test]
    fn spec_examples() {
        // Temperature 25.06 °C and humidity 50.55 % (bthome.io example).
        let d = decode(&[0x40, 0x02, 0xCA, 0x09, 0x03, 0xBF, 0x13], MAC, None).unwrap();
        assert_eq!(d.values["temperature"], json!(25.06));
        assert_eq!(d.values["humidity"], json!(50.55));
        // Two temperatures, a button event and a firmware version.
        let d = decode(
            &[
                0x40, 0x02, 0xCA, 0x09, 0x02, 0x9C, 0xFF, 0x3A, 0x01, 0xF2, 0x00, 0x01, 0x02,
            ],
            MAC,
            None,
        )
        .unwrap();
        assert_eq!(d.values["temperature_2"], json!(-1.0));
        assert_eq!(d.values["button"], json!("press"));
        assert_eq!(d.values["firmwareVersion"], json!("2.1.0"));
    }

    #[test]
    fn encrypted_without_and_with_the_key() {
        let key: [u8; 16] = *b"\x23\x1d\x39\xc1\xd7\xcc\x1a\xb1\xae\xe2\x24\xcd\x09\x6d\xb9\x32";
        // Encrypt 02 CA 09 03 BF 13 with counter 0x00112233 (round trip through our own AES-CCM).
        let info = 0x41u8;
        let counter = [0x33, 0x22, 0x11, 0x00];
        let mut nonce = MAC.to_vec();
        nonce.extend_from_slice(&BTHOME_UUID16.to_le_bytes());
        nonce.push(info);
        nonce.extend_from_slice(&counter);
        let ccm = ccm::Ccm::<Aes128, U4, U13>::new((&key).into());
        let mut buf = vec![0x02, 0xCA, 0x09, 0x03, 0xBF, 0x13];
        let tag = ccm
            .encrypt_in_place_detached(nonce.as_slice().into(), &[], &mut buf)
            .unwrap();
        let mut payload = vec![info];
        payload.extend_from_slice(&buf);
        payload.extend_from_slice(&counter);
        payload.extend_from_slice(&tag);
        assert_eq!(decode(&payload, MAC, None), Err(DecodeError::Encrypted));
        let d = decode(&payload, MAC, Some(&key)).unwrap();
        assert_eq!(d.values["temperature"], json!(25.06));
        let wrong = [0u8; 16];
        assert_eq!(
            decode(&payload, MAC, Some(&wrong)),
            Err(DecodeError::Decrypt)
        );
    }

    #[test]
    fn truncated_unknown_and_other_versions() {
        assert!(matches!(
            decode(&[0x40, 0x02, 0xCA], MAC, None),
            Err(DecodeError::Truncated { .. })
        ));
        assert_eq!(
            decode(&[0x40, 0x39, 0x00], MAC, None),
            Err(DecodeError::UnknownObject(0x39))
        );
        assert_eq!(
            decode(&[0x20, 0x02, 0xCA, 0x09], MAC, None),
            Err(DecodeError::NotThisFormat("BTHome v2"))
        );
        assert!(decode(&[], MAC, None).is_err());
        assert!(matches!(
            decode(&[0x40, 0x53, 0x05, b'a'], MAC, None),
            Err(DecodeError::Truncated { .. })
        ));
    }
}
