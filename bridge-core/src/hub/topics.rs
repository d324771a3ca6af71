//! edgeHub topic and username strings, built and parsed without I/O.
//! The strings follow what Microsoft's Python SDK put on the wire (edgehub-protocol.md §9).

use std::collections::BTreeMap;

use crate::identity::HubIdentity;
use crate::identity::encode::{percent_decode, percent_encode_all};
use crate::message::Message;

/// The api-version we announce; 2020-09-30 is needed for `model-id`.
pub const API_VERSION: &str = "2020-09-30";

/// `DeviceClientType` we announce.
pub fn client_type() -> String {
    format!("edge-bridge/{}", env!("CARGO_PKG_VERSION"))
}

/// `{host}/{device}[/{module}]/?api-version=…&DeviceClientType=…[&model-id=…]`.
pub fn username(id: &HubIdentity) -> String {
    let mut out = format!("{}/{}/", id.hub_hostname, id.client_id());
    out.push_str(&format!(
        "?api-version={API_VERSION}&DeviceClientType={}",
        percent_encode_all(&client_type())
    ));
    if let Some(model) = &id.model_id {
        out.push_str(&format!("&model-id={}", percent_encode_all(model)));
    }
    out
}

/// `devices/{d}[/modules/{m}]`: ids are not encoded inside topics.
fn base(id: &HubIdentity) -> String {
    match &id.module_id {
        Some(m) => format!("devices/{}/modules/{}", id.device_id, m),
        None => format!("devices/{}", id.device_id),
    }
}

/// The telemetry topic with the property bag: system properties first in the SDK's
/// order, then application properties sorted by key, everything percent-encoded.
pub fn telemetry_topic(id: &HubIdentity, msg: &Message) -> String {
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    let system = [
        ("$.on", msg.output.as_deref()),
        ("$.mid", msg.message_id.as_deref()),
        ("$.cid", msg.correlation_id.as_deref()),
        ("$.ct", msg.content_type.as_deref()),
        ("$.ce", msg.content_encoding.as_deref()),
    ];
    for (key, value) in system {
        if let Some(v) = value {
            pairs.push((key, v));
        }
    }
    if let Some(t) = msg.creation_time.as_deref() {
        pairs.push(("iothub-creation-time-utc", t));
    }
    // BTreeMap iterates sorted by key.
    for (k, v) in &msg.properties {
        pairs.push((k, v));
    }
    format!("{}/messages/events/{}", base(id), encode_bag(&pairs))
}

