//! A telemetry message as the pipeline carries it, independent of the upstream.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One message for the upstream: body plus IoT Hub system and application properties.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    /// The downstream device this message is about (also sent as property `deviceId`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// Module output name (`$.on`), used by edgeHub routes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Cow<'static, str>>,
    /// Message id (`$.mid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// Correlation id (`$.cid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// Content type (`$.ct`), `application/json` for our telemetry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<Cow<'static, str>>,
    /// Content encoding (`$.ce`), `utf-8`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<Cow<'static, str>>,
    /// Creation time, RFC 3339 UTC (`iothub-creation-time-utc`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_time: Option<String>,
    /// Application properties.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
    /// The payload.
    #[serde(with = "body_bytes")]
    pub body: Vec<u8>,
}

impl Message {
    /// A JSON message (`application/json`, `utf-8`) on an output, created now.
    pub fn json(output: impl Into<Cow<'static, str>>, body: &serde_json::Value) -> Self {
        Self::json_text(output, body.to_string(), crate::time::rfc3339_now())
    }

    /// A JSON message from already serialised JSON text, with its creation time.
    pub fn json_text(
        output: impl Into<Cow<'static, str>>,
        body: String,
        creation_time: String,
    ) -> Self {
        Self {
            output: Some(output.into()),
            message_id: Some(new_message_id()),
            content_type: Some(Cow::Borrowed("application/json")),
            content_encoding: Some(Cow::Borrowed("utf-8")),
            creation_time: Some(creation_time),
            body: body.into_bytes(),
            ..Self::default()
        }
    }

    /// Sets the downstream device id (and the `deviceId` property routes can match on).
    pub fn for_device(mut self, device_id: &str) -> Self {
        self.device_id = Some(device_id.to_owned());
        self.properties
            .insert("deviceId".into(), device_id.to_owned());
        self
    }

    /// Adds an application property.
    pub fn with_property(mut self, key: &str, value: &str) -> Self {
        self.properties.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Approximate size in bytes (body plus property text), as edgeHub counts it.
    pub fn size(&self) -> usize {
        self.body.len()
            + self
                .properties
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
            + 64
    }
}

/// A unique message id (`$.mid`): 128 random bits in hex, like the SDKs' UUIDs.
pub fn new_message_id() -> String {
    let mut id = String::with_capacity(32);
    let bits = rand::random::<u128>();
    for shift in (0..32).rev() {
        id.push(char::from(
            b"0123456789abcdef"[((bits >> (shift * 4)) & 0xf) as usize],
        ));
    }
    id
}

/// The body stays text in JSON when it is UTF-8, so spooled files are readable and
/// compact; other bodies are stored as base64.
mod body_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Body {
        Text(String),
        Binary { b64: String },
    }

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(bytes) {
            Ok(text) => s.serialize_str(text),
            Err(_) => Body::Binary {
                b64: STANDARD.encode(bytes),
            }
            .serialize(s),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        match Body::deserialize(d)? {
            Body::Text(t) => Ok(t.into_bytes()),
            Body::Binary { b64 } => STANDARD.decode(b64).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_are_32_hex_digits_and_differ() {
        let (a, b) = (new_message_id(), new_message_id());
        assert_eq!(a.len(), 32);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(a, b);
    }

    #[test]
    fn bodies_round_trip_as_text_or_base64() {
        for body in [b"{\"a\":1}".to_vec(), vec![0xff, 0x00, 0x80]] {
            let m = Message {
                body: body.clone(),
                ..Message::default()
            };
            let back: Message = serde_json::from_slice(&serde_json::to_vec(&m).unwrap()).unwrap();
            assert_eq!(back.body, body);
        }
    }
}
