//! Registers ⇄ typed values, pure. Byte order applies within each 16-bit register,
//! word order to the sequence of registers (ABCD = big/big, CDAB = big bytes/little
//! words, BADC = little bytes/big words, DCBA = little/little).

use serde_json::{Number, Value};

use crate::map::{DataType, Order, Point};

/// A decoded reading.
#[derive(Debug, Clone, PartialEq)]
pub enum Reading {
    /// Coil, discrete input or bit.
    Bool(bool),
    /// Unscaled integer.
    Int(i64),
    /// Unscaled unsigned 64-bit beyond i64.
    UInt(u64),
    /// Float or scaled value.
    Float(f64),
    /// Text.
    Text(String),
}

impl Reading {
    /// As JSON (non-finite floats become `null`).
    pub fn to_json(&self) -> Value {
        match self {
            Reading::Bool(b) => Value::Bool(*b),
            Reading::Int(i) => Value::from(*i),
            Reading::UInt(u) => Value::from(*u),
            Reading::Float(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Reading::Text(t) => Value::String(t.clone()),
        }
    }

    /// Appends the JSON form to `out` without building a `serde_json::Value`.
    pub fn write_json(&self, out: &mut String) {
        use std::fmt::Write as _;
        match self {
            Reading::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Reading::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Reading::UInt(u) => {
                let _ = write!(out, "{u}");
            }
            // Like serde_json: integral floats keep a ".0"; non-finite become null.
            Reading::Float(f) if !f.is_finite() => out.push_str("null"),
            Reading::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => {
                // Integer formatting is much cheaper than a float with precision.
                let _ = write!(out, "{}.0", *f as i64);
            }
            Reading::Float(f) => {
                let _ = write!(out, "{f}");
            }
            Reading::Text(t) => bridge_core::text::push_json_str(out, t),
        }
    }

    /// Numeric view for deadbands and scale factors.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Reading::Bool(b) => Some(f64::from(u8::from(*b))),
            Reading::Int(i) => Some(*i as f64),
            Reading::UInt(u) => Some(*u as f64),
            Reading::Float(f) => Some(*f),
            Reading::Text(_) => None,
        }
    }
}

/// Bytes of `regs` in value order (most significant first) after applying the orders.
fn ordered_bytes(regs: &[u16], byte_order: Order, word_order: Order) -> Vec<u8> {
    let mut words: Vec<u16> = regs.to_vec();
    if word_order == Order::Little {
        words.reverse();
    }
    words
        .iter()
        .flat_map(|w| {
            let [hi, lo] = w.to_be_bytes();
            match byte_order {
                Order::Big => [hi, lo],
                Order::Little => [lo, hi],
            }
        })
        .collect()
}

/// Registers for value bytes (inverse of [`ordered_bytes`]).
fn registers_from(bytes: &[u8], byte_order: Order, word_order: Order) -> Vec<u16> {
    let mut words: Vec<u16> = bytes
        .chunks(2)
        .map(|c| {
            let (a, b) = (c[0], c.get(1).copied().unwrap_or(0));
            match byte_order {
                Order::Big => u16::from_be_bytes([a, b]),
                Order::Little => u16::from_be_bytes([b, a]),
            }
        })
        .collect();
    if word_order == Order::Little {
        words.reverse();
    }
    words
}

/// Raw (unscaled) value of a register point from exactly its `width` registers.
pub fn decode_raw(point: &Point, regs: &[u16]) -> Reading {
    let b = ordered_bytes(regs, point.byte_order, point.word_order);
    let arr = |n: usize| -> [u8; 8] {
        let mut out = [0u8; 8];
        out[8 - n..].copy_from_slice(&b[..n]);
        out
    };
    match point.spec.data_type {
        DataType::Bool => Reading::Bool(regs.first().is_some_and(|r| *r != 0)),
        DataType::Bit => Reading::Bool(
            regs.first()
                .is_some_and(|r| (r >> point.spec.bit.unwrap_or(0)) & 1 == 1),
        ),
        DataType::U16 => Reading::Int(i64::from(u16::from_be_bytes([b[0], b[1]]))),
        DataType::I16 => Reading::Int(i64::from(i16::from_be_bytes([b[0], b[1]]))),
        DataType::U32 => Reading::Int(i64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))),
        DataType::I32 => Reading::Int(i64::from(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))),
        DataType::U64 => {
            let v = u64::from_be_bytes(arr(8));
            i64::try_from(v).map_or(Reading::UInt(v), Reading::Int)
        }
        DataType::I64 => Reading::Int(i64::from_be_bytes(arr(8))),
        DataType::F32 => Reading::Float(f32_to_f64(f32::from_be_bytes([b[0], b[1], b[2], b[3]]))),
        DataType::F64 => Reading::Float(f64::from_be_bytes(arr(8))),
        DataType::String => {
            let text: Vec<u8> = b.into_iter().take_while(|c| *c != 0).collect();
            Reading::Text(String::from_utf8_lossy(&text).trim_end().to_owned())
        }
    }
}

/// Widens an f32 to the f64 with the same shortest decimal form, so 230.6f32 becomes
/// 230.6 rather than 230.60000610351562.
fn f32_to_f64(v: f32) -> f64 {
    if v.is_finite() {
        format!("{v}").parse().unwrap_or(f64::from(v))
    } else {
        f64::from(v)
    }
}

/// Applies `scale`, `offset` and a power-of-ten scale factor (SunSpec) to a raw value.
/// Without any of them integers stay integers.
pub fn engineering(point: &Point, raw: Reading, scale_factor: Option<i64>) -> Reading {
    let scale = point.spec.scale.unwrap_or(1.0)
        * scale_factor.map_or(1.0, |sf| 10f64.powi(sf.clamp(-10, 10) as i32));
    let offset = point.spec.offset.unwrap_or(0.0);
    if scale == 1.0 && offset == 0.0 {
        return raw;
    }
    match raw.as_f64() {
        Some(v) if !matches!(raw, Reading::Bool(_)) => {
            Reading::Float(round_to_scale(v * scale + offset, scale))
        }
        _ => raw,
    }
}

