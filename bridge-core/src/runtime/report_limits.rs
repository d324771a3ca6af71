//! Keeps configuration acknowledgements small: a Plug and Play acknowledgement echoes
//! the desired value, and a large `devices` section (a file configuration of thousands
//! of devices, or a twin near its 32 KiB limit) echoed in full would fill the reported
//! section on its own. Larger values are replaced by a marker with their size.

use serde_json::{Value, json};

/// Largest acknowledged value echoed in full, bytes of JSON.
pub(crate) const MAX_ACK_VALUE: usize = 4 * 1024;

/// Replaces every oversized `value` of the acknowledgements in `reported`.
pub(crate) fn clamp_acks(mut reported: Value) -> Value {
    if let Some(map) = reported.as_object_mut() {
        for ack in map.values_mut() {
            let is_ack = ack.get("ac").is_some() && ack.get("av").is_some();
            if let (true, Some(value)) = (is_ack, ack.get_mut("value")) {
                let bytes = value.to_string().len();
                if bytes > MAX_ACK_VALUE {
                    *value = json!({"truncated": true, "bytes": bytes});
                }
            }
        }
    }
    reported
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_large_ack_values_are_replaced() {
        let big = json!({"d": "x".repeat(MAX_ACK_VALUE)});
        let out = clamp_acks(json!({
            "devices": {"value": big, "ac": 200, "av": 3, "ad": "applied"},
            "maps": {"value": {"m": 1}, "ac": 200, "av": 3, "ad": "applied"},
            "configStatus": {"status": "applied", "value": big},
        }));
        assert_eq!(out["devices"]["value"]["truncated"], true);
        assert_eq!(out["devices"]["ac"], 200);
        assert_eq!(out["maps"]["value"], json!({"m": 1}));
        assert_eq!(out["configStatus"]["value"], big, "not an acknowledgement");
    }
}
