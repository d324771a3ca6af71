//! Lenient reading of configuration objects, so one bad field never hides the others.
//! The document types (`doc.rs`) are ordinary serde structs whose fields are
//! [`Checked`]: any JSON deserialises into them, so serde only judges the object's
//! shape (unknown fields, the connection's `type`), and each field is typed afterwards,
//! with the path of the field itself.

use std::borrow::Cow;
use std::fmt::Display;
use std::marker::PhantomData;

use bridge_core::config::{ConfigIssue, from_value, join_path};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// Largest host name (DNS: 253 characters).
pub(super) const MAX_HOST: usize = 253;
/// Largest serial device path.
pub(super) const MAX_SERIAL_PATH: usize = 4096;
/// Largest map or point name.
pub(super) const MAX_NAME: usize = 128;

/// A field kept as the JSON given (`None`: absent) and typed later by [`Checked::get`];
/// its JSON Schema is `T`'s, so the document type is also the schema's source.
pub struct Checked<T> {
    raw: Option<Value>,
    _type: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for Checked<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.raw.fmt(f)
    }
}

impl<T: Serialize> Checked<T> {
    /// A default value (what `#[serde(default = ..)]` functions return).
    pub(super) fn of(value: &T) -> Self {
        Self {
            raw: serde_json::to_value(value).ok(),
            _type: PhantomData,
        }
    }
}

impl<T> Default for Checked<T> {
    /// Absent.
    fn default() -> Self {
        Self {
            raw: None,
            _type: PhantomData,
        }
    }
}

impl<T> Checked<T> {
    /// The JSON as given.
    pub(super) fn raw(&self) -> Option<&Value> {
        self.raw.as_ref()
    }
}

impl<T: DeserializeOwned> Checked<T> {
    /// The typed value, or `None` with the problem recorded at `path`. An absent field
    /// is what serde makes of it (`None` for an `Option`), otherwise required.
    pub(super) fn get(&self, path: &str, issues: &mut Vec<ConfigIssue>) -> Option<T> {
        let Some(raw) = &self.raw else {
            if let Ok(v) = serde_json::from_value::<T>(Value::Null) {
                return Some(v);
            }
            let name = path.rsplit('.').next().unwrap_or(path);
            issues.push(ConfigIssue::new(path, format!("{name} is required.")));
            return None;
        };
        match from_value::<T>(raw, path) {
            Ok(v) => Some(v),
            Err(e) => {
                issues.extend(e.0);
                None
            }
        }
    }
}

impl<T: DeserializeOwned + PartialOrd + Display + Copy> Checked<T> {
    /// The typed value if it lies within `bounds`; otherwise `None`, recorded at `path`.
    pub(super) fn get_in(
        &self,
        bounds: Bounds<T>,
        path: &str,
        issues: &mut Vec<ConfigIssue>,
    ) -> Option<T> {
        self.get(path, issues)
            .filter(|v| bounds.check(*v, path, issues))
    }
}

impl<'de, T> Deserialize<'de> for Checked<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Every JSON value deserialises into `Value`; only serde's stand-in for a
        // missing field refuses, so an error here means "absent".
        Ok(Self {
            raw: Value::deserialize(deserializer).ok(),
            _type: PhantomData,
        })
    }
}

impl<T> Serialize for Checked<T> {
    /// The JSON given; an absent field has no JSON (so the schema shows no default).
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.raw {
            Some(v) => v.serialize(serializer),
            None => Err(serde::ser::Error::custom("absent")),
        }
    }
}

impl<T: JsonSchema> JsonSchema for Checked<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }

    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }

    fn schema_id() -> Cow<'static, str> {
        T::schema_id()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        T::json_schema(generator)
    }

    fn _schemars_private_non_optional_json_schema(generator: &mut SchemaGenerator) -> Schema {
        T::_schemars_private_non_optional_json_schema(generator)
    }

    fn _schemars_private_is_option() -> bool {
        T::_schemars_private_is_option()
    }
}

/// Inclusive bounds of a number: the field's `#[schemars(range(..))]` and its check.
#[derive(Debug, Clone, Copy)]
pub(super) struct Bounds<T>(pub T, pub T);

impl<T: PartialOrd + Display + Copy> Bounds<T> {
    /// Whether `v` is inside; if not, the problem is recorded at `path`.
    pub(super) fn check(&self, v: T, path: &str, issues: &mut Vec<ConfigIssue>) -> bool {
        let ok = self.0 <= v && v <= self.1;
        if !ok {
            let name = path.rsplit('.').next().unwrap_or(path);
            issues.push(ConfigIssue::new(
                path,
                format!("{name} must be {}-{}.", self.0, self.1),
            ));
        }
        ok
    }
}

/// Reads `value` as the object `T` (a struct or tagged enum whose fields are all
/// [`Checked`], so only the shape can fail): a value that is not an object, every
/// unknown field, a missing or unknown `type` are recorded at their paths.
pub(super) fn read_object<T: DeserializeOwned>(
    value: &Value,
    path: &str,
    what: &str,
    issues: &mut Vec<ConfigIssue>,
) -> Option<T> {
    let Value::Object(obj) = value else {
        issues.push(ConfigIssue::new(
            if path.is_empty() { "." } else { path },
            format!("{what} must be a JSON object, not {}.", kind(value)),
        ));
        return None;
    };
    let mut owned: Option<Value> = None;
    loop {
        let current = owned.as_ref().unwrap_or(value);
        let message = match T::deserialize(current) {
            Ok(v) => return Some(v),
            Err(e) => e.to_string(),
        };
        let keys = current.as_object().unwrap_or(obj);
        // serde's own refusal of an unknown field (deny_unknown_fields): record it with
        // the fields the type has, drop it and read the rest.
        let unknown = keys
            .keys()
            .find(|k| message.starts_with(&format!("unknown field `{k}`")))
            .cloned();
        if let Some(key) = unknown {
            let expected = message.split_once("`, ").map_or("", |(_, rest)| rest);
            issues.push(ConfigIssue::new(
                join_path(path, &key),
                format!("Unknown field `{}`; {expected}.", clip(&key)),
            ));
            let mut rest = keys.clone();
            rest.remove(&key);
            owned = Some(Value::Object(rest));
            continue;
        }
        if let Some(field) = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next())
        {
            issues.push(ConfigIssue::new(
                join_path(path, field),
                format!("{field} is required."),
            ));
            return None;
        }
        if let Err(e) = from_value::<T>(current, path) {
            issues.extend(e.0);
        }
        return None;
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
    let Value::Object(obj) = value else {
        issues.push(ConfigIssue::new(
            path,
            format!("{what} must be a JSON object, not {}.", kind(value)),
        ));
        return None;
    };
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
