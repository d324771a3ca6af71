//! Decoding one SunSpec model's registers into named values. Pure.
//!
//! Names: `m{model id}` (with `_{n}` for the n-th instance, n ≥ 2, of a model that occurs
//! more than once in the chain), then `_{group}_{index}` for each nested group (index
//! 1-based for repeating groups, absent for a single group), then `_{point}`; characters
//! other than letters, digits and `_` become `_`. Examples: `m103_W`,
//! `m160_module_2_DCW`, `m203_2_TotWhImp`.
//!
//! Values: scale factors (`sf`) applied as value × 10^sf rounded to -sf decimals, as the
//! specification and pysunspec2 do; "not implemented" sentinels (0x8000, 0xFFFF, 0,
//! 0x80000000, NaN, an empty string... by type) give no value, and so does a point whose
//! scale factor is not implemented. `ID`, `L`, `pad` and scale-factor points are helpers and
//! never published.

use std::collections::HashMap;

use super::defs::{CountRef, GroupDef, ModelDef, PointDef, PointType, ScaleRef};
use crate::codec::Reading;

/// One decoded (or absent) point.
#[derive(Debug, Clone, PartialEq)]
pub struct Field<'a> {
    /// Telemetry name.
    pub name: String,
    /// Its definition.
    pub def: &'a PointDef,
    /// The value; `None` when not implemented or outside the registers read.
    pub value: Option<Reading>,
}

/// The name prefix of the `instance`-th (1-based) occurrence of model `id`.
pub fn model_prefix(id: u16, instance: usize) -> String {
    if instance <= 1 {
        format!("m{id}")
    } else {
        format!("m{id}_{instance}")
    }
}

