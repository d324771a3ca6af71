//! The advertisement formats, one table line each: name, what a passive scan listens
//! for, decoder, map document, whether discovery tries it by default and whether it
//! takes a key. Scanner (decoding), monitor (passive-scan patterns), configuration
//! (valid names, which accept a `bindKey`), models (DTDL fields from the document) and
//! discovery all read this table; adding a format is its decoder file, one line here
//! and its map document in `device-maps/ble/`.

use super::{Advert, DecodeError, DecodeFn, Decoded};

/// What part of an advertisement a format lives in (a passive-scan pattern).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    /// Service data of a 16-bit UUID.
    Service16(u16),
    /// Service data of a 128-bit UUID.
    Service128(u128),
    /// Manufacturer data of a company id whose value starts with these bytes.
    Manufacturer(u16, &'static [u8]),
    /// A local name starting with this (for formats without a fixed company id).
    LocalName(&'static str),
    /// A 16-bit service UUID in the advertised service list (not service data).
    ServiceList16(u16),
    /// A 128-bit service UUID in the advertised service list (not service data).
    ServiceList128(u128),
}

/// Whether a format takes a per-device key (`bindKey`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// Never encrypted: a configured key is a configuration error.
    None,
    /// Encrypted or not, as the device is set up.
    Optional,
    /// Always encrypted: nothing decodes without the key.
    Required,
}

/// One advertisement format.
#[derive(Debug)]
pub struct Format {
    /// The map name used in the configuration (`map`, `discovery.maps`).
    pub name: &'static str,
    /// Where its data is (passive scanning registers one pattern each).
    pub matches: &'static [Match],
    /// The decoder.
    pub decode: DecodeFn,
    /// The map document (`device-maps/ble/<name>.json`): fields, units, models.
    pub doc: &'static str,
    /// Whether discovery tries it when `discovery.maps` is empty.
    pub discover_by_default: bool,
    /// Key handling.
    pub key: KeyKind,
}

/// A map document of `device-maps/ble/`.
macro_rules! doc {
    ($name:literal) => {
        include_str!(concat!("../../../../device-maps/ble/", $name, ".json"))
    };
}

use KeyKind::Required;
use KeyKind::{None as NoKey, Optional};
use Match::{
    LocalName as Name, Manufacturer as Mfg, Service16 as Svc16, ServiceList16 as List16,
    ServiceList128 as List128,
};

/// Every advertisement format, one line each.
#[rustfmt::skip]
pub static FORMATS: &[Format] = &[
    Format { name: "bthome-v2", matches: &[Svc16(0xFCD2)], decode: bthome, doc: doc!("bthome-v2"), discover_by_default: true, key: Optional },
    Format { name: "ruuvi-rawv2", matches: &[Mfg(0x0499, &[])], decode: ruuvi, doc: doc!("ruuvi-rawv2"), discover_by_default: true, key: NoKey },
    Format { name: "xiaomi-pvvx", matches: &[Svc16(0x181A)], decode: pvvx, doc: doc!("xiaomi-pvvx"), discover_by_default: true, key: NoKey },
    // Apple's company id is on many adverts; the iBeacon type and length narrow it.
    Format { name: "ibeacon", matches: &[Mfg(0x004C, &[0x02, 0x15])], decode: ibeacon, doc: doc!("ibeacon"), discover_by_default: false, key: NoKey },
    Format { name: "eddystone", matches: &[Svc16(0xFEAA)], decode: eddystone, doc: doc!("eddystone"), discover_by_default: false, key: NoKey },
    Format { name: "xiaomi-mibeacon", matches: &[Svc16(0xFE95)], decode: super::xiaomi::decode, doc: doc!("xiaomi-mibeacon"), discover_by_default: true, key: Optional },
    Format { name: "govee", matches: &[Mfg(0xEC88, &[]), Mfg(0x0001, &[]), Mfg(0x8801, &[]), Name("GVH5"), Name("Govee_"), Name("GV5")], decode: super::govee::decode, doc: doc!("govee"), discover_by_default: true, key: NoKey },
    Format { name: "switchbot", matches: &[Svc16(0xFD3D), Svc16(0x0D00)], decode: super::switchbot::decode, doc: doc!("switchbot"), discover_by_default: true, key: NoKey },
    Format { name: "inkbird", matches: &[Name("sps"), Name("tps"), Name("iBBQ"), Name("xBBQ"), Name("ITH-"), Name("IBS-P02B")], decode: super::inkbird::decode, doc: doc!("inkbird"), discover_by_default: false, key: NoKey },
    Format { name: "qingping", matches: &[Svc16(0xFDCD)], decode: super::qingping::decode, doc: doc!("qingping"), discover_by_default: true, key: NoKey },
    Format { name: "thermobeacon", matches: &[Mfg(0x0010, &[]), Mfg(0x0011, &[]), Mfg(0x0014, &[]), Mfg(0x0015, &[]), Mfg(0x0018, &[]), Mfg(0x001B, &[]), Mfg(0x0030, &[])], decode: super::thermobeacon::decode, doc: doc!("thermobeacon"), discover_by_default: false, key: NoKey },
    Format { name: "thermopro", matches: &[Name("TP35"), Name("TP39"), Name("TP96"), Name("TP97")], decode: super::decode_thermopro, doc: doc!("thermopro"), discover_by_default: true, key: NoKey },
    Format { name: "sensorpush", matches: &[List128(0xef090000_11d6_42ba_93b8_9dd7ec090ab0), List128(0xef090000_11d6_42ba_93b8_9dd7ec090aa9)], decode: super::decode_sensorpush, doc: doc!("sensorpush"), discover_by_default: true, key: NoKey },
    Format { name: "bluemaestro", matches: &[Mfg(0x0133, &[])], decode: super::decode_bluemaestro, doc: doc!("bluemaestro"), discover_by_default: true, key: NoKey },
    // Nordic's company id (0x0059) is far too broad: Mopeka lists service 0xFEE5.
    Format { name: "mopeka", matches: &[List16(0xFEE5)], decode: super::decode_mopeka, doc: doc!("mopeka"), discover_by_default: true, key: NoKey },
    Format { name: "victron", matches: &[Mfg(0x02E1, &[0x10])], decode: super::decode_victron, doc: doc!("victron"), discover_by_default: false, key: Required },
    Format { name: "aranet", matches: &[Mfg(0x0702, &[])], decode: super::decode_aranet, doc: doc!("aranet"), discover_by_default: true, key: NoKey },
    // Before iBeacon in discovery: a Tilt is an iBeacon with a Tilt UUID.
    Format { name: "tilt", matches: &[Mfg(0x004C, &[0x02, 0x15, 0xA4, 0x95, 0xBB])], decode: super::decode_tilt, doc: doc!("tilt"), discover_by_default: true, key: NoKey },
    // Not a decoder: the device's data as hex (opt-in per device, or discovery.raw).
    Format { name: "raw", matches: &[], decode: super::raw::decode, doc: doc!("raw"), discover_by_default: false, key: NoKey },
];

