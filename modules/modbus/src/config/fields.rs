//! Field-by-field reading of configuration objects, so one bad field never hides the
//! others: every field is deserialised on its own and every problem is recorded with
//! the path of the field itself.

use bridge_core::config::{ConfigIssue, from_value, join_path};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// Largest host name (DNS: 253 characters).
pub(super) const MAX_HOST: usize = 253;
/// Largest serial device path.
pub(super) const MAX_SERIAL_PATH: usize = 4096;
/// Largest map or point name.
pub(super) const MAX_NAME: usize = 128;

/// A JSON object being read field by field.
pub(super) struct Fields<'a> {
    obj: &'a Map<String, Value>,
    path: String,
    known: Vec<&'static str>,
}

impl<'a> Fields<'a> {
    /// `value` as an object, or an issue at `path`.
    pub(super) fn of(
        value: &'a Value,
        path: &str,
        what: &str,
        issues: &mut Vec<ConfigIssue>,
    ) -> Option<Self> {
        match value {
            Value::Object(obj) => Some(Self {
                obj,
                path: path.to_owned(),
                known: Vec::new(),
            }),
            other => {
                issues.push(ConfigIssue::new(
                    if path.is_empty() { "." } else { path },
                    format!("{what} must be a JSON object, not {}.", kind(other)),
                ));
                None
            }
        }
    }

    /// Path of a field.
    pub(super) fn at(&self, name: &str) -> String {
        join_path(&self.path, name)
    }

    /// The raw value of a field (marks it known).
    pub(super) fn raw(&mut self, name: &'static str) -> Option<&'a Value> {
        self.known.push(name);
        self.obj.get(name)
    }

    /// An optional field: `None` when absent or wrong (the problem is recorded).
    pub(super) fn opt<T: DeserializeOwned>(
        &mut self,
        name: &'static str,
        issues: &mut Vec<ConfigIssue>,
    ) -> Option<T> {
        let path = self.at(name);
        let value = self.raw(name)?;
        match from_value::<T>(value, &path) {
            Ok(v) => Some(v),
            Err(e) => {
                issues.extend(e.0);
                None
            }
        }
    }

    /// A field with a default (also used when it is wrong; the problem is recorded).
    pub(super) fn or<T: DeserializeOwned>(
        &mut self,
        name: &'static str,
        default: T,
        issues: &mut Vec<ConfigIssue>,
    ) -> T {
        self.opt(name, issues).unwrap_or(default)
    }

    /// A required field.
    pub(super) fn req<T: DeserializeOwned>(
        &mut self,
        name: &'static str,
        issues: &mut Vec<ConfigIssue>,
    ) -> Option<T> {
        if !self.obj.contains_key(name) {
            self.known.push(name);
            issues.push(ConfigIssue::new(
                self.at(name),
                format!("{name} is required."),
            ));
            return None;
        }
        self.opt(name, issues)
    }

    /// Reports every field not read, naming the ones that exist.
    pub(super) fn finish(self, issues: &mut Vec<ConfigIssue>) {
        for key in self.obj.keys() {
            if !self.known.contains(&key.as_str()) {
                issues.push(ConfigIssue::new(
                    self.at(key),
                    format!(
                        "Unknown field `{}`; expected one of: {}.",
                        clip(key),
                        self.known.join(", ")
                    ),
                ));
            }
        }
    }
}

/// Checks a string's length (in characters) against `max`.
pub(super) fn check_len(
    text: &str,
    max: usize,
    path: &str,
    what: &str,
    issues: &mut Vec<ConfigIssue>,
) {
    let n = text.chars().count();
    if n > max {
        issues.push(ConfigIssue::new(
            path,
            format!("{what} is {n} characters long; at most {max} are allowed."),
        ));
    }
}

/// A host name or IP address: 1-253 characters, no spaces or control characters.
pub(super) fn check_host(host: &str, path: &str, issues: &mut Vec<ConfigIssue>) {
    if host.is_empty() {
        issues.push(ConfigIssue::new(path, "host must not be empty."));
    } else if host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        issues.push(ConfigIssue::new(
            path,
            "host must not contain spaces or control characters.",
        ));
    }
    check_len(host, MAX_HOST, path, "host", issues);
}

/// The first 40 characters of a user-supplied key, for messages.
pub(super) fn clip(text: &str) -> String {
    match text.char_indices().nth(40) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

/// What kind of JSON value this is, for messages.
pub(super) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Deserialises each field of `value` on its own into `T` (every field of `T` has a
/// default), so every wrong field is reported; then the whole.
pub(super) fn each_field<T: DeserializeOwned>(
    value: &Value,
    path: &str,
    what: &str,
    issues: &mut Vec<ConfigIssue>,
) -> Option<T> {
    let obj = Fields::of(value, path, what, issues)?.obj;
    let before = issues.len();
    for (k, v) in obj {
        let mut one = Map::new();
        one.insert(k.clone(), v.clone());
        if let Err(e) = from_value::<T>(&Value::Object(one), path) {
            issues.extend(e.0);
        }
    }
    if issues.len() > before {
        return None;
    }
    match from_value::<T>(value, path) {
        Ok(v) => Some(v),
        Err(e) => {
            issues.extend(e.0);
            None
        }
    }
}
