//! Device maps: one per device *model*, mapping registers to named, typed, scaled points.
//! Parsed from JSON (`device-maps/modbus/*.json`) and validated once into [`DeviceMap`].

mod bundled;

use std::collections::BTreeMap;

use bridge_core::config::{ConfigErrors, ConfigIssue, from_value};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use bundled::{bundled, bundled_names, bundled_shared};

/// The four Modbus tables.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum Table {
    /// Coils (FC1 read, FC5/FC15 write).
    Coil,
    /// Discrete inputs (FC2).
    DiscreteInput,
    /// Holding registers (FC3 read, FC6/FC16 write).
    Holding,
    /// Input registers (FC4).
    Input,
}

impl Table {
    /// Coils and discrete inputs hold bits; the others 16-bit registers.
    pub fn is_bits(self) -> bool {
        matches!(self, Table::Coil | Table::DiscreteInput)
    }
}

/// Data types of a point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum DataType {
    /// A coil or discrete input.
    Bool,
    /// One bit (`bit` 0–15) of a register.
    Bit,
    /// Unsigned 16-bit.
    U16,
    /// Signed 16-bit.
    I16,
    /// Unsigned 32-bit (2 registers).
    U32,
    /// Signed 32-bit (2 registers).
    I32,
    /// Unsigned 64-bit (4 registers).
    U64,
    /// Signed 64-bit (4 registers).
    I64,
    /// IEEE 754 single (2 registers).
    F32,
    /// IEEE 754 double (4 registers).
    F64,
    /// ASCII/UTF-8 text in `length` registers, two bytes each, NULs trimmed.
    String,
}

/// Byte order within a register, or register (word) order within a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Order {
    /// Most significant first (Modbus standard).
    #[default]
    Big,
    /// Least significant first.
    Little,
}

/// A point as written in a map file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(extend("allOf" = [
    {"if": {"properties": {"type": {"const": "bit"}}}, "then": {"required": ["bit"], "properties": {"table": {"enum": ["holding", "input"]}}}},
    {"if": {"properties": {"type": {"const": "string"}}}, "then": {"required": ["length"]}},
    {"if": {"properties": {"type": {"const": "bool"}}}, "then": {"properties": {"table": {"enum": ["coil", "discreteInput"]}}}},
    {"if": {"properties": {"table": {"enum": ["coil", "discreteInput"]}}}, "then": {"properties": {"type": {"const": "bool"}}}}
]))]
pub struct PointSpec {
    /// Which table.
    pub table: Table,
    /// 0-based protocol address (Modicon 40001 is holding address 0).
    pub address: u16,
    /// Data type.
    #[serde(rename = "type")]
    pub data_type: DataType,
    /// Bit index for `bit` points (0 = least significant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 15))]
    pub bit: Option<u8>,
    /// Registers for `string` points.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 125))]
    pub length: Option<u16>,
    /// Byte order override for this point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub byte_order: Option<Order>,
    /// Word order override for this point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub word_order: Option<Order>,
    /// Override of the map's `writeMultiple`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_multiple: Option<bool>,
    /// Multiplier applied to the raw value (value = raw × scale + offset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("not" = {"const": 0}))]
    pub scale: Option<f64>,
    /// Added after scaling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<f64>,
    /// Another (i16) point holding a power-of-ten scale factor (SunSpec `*_SF`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_point: Option<String>,
    /// Unit, e.g. `V`, `kWh`, `°C`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// What the point is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// May be written through the `write` method.
    #[serde(default)]
    pub writable: bool,
    /// Smallest value a write may set (engineering units).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Largest value a write may set (engineering units).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Include in telemetry (false for helper points such as scale factors).
    #[serde(default = "default_true")]
    pub publish: bool,
    /// A static fact (serial number, firmware): reported as a property, not telemetry.
    #[serde(default)]
    pub static_fact: bool,
}

const fn default_true() -> bool {
    true
}

