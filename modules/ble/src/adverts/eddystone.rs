//! Google Eddystone (service data 0xFEAA): UID (namespace + instance), URL (scheme byte
//! and the specification's expansion codes) and unencrypted TLM (battery, temperature in
//! 8.8 fixed point, advertisement and uptime counters).

use super::{DecodeError, Decoded, round, take};

/// The Eddystone service UUID.
pub const EDDYSTONE_UUID16: u16 = 0xFEAA;

const SCHEMES: &[&str] = &["http://www.", "https://www.", "http://", "https://"];
const EXPANSIONS: &[&str] = &[
    ".com/", ".org/", ".edu/", ".net/", ".info/", ".biz/", ".gov/", ".com", ".org", ".edu", ".net",
    ".info", ".biz", ".gov",
];

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Decodes the 0xFEAA service data.
pub fn decode(data: &[u8]) -> Result<Decoded, DecodeError> {
    let frame = *take(data, 0, 1)?.first().unwrap_or(&0xFF);
    match frame {
        0x00 => {
            let d = take(data, 0, 18)?;
            let mut out = Decoded::new("eddystone-uid");
            out.put("txPower", i8::from_be_bytes([d[1]]));
            out.put("namespace", hex(&d[2..12]));
            out.put("instance", hex(&d[12..18]));
            Ok(out)
        }
        0x10 => {
            let d = take(data, 0, 3)?;
            let scheme = SCHEMES
                .get(usize::from(d[2]))
                .ok_or(DecodeError::NotThisFormat("Eddystone-URL"))?;
            let mut url = (*scheme).to_owned();
            for &b in &data[3..] {
                match EXPANSIONS.get(usize::from(b)) {
                    Some(e) => url.push_str(e),
                    None if (0x21..0x7F).contains(&b) => url.push(char::from(b)),
                    None => return Err(DecodeError::NotThisFormat("Eddystone-URL")),
                }
            }
            let mut out = Decoded::new("eddystone-url");
            out.put("txPower", i8::from_be_bytes([d[1]]));
            out.put("url", url);
            Ok(out)
        }
        0x20 => {
            let d = take(data, 0, 14)?;
            if d[1] != 0 {
                return Err(DecodeError::Encrypted);
            }
            let mut out = Decoded::new("eddystone-tlm");
            out.put(
                "batteryVoltage",
                round(f64::from(u16::from_be_bytes([d[2], d[3]])) / 1000.0, 3),
            );
            let t = i16::from_be_bytes([d[4], d[5]]);
            if t != i16::MIN {
                out.put("temperature", round(f64::from(t) / 256.0, 2));
            }
            out.put(
                "advertisementCount",
                u32::from_be_bytes([d[6], d[7], d[8], d[9]]),
            );
            out.put(
                "uptime",
                round(
                    f64::from(u32::from_be_bytes([d[10], d[11], d[12], d[13]])) / 10.0,
                    1,
                ),
            );
            Ok(out)
        }
        _ => Err(DecodeError::NotThisFormat("Eddystone")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn uid_url_tlm() {
        let mut uid = vec![0x00, 0xE7];
        uid.extend_from_slice(&[0x8B, 0x0C, 0xA7, 0x50, 0xE1, 0xA4, 0x7F, 0x35, 0x80, 0xAC]);
        uid.extend_from_slice(&[0x00, 0x00, 0x00, 0x00, 0x00, 0x01]);
        let d = decode(&uid).unwrap();
        assert_eq!(
            (
                d.values["namespace"].clone(),
                d.values["instance"].clone(),
                d.values["txPower"].clone()
            ),
            (
                json!("8b0ca750e1a47f3580ac"),
                json!("000000000001"),
                json!(-25)
            )
        );
        let url = [
            0x10, 0xF8, 0x03, b'g', b'o', b'o', b'.', b'g', b'l', 0x07, b'x',
        ];
        assert_eq!(
            decode(&url).unwrap().values["url"],
            json!("https://goo.gl.comx")
        );
        let tlm = [
            0x20, 0x00, 0x0B, 0xB8, 0x15, 0x80, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x64,
        ];
        let d = decode(&tlm).unwrap();
        assert_eq!(
            (
                d.values["batteryVoltage"].clone(),
                d.values["temperature"].clone(),
                d.values["uptime"].clone()
            ),
            (json!(3.0), json!(21.5), json!(10.0))
        );
        assert_eq!(
            decode(&[0x20, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(DecodeError::Encrypted)
        );
        assert!(decode(&[0x10, 0x00, 0x09]).is_err());
        assert!(decode(&[]).is_err());
    }
}
