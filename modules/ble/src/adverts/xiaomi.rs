//! Xiaomi MiBeacon v2–v5 (service data 0xFE95), the stock firmware of Xiaomi's sensors.
//! Layout from Xiaomi's public MiBeacon description (iot.mi.com, "MiBeacon v5") and the
//! object list as xiaomi-ble (Home Assistant) decodes it: frame control (16 bits, little
//! endian: bit 3 encrypted, bit 4 MAC included, bit 5 capability included, bit 6 object
//! included, bit 7 mesh, bits 12–15 version), product id, frame counter, optional
//! reversed MAC and capability bytes, then objects `type (u16), length (u8), value`.
//! v4/v5 encryption is AES-CCM with the device's 16-byte bind key: nonce = MAC reversed +
//! product id + frame counter + 3-byte extension counter, associated data 0x11, 4-byte MIC;
//! the extension counter and MIC close the frame.

use super::{Advert, DecodeError, Decoded, round, take};
use aes::Aes128;
use ccm::aead::{AeadInPlace, KeyInit};
use ccm::consts::{U4, U12};

/// Xiaomi's MiBeacon service data UUID.
pub const MIBEACON_UUID16: u16 = 0xFE95;

const NAME: &str = "xiaomi-mibeacon";

/// Product ids of the sensors we name (xiaomi-ble's device table is the source).
const MODELS: &[(u16, &str)] = &[
    (0x0098, "HHCCJCY01"),
    (0x015D, "HHCCPOT002"),
    (0x01AA, "LYWSDCGQ"),
    (0x02DF, "JQJCY01YM"),
    (0x0347, "CGG1"),
    (0x0387, "MHO-C401"),
    (0x03BC, "GCLS002"),
    (0x03D6, "CGH1"),
    (0x045B, "LYWSD02"),
    (0x055B, "LYWSD03MMC"),
    (0x0576, "CGD1"),
    (0x066F, "CGDK2"),
    (0x06D3, "MHO-C303"),
    (0x07F6, "MJYD02YL"),
    (0x0863, "SJWS01LM"),
    (0x098B, "MCCGQ02HL"),
    (0x0997, "JTYJGD03MI"),
    (0x0A83, "CGPR1"),
    (0x0A8D, "RTCGQ02LM"),
    (0x0B48, "CGG1-ENCRYPTED"),
    (0x0C3C, "CGC1"),
    (0x1203, "XMWSDJ04MMC"),
    (0x16E4, "LYWSD02MMC"),
    (0x2542, "LYWSD02MMC"),
    (0x2832, "MJWSD05MMC"),
    (0x3531, "XMPIRO2SXS"),
    (0x4683, "XMOSB01XS"),
    (0x4C47, "MJWSD05MMC"),
    (0x4C60, "XMPIRO2GSXS"),
    (0x4F59, "CGDK3"),
    (0x55B5, "MJWSD06MMC"),
    (0x5BEA, "MJWSD06MMC"),
    (0x5DB1, "MBS17"),
    (0x6375, "SJWS02LM"),
    (0x7712, "zhiee.flood.sj01"),
    (0x78DB, "ESM787"),
];

/// The model name of a product id.
pub fn model(product: u16) -> Option<&'static str> {
    MODELS.iter().find(|(p, _)| *p == product).map(|(_, m)| *m)
}

fn u16le(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[0], b[1]])
}