/// One device model: named, typed, scaled points over the four Modbus tables. Addresses
/// are 0-based protocol addresses (Modicon 40001 = holding 0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(title = "Modbus device map")]
pub struct MapSpec {
    /// JSON Schema reference (ignored).
    #[serde(rename = "$schema", default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// Map name, e.g. `eastron-sdm120`, referenced from device configuration.
    #[schemars(regex(pattern = "^[a-z0-9][a-z0-9-]*$"))]
    pub name: String,
    /// Manufacturer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manufacturer: Option<String>,
    /// Model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Where the register table comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Default byte order.
    #[serde(default)]
    pub byte_order: Order,
    /// Default word order.
    #[serde(default)]
    pub word_order: Order,
    /// Write with FC15/FC16 even a single coil or register, for devices that do not
    /// implement FC5/FC6.
    #[serde(default)]
    pub write_multiple: bool,
    /// Points by name (names become telemetry fields).
    #[schemars(extend("minProperties" = 1, "propertyNames" = {"pattern": "^[A-Za-z][A-Za-z0-9_]{0,63}$"}))]
    pub points: BTreeMap<String, PointSpec>,
}

/// A validated point.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// Name (telemetry field).
    pub name: String,
    /// The spec, with orders resolved.
    pub spec: PointSpec,
    /// Effective byte order.
    pub byte_order: Order,
    /// Effective word order.
    pub word_order: Order,
    /// Writes use FC15/FC16 even for one coil or register.
    pub write_multiple: bool,
    /// Registers (or bits) the point spans.
    pub width: u16,
    /// Index of the scale-factor point, if any.
    pub scale_index: Option<usize>,
}

/// A validated map.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceMap {
    /// Name.
    pub name: String,
    /// The spec as given (for models and docs).
    pub spec: MapSpec,
    /// Points in name order.
    pub points: Vec<Point>,
}

impl DeviceMap {
    /// Index of a point by name.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.points.iter().position(|p| p.name == name)
    }
}

/// Width in registers (or bits) of a point.
pub fn width_of(spec: &PointSpec) -> u16 {
    match spec.data_type {
        DataType::Bool | DataType::Bit | DataType::U16 | DataType::I16 => 1,
        DataType::U32 | DataType::I32 | DataType::F32 => 2,
        DataType::U64 | DataType::I64 | DataType::F64 => 4,
        DataType::String => spec.length.unwrap_or(1),
    }
}

/// Telemetry field names must also be valid DTDL names.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.ends_with('_')
        && name.len() <= 64
}

/// Parses and validates a map document; `path` prefixes every error (`maps.x`, a file name…).
pub fn parse_map(doc: &Value, path: &str) -> Result<DeviceMap, ConfigErrors> {
    let spec: MapSpec = from_value(doc, path)?;
    validate(spec, path)
}

