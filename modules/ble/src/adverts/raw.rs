//! Raw mode: no decoding. The advertisement's manufacturer data (by company id) and
//! service data (by UUID, 16-bit ones shortened) as hex, so devices nobody wrote a
//! decoder for still reach the cloud and can be decoded there.

use serde_json::{Map, Value};

use super::{Advert, DecodeError, Decoded};

/// The name raw telemetry carries as its format.
pub const NAME: &str = "raw";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A UUID as written in raw telemetry: `fd3d` for 16-bit ones, else in full.
fn uuid_key(u: &uuid::Uuid) -> String {
    const BASE: u128 = 0x0000_0000_0000_1000_8000_0080_5F9B_34FB;
    let v = u.as_u128();
    if v & !(0xFFFF_u128 << 96) == BASE {
        format!("{:04x}", (v >> 96) & 0xFFFF)
    } else {
        u.to_string()
    }
}

/// Forwards the advertisement's data as hex.
pub fn decode(ad: &Advert<'_>, _key: Option<&[u8]>) -> Result<Decoded, DecodeError> {
    if ad.manufacturer_data.is_empty() && ad.service_data.is_empty() {
        return Err(DecodeError::NotThisFormat("advertisement with data"));
    }
    let mfg: Map<String, Value> = ad
        .manufacturer_data
        .iter()
        .map(|(c, v)| (format!("{c:04x}"), Value::String(hex(v))))
        .collect();
    let svc: Map<String, Value> = ad
        .service_data
        .iter()
        .map(|(u, v)| (uuid_key(u), Value::String(hex(v))))
        .collect();
    let mut out = Decoded::new(NAME);
    if !mfg.is_empty() {
        out.put("manufacturerData", Value::Object(mfg));
    }
    if !svc.is_empty() {
        out.put("serviceData", Value::Object(svc));
    }
    if let Some(name) = ad.local_name {
        out.put("localName", name);
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
    fn hex_by_company_and_uuid() {
        let mfg = HashMap::from([(0x1234, vec![0xDE, 0xAD])]);
        let svc = HashMap::from([(uuid16(0xFEAA), vec![0x01])]);
        let ad = Advert {
            address: [1; 6],
            local_name: Some("x"),
            manufacturer_data: &mfg,
            service_data: &svc,
            services: &[],
        };
        let d = decode(&ad, None).unwrap();
        assert_eq!(d.values["manufacturerData"], json!({"1234": "dead"}));
        assert_eq!(d.values["serviceData"], json!({"feaa": "01"}));
        let empty = HashMap::new();
        let none = HashMap::new();
        let ad = Advert {
            manufacturer_data: &empty,
            service_data: &none,
            ..ad
        };
        assert!(decode(&ad, None).is_err());
    }
}
