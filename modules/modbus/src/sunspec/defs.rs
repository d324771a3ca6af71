//! The SunSpec Alliance's model definitions (`device-maps/sunspec/model_N.json`, Apache-2.0),
//! compiled in and parsed on demand into [`ModelDef`]. Pure.

use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

macro_rules! m {
    ($id:literal) => {
        (
            $id,
            include_str!(concat!(
                "../../../../device-maps/sunspec/model_",
                stringify!($id),
                ".json"
            )),
        )
    };
}

/// Every bundled model definition: (model id, JSON text).
const MODELS: &[(u16, &str)] = &[
    m!(1),
    m!(2),
    m!(3),
    m!(4),
    m!(5),
    m!(6),
    m!(7),
    m!(8),
    m!(9),
    m!(10),
    m!(11),
    m!(12),
    m!(13),
    m!(14),
    m!(15),
    m!(16),
    m!(17),
    m!(18),
    m!(19),
    m!(101),
    m!(102),
    m!(103),
    m!(111),
    m!(112),
    m!(113),
    m!(120),
    m!(121),
    m!(122),
    m!(123),
    m!(124),
    m!(125),
    m!(126),
    m!(127),
    m!(128),
    m!(129),
    m!(130),
    m!(131),
    m!(132),
    m!(133),
    m!(134),
    m!(135),
    m!(136),
    m!(137),
    m!(138),
    m!(139),
    m!(140),
    m!(141),
    m!(142),
    m!(143),
    m!(144),
    m!(145),
    m!(160),
    m!(201),
    m!(202),
    m!(203),
    m!(204),
    m!(211),
    m!(212),
    m!(213),
    m!(214),
    m!(220),
    m!(302),
    m!(303),
    m!(304),
    m!(305),
    m!(306),
    m!(307),
    m!(308),
    m!(401),
    m!(402),
    m!(403),
    m!(404),
    m!(501),
    m!(502),
    m!(601),
    m!(701),
    m!(702),
    m!(703),
    m!(704),
    m!(705),
    m!(706),
    m!(707),
    m!(708),
    m!(709),
    m!(710),
    m!(711),
    m!(712),
    m!(713),
    m!(714),
    m!(715),
    m!(801),
    m!(802),
    m!(803),
    m!(804),
    m!(805),
    m!(806),
    m!(807),
    m!(808),
    m!(809),
    m!(63001),
    m!(63002),
    m!(64001),
    m!(64020),
    m!(64101),
    m!(64111),
    m!(64112),
    m!(64410),
    m!(64411),
    m!(64412),
    m!(64413),
    m!(64414),
    m!(64415),
];

/// Ids of the bundled model definitions.
pub fn known_models() -> Vec<u16> {
    MODELS.iter().map(|(id, _)| *id).collect()
}

/// SunSpec point types (the `type` field of a point definition).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PointType {
    /// Signed 16-bit; not implemented: 0x8000.
    Int16,
    /// Unsigned 16-bit; not implemented: 0xFFFF.
    Uint16,
    /// Number of repeating groups; not implemented: 0xFFFF.
    Count,
    /// 16-bit accumulator; not implemented: 0.
    Acc16,
    /// 16-bit enumeration; not implemented: 0xFFFF.
    Enum16,
    /// 16 flags; not implemented: 0xFFFF.
    Bitfield16,
    /// Padding, never published.
    Pad,
    /// Signed 32-bit; not implemented: 0x80000000.
    Int32,
    /// Unsigned 32-bit; not implemented: 0xFFFFFFFF.
    Uint32,
    /// 32-bit accumulator; not implemented: 0.
    Acc32,
    /// 32-bit enumeration; not implemented: 0xFFFFFFFF.
    Enum32,
    /// 32 flags; not implemented: 0xFFFFFFFF.
    Bitfield32,
    /// IPv4 address; not implemented: 0.
    Ipaddr,
    /// Signed 64-bit; not implemented: 0x8000000000000000.
    Int64,
    /// Unsigned 64-bit; not implemented: 0xFFFFFFFFFFFFFFFF.
    Uint64,
    /// 64-bit accumulator; not implemented: 0.
    Acc64,
    /// IPv6 address; not implemented: all zero.
    Ipv6addr,
    /// IEEE 754 single; not implemented: NaN.
    Float32,
    /// IEEE 754 double; not implemented: NaN.
    Float64,
    /// Text, NUL padded; not implemented: first byte NUL.
    String,
    /// Power-of-ten scale factor of other points; not implemented: 0x8000.
    Sunssf,
    /// MAC address in 4 registers; not implemented: FF:FF:FF:FF:FF:FF.
    Eui48,
}

impl PointType {
    /// Width in registers when the definition gives no `size`.
    pub fn default_size(self) -> u16 {
        match self {
            PointType::Int32
            | PointType::Uint32
            | PointType::Acc32
            | PointType::Enum32
            | PointType::Bitfield32
            | PointType::Ipaddr
            | PointType::Float32 => 2,
            PointType::Int64
            | PointType::Uint64
            | PointType::Acc64
            | PointType::Float64
            | PointType::Eui48 => 4,
            PointType::Ipv6addr => 8,
            _ => 1,
        }
    }
}