/// `k=v&k=v` with every key and value percent-encoded.
pub fn encode_bag(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode_all(k), percent_encode_all(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Decodes a property bag (the inverse of [`encode_bag`]); a key without `=` gets "".
pub fn decode_bag(bag: &str) -> BTreeMap<String, String> {
    bag.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// Subscriptions after every CONNACK, in the SDK's order.
pub fn subscriptions(id: &HubIdentity) -> Vec<String> {
    let mut subs = Vec::new();
    if id.module_id.is_some() {
        subs.push(format!("{}/inputs/#", base(id)));
    }
    subs.push("$iothub/methods/POST/#".into());
    subs.push("$iothub/twin/PATCH/properties/desired/#".into());
    subs.push("$iothub/twin/res/#".into());
    subs
}

/// `$iothub/twin/GET/?$rid={rid}`.
pub fn twin_get(rid: &str) -> String {
    format!("$iothub/twin/GET/?$rid={rid}")
}

/// `$iothub/twin/PATCH/properties/reported/?$rid={rid}`.
pub fn twin_report(rid: &str) -> String {
    format!("$iothub/twin/PATCH/properties/reported/?$rid={rid}")
}

/// `$iothub/methods/res/{status}/?$rid={rid}`.
pub fn method_response(status: u16, rid: &str) -> String {
    format!("$iothub/methods/res/{status}/?$rid={rid}")
}

/// An incoming publish, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// `$iothub/twin/res/{status}/?$rid={rid}[&$version=…]`
    TwinResponse {
        /// HTTP-like status.
        status: u16,
        /// Request id we sent.
        rid: String,
        /// `$version`, when given.
        version: Option<u64>,
    },
    /// `$iothub/twin/PATCH/properties/desired/?$version={v}`
    DesiredPatch {
        /// Version of the patch.
        version: Option<u64>,
    },
    /// `$iothub/methods/POST/{name}/?$rid={rid}`
    MethodCall {
        /// Method name.
        name: String,
        /// Request id to answer with.
        rid: String,
    },
    /// `devices/{d}/modules/{m}/inputs/{input}/{bag}`
    Input {
        /// Input name.
        input: String,
        /// Decoded property bag.
        properties: BTreeMap<String, String>,
    },
    /// Anything else.
    Unknown,
}

/// Classifies an incoming topic.
pub fn parse_incoming(topic: &str) -> Incoming {
    if let Some(rest) = topic.strip_prefix("$iothub/twin/res/") {
        let (status, query) = rest
            .split_once("/?")
            .unwrap_or((rest.trim_end_matches('/'), ""));
        let q = decode_bag(query);
        return match (status.parse(), q.get("$rid")) {
            (Ok(status), Some(rid)) => Incoming::TwinResponse {
                status,
                rid: rid.clone(),
                version: q.get("$version").and_then(|v| v.parse().ok()),
            },
            _ => Incoming::Unknown,
        };
    }
    if let Some(rest) = topic.strip_prefix("$iothub/twin/PATCH/properties/desired/") {
        let q = decode_bag(rest.trim_start_matches('?'));
        return Incoming::DesiredPatch {
            version: q.get("$version").and_then(|v| v.parse().ok()),
        };
    }
    if let Some(rest) = topic.strip_prefix("$iothub/methods/POST/") {
        if let Some((name, query)) = rest.split_once("/?") {
            if let Some(rid) = decode_bag(query).get("$rid") {
                return Incoming::MethodCall {
                    name: name.to_owned(),
                    rid: rid.clone(),
                };
            }
        }
        return Incoming::Unknown;
    }
    if let Some(idx) = topic.find("/inputs/") {
        let rest = &topic[idx + "/inputs/".len()..];
        let (input, bag) = rest.split_once('/').unwrap_or((rest, ""));
        if !input.is_empty() {
            return Incoming::Input {
                input: input.to_owned(),
                properties: decode_bag(bag.trim_end_matches('/')),
            };
        }
    }
    Incoming::Unknown
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module() -> HubIdentity {
        HubIdentity {
            hub_hostname: "myhub.azure-devices.net".into(),
            device_id: "dev1".into(),
            module_id: Some("mod1".into()),
            connect_host: "localhost".into(),
            port: 8883,
            model_id: None,
        }
    }

    #[test]
    fn output_message_topic_matches_the_sdk_capture() {
        let mut msg = Message {
            output: Some("output1".into()),
            message_id: Some("mid-0001".into()),
            correlation_id: Some("cid-0001".into()),
            content_type: Some("application/json".into()),
            content_encoding: Some("utf-8".into()),
            ..Message::default()
        };
        msg.properties.insert("unit name".into(), "deg C/F".into());
        msg.properties.insert("a&b=c".into(), "x/y?z+1".into());
        msg.properties.insert("alert".into(), "true".into());
        assert_eq!(
            telemetry_topic(&module(), &msg),
            "devices/dev1/modules/mod1/messages/events/%24.on=output1&%24.mid=mid-0001&%24.cid=cid-0001&%24.ct=application%2Fjson&%24.ce=utf-8&a%26b%3Dc=x%2Fy%3Fz%2B1&alert=true&unit%20name=deg%20C%2FF"
        );
    }

    #[test]
    fn device_topic_and_username() {
        let mut id = module();
        id.module_id = None;
        id.device_id = "leaf-001".into();
        id.model_id = Some("dtmi:com:example:Thermostat;1".into());
        let msg = Message {
            content_type: Some("application/json".into()),
            content_encoding: Some("utf-8".into()),
            ..Message::default()
        };
        assert_eq!(
            telemetry_topic(&id, &msg),
            "devices/leaf-001/messages/events/%24.ct=application%2Fjson&%24.ce=utf-8"
        );
        let user = username(&id);
        assert!(user.starts_with("myhub.azure-devices.net/leaf-001/?api-version=2020-09-30&DeviceClientType=edge-bridge%2F"));
        assert!(
            user.ends_with("&model-id=dtmi%3Acom%3Aexample%3AThermostat%3B1"),
            "{user}"
        );
        assert!(
            username(&module())
                .starts_with("myhub.azure-devices.net/dev1/mod1/?api-version=2020-09-30&")
        );
    }

    #[test]
    fn subscriptions_in_sdk_order() {
        assert_eq!(
            subscriptions(&module()),
            [
                "devices/dev1/modules/mod1/inputs/#",
                "$iothub/methods/POST/#",
                "$iothub/twin/PATCH/properties/desired/#",
                "$iothub/twin/res/#"
            ]
        );
    }

    #[test]
    fn parses_hub_topics() {
        assert_eq!(
            parse_incoming("$iothub/twin/res/204/?$rid=abc&$version=6"),
            Incoming::TwinResponse {
                status: 204,
                rid: "abc".into(),
                version: Some(6)
            }
        );
        assert_eq!(
            parse_incoming("$iothub/twin/PATCH/properties/desired/?$version=4"),
            Incoming::DesiredPatch { version: Some(4) }
        );
        assert_eq!(
            parse_incoming("$iothub/methods/POST/reboot/?$rid=1"),
            Incoming::MethodCall {
                name: "reboot".into(),
                rid: "1".into()
            }
        );
        match parse_incoming(
            "devices/dev1/modules/mod1/inputs/input1/%24.mid=msg-42&%24.cid=corr-7&temp%20unit=%C2%B0C",
        ) {
            Incoming::Input { input, properties } => {
                assert_eq!(input, "input1");
                assert_eq!(properties["$.mid"], "msg-42");
                assert_eq!(properties["temp unit"], "°C");
            }
            other => panic!("{other:?}"),
        }
        for garbage in [
            "",
            "$iothub/twin/res/xx/?$rid=1",
            "$iothub/methods/POST/x",
            "random/topic",
            "$iothub/twin/res/200/",
        ] {
            assert_eq!(parse_incoming(garbage), Incoming::Unknown, "{garbage}");
        }
    }
}
