//! Per-device keys (MiBeacon and BTHome bind keys, Victron's advertisement key): from
//! the device's `bindKey` or from a mounted keys file (`keysFile`, a JSON object
//! `{"<deviceId or MAC>": "32 hex digits"}`, e.g. a Kubernetes or IoT Edge secret), so
//! keys need not sit in the module twin. Keys are never logged, and every `bindKey` the
//! module reports back (Plug and Play acknowledgements echo the desired value) is masked.

use std::collections::BTreeMap;

use bridge_core::config::ConfigIssue;
use serde_json::Value;

/// What a masked key reads as.
pub const MASK: &str = "***";

/// A 16-byte key written as 32 hexadecimal digits, or a 12-byte MiBeacon v2/v3 (legacy)
/// bind key written as 24, widened to the 16 bytes its AES key is: `8D 3D 3C 97` inserted
/// after the sixth byte (as xiaomi-ble and ble_monitor widen it).
pub fn parse_hex(text: &str) -> Option<[u8; 16]> {
    if !matches!(text.len(), 24 | 32) || !text.is_ascii() {
        return None;
    }
    let bytes: Vec<u8> = (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect::<Option<_>>()?;
    if bytes.len() == 12 {
        let mut key = [0u8; 16];
        key[..6].copy_from_slice(&bytes[..6]);
        key[6..10].copy_from_slice(&LEGACY_FILL);
        key[10..].copy_from_slice(&bytes[6..]);
        return Some(key);
    }
    bytes.try_into().ok()
}

/// The four fixed bytes of a widened legacy MiBeacon key.
const LEGACY_FILL: [u8; 4] = [0x8D, 0x3D, 0x3C, 0x97];

/// Keys of a keys file, by device id or upper-case MAC address. Errors name the entry,
/// never its value.
pub fn load(path: &str) -> Result<BTreeMap<String, [u8; 16]>, Vec<ConfigIssue>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![ConfigIssue::new(
            "keysFile",
            format!("The keys file {path} cannot be read ({e})."),
        )]
    })?;
    let doc: BTreeMap<String, Value> = serde_json::from_str(&text).map_err(|_| {
        vec![ConfigIssue::new(
            "keysFile",
            format!(
                "The keys file {path} is not a JSON object of \"deviceId or MAC\": \"hex key\"."
            ),
        )]
    })?;
    let mut keys = BTreeMap::new();
    let mut issues = Vec::new();
    for (name, value) in doc {
        match value.as_str().and_then(parse_hex) {
            Some(k) => {
                let id = if crate::config::is_address(&name) {
                    name.to_ascii_uppercase()
                } else {
                    name
                };
                keys.insert(id, k);
            }
            None => issues.push(ConfigIssue::new(
                "keysFile",
                format!("The key of '{name}' in {path} is not 32 (or, for a legacy MiBeacon, 24) hexadecimal digits."),
            )),
        }
    }
    if issues.is_empty() {
        Ok(keys)
    } else {
        Err(issues)
    }
}

/// Masks every `bindKey` in a document the module reports (acknowledgements echo
/// the desired devices, keys included).
pub fn redact(doc: &mut Value) {
    match doc {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if k == "bindKey" && !v.is_null() {
                    *v = Value::String(MASK.to_owned());
                } else {
                    redact(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn hex_keys_files_and_masking() {
        assert_eq!(
            parse_hex("000102030405060708090a0b0c0d0e0f").unwrap()[15],
            15
        );
        assert!(parse_hex("00").is_none());
        // A legacy MiBeacon key (xiaomi-ble's YLKG07YL test key) is widened.
        assert_eq!(
            parse_hex("b853075158487ca39a5b5ea9").unwrap(),
            [
                0xB8, 0x53, 0x07, 0x51, 0x58, 0x48, 0x8D, 0x3D, 0x3C, 0x97, 0x7C, 0xA3, 0x9A, 0x5B,
                0x5E, 0xA9
            ]
        );
        assert!(parse_hex("b853075158487ca39a5b5e").is_none());
        assert!(parse_hex("zz0102030405060708090a0b0c0d0e0f").is_none());
        assert!(parse_hex("é00102030405060708090a0b0c0d0e").is_none());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        std::fs::write(
            &path,
            r#"{"a4:c1:38:00:00:01": "814aac74c4f17632442131e5d4542a6a", "freezer": "231d39c1d7cc1ab1aee224cd096db932", "dimmer": "b853075158487ca39a5b5ea9"}"#,
        )
        .unwrap();
        let keys = load(path.to_str().unwrap()).unwrap();
        assert!(keys.contains_key("A4:C1:38:00:00:01") && keys.contains_key("freezer"));
        assert_eq!(keys["dimmer"][6..10], [0x8D, 0x3D, 0x3C, 0x97]);
        std::fs::write(&path, r#"{"x": "secret-but-short"}"#).unwrap();
        let e = load(path.to_str().unwrap()).unwrap_err();
        assert!(!e[0].message.contains("secret"), "{}", e[0].message);
        assert_eq!(
            load("/nonexistent/keys.json").unwrap_err()[0].path,
            "keysFile"
        );
        let mut ack = json!({"devices": {"value": {"t": {"map": "xiaomi-mibeacon", "bindKey": "814aac74c4f17632442131e5d4542a6a"}}, "ac": 200}});
        redact(&mut ack);
        assert_eq!(ack["devices"]["value"]["t"]["bindKey"], "***");
        assert_eq!(ack["devices"]["value"]["t"]["map"], "xiaomi-mibeacon");
    }
}
