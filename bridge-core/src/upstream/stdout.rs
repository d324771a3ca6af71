//! The embedded default upstream: one JSON line per message on stdout,
//! `{"deviceId": …, "output": …, "properties": {…}, "body": …}`.

use std::io::Write;

use serde_json::Value;

use super::{LinkEnd, LinkEvent};
use crate::message::Message;
use crate::text::push_json_str;

/// The JSON line for a message. A JSON body stays JSON; anything else becomes a string.
/// Built by hand so a JSON body is copied, not parsed and re-serialised (hot path).
pub fn json_line(message: &Message) -> String {
    let mut out = String::with_capacity(message.body.len() + 200);
    push_json_line(&mut out, message);
    out
}

/// [`json_line`] appended to `out`.
pub fn push_json_line(out: &mut String, message: &Message) {
    let opt = |out: &mut String, s: Option<&str>| match s {
        Some(s) => push_json_str(out, s),
        None => out.push_str("null"),
    };
    out.reserve(message.body.len() + 200);
    out.push_str(r#"{"deviceId":"#);
    opt(out, message.device_id.as_deref());
    out.push_str(r#","output":"#);
    opt(out, message.output.as_deref());
    out.push_str(r#","properties":{"#);
    let creation = message
        .creation_time
        .as_ref()
        .map(|t| ("iothub-creation-time-utc", t.as_str()));
    for (i, (k, v)) in message
        .properties
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain(creation)
        .enumerate()
    {
        if i > 0 {
            out.push(',');
        }
        push_json_str(out, k);
        out.push(':');
        push_json_str(out, v);
    }
    out.push_str(r#"},"body":"#);
    let declared_json = message.content_type.as_deref() == Some("application/json");
    match std::str::from_utf8(&message.body) {
        Ok(body) if declared_json && !body.trim().is_empty() => out.push_str(body),
        _ => {
            let fallback = serde_json::from_slice::<Value>(&message.body).unwrap_or_else(|_| {
                Value::String(String::from_utf8_lossy(&message.body).into_owned())
            });
            out.push_str(&fallback.to_string());
        }
    }
    out.push('}');
}

/// Messages written with one `write(2)` at most.
const BATCH: usize = 64;

/// Runs the stdout upstream until the forwarder goes away. Written and flushed = acked.
/// What is already queued is written at once (one system call and one wake-up of the
/// reader per batch, not per message).
pub async fn run(mut end: LinkEnd) {
    end.emit(LinkEvent::Up);
    let mut text = String::new();
    let mut seqs = Vec::with_capacity(BATCH);
    while let Some(out) = end.rx.recv().await {
        text.clear();
        seqs.clear();
        push_line(&mut text, &out.message);
        seqs.push(out.seq);
        while seqs.len() < BATCH {
            let Ok(out) = end.rx.try_recv() else {
                break;
            };
            push_line(&mut text, &out.message);
            seqs.push(out.seq);
        }
        let mut stdout = std::io::stdout().lock();
        if stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
            .is_err()
        {
            // A closed stdout (pipe reader gone): nothing more can be delivered.
            end.emit(LinkEvent::Down);
            return;
        }
        for seq in &seqs {
            end.emit(LinkEvent::Acked(*seq));
        }
    }
}

fn push_line(text: &mut String, message: &Message) {
    push_json_line(text, message);
    text.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn line_shape() {
        let m = Message::json("telemetry", &json!({"voltage": 231.2}))
            .for_device("meter-1")
            .with_property("q\"uote", "a\nb");
        let v: Value = serde_json::from_str(&json_line(&m)).unwrap();
        assert_eq!(v["deviceId"], "meter-1");
        assert_eq!(v["output"], "telemetry");
        assert_eq!(v["body"]["voltage"], 231.2);
        assert_eq!(v["properties"]["deviceId"], "meter-1");
        assert_eq!(v["properties"]["q\"uote"], "a\nb");
        assert!(v["properties"]["iothub-creation-time-utc"].is_string());
        let raw = Message {
            body: b"not json".to_vec(),
            ..Message::default()
        };
        let v: Value = serde_json::from_str(&json_line(&raw)).unwrap();
        assert_eq!(v["body"], "not json");
        assert!(v["deviceId"].is_null());
        let untyped = Message {
            body: b"{\"a\":1}".to_vec(),
            ..Message::default()
        };
        assert_eq!(
            serde_json::from_str::<Value>(&json_line(&untyped)).unwrap()["body"]["a"],
            1
        );
    }
}
