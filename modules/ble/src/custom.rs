//! Map-driven advertisement fields, pure: typed values at byte offsets of one
//! manufacturer-data or service-data entry, scaled. For devices none of the bundled
//! decoders know.

use std::collections::BTreeMap;

use bridge_core::config::{ConfigErrors, ConfigIssue, from_value};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::adverts::{DecodeError, Decoded};
use crate::gatt::{float32, sfloat};

/// Where the bytes come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Source {
    /// Manufacturer data of this company id.
    #[serde(default)]
    pub manufacturer_id: Option<u16>,
    /// Service data of this UUID (`0000181a-0000-1000-8000-00805f9b34fb`).
    #[serde(default)]
    #[schemars(regex(pattern = crate::config::map_doc::UUID_PATTERN))]
    pub service_uuid: Option<String>,
}

/// Field types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum FieldType {
    /// Unsigned 8-bit.
    U8,
    /// Signed 8-bit.
    I8,
    /// Unsigned 16-bit.
    U16,
    /// Signed 16-bit.
    I16,
    /// Unsigned 24-bit.
    U24,
    /// Unsigned 32-bit.
    U32,
    /// Signed 32-bit.
    I32,
    /// IEEE-11073 16-bit SFLOAT.
    Sfloat,
    /// IEEE-11073 32-bit FLOAT.
    Float,
}

impl FieldType {
    fn width(self) -> usize {
        match self {
            FieldType::U8 | FieldType::I8 => 1,
            FieldType::U16 | FieldType::I16 | FieldType::Sfloat => 2,
            FieldType::U24 => 3,
            FieldType::U32 | FieldType::I32 | FieldType::Float => 4,
        }
    }
}

/// Byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ByteOrder {
    /// Least significant first (BLE's usual order).
    #[default]
    Little,
    /// Most significant first.
    Big,
}

/// One field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Field {
    /// Byte offset in the data entry.
    #[schemars(range(max = 255))]
    pub offset: usize,
    /// Wire type of the bytes at `offset`.
    #[serde(rename = "type")]
    pub field_type: FieldType,
    /// Byte order.
    #[serde(default)]
    pub byte_order: ByteOrder,
    /// Multiplier applied to the raw value.
    #[serde(default)]
    pub scale: Option<f64>,
    /// Unit (documentation and models).
    #[serde(default)]
    pub unit: Option<String>,
}

/// A map-driven advertisement map: typed values at byte offsets of one
/// manufacturer-data or service-data entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AdvertMap {
    /// Map name (its DTDL model is named after it).
    pub name: String,
    /// Which advertisement entry: exactly one of `manufacturerId` or `serviceUuid`.
    pub source: Source,
    /// Fields by name (telemetry field names).
    pub fields: BTreeMap<String, Field>,
}

/// Parses and validates an inline map.
pub fn parse(doc: &Value, path: &str) -> Result<AdvertMap, ConfigErrors> {
    let map: AdvertMap = from_value(doc, path)?;
    let mut issues = Vec::new();
    match (&map.source.manufacturer_id, &map.source.service_uuid) {
        (Some(_), None) => {}
        (None, Some(u)) if uuid::Uuid::parse_str(u).is_ok() => {}
        (None, Some(_)) => issues.push(ConfigIssue::new(
            format!("{path}.source.serviceUuid"),
            "serviceUuid is not a UUID.",
        )),
        _ => issues.push(ConfigIssue::new(
            format!("{path}.source"),
            "Give exactly one of manufacturerId or serviceUuid.",
        )),
    }
    if map.fields.is_empty() {
        issues.push(ConfigIssue::new(
            format!("{path}.fields"),
            "A map needs at least one field.",
        ));
    }
    for (name, f) in &map.fields {
        if f.scale.is_some_and(|s| s == 0.0 || !s.is_finite()) {
            issues.push(ConfigIssue::new(
                format!("{path}.fields.{name}.scale"),
                "scale must be a finite, non-zero number.",
            ));
        }
        if f.offset > 255 {
            issues.push(ConfigIssue::new(
                format!("{path}.fields.{name}.offset"),
                "Advertisement data is shorter than 256 bytes.",
            ));
        }
    }
    if issues.is_empty() {
        Ok(map)
    } else {
        Err(ConfigErrors(issues))
    }
}

/// Decodes the fields from the entry's bytes.
pub fn decode(map: &AdvertMap, data: &[u8]) -> Result<Decoded, DecodeError> {
    let mut out = Decoded {
        format: "custom",
        values: BTreeMap::new(),
        packet_id: None,
    };
    for (name, f) in &map.fields {
        let w = f.field_type.width();
        let raw = data
            .get(f.offset..f.offset + w)
            .ok_or(DecodeError::Truncated {
                need: f.offset + w,
                got: data.len(),
            })?;
        let mut b = raw.to_vec();
        if f.byte_order == ByteOrder::Big {
            b.reverse();
        }
        let le = |n: usize| {
            b.iter()
                .take(n)
                .enumerate()
                .fold(0u64, |acc, (i, x)| acc | (u64::from(*x) << (8 * i)))
        };
        let v: Option<f64> = match f.field_type {
            FieldType::U8 | FieldType::U16 | FieldType::U24 | FieldType::U32 => Some(le(w) as f64),
            FieldType::I8 => Some(f64::from(le(1) as u8 as i8)),
            FieldType::I16 => Some(f64::from(le(2) as u16 as i16)),
            FieldType::I32 => Some(f64::from(le(4) as u32 as i32)),
            FieldType::Sfloat => sfloat(le(2) as u16),
            FieldType::Float => float32(le(4) as u32),
        };
        let value = match (v, f.scale) {
            (None, _) => Value::Null,
            (Some(v), None) if v.fract() == 0.0 => json!(v as i64),
            (Some(v), None) => json!(v),
            (Some(v), Some(s)) => json!(((v * s) * 1e6).round() / 1e6),
        };
        out.values.insert(name.clone(), value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_fields_at_offsets() {
        let map = parse(
            &json!({"name": "tag", "source": {"manufacturerId": 1234}, "fields": {
                "temperature": {"offset": 0, "type": "i16", "scale": 0.01, "unit": "°C"},
                "counter": {"offset": 2, "type": "u24", "byteOrder": "big"},
                "weight": {"offset": 5, "type": "sfloat"}
            }}),
            "maps.tag",
        )
        .unwrap();
        let d = decode(&map, &[0x69, 0x08, 0x00, 0x01, 0x02, 0x6E, 0xF1]).unwrap();
        assert_eq!(d.values["temperature"], json!(21.53));
        assert_eq!(d.values["counter"], json!(258));
        assert_eq!(d.values["weight"], json!(36.6));
        assert!(matches!(
            decode(&map, &[1, 2, 3]),
            Err(DecodeError::Truncated { .. })
        ));
        let e = parse(
            &json!({"name": "x", "source": {}, "fields": {"a": {"offset": 0, "type": "u128"}}}),
            "m",
        )
        .unwrap_err();
        assert_eq!(e.0[0].path, "m.fields.a.type");
        let e = parse(&json!({"name": "x", "source": {"manufacturerId": 1, "serviceUuid": "x"}, "fields": {"a": {"offset": 0, "type": "u8"}}}), "m").unwrap_err();
        assert_eq!(e.0[0].path, "m.source");
    }
}
