//! IoT Hub's twin limits, enforced as edgeHub and IoT Hub do (pure checks).
//!
//! Sources: "Understand and use device twins in IoT Hub" (section "Tags and properties
//! format" and "Device twin size") and edgeHub's `ReportedPropertiesValidator`
//! (Azure/iotedge, edge-hub/core/.../twin): property names are at most 1 KB of UTF-8 with
//! no control characters, `.`, `$`, `#` or white space; objects nest at most 10 levels
//! below the section; string values are at most 4 KB; integers within ±2^52; and the
//! desired and reported sections are each at most 32 KB (their JSON, not counting the
//! read-only `$version` and `$metadata`). Operations that would break a limit are refused
//! with status 400 and the whole patch is discarded.

use serde_json::Value;

/// Largest desired or reported section, bytes.
pub const SECTION_MAX_BYTES: usize = 32 * 1024;
/// Deepest nesting of objects below the section.
pub const MAX_DEPTH: usize = 10;
/// Longest property name, UTF-8 bytes.
pub const NAME_MAX_BYTES: usize = 1024;
/// Longest string value, UTF-8 bytes.
pub const VALUE_MAX_BYTES: usize = 4096;
const MAX_SAFE_INT: i64 = (1 << 52) - 1;
const MIN_SAFE_INT: i64 = -(1 << 52);

/// A patch breaks a twin limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TwinLimitError {
    /// A property name with a reserved or invalid character.
    #[error(
        "Property name '{name}' contains the invalid character {ch:?} ('.', '$', '#', white space and control characters are not allowed)."
    )]
    NameCharacter {
        /// The name.
        name: String,
        /// The first invalid character.
        ch: char,
    },
    /// A property name over 1 KB.
    #[error("Length of property name {0}.. exceeds the maximum of 1024 bytes.")]
    NameLength(String),
    /// Objects nested too deep.
    #[error("Nested depth of twin property '{0}' exceeds 10.")]
    Depth(String),
    /// A string value over 4 KB.
    #[error("Value of property '{name}' has length {len}, more than the maximum of 4096 bytes.")]
    ValueLength {
        /// Property name.
        name: String,
        /// Its UTF-8 length.
        len: usize,
    },
    /// An integer outside ±2^52.
    #[error("Property '{0}' has an out of bound value; integers are between -2^52 and 2^52-1.")]
    IntegerRange(String),
    /// Arrays may not hold nulls.
    #[error("Arrays cannot contain null (property '{0}').")]
    NullInArray(String),
    /// The section would grow past 32 KB.
    #[error("Twin {section} properties size {size} would exceed the maximum of 32768 bytes.")]
    Size {
        /// `desired` or `reported`.
        section: &'static str,
        /// Its size after the patch, bytes.
        size: usize,
    },
}

/// Checks a patch's names, depth and values (not its size).
pub fn check_patch(patch: &Value) -> Result<(), TwinLimitError> {
    let Value::Object(map) = patch else {
        return Ok(());
    };
    for (name, v) in map {
        // A client may echo the read-only version in a patch; it is not a property.
        if name == "$version" || name == "$metadata" {
            continue;
        }
        check_token(name, v, 1, false)?;
    }
    Ok(())
}