fn f32le(b: &[u8]) -> f64 {
    f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Decodes one object into named values; unknown objects and unexpected sizes are skipped
/// (a frame may carry objects we do not know next to ones we do).
fn object(out: &mut Decoded, model: &str, id: u16, v: &[u8]) {
    let u24 = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], 0]);
    match (id, v.len()) {
        (0x1004, 2) => out.put("temperature", round(f64::from(u16le(v) as i16) / 10.0, 1)),
        (0x1006, 2) => out.put("humidity", round(f64::from(u16le(v)) / 10.0, 1)),
        (0x100D, 4) => {
            out.put("temperature", round(f64::from(u16le(v) as i16) / 10.0, 1));
            out.put("humidity", round(f64::from(u16le(&v[2..])) / 10.0, 1));
        }
        (0x100A, 1..) | (0x4803 | 0x4C03, 1..) => out.put("battery", v[0]),
        (0x1007, 3) => {
            let lux = u24(v);
            if matches!(model, "MJYD02YL" | "MCCGQ02HL") {
                out.put("light", lux == 100);
            } else {
                out.put("illuminance", lux);
            }
        }
        (0x1008, 1..) => out.put("moisture", v[0]),
        (0x1009, 2) => out.put("conductivity", u16le(v)),
        (0x1010, 2) => out.put("formaldehyde", round(f64::from(u16le(v)) / 100.0, 2)),
        (0x1005, 2..) => {
            out.put("powerOn", v[0] != 0);
            out.put("temperature", v[1]);
        }
        (0x1012, 1..) => out.put("powerOn", v[0] != 0),
        (0x1013, 1..) => out.put("consumable", v[0]),
        (0x1014, 1..) | (0x4806, 1) => out.put("moist", v[0] > 0),
        (0x1015, 1..) => out.put("smoke", v[0] > 0),
        (0x1017, 4) => {
            let idle = u32::from_le_bytes([v[0], v[1], v[2], v[3]]);
            out.put("noMotionSeconds", idle);
            // The Mi Home app counts anything within 30 s as motion.
            out.put("motion", idle <= 30);
        }
        (0x4818, 2) => {
            let idle = u16le(v);
            out.put("noMotionSeconds", idle);
            out.put("motion", idle <= 30);
        }
        (0x1018, 1..) => out.put("light", v[0] != 0),
        (0x1019, 1..) => match v[0] {
            0 => out.put("opening", true),
            1 => {
                out.put("opening", false);
                out.put("doorLeftOpen", false);
            }
            2 => {
                out.put("opening", true);
                out.put("doorLeftOpen", true);
            }
            _ => {}
        },
        (0x000F, 3) => {
            let lux = u24(v);
            out.put("motion", true);
            match model {
                "MJYD02YL" | "RTCGQ02LM" => out.put("light", lux >= 100),
                "CGPR1" => out.put("illuminance", lux),
                _ => {}
            }
        }
        (0x4801 | 0x4C01, 4) => {
            let digits = if id == 0x4801 { 1 } else { 2 };
            out.put("temperature", round(f32le(v), digits));
        }
        (0x4802 | 0x4C02, 1) => out.put("humidity", v[0]),
        (0x4808, 4) => out.put("humidity", round(f32le(v), 1)),
        (0x4C08, 4) => out.put("humidity", round(f32le(v), 2)),
        (0x4805, 4) => out.put("illuminance", round(f32le(v), 2)),
        (0x4A08, 4) => {
            out.put("motion", true);
            out.put("illuminance", round(f32le(v), 2));
        }
        (0x4A01, 1..) => out.put("batteryLow", v[0] != 0),
        (0x4804 | 0x4A12, 1..) => match v[0] {
            1 => out.put("opening", true),
            2 => {
                out.put("opening", false);
                out.put("doorLeftOpen", false);
            }
            _ => {}
        },
        (0x4A1A, 1..) if v[0] == 1 => {
            out.put("opening", true);
            out.put("doorLeftOpen", true);
        }
        _ => {}
    }
}

fn decrypt(
    data: &[u8],
    at: usize,
    mac_reversed: [u8; 6],
    key: Option<&[u8]>,
) -> Result<Vec<u8>, DecodeError> {
    // Ciphertext, 3-byte extension counter, 4-byte MIC (and at least one object header).
    take(data, at, 9)?;
    let key: &[u8; 16] = key
        .and_then(|k| k.try_into().ok())
        .ok_or(DecodeError::Encrypted)?;
    let n = data.len();
    let mut nonce = [0u8; 12];
    nonce[..6].copy_from_slice(&mac_reversed);
    nonce[6..9].copy_from_slice(&data[2..5]);
    nonce[9..].copy_from_slice(&data[n - 7..n - 4]);
    let mut buf = data[at..n - 7].to_vec();
    ccm::Ccm::<Aes128, U4, U12>::new(key.into())
        .decrypt_in_place_detached((&nonce).into(), &[0x11], &mut buf, data[n - 4..].into())
        .map_err(|_| DecodeError::Decrypt)?;
    Ok(buf)
}

/// Decodes MiBeacon service data; `key` is the device's bind key for encrypted frames.
pub fn decode(ad: &Advert<'_>, key: Option<&[u8]>) -> Result<Decoded, DecodeError> {
    let data = ad
        .service16(MIBEACON_UUID16)
        .ok_or(DecodeError::NotThisFormat("MiBeacon"))?;
    take(data, 0, 5)?;
    let frctrl = u16le(data);
    let version = frctrl >> 12;
    if frctrl & 0x0080 != 0 {
        return Err(DecodeError::Invalid(NAME, "mesh frames are not supported"));
    }
    if version < 2 {
        return Err(DecodeError::Invalid(
            NAME,
            "version 1 frames are not supported",
        ));
    }
    let product = u16le(&data[2..]);
    let counter = data[4];
    let mut at = 5;
    let mut mac_reversed = ad.address;
    mac_reversed.reverse();
    if frctrl & 0x0010 != 0 {
        let m = take(data, at, 6)?;
        mac_reversed.copy_from_slice(m);
        if mac_reversed.iter().rev().ne(ad.address.iter()) {
            return Err(DecodeError::Invalid(
                NAME,
                "the frame's MAC is not the sender's",
            ));
        }
        at += 6;
    }
    if frctrl & 0x0020 != 0 {
        let capability = take(data, at, 1)?[0];
        at += 1;
        if capability & 0x20 != 0 {
            take(data, at, 1)?;
            at += 1;
        }
    }
    if frctrl & 0x0040 == 0 {
        // A pairing beacon with no reading.
        return Err(DecodeError::NotThisFormat("MiBeacon with readings"));
    }
    let model_name = model(product).unwrap_or("unknown");
    let mut out = Decoded::new(NAME);
    out.put("model", model_name);
    out.put("productId", product);
    out.packet_id = Some(u32::from(counter));
    let encrypted = frctrl & 0x0008 != 0;
    let plain;
    let objects: &[u8] = if encrypted {
        if version <= 3 {
            return Err(DecodeError::Invalid(
                NAME,
                "legacy v2/v3 encryption is not supported",
            ));
        }
        plain = decrypt(data, at, mac_reversed, key)?;
        &plain
    } else {
        take(data, at, 3)?;
        &data[at..]
    };
    out.put("encrypted", encrypted);
    let mut i = 0;
    while i + 3 <= objects.len() {
        let id = u16le(&objects[i..]);
        let len = usize::from(objects[i + 2]);
        let value = take(objects, i + 3, len)?;
        object(&mut out, model_name, id, value);
        i += 3 + len;
    }
    Ok(out)
}

