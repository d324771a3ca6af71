//! Shared access signatures (SAS), pure: string-to-sign, HMAC signing, token assembly,
//! and the DPS group-key derivation. No clocks and no I/O here, so the reference test
//! vectors can be reproduced byte for byte.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::encode::percent_encode_all;

/// A key could not be used for signing.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The shared access key is not valid base64.
    #[error("The shared access key is not valid base64.")]
    NotBase64,
    /// The key decoded to zero bytes.
    #[error("The shared access key is empty.")]
    Empty,
}

/// A decoded symmetric key. Its `Debug` never shows the bytes.
#[derive(Clone)]
pub struct SymmetricKey(Vec<u8>);

impl std::fmt::Debug for SymmetricKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SymmetricKey(<redacted>)")
    }
}

impl SymmetricKey {
    /// Decodes a base64 key as IoT Hub shows it (`SharedAccessKey=`).
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|_| KeyError::NotBase64)?;
        if bytes.is_empty() {
            return Err(KeyError::Empty);
        }
        Ok(Self(bytes))
    }

    /// Standard base64 with padding of HMAC-SHA256(key, data).
    pub fn sign(&self, data: &[u8]) -> String {
        // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.0) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC takes keys of any length"),
        };
        mac.update(data);
        STANDARD.encode(mac.finalize().into_bytes())
    }

    /// The DPS group-enrollment convention: the device key is
    /// base64(HMAC-SHA256(groupKey, registrationId)).
    pub fn derive(&self, registration_id: &str) -> SymmetricKey {
        let signed = self.sign(registration_id.as_bytes());
        // `sign` returns standard base64, which always decodes.
        SymmetricKey(STANDARD.decode(signed).unwrap_or_default())
    }

    /// The key as base64 text (for handing a derived key to a device connection).
    pub fn to_base64(&self) -> String {
        STANDARD.encode(&self.0)
    }
}

/// `{host}/devices/{device}[/modules/{module}]`, not yet encoded.
pub fn resource_uri(host: &str, device_id: &str, module_id: Option<&str>) -> String {
    match module_id {
        Some(module) => format!("{host}/devices/{device_id}/modules/{module}"),
        None => format!("{host}/devices/{device_id}"),
    }
}

/// `{idScope}/registrations/{registrationId}`, the DPS audience.
pub fn dps_resource_uri(id_scope: &str, registration_id: &str) -> String {
    format!("{id_scope}/registrations/{registration_id}")
}

/// The exact bytes a SAS signs: the encoded resource URI, a newline, the expiry.
pub fn string_to_sign(encoded_uri: &str, expiry: u64) -> String {
    format!("{encoded_uri}\n{expiry}")
}

/// Builds `SharedAccessSignature sr=…&sig=…&se=…[&skn=…]` from a signature that was
/// computed over [`string_to_sign`] (locally or by the workload API).
pub fn token(encoded_uri: &str, signature_b64: &str, expiry: u64, policy: Option<&str>) -> String {
    let sig = percent_encode_all(signature_b64);
    match policy {
        Some(skn) => {
            format!("SharedAccessSignature sr={encoded_uri}&sig={sig}&se={expiry}&skn={skn}")
        }
        None => format!("SharedAccessSignature sr={encoded_uri}&sig={sig}&se={expiry}"),
    }
}

/// Signs a token locally with a symmetric key.
pub fn token_with_key(uri: &str, key: &SymmetricKey, expiry: u64) -> String {
    let encoded = percent_encode_all(uri);
    let sig = key.sign(string_to_sign(&encoded, expiry).as_bytes());
    token(&encoded, &sig, expiry, None)
}

/// The fields of a parsed SAS token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedToken {
    /// `sr` exactly as sent (still encoded).
    pub encoded_uri: String,
    /// `sig`, decoded back to base64.
    pub signature: String,
    /// `se`, seconds since the epoch.
    pub expiry: u64,
    /// `skn`, if any.
    pub policy: Option<String>,
}

/// Why a SAS token could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenParseError {
    /// The token does not start with `SharedAccessSignature `.
    #[error("The token does not start with 'SharedAccessSignature '.")]
    Prefix,
    /// A required field is missing.
    #[error("The token has no '{0}' field.")]
    Missing(&'static str),
    /// `se` is not a number.
    #[error("The token's expiry is not a number.")]
    Expiry,
}

