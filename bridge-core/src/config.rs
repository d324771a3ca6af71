//! Configuration errors that name the JSON path of the offending field, and the one
//! place desired-property JSON becomes typed config.

use serde::de::DeserializeOwned;
use serde_json::Value;

/// One problem in a configuration document.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConfigIssue {
    /// JSON path, e.g. `devices.meter-1.pollIntervalMs` (`.` for the root).
    pub path: String,
    /// What is wrong, as a sentence.
    pub message: String,
}

impl ConfigIssue {
    /// An issue at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// A rejected configuration: every issue found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("The configuration is invalid: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct ConfigErrors(pub Vec<ConfigIssue>);

impl ConfigErrors {
    /// A single issue.
    pub fn one(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self(vec![ConfigIssue::new(path, message)])
    }
}

/// Deserialises `value` into `T`, turning a serde error into an issue with its JSON path
/// (prefixed with `prefix`).
pub fn from_value<T: DeserializeOwned>(value: &Value, prefix: &str) -> Result<T, ConfigErrors> {
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let inner = e.path().to_string();
        let path = join_path(prefix, if inner == "." { "" } else { &inner });
        let message = e.into_inner().to_string();
        ConfigErrors::one(path, sentence(&message))
    })
}

/// Joins JSON path segments with `.`; an empty result is `.`.
pub fn join_path(prefix: &str, rest: &str) -> String {
    match (prefix.is_empty(), rest.is_empty()) {
        (true, true) => ".".into(),
        (true, false) => rest.into(),
        (false, true) => prefix.into(),
        (false, false) if rest.starts_with('[') => format!("{prefix}{rest}"),
        (false, false) => format!("{prefix}.{rest}"),
    }
}

fn sentence(message: &str) -> String {
    // serde messages look like "unknown field `x`, expected one of …": drop the position
    // suffix and capitalise.
    let trimmed = message.split(" at line ").next().unwrap_or(message);
    let mut chars = trimmed.chars();
    match chars.next() {
        Some(first) => format!(
            "{}{}.",
            first.to_uppercase(),
            chars.as_str().trim_end_matches('.')
        ),
        None => "Invalid value.".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Device {
        poll_interval_ms: u64,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Root {
        devices: std::collections::BTreeMap<String, Device>,
    }

    #[test]
    fn errors_carry_the_json_path() {
        let e = from_value::<Root>(&json!({"devices": {"m1": {"pollIntervalMs": "fast"}}}), "")
            .unwrap_err();
        assert_eq!(e.0[0].path, "devices.m1.pollIntervalMs");
        assert!(
            e.0[0].message.starts_with("Invalid type: string \"fast\""),
            "{}",
            e.0[0].message
        );
        let e = from_value::<Root>(
            &json!({"devices": {"m1": {"pollIntervalMs": 5, "extra": 1}}}),
            "",
        )
        .unwrap_err();
        assert_eq!(e.0[0].path, "devices.m1.extra");
        assert!(
            e.0[0].message.contains("Unknown field `extra`"),
            "{}",
            e.0[0].message
        );
        let e = from_value::<Root>(&json!("text"), "cfg").unwrap_err();
        assert_eq!(e.0[0].path, "cfg");
        assert_eq!(
            e.to_string().split(": ").next(),
            Some("The configuration is invalid")
        );
    }
}
