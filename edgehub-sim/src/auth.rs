//! CONNECT authentication as edgeHub does it, pure: username parsing, client-id check,
//! SAS signature and expiry check.

use std::collections::BTreeMap;

use bridge_core::hub::topics::decode_bag;
use bridge_core::identity::SymmetricKey;
use bridge_core::identity::encode::percent_decode;
use bridge_core::identity::sas::{self, parse_token};

/// Who a CONNECT claims to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// A module `{device}/{module}` or a device `{device}`.
    Hub {
        /// Device id.
        device_id: String,
        /// Module id.
        module_id: Option<String>,
        /// Username query (`api-version`, `DeviceClientType`, `model-id`).
        query: BTreeMap<String, String>,
    },
    /// A DPS registration.
    Dps {
        /// ID scope.
        id_scope: String,
        /// Registration id.
        registration_id: String,
    },
}

/// Why a CONNECT is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Username not in an edgeHub or DPS form.
    #[error("The username is not in the IoT Hub form: {0}")]
    Username(String),
    /// `api-version` missing from the username.
    #[error("The username has no api-version.")]
    ApiVersion,
    /// Client id differs from the identity in the username.
    #[error("The client id '{client_id}' does not match the identity '{identity}'.")]
    ClientId {
        /// Sent client id.
        client_id: String,
        /// Identity from the username.
        identity: String,
    },
    /// No such identity in scope.
    #[error("The identity '{0}' is not known to this hub.")]
    UnknownIdentity(String),
    /// No or malformed password.
    #[error("The password is not a SAS token: {0}")]
    Token(String),
    /// `sr` names something else.
    #[error("The token audience '{0}' does not match the identity.")]
    Audience(String),
    /// Bad signature.
    #[error("The token signature is wrong.")]
    Signature,
    /// Expired.
    #[error("The token expired at {0}.")]
    Expired(u64),
}

/// Parses the username of a CONNECT.
pub fn parse_username(username: &str) -> Result<Claim, AuthError> {
    // DPS: {idScope}/registrations/{registrationId}/api-version=…
    let parts: Vec<&str> = username.split('/').collect();
    if parts.len() >= 4 && parts[1] == "registrations" {
        return Ok(Claim::Dps {
            id_scope: parts[0].into(),
            registration_id: parts[2].into(),
        });
    }
    let query_part = parts.last().copied().unwrap_or("");
    let query_text = query_part.strip_prefix('?').unwrap_or(query_part);
    if !query_part.starts_with('?') && !query_part.contains("api-version=") {
        return Err(AuthError::Username(username.into()));
    }
    let query = decode_bag(query_text);
    if !query.contains_key("api-version") {
        return Err(AuthError::ApiVersion);
    }
    // The first segment (host) is ignored, as edgeHub does.
    match parts.len() {
        3 if !parts[1].is_empty() => Ok(Claim::Hub {
            device_id: parts[1].into(),
            module_id: None,
            query,
        }),
        4 if !parts[1].is_empty() && !parts[2].is_empty() => Ok(Claim::Hub {
            device_id: parts[1].into(),
            module_id: Some(parts[2].into()),
            query,
        }),
        _ => Err(AuthError::Username(username.into())),
    }
}

/// Checks a SAS password for `expected_uri` (decoded form) against `key`.
/// `now` and `skew_secs` are passed in so tests control time.
pub fn check_token(
    password: &str,
    expected_uri: &str,
    key: &SymmetricKey,
    now: u64,
    skew_secs: u64,
) -> Result<u64, AuthError> {
    let token = parse_token(password).map_err(|e| AuthError::Token(e.to_string()))?;
    let audience = percent_decode(&token.encoded_uri);
    // Host part compared case-insensitively; ids too (edgeHub does both).
    if !audience.eq_ignore_ascii_case(expected_uri) {
        return Err(AuthError::Audience(audience));
    }
    let expected_sig = key.sign(sas::string_to_sign(&token.encoded_uri, token.expiry).as_bytes());
    if expected_sig != token.signature {
        return Err(AuthError::Signature);
    }
    if token.expiry + skew_secs < now {
        return Err(AuthError::Expired(token.expiry));
    }
    Ok(token.expiry)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "Y2FwdHVyZS10ZXN0LWtleS0wMTIzNDU2Nzg5YWJjZGVm";

    #[test]
    fn parses_sdk_usernames() {
        let u = "myhub.azure-devices.net/dev1/mod1/?api-version=2019-10-01&DeviceClientType=azure-iot-device-iothub-py%2F2.14.0";
        match parse_username(u).unwrap() {
            Claim::Hub {
                device_id,
                module_id,
                query,
            } => {
                assert_eq!(
                    (device_id.as_str(), module_id.as_deref()),
                    ("dev1", Some("mod1"))
                );
                assert_eq!(
                    query["DeviceClientType"],
                    "azure-iot-device-iothub-py/2.14.0"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_username(
                "myhub.azure-devices.net/leaf-001/?api-version=2020-09-30&model-id=dtmi%3Ax%3B1"
            )
            .unwrap(),
            Claim::Hub {
                module_id: None,
                ..
            }
        ));
        assert_eq!(
            parse_username(
                "0ne00000000/registrations/leaf-001/api-version=2019-03-31&ClientVersion=x"
            )
            .unwrap(),
            Claim::Dps {
                id_scope: "0ne00000000".into(),
                registration_id: "leaf-001".into()
            }
        );
        assert_eq!(
            parse_username("h/d/?DeviceClientType=x"),
            Err(AuthError::ApiVersion)
        );
        assert!(matches!(
            parse_username("just-a-name"),
            Err(AuthError::Username(_))
        ));
        assert!(matches!(parse_username(""), Err(AuthError::Username(_))));
    }

    #[test]
    fn checks_the_captured_token() {
        let key = SymmetricKey::from_base64(KEY).unwrap();
        let pw = "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdev1%2Fmodules%2Fmod1&sig=8JoTQ%2BZISFwk92ujmVg6TTHExcUfhV0r81SC7kBcBGo%3D&se=1795695141";
        let uri = "myhub.azure-devices.net/devices/dev1/modules/mod1";
        assert_eq!(
            check_token(pw, uri, &key, 1_795_695_000, 0),
            Ok(1_795_695_141)
        );
        assert_eq!(
            check_token(pw, uri, &key, 1_795_695_141 + 301, 300),
            Err(AuthError::Expired(1_795_695_141))
        );
        assert!(matches!(
            check_token(pw, "myhub.azure-devices.net/devices/dev2", &key, 0, 0),
            Err(AuthError::Audience(_))
        ));
        let other = SymmetricKey::from_base64("b3RoZXIta2V5").unwrap();
        assert_eq!(
            check_token(pw, uri, &other, 0, 0),
            Err(AuthError::Signature)
        );
        assert!(matches!(
            check_token("garbage", uri, &key, 0, 0),
            Err(AuthError::Token(_))
        ));
    }
}