/// Parses a token the way edgeHub does: split on `&` and `=`, URL-decode values.
pub fn parse_token(token: &str) -> Result<ParsedToken, TokenParseError> {
    let rest = token
        .strip_prefix("SharedAccessSignature ")
        .ok_or(TokenParseError::Prefix)?;
    let (mut sr, mut sig, mut se, mut skn) = (None, None, None, None);
    for field in rest.split('&') {
        let (key, value) = field.split_once('=').unwrap_or((field, ""));
        match key {
            "sr" => sr = Some(value.to_owned()),
            "sig" => sig = Some(super::encode::percent_decode(value)),
            "se" => se = Some(value.to_owned()),
            "skn" => skn = Some(value.to_owned()),
            _ => {}
        }
    }
    Ok(ParsedToken {
        encoded_uri: sr.ok_or(TokenParseError::Missing("sr"))?,
        signature: sig.ok_or(TokenParseError::Missing("sig"))?,
        expiry: se
            .ok_or(TokenParseError::Missing("se"))?
            .parse()
            .map_err(|_| TokenParseError::Expiry)?,
        policy: skn,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Vectors from edgehub-protocol.md section 3 (captured from azure-iot-device 2.14.0).
    const MODULE_KEY: &str = "Y2FwdHVyZS10ZXN0LWtleS0wMTIzNDU2Nzg5YWJjZGVm";

    #[test]
    fn module_token_matches_the_python_sdk_capture() {
        let key = SymmetricKey::from_base64(MODULE_KEY).unwrap();
        let uri = resource_uri("myhub.azure-devices.net", "dev1", Some("mod1"));
        assert_eq!(
            token_with_key(&uri, &key, 1_795_695_141),
            "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdev1%2Fmodules%2Fmod1&sig=8JoTQ%2BZISFwk92ujmVg6TTHExcUfhV0r81SC7kBcBGo%3D&se=1795695141"
        );
    }

    #[test]
    fn documented_dps_group_key_derivation() {
        let group = SymmetricKey::from_base64(
            "8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw==",
        )
        .unwrap();
        assert_eq!(
            group
                .derive("sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6")
                .to_base64(),
            "Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc="
        );
    }

    #[test]
    fn captured_dps_token() {
        let group =
            SymmetricKey::from_base64("Y2FwdHVyZS10ZXN0LWdyb3VwLWVucm9sbG1lbnQta2V5LTAwMA==")
                .unwrap();
        let device = group.derive("leaf-001");
        assert_eq!(
            device.to_base64(),
            "0MWX/+PCssAhy/1eOPldnPfJ6pqTB1LtYZqmM4Lki5I="
        );
        let tok = token_with_key(
            &dps_resource_uri("0ne00000000", "leaf-001"),
            &device,
            1_795_695_151,
        );
        assert!(
            tok.contains("sig=Rx5k9iWSqKySlamZ9p1YHp8Zw%2FhKUDL7aOf%2FSNR2G%2B0%3D"),
            "{tok}"
        );
        assert!(
            tok.starts_with("SharedAccessSignature sr=0ne00000000%2Fregistrations%2Fleaf-001&")
        );
    }

    #[test]
    fn parse_round_trips_and_rejects_garbage() {
        let key = SymmetricKey::from_base64(MODULE_KEY).unwrap();
        let tok = token_with_key("h/devices/d", &key, 42);
        let parsed = parse_token(&tok).unwrap();
        assert_eq!(parsed.encoded_uri, "h%2Fdevices%2Fd");
        assert_eq!(parsed.expiry, 42);
        assert_eq!(parsed.signature, key.sign(b"h%2Fdevices%2Fd\n42"));
        assert_eq!(parse_token("Bearer x"), Err(TokenParseError::Prefix));
        assert_eq!(
            parse_token("SharedAccessSignature sr=a&sig=b&se=x"),
            Err(TokenParseError::Expiry)
        );
        assert_eq!(
            parse_token("SharedAccessSignature sig=b&se=1"),
            Err(TokenParseError::Missing("sr"))
        );
    }

    #[test]
    fn bad_keys_are_errors_and_never_printed() {
        assert!(matches!(
            SymmetricKey::from_base64("not base64!"),
            Err(KeyError::NotBase64)
        ));
        assert!(matches!(
            SymmetricKey::from_base64(""),
            Err(KeyError::Empty)
        ));
        let key = SymmetricKey::from_base64(MODULE_KEY).unwrap();
        assert_eq!(format!("{key:?}"), "SymmetricKey(<redacted>)");
    }
}