fn clean(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A raw value before scaling.
#[derive(Debug, Clone, PartialEq)]
enum Raw {
    Int(i64),
    UInt(u64),
    Float(f64),
    Text(String),
}

/// Decodes one point from its registers; `None` for the type's "not implemented" value.
fn raw_value(kind: PointType, regs: &[u16]) -> Option<Raw> {
    let word = |i: usize| regs.get(i).copied().unwrap_or(0);
    let u32v = || (u32::from(word(0)) << 16) | u32::from(word(1));
    let u64v = || (0..4).fold(0u64, |acc, i| (acc << 16) | u64::from(word(i)));
    let bytes = || {
        regs.iter()
            .flat_map(|r| r.to_be_bytes())
            .collect::<Vec<u8>>()
    };
    match kind {
        PointType::Int16 | PointType::Sunssf => {
            let v = word(0) as i16;
            (v != i16::MIN).then_some(Raw::Int(i64::from(v)))
        }
        PointType::Uint16 | PointType::Count | PointType::Enum16 | PointType::Bitfield16 => {
            (word(0) != 0xFFFF).then_some(Raw::Int(i64::from(word(0))))
        }
        PointType::Acc16 => (word(0) != 0).then_some(Raw::Int(i64::from(word(0)))),
        PointType::Pad => None,
        PointType::Int32 => {
            let v = u32v() as i32;
            (v != i32::MIN).then_some(Raw::Int(i64::from(v)))
        }
        PointType::Uint32 | PointType::Enum32 | PointType::Bitfield32 => {
            (u32v() != u32::MAX).then_some(Raw::Int(i64::from(u32v())))
        }
        PointType::Acc32 => (u32v() != 0).then_some(Raw::Int(i64::from(u32v()))),
        PointType::Ipaddr => {
            let v = u32v();
            (v != 0).then(|| Raw::Text(std::net::Ipv4Addr::from(v).to_string()))
        }
        PointType::Int64 => {
            let v = u64v() as i64;
            (v != i64::MIN).then_some(Raw::Int(v))
        }
        PointType::Uint64 => (u64v() != u64::MAX).then_some(Raw::UInt(u64v())),
        PointType::Acc64 => (u64v() != 0).then_some(Raw::UInt(u64v())),
        PointType::Float32 => {
            let v = f32::from_bits(u32v());
            v.is_finite().then_some(Raw::Float(f64::from(v)))
        }
        PointType::Float64 => {
            let v = f64::from_bits(u64v());
            v.is_finite().then_some(Raw::Float(v))
        }
        PointType::String => {
            let b = bytes();
            if b.first().is_none_or(|c| *c == 0) {
                return None;
            }
            let text = String::from_utf8_lossy(&b);
            Some(Raw::Text(text.trim_end_matches('\0').to_owned()))
        }
        PointType::Ipv6addr => {
            let b: [u8; 16] = bytes().get(..16)?.try_into().ok()?;
            (b != [0; 16]).then(|| Raw::Text(std::net::Ipv6Addr::from(b).to_string()))
        }
        PointType::Eui48 => {
            let b = bytes();
            let mac = b.get(2..8)?;
            if mac.iter().all(|x| *x == 0xFF) || mac.iter().all(|x| *x == 0) {
                return None;
            }
            let parts: Vec<String> = mac.iter().map(|x| format!("{x:02X}")).collect();
            Some(Raw::Text(parts.join(":")))
        }
    }
}

/// value × 10^sf, rounded to -sf decimals (the specification's definition).
pub fn apply_sf(value: f64, sf: i32) -> f64 {
    let x = value * 10f64.powi(sf);
    if sf < 0 {
        let m = 10f64.powi(-sf);
        (x * m).round() / m
    } else {
        x
    }
}

fn to_reading(raw: &Raw, sf: Option<i32>) -> Reading {
    match (raw, sf) {
        (Raw::Int(v), Some(sf)) => Reading::Float(apply_sf(*v as f64, sf)),
        (Raw::UInt(v), Some(sf)) => Reading::Float(apply_sf(*v as f64, sf)),
        (Raw::Float(v), Some(sf)) => Reading::Float(apply_sf(*v, sf)),
        (Raw::Int(v), None) => Reading::Int(*v),
        (Raw::UInt(v), None) => i64::try_from(*v).map_or(Reading::UInt(*v), Reading::Int),
        (Raw::Float(v), None) => Reading::Float(*v),
        (Raw::Text(t), _) => Reading::Text(t.clone()),
    }
}

/// Scale factors visible from a group: its own `sunssf` points, then its ancestors'.
type Scope = HashMap<String, Option<i32>>;

struct Walker<'a, 'r> {
    regs: &'r [u16],
    offset: usize,
    /// Top-level integer points, for `count` references.
    top: HashMap<String, i64>,
    out: Vec<Field<'a>>,
}

impl<'a> Walker<'a, '_> {
    fn group(&mut self, g: &'a GroupDef, prefix: &str, scopes: &mut Vec<Scope>, top: bool) {
        let mut raws: Vec<(usize, Option<Raw>)> = Vec::with_capacity(g.points.len());
        let mut scope = Scope::new();
        for p in &g.points {
            let w = usize::from(p.width());
            let raw = self
                .regs
                .get(self.offset..self.offset + w)
                .and_then(|r| raw_value(p.kind, r));
            self.offset += w;
            if p.kind == PointType::Sunssf {
                let sf = match &raw {
                    Some(Raw::Int(v)) => i32::try_from(*v).ok(),
                    _ => None,
                };
                scope.insert(p.name.clone(), sf);
            }
            if top && let Some(Raw::Int(v)) = &raw {
                self.top.insert(p.name.clone(), *v);
            }
            raws.push((self.out.len(), raw));
        }
        scopes.push(scope);
        for (p, (_, raw)) in g.points.iter().zip(raws) {
            if p.kind == PointType::Pad
                || p.kind == PointType::Sunssf
                || (top && (p.name == "ID" || p.name == "L"))
            {
                continue;
            }
            let sf = match &p.sf {
                None => Ok(None),
                Some(ScaleRef::Constant(c)) => Ok(Some(*c)),
                Some(ScaleRef::Point(name)) => scopes
                    .iter()
                    .rev()
                    .find_map(|s| s.get(name))
                    .copied()
                    .flatten()
                    .map(Some)
                    .ok_or(()),
            };
            let value = match (raw, sf) {
                (Some(raw), Ok(sf)) => Some(to_reading(&raw, sf)),
                _ => None,
            };
            self.out.push(Field {
                name: format!("{prefix}_{}", clean(&p.name)),
                def: p,
                value,
            });
        }
        for sub in &g.groups {
            let sub_prefix = format!("{prefix}_{}", clean(&sub.name));
            match &sub.count {
                None => self.group(sub, &sub_prefix, scopes, false),
                Some(count) => {
                    let n = self.count(count, sub, g);
                    for i in 1..=n {
                        if self.offset >= self.regs.len() {
                            break;
                        }
                        self.group(sub, &format!("{sub_prefix}_{i}"), scopes, false);
                    }
                }
            }
        }
        scopes.pop();
    }

    /// Instances of a repeating group.
    fn count(&self, count: &CountRef, sub: &GroupDef, parent: &GroupDef) -> usize {
        match count {
            CountRef::Fixed(n) if *n > 0 => usize::from(*n),
            CountRef::Point(name) => self
                .top
                .get(name)
                .and_then(|v| usize::try_from(*v).ok())
                .unwrap_or(0),
            CountRef::Fixed(_) => {
                // Legacy models: as many instances as fill the rest of the model.
                let width = sub.fixed_width() as usize;
                let fixed: usize = parent.points.iter().map(|p| usize::from(p.width())).sum();
                let rest = self.regs.len().saturating_sub(fixed);
                rest.checked_div(width).unwrap_or(0)
            }
        }
    }
}

/// Decodes a model from its registers, `regs[0]` being its `ID` register and `regs`
/// spanning `L + 2` registers. Every point of the layout the registers describe is
/// returned, with `value: None` when it is not implemented.
pub fn decode_model<'a>(def: &'a ModelDef, instance: usize, regs: &[u16]) -> Vec<Field<'a>> {
    let mut w = Walker {
        regs,
        offset: 0,
        top: HashMap::new(),
        out: Vec::new(),
    };
    let mut scopes = Vec::new();
    w.group(
        &def.group,
        &model_prefix(def.id, instance),
        &mut scopes,
        true,
    );
    w.out
}

#[cfg(test)]
#[path = "decode_tests.rs"]
mod tests;