fn validate(spec: MapSpec, path: &str) -> Result<DeviceMap, ConfigErrors> {
    let mut issues = Vec::new();
    let at = |name: &str, field: &str| {
        format!(
            "{path}.points.{name}{}{field}",
            if field.is_empty() { "" } else { "." }
        )
    };
    if spec.points.is_empty() {
        issues.push(ConfigIssue::new(
            format!("{path}.points"),
            "A map needs at least one point.",
        ));
    }
    let mut points = Vec::new();
    for (name, p) in &spec.points {
        if !valid_name(name) {
            issues.push(ConfigIssue::new(at(name, ""), "Point names start with a letter and use only letters, digits and '_' (they become telemetry fields)."));
        }
        let bits_table = p.table.is_bits();
        match (p.data_type, bits_table) {
            (DataType::Bool, false) => issues.push(ConfigIssue::new(at(name, "type"), "bool points live in the coil or discreteInput table; use bit for a bit of a register.")),
            (t, true) if t != DataType::Bool => issues.push(ConfigIssue::new(at(name, "type"), "Coils and discrete inputs hold single bits: use type bool.")),
            _ => {}
        }
        match (p.data_type, p.bit) {
            (DataType::Bit, None) => issues.push(ConfigIssue::new(
                at(name, "bit"),
                "A bit point needs bit (0-15).",
            )),
            (DataType::Bit, Some(b)) if b > 15 => {
                issues.push(ConfigIssue::new(at(name, "bit"), "bit must be 0-15."))
            }
            (t, Some(_)) if t != DataType::Bit => issues.push(ConfigIssue::new(
                at(name, "bit"),
                "bit is only for type bit.",
            )),
            _ => {}
        }
        match (p.data_type, p.length) {
            (DataType::String, None) => issues.push(ConfigIssue::new(
                at(name, "length"),
                "A string point needs length (registers).",
            )),
            (DataType::String, Some(l)) if l == 0 || l > 125 => issues.push(ConfigIssue::new(
                at(name, "length"),
                "length must be 1-125 registers.",
            )),
            (t, Some(_)) if t != DataType::String => issues.push(ConfigIssue::new(
                at(name, "length"),
                "length is only for type string.",
            )),
            _ => {}
        }
        let width = width_of(p);
        if u32::from(p.address) + u32::from(width) > 65_536 {
            issues.push(ConfigIssue::new(
                at(name, "address"),
                format!(
                    "The point spans past the last address 65535 (address {} + {width} registers).",
                    p.address
                ),
            ));
        }
        if p.writable && !matches!(p.table, Table::Coil | Table::Holding) {
            issues.push(ConfigIssue::new(
                at(name, "writable"),
                "Only coils and holding registers can be written.",
            ));
        }
        if let Some(s) = p.scale
            && (s == 0.0 || !s.is_finite())
        {
            issues.push(ConfigIssue::new(
                at(name, "scale"),
                "scale must be a finite, non-zero number.",
            ));
        }
        if let (Some(lo), Some(hi)) = (p.min, p.max)
            && lo > hi
        {
            issues.push(ConfigIssue::new(
                at(name, "min"),
                "min is greater than max.",
            ));
        }
        points.push(Point {
            name: name.clone(),
            byte_order: p.byte_order.unwrap_or(spec.byte_order),
            word_order: p.word_order.unwrap_or(spec.word_order),
            write_multiple: p.write_multiple.unwrap_or(spec.write_multiple),
            width,
            scale_index: None,
            spec: p.clone(),
        });
    }
    // Scale-factor references.
    let names: Vec<String> = points.iter().map(|p| p.name.clone()).collect();
    for p in &mut points {
        if let Some(sf) = &p.spec.scale_point {
            match names.iter().position(|n| n == sf) {
                Some(i) if spec.points[sf].data_type == DataType::I16 => p.scale_index = Some(i),
                Some(_) => issues.push(ConfigIssue::new(
                    at(&p.name, "scalePoint"),
                    format!("The scale point '{sf}' must be of type i16."),
                )),
                None => issues.push(ConfigIssue::new(
                    at(&p.name, "scalePoint"),
                    format!("There is no point '{sf}' in this map."),
                )),
            }
        }
    }
    issues.extend(overlaps(&points, path));
    if issues.is_empty() {
        Ok(DeviceMap {
            name: spec.name.clone(),
            points,
            spec,
        })
    } else {
        Err(ConfigErrors(issues))
    }
}

/// Two points may share registers only as different bits of the same register.
fn overlaps(points: &[Point], path: &str) -> Vec<ConfigIssue> {
    let mut sorted: Vec<&Point> = points.iter().collect();
    sorted.sort_by_key(|p| (p.spec.table, p.spec.address));
    let mut issues = Vec::new();
    for (i, a) in sorted.iter().enumerate() {
        for b in sorted.iter().skip(i + 1) {
            if b.spec.table != a.spec.table
                || u32::from(b.spec.address) >= u32::from(a.spec.address) + u32::from(a.width)
            {
                break;
            }
            let bits_ok = a.spec.data_type == DataType::Bit
                && b.spec.data_type == DataType::Bit
                && a.spec.address == b.spec.address
                && a.spec.bit != b.spec.bit;
            if !bits_ok {
                issues.push(ConfigIssue::new(
                    format!("{path}.points.{}.address", b.name),
                    format!(
                        "Overlaps point '{}' ({:?} {}..{}).",
                        a.name,
                        a.spec.table,
                        a.spec.address,
                        u32::from(a.spec.address) + u32::from(a.width) - 1
                    ),
                ));
            }
        }
    }
    issues
}

#[cfg(test)]
mod tests;
