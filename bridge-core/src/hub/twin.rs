//! Twin documents, pure: JSON merge-patch, version handling, Plug and Play acknowledgements.

use serde_json::{Map, Value};

/// Applies an RFC 7386 merge patch in place: objects merge, `null` removes a key,
/// anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(patch_map) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Value::Object(target_map) = target {
                for (key, value) in patch_map {
                    if value.is_null() {
                        target_map.remove(key);
                    } else {
                        merge_patch(target_map.entry(key.clone()).or_insert(Value::Null), value);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// The user's part of a desired document: every key starting with `$` (`$version`,
/// `$metadata`) removed, recursively.
pub fn strip_metadata(doc: &Value) -> Value {
    match doc {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip_metadata(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// `$version` of a twin section, if present.
pub fn version_of(doc: &Value) -> Option<u64> {
    doc.get("$version").and_then(Value::as_u64)
}

/// The desired section as the session tracks it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Desired {
    /// Full desired document with `$` keys removed.
    pub doc: Value,
    /// Its `$version`.
    pub version: u64,
}

impl Desired {
    /// From a full twin GET response body (`{"desired": {...}, "reported": {...}}`).
    pub fn from_twin(twin: &Value) -> Option<Self> {
        let desired = twin.get("desired")?;
        Some(Self {
            doc: strip_metadata(desired),
            version: version_of(desired).unwrap_or(0),
        })
    }

    /// Applies a desired patch. Returns false (and changes nothing) when the patch is
    /// older than what we have, so a stale patch after a full GET is ignored.
    pub fn apply_patch(&mut self, patch: &Value, version: Option<u64>) -> bool {
        let version = version.or_else(|| version_of(patch));
        if let Some(v) = version
            && v <= self.version
        {
            return false;
        }
        merge_patch(&mut self.doc, &strip_metadata(patch));
        if let Some(v) = version {
            self.version = v;
        }
        true
    }
}

/// A writable-property acknowledgement in the IoT Plug and Play form.
pub fn pnp_ack(value: &Value, code: u16, desired_version: u64, description: &str) -> Value {
    serde_json::json!({"value": value, "ac": code, "av": desired_version, "ad": description})
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc7386() {
        let mut doc = json!({"a": 1, "b": {"c": 2, "d": 3}, "e": [1]});
        merge_patch(
            &mut doc,
            &json!({"a": null, "b": {"c": 5, "d": null, "x": {"y": 1}}, "e": "s"}),
        );
        assert_eq!(doc, json!({"b": {"c": 5, "x": {"y": 1}}, "e": "s"}));
    }

    #[test]
    fn desired_tracks_versions_and_strips_metadata() {
        let twin = json!({"desired": {"telemetryInterval": 5, "$version": 3, "$metadata": {"$lastUpdated": "x"}}, "reported": {"$version": 5}});
        let mut d = Desired::from_twin(&twin).unwrap();
        assert_eq!(
            d,
            Desired {
                doc: json!({"telemetryInterval": 5}),
                version: 3
            }
        );
        assert!(d.apply_patch(
            &json!({"telemetryInterval": 7, "threshold": null, "$version": 4}),
            Some(4)
        ));
        assert_eq!(d.doc, json!({"telemetryInterval": 7}));
        assert!(
            !d.apply_patch(&json!({"telemetryInterval": 1, "$version": 4}), None),
            "stale patch applied"
        );
        assert_eq!(d.version, 4);
        assert!(Desired::from_twin(&json!("garbage")).is_none());
    }

    #[test]
    fn ack_shape() {
        assert_eq!(
            pnp_ack(&json!(5), 200, 4, "applied"),
            json!({"value": 5, "ac": 200, "av": 4, "ad": "applied"})
        );
    }
}