/// A scale-factor reference: the name of a `sunssf` point, or a constant exponent.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum ScaleRef {
    /// A constant power of ten.
    Constant(i32),
    /// A `sunssf` point in the same group or an enclosing one.
    Point(String),
}

/// How many instances of a group there are.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum CountRef {
    /// A fixed number; 0 means "as many as fit in the model length" (legacy models).
    Fixed(u16),
    /// The value of a point of the model (`N`, `NPt`...).
    Point(String),
}

/// A point definition.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PointDef {
    /// Name, unique in its group.
    pub name: String,
    /// Type.
    #[serde(rename = "type")]
    pub kind: PointType,
    /// Registers (the type's width if absent).
    #[serde(default)]
    pub size: Option<u16>,
    /// Scale factor.
    #[serde(default)]
    pub sf: Option<ScaleRef>,
    /// Unit as the specification writes it (`W`, `Wh`, `C`, `Pct`...).
    #[serde(default)]
    pub units: Option<String>,
    /// Short label.
    #[serde(default)]
    pub label: Option<String>,
    /// Description.
    #[serde(default)]
    pub desc: Option<String>,
    /// `RW` when writable.
    #[serde(default)]
    pub access: Option<String>,
}

impl PointDef {
    /// Width in registers.
    pub fn width(&self) -> u16 {
        self.size.unwrap_or_else(|| self.kind.default_size())
    }
}

/// A group definition (the model itself is the top group).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct GroupDef {
    /// Name.
    pub name: String,
    /// Repeating groups have a count.
    #[serde(default)]
    pub count: Option<CountRef>,
    /// Points, in register order.
    #[serde(default)]
    pub points: Vec<PointDef>,
    /// Nested groups, after the points, in register order.
    #[serde(default)]
    pub groups: Vec<GroupDef>,
}

impl GroupDef {
    /// Registers of one instance when every nested repeating group is empty.
    pub fn fixed_width(&self) -> u32 {
        let own: u32 = self.points.iter().map(|p| u32::from(p.width())).sum();
        own + self
            .groups
            .iter()
            .filter(|g| g.count.is_none())
            .map(GroupDef::fixed_width)
            .sum::<u32>()
    }
}

/// A model definition.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ModelDef {
    /// Model id.
    pub id: u16,
    /// The top group (`ID` and `L` are its first two points).
    pub group: GroupDef,
}

/// A model definition could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DefError {
    /// No definition is bundled for this id.
    #[error("SunSpec model {0} is not in the bundled definitions.")]
    Unknown(u16),
    /// The bundled JSON does not parse.
    #[error("The bundled definition of SunSpec model {0} is invalid: {1}")]
    Invalid(u16, String),
}

/// The definition of model `id`, parsed once and cached.
pub fn model_def(id: u16) -> Result<Arc<ModelDef>, DefError> {
    static CACHE: OnceLock<Mutex<HashMap<u16, Arc<ModelDef>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(d) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(&id) {
        return Ok(d.clone());
    }
    let (_, text) = MODELS
        .iter()
        .find(|(m, _)| *m == id)
        .ok_or(DefError::Unknown(id))?;
    let def: ModelDef =
        serde_json::from_str(text).map_err(|e| DefError::Invalid(id, e.to_string()))?;
    let def = Arc::new(def);
    cache
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id, def.clone());
    Ok(def)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bundled_definition_parses_and_names_its_own_id() {
        let ids = known_models();
        assert!(ids.len() >= 100, "{}", ids.len());
        for want in [
            1, 101, 102, 103, 111, 112, 113, 120, 121, 122, 123, 124, 160, 201, 202, 203, 204, 211,
            212, 213, 214, 701, 713, 802,
        ] {
            assert!(ids.contains(&want), "model {want} missing");
        }
        for id in ids {
            let def = model_def(id).unwrap();
            assert_eq!(def.id, id);
            assert_eq!(def.group.points[0].name, "ID", "model {id}");
            assert_eq!(def.group.points[1].name, "L", "model {id}");
        }
        assert!(matches!(model_def(999), Err(DefError::Unknown(999))));
    }

    #[test]
    fn model_160_shape() {
        let def = model_def(160).unwrap();
        let module = &def.group.groups[0];
        assert_eq!(module.name, "module");
        assert_eq!(
            module.count,
            Some(CountRef::Fixed(0)),
            "legacy: count from the length"
        );
        assert_eq!(module.fixed_width(), 20);
        let dca = &module.points[2];
        assert_eq!(
            (dca.name.as_str(), dca.sf.clone()),
            ("DCA", Some(ScaleRef::Point("DCA_SF".into())))
        );
        assert_eq!(def.group.fixed_width(), 10);
    }
}