/// The format of a map name.
pub fn format(name: &str) -> Option<&'static Format> {
    FORMATS.iter().find(|f| f.name == name)
}

// Adapters of the original per-format decoders to the `DecodeFn` contract.

fn missing() -> DecodeError {
    DecodeError::NotThisFormat("advertised")
}

fn bthome(ad: &Advert<'_>, key: Option<&[u8]>) -> Result<Decoded, DecodeError> {
    let data = ad.service16(super::BTHOME_UUID16).ok_or_else(missing)?;
    let key: Option<[u8; 16]> = match key {
        Some(k) => Some(k.try_into().map_err(|_| DecodeError::Encrypted)?),
        None => None,
    };
    let mut d = super::decode_bthome(data, ad.address, key.as_ref())?;
    d.packet_id = d
        .values
        .get("packetId")
        .and_then(serde_json::Value::as_u64)
        .and_then(|v| u32::try_from(v).ok());
    Ok(d)
}

fn ruuvi(ad: &Advert<'_>, _key: Option<&[u8]>) -> Result<Decoded, DecodeError> {
    super::decode_ruuvi(
        ad.manufacturer(super::RUUVI_COMPANY_ID)
            .ok_or_else(missing)?,
    )
}

fn pvvx(ad: &Advert<'_>, _key: Option<&[u8]>) -> Result<Decoded, DecodeError> {
    super::decode_pvvx(
        ad.service16(super::ENVIRONMENTAL_UUID16)
            .ok_or_else(missing)?,
    )
}

fn ibeacon(ad: &Advert<'_>, _key: Option<&[u8]>) -> Result<Decoded, DecodeError> {
    super::decode_ibeacon(
        ad.manufacturer(super::APPLE_COMPANY_ID)
            .ok_or_else(missing)?,
    )
}

fn eddystone(ad: &Advert<'_>, _key: Option<&[u8]>) -> Result<Decoded, DecodeError> {
    super::decode_eddystone(ad.service16(super::EDDYSTONE_UUID16).ok_or_else(missing)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_documents_name_their_format() {
        let mut seen = std::collections::BTreeSet::new();
        for f in FORMATS {
            assert!(seen.insert(f.name), "{} twice", f.name);
            let doc: serde_json::Value = serde_json::from_str(f.doc).unwrap();
            assert_eq!(doc["name"], f.name);
            assert_eq!(doc["kind"], "advertisement", "{}", f.name);
        }
    }
}
