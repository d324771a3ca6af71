//! The embedded default upstream: one JSON line per message on stdout,
//! `{"deviceId": …, "output": …, "properties": {…}, "body": …}`.

use std::io::Write;

use serde_json::{Value, json};

use super::{LinkEnd, LinkEvent};
use crate::hub::Message;

/// The JSON line for a message. A JSON body stays JSON; anything else becomes a string.
pub fn json_line(message: &Message) -> String {
    let body = serde_json::from_slice::<Value>(&message.body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&message.body).into_owned()));
    let mut properties: serde_json::Map<String, Value> = message
        .properties
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    if let Some(t) = &message.creation_time {
        properties.insert("iothub-creation-time-utc".into(), Value::String(t.clone()));
    }
    json!({"deviceId": message.device_id, "output": message.output, "properties": properties, "body": body}).to_string()
}

/// Runs the stdout upstream until the forwarder goes away. Written and flushed = acked.
pub async fn run(mut end: LinkEnd) {
    end.emit(LinkEvent::Up);
    while let Some(out) = end.rx.recv().await {
        let line = json_line(&out.message);
        let mut stdout = std::io::stdout().lock();
        if writeln!(stdout, "{line}")
            .and_then(|()| stdout.flush())
            .is_err()
        {
            // A closed stdout (pipe reader gone): nothing more can be delivered.
            end.emit(LinkEvent::Down);
            return;
        }
        end.emit(LinkEvent::Acked(out.seq));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_shape() {
        let m = Message::json("telemetry", &json!({"voltage": 231.2})).for_device("meter-1");
        let v: Value = serde_json::from_str(&json_line(&m)).unwrap();
        assert_eq!(v["deviceId"], "meter-1");
        assert_eq!(v["output"], "telemetry");
        assert_eq!(v["body"]["voltage"], 231.2);
        assert_eq!(v["properties"]["deviceId"], "meter-1");
        let raw = Message {
            body: b"not json".to_vec(),
            ..Message::default()
        };
        let v: Value = serde_json::from_str(&json_line(&raw)).unwrap();
        assert_eq!(v["body"], "not json");
        assert!(v["deviceId"].is_null());
    }
}
