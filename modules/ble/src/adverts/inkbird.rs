//! Inkbird thermometers, hygrometers and BBQ probes. Their manufacturer data has no
//! real company id: the reading starts in the two bytes a company id would take, so the
//! decoder joins them back (company id little endian + value, as inkbird-ble does) and
//! tells the model by local name and length (facts from inkbird-ble, Home Assistant's
//! parser):
//! - `sps` (IBS-TH) and `tps` (IBS-TH2 / IBS-P01B), 9 bytes: temperature i16 ×0.01 °C,
//!   humidity u16 ×0.01 % (the P01B sends 0 or 0xFFFF: no humidity sensor), battery at 7;
//! - `ith-11-b`, `ith-13-b`, `ith-21-b`, `ibs-p02b`, 18 bytes: temperature i16 ×0.1 °C
//!   and humidity u16 ×0.1 % at 6, battery at 10;
//! - iBBQ / xBBQ (IBT-2X, IBT-4XS, IBT-6XS), 12/14/18/22 bytes: 1/2/4/6 probes i16
//!   ×0.1 °C from byte 10; 0xFFFF is an unplugged probe.
//!
//! Readings with humidity above 100 % or battery above 100 % are corrupt and dropped.

use super::{Advert, DecodeError, Decoded, round};

const NAME: &str = "inkbird";

fn i16le(b: &[u8], at: usize) -> i16 {
    i16::from_le_bytes([b[at], b[at + 1]])
}

fn u16le(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn sensor(out: &mut Decoded, lower: &str, d: &[u8]) -> Result<&'static str, DecodeError> {
    let corrupt = DecodeError::Invalid(NAME, "humidity or battery above 100 %");
    match (lower, d.len()) {
        ("sps" | "tps", 9) => {
            let hum = u16le(d, 2);
            let fitted = lower == "sps" || (hum != 0 && hum != 0xFFFF);
            if (fitted && hum > 10_000) || d[7] > 100 {
                return Err(corrupt);
            }
            out.put("temperature", round(f64::from(i16le(d, 0)) / 100.0, 2));
            if fitted {
                out.put("humidity", round(f64::from(hum) / 100.0, 2));
            }
            out.put("battery", d[7]);
            Ok(if lower == "sps" {
                "IBS-TH"
            } else {
                "IBS-TH2/P01B"
            })
        }
        ("ith-11-b" | "ith-13-b" | "ith-21-b" | "ibs-p02b", 18) => {
            let hum = u16le(d, 8);
            if hum > 1000 || d[10] > 100 {
                return Err(corrupt);
            }
            out.put("temperature", round(f64::from(i16le(d, 6)) / 10.0, 1));
            out.put("battery", d[10]);
            if hum != 0 {
                out.put("humidity", round(f64::from(hum) / 10.0, 1));
            }
            Ok(match lower {
                "ith-11-b" => "ITH-11-B",
                "ith-13-b" => "ITH-13-B",
                "ith-21-b" => "ITH-21-B",
                _ => "IBS-P02B",
            })
        }
        (_, n @ (12 | 14 | 18 | 22)) if lower.contains("ibbq") || lower.contains("xbbq") => {
            let probes = (n - 10) / 2;
            for p in 0..probes {
                let t = i16le(d, 10 + 2 * p);
                if t != -1 {
                    out.put(
                        &format!("temperatureProbe{}", p + 1),
                        round(f64::from(t) / 10.0, 1),
                    );
                }
            }
            Ok(match probes {
                1 => "iBBQ-1",
                2 => "iBBQ-2 (IBT-2X)",
                4 => "iBBQ-4 (IBT-4XS)",
                _ => "iBBQ-6 (IBT-6XS)",
            })
        }
        _ => Err(DecodeError::NotThisFormat("Inkbird")),
    }
}

/// Decodes an Inkbird advertisement.
pub fn decode(ad: &Advert<'_>, _key: Option<&[u8]>) -> Result<Decoded, DecodeError> {
    let lower = ad.local_name.unwrap_or("").to_ascii_lowercase();
    let mut entries: Vec<(&u16, &Vec<u8>)> = ad.manufacturer_data.iter().collect();
    entries.sort_by_key(|(c, _)| **c);
    let mut last = DecodeError::NotThisFormat("Inkbird");
    for (company, value) in entries {
        let mut d = company.to_le_bytes().to_vec();
        d.extend_from_slice(value);
        let mut out = Decoded::new(NAME);
        match sensor(&mut out, &lower, &d) {
            Ok(model) => {
                out.put("model", model);
                return Ok(out);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde_json::json;

    use super::*;

    fn run(name: &str, d: &[u8]) -> Result<Decoded, DecodeError> {
        let mfg = HashMap::from([(u16::from_le_bytes([d[0], d[1]]), d[2..].to_vec())]);
        let svc = HashMap::new();
        decode(
            &Advert {
                address: [0x49, 0x22, 0x05, 0x17, 0x2B, 0xAE],
                local_name: Some(name),
                manufacturer_data: &mfg,
                service_data: &svc,
                services: &[],
            },
            None,
        )
    }

    #[test]
    fn hygrometer_and_probes() {
        // IBS-TH: 25.63 °C, 57.45 %, battery 100 (inkbird-ble's test vector layout).
        let d = run(
            "sps",
            &[0x03, 0x0A, 0x71, 0x16, 0x00, 0x3F, 0x7E, 100, 0x08],
        )
        .unwrap();
        assert_eq!(d.values["temperature"], json!(25.63));
        assert_eq!(d.values["humidity"], json!(57.45));
        assert_eq!(d.values["battery"], json!(100));
        // IBS-P01B under `tps`: no humidity.
        let d = run("tps", &[0x03, 0x0A, 0xFF, 0xFF, 0, 0, 0, 90, 0]).unwrap();
        assert!(!d.values.contains_key("humidity"));
        // iBBQ-2: probe 1 at 21.0 °C, probe 2 unplugged.
        let mut bbq = vec![0u8; 10];
        bbq.extend_from_slice(&[0xD2, 0x00, 0xFF, 0xFF]);
        let d = run("iBBQ", &bbq).unwrap();
        assert_eq!(d.values["temperatureProbe1"], json!(21.0));
        assert!(!d.values.contains_key("temperatureProbe2"));
        assert!(run("sps", &[0x03, 0x0A, 0xFF, 0xFF, 0, 0, 0, 100, 0]).is_err());
        assert!(
            run(
                "nope",
                &[0x03, 0x0A, 0x71, 0x16, 0x00, 0x3F, 0x7E, 100, 0x08]
            )
            .is_err()
        );
    }
}