/// Trims binary noise such as 231.20000000000002 to the precision the scale implies.
fn round_to_scale(v: f64, scale: f64) -> f64 {
    let digits = (-scale.abs().log10()).ceil().clamp(0.0, 12.0) as i32 + 1;
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

/// Why a value cannot be written to a point.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EncodeError {
    /// Wrong JSON type.
    #[error("The point '{point}' takes {expected}, not {got}.")]
    Type {
        /// Point.
        point: String,
        /// Expected kind.
        expected: &'static str,
        /// What came.
        got: String,
    },
    /// Outside min/max.
    #[error("{value} is outside the allowed range {min}..{max} of '{point}'.")]
    Range {
        /// Point.
        point: String,
        /// Value.
        value: f64,
        /// Minimum.
        min: f64,
        /// Maximum.
        max: f64,
    },
    /// A string longer than the point's registers.
    #[error("The text for '{point}' is {bytes} bytes; the point holds {room}.")]
    TooLong {
        /// Point.
        point: String,
        /// Bytes given.
        bytes: usize,
        /// Bytes the point holds.
        room: usize,
    },
    /// Does not fit the register type after scaling.
    #[error("{value} does not fit the {kind} register of '{point}'.")]
    Overflow {
        /// Point.
        point: String,
        /// Raw value.
        value: f64,
        /// Type.
        kind: &'static str,
    },
}

/// What to write: a coil or registers.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteValue {
    /// Coil state.
    Coil(bool),
    /// Register words for the whole point (or, for `bit`, the bit to set).
    Registers(Vec<u16>),
    /// Set or clear one bit of a register (read-modify-write).
    Bit(u8, bool),
}

/// Encodes an engineering value for a point: range check, un-scale, type check, order.
pub fn encode(point: &Point, value: &Value) -> Result<WriteValue, EncodeError> {
    let name = point.name.clone();
    let type_err = |expected: &'static str| EncodeError::Type {
        point: name.clone(),
        expected,
        got: value.to_string(),
    };
    match point.spec.data_type {
        DataType::Bool => {
            return value
                .as_bool()
                .map(WriteValue::Coil)
                .ok_or_else(|| type_err("true or false"));
        }
        DataType::Bit => {
            return value
                .as_bool()
                .map(|b| WriteValue::Bit(point.spec.bit.unwrap_or(0), b))
                .ok_or_else(|| type_err("true or false"));
        }
        DataType::String => {
            let text = value.as_str().ok_or_else(|| type_err("a string"))?;
            let room = usize::from(point.spec.length.unwrap_or(0)) * 2;
            if text.len() > room {
                return Err(EncodeError::TooLong {
                    point: name,
                    bytes: text.len(),
                    room,
                });
            }
            // Padded with NULs, which reading strips.
            let mut bytes = text.as_bytes().to_vec();
            bytes.resize(room, 0);
            return Ok(WriteValue::Registers(registers_from(
                &bytes,
                point.byte_order,
                point.word_order,
            )));
        }
        _ => {}
    }
    let v = value.as_f64().ok_or_else(|| type_err("a number"))?;
    let (min, max) = (
        point.spec.min.unwrap_or(f64::NEG_INFINITY),
        point.spec.max.unwrap_or(f64::INFINITY),
    );
    if v < min || v > max || !v.is_finite() {
        return Err(EncodeError::Range {
            point: name,
            value: v,
            min,
            max,
        });
    }
    let raw = (v - point.spec.offset.unwrap_or(0.0)) / point.spec.scale.unwrap_or(1.0);
    let overflow = |kind| EncodeError::Overflow {
        point: name.clone(),
        value: raw,
        kind,
    };
    let int = |lo: f64, hi: f64, kind: &'static str| -> Result<i128, EncodeError> {
        let r = raw.round();
        if r < lo || r > hi {
            Err(overflow(kind))
        } else {
            Ok(r as i128)
        }
    };
    let bytes: Vec<u8> = match point.spec.data_type {
        DataType::U16 => (int(0.0, 65_535.0, "u16")? as u16).to_be_bytes().to_vec(),
        DataType::I16 => (int(-32_768.0, 32_767.0, "i16")? as i16)
            .to_be_bytes()
            .to_vec(),
        DataType::U32 => (int(0.0, 4_294_967_295.0, "u32")? as u32)
            .to_be_bytes()
            .to_vec(),
        DataType::I32 => (int(-2_147_483_648.0, 2_147_483_647.0, "i32")? as i32)
            .to_be_bytes()
            .to_vec(),
        DataType::U64 => (int(0.0, 18_446_744_073_709_551_615.0, "u64")? as u64)
            .to_be_bytes()
            .to_vec(),
        DataType::I64 => (int(-9.223_372_036_854_776e18, 9.223_372_036_854_776e18, "i64")? as i64)
            .to_be_bytes()
            .to_vec(),
        DataType::F32 => {
            if raw.abs() > f64::from(f32::MAX) {
                return Err(overflow("f32"));
            }
            (raw as f32).to_be_bytes().to_vec()
        }
        DataType::F64 => raw.to_be_bytes().to_vec(),
        DataType::Bool | DataType::Bit | DataType::String => unreachable!("handled above"),
    };
    Ok(WriteValue::Registers(registers_from(
        &bytes,
        point.byte_order,
        point.word_order,
    )))
}

#[cfg(test)]
mod tests;