/// Encrypts objects into a v5 frame (for tests and fixtures: devices do this, not us).
pub fn encrypt_v5(
    mac: [u8; 6],
    product: u16,
    counter: u8,
    ext: [u8; 3],
    key: &[u8; 16],
    objects: &[u8],
) -> Vec<u8> {
    // Version 5, encrypted, objects included, no MAC.
    let mut frame = vec![0x48, 0x58];
    frame.extend_from_slice(&product.to_le_bytes());
    frame.push(counter);
    let mut nonce = [0u8; 12];
    let mut rev = mac;
    rev.reverse();
    nonce[..6].copy_from_slice(&rev);
    nonce[6..9].copy_from_slice(&frame[2..5]);
    nonce[9..].copy_from_slice(&ext);
    let mut buf = objects.to_vec();
    let tag = ccm::Ccm::<Aes128, U4, U12>::new(key.into())
        .encrypt_in_place_detached((&nonce).into(), &[0x11], &mut buf)
        .unwrap_or_default();
    frame.extend_from_slice(&buf);
    frame.extend_from_slice(&ext);
    frame.extend_from_slice(&tag);
    frame
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde_json::json;

    use super::*;
    use crate::adverts::uuid16;

    fn run(mac: [u8; 6], data: &[u8], key: Option<&[u8]>) -> Result<Decoded, DecodeError> {
        let mfg = HashMap::new();
        let svc = HashMap::from([(uuid16(MIBEACON_UUID16), data.to_vec())]);
        decode(
            &Advert {
                address: mac,
                local_name: None,
                manufacturer_data: &mfg,
                service_data: &svc,
                services: &[],
            },
            key,
        )
    }

    #[test]
    fn plain_frames() {
        // LYWSDCGQ, MAC included, temperature 25.4 °C and humidity 43.1 % (object 0x100D).
        let mac = [0x58, 0x2D, 0x34, 0x35, 0x96, 0x40];
        let data = [
            0x50, 0x20, 0xAA, 0x01, 0xDA, 0x40, 0x96, 0x35, 0x34, 0x2D, 0x58, 0x0D, 0x10, 0x04,
            0xFE, 0x00, 0xAF, 0x01,
        ];
        let d = run(mac, &data, None).unwrap();
        assert_eq!(d.values["model"], json!("LYWSDCGQ"));
        assert_eq!(d.values["temperature"], json!(25.4));
        assert_eq!(d.values["humidity"], json!(43.1));
        assert_eq!(d.packet_id, Some(0xDA));
        // The same frame from another address is refused.
        assert!(run([1, 2, 3, 4, 5, 6], &data, None).is_err());
        // Truncations never panic and never decode.
        for n in 0..data.len() - 3 {
            assert!(run(mac, &data[..n], None).is_err(), "{n}");
        }
    }

    #[test]
    fn encrypted_with_right_wrong_and_no_key() {
        let mac = [0xA4, 0xC1, 0x38, 0x12, 0x34, 0x56];
        let key = *b"\x81\x4a\xac\x74\xc4\xf1\x76\x32\x44\x21\x3e\x5d\x45\x42\xa6\xa3";
        // Temperature 21.6 °C (0x1004) and battery 87 % (0x100A).
        let objects = [0x04, 0x10, 0x02, 0xD8, 0x00, 0x0A, 0x10, 0x01, 87];
        let frame = encrypt_v5(mac, 0x055B, 7, [1, 2, 3], &key, &objects);
        let d = run(mac, &frame, Some(&key)).unwrap();
        assert_eq!(d.values["temperature"], json!(21.6));
        assert_eq!(d.values["battery"], json!(87));
        assert_eq!(d.values["model"], json!("LYWSD03MMC"));
        assert_eq!(d.packet_id, Some(7));
        assert_eq!(run(mac, &frame, None), Err(DecodeError::Encrypted));
        assert_eq!(
            run(mac, &frame, Some(&[0u8; 16])),
            Err(DecodeError::Decrypt)
        );
        let mut tampered = frame.clone();
        tampered[6] ^= 1;
        assert_eq!(run(mac, &tampered, Some(&key)), Err(DecodeError::Decrypt));
    }
}