fn check_token(name: &str, v: &Value, depth: usize, in_array: bool) -> Result<(), TwinLimitError> {
    check_name(name)?;
    match v {
        Value::Object(map) => {
            if depth > MAX_DEPTH {
                return Err(TwinLimitError::Depth(name.to_owned()));
            }
            for (k, inner) in map {
                check_token(k, inner, depth + 1, in_array)?;
            }
        }
        Value::Array(items) => {
            if depth > MAX_DEPTH {
                return Err(TwinLimitError::Depth(name.to_owned()));
            }
            for item in items {
                if item.is_null() {
                    return Err(TwinLimitError::NullInArray(name.to_owned()));
                }
                check_token("", item, depth + 1, true)?;
            }
        }
        Value::Null if in_array => return Err(TwinLimitError::NullInArray(name.to_owned())),
        Value::Number(n) => {
            if let Some(i) = n.as_i64()
                && !(MIN_SAFE_INT..=MAX_SAFE_INT).contains(&i)
            {
                return Err(TwinLimitError::IntegerRange(name.to_owned()));
            }
            if n.is_u64() && n.as_i64().is_none() {
                return Err(TwinLimitError::IntegerRange(name.to_owned()));
            }
        }
        Value::String(s) if s.len() > VALUE_MAX_BYTES => {
            return Err(TwinLimitError::ValueLength {
                name: name.to_owned(),
                len: s.len(),
            });
        }
        _ => {}
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), TwinLimitError> {
    if name.len() > NAME_MAX_BYTES {
        return Err(TwinLimitError::NameLength(name.chars().take(10).collect()));
    }
    if let Some(ch) = name
        .chars()
        .find(|c| c.is_control() || c.is_whitespace() || matches!(c, '.' | '$' | '#'))
    {
        return Err(TwinLimitError::NameCharacter {
            name: name.to_owned(),
            ch,
        });
    }
    Ok(())
}

/// The size of a section as the limit counts it: its compact JSON without the
/// read-only `$version` and `$metadata`.
pub fn section_size(section: &Value) -> usize {
    match section {
        Value::Object(map) => {
            let mut copy = map.clone();
            copy.remove("$version");
            copy.remove("$metadata");
            Value::Object(copy).to_string().len()
        }
        other => other.to_string().len(),
    }
}

/// Checks `patch` and the section it would produce (`merged`).
pub fn check(section: &'static str, patch: &Value, merged: &Value) -> Result<(), TwinLimitError> {
    check_patch(patch)?;
    let size = section_size(merged);
    if size > SECTION_MAX_BYTES {
        return Err(TwinLimitError::Size { section, size });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nested(levels: usize) -> Value {
        (0..levels).fold(json!("leaf"), |inner, i| json!({format!("l{i}"): inner}))
    }

    #[test]
    fn names_follow_the_twin_rules() {
        assert!(check_patch(&json!({"devices": {"meter-1": {"unitId": 1}}})).is_ok());
        for bad in [
            "a.b",
            "$x",
            "a b",
            "tab\there",
            "hash#",
            "nul\u{0}",
            "c1\u{85}",
        ] {
            let err = check_patch(&json!({"devices": {bad: 1}})).unwrap_err();
            assert!(
                matches!(err, TwinLimitError::NameCharacter { .. }),
                "{bad}: {err}"
            );
        }
        assert!(check_patch(&json!({"$version": 4, "a": 1})).is_ok());
        let long = "k".repeat(1025);
        assert!(matches!(
            check_patch(&json!({long: 1})),
            Err(TwinLimitError::NameLength(_))
        ));
    }

    #[test]
    fn ten_levels_of_objects_below_the_section_and_no_more() {
        // nested(n) is the section object plus n - 1 levels of objects below it.
        assert!(check_patch(&nested(11)).is_ok());
        assert!(matches!(
            check_patch(&nested(12)),
            Err(TwinLimitError::Depth(_))
        ));
    }

    #[test]
    fn values_and_sizes() {
        assert!(check_patch(&json!({"s": "x".repeat(4096)})).is_ok());
        assert!(matches!(
            check_patch(&json!({"s": "x".repeat(4097)})),
            Err(TwinLimitError::ValueLength { len: 4097, .. })
        ));
        assert!(check_patch(&json!({"n": 4_503_599_627_370_495_i64})).is_ok());
        assert!(check_patch(&json!({"n": 4_503_599_627_370_496_i64})).is_err());
        assert!(check_patch(&json!({"a": [1, null]})).is_err());
        let doc = json!({"$version": 7, "$metadata": {"x": "y".repeat(100)}, "a": 1});
        assert_eq!(section_size(&doc), r#"{"a":1}"#.len());
        let big = json!({"k": "v".repeat(4000), "k2": "v".repeat(4000)});
        assert!(check("desired", &json!({}), &big).is_ok());
        let huge: serde_json::Map<String, Value> = (0..9)
            .map(|i| (format!("k{i}"), json!("v".repeat(4000))))
            .collect();
        let huge = Value::Object(huge);
        assert!(matches!(
            check("desired", &json!({}), &huge),
            Err(TwinLimitError::Size { section: "desired", size }) if size > 32_768
        ));
    }
}
