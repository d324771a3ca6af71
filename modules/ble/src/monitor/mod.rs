//! Passive scanning through BlueZ's advertisement monitor API
//! (`org.bluez.AdvertisementMonitorManager1`): instead of starting discovery, which sends
//! a scan request to every advertiser, the module registers an `or_patterns` monitor
//! and BlueZ scans passively, reporting matching devices through the usual `Device1`
//! objects that btleplug already follows.
//!
//! The patterns come from the configuration (pure, [`patterns`]); the D-Bus side lives in
//! [`bus`].

pub mod bus;

use crate::adverts;
use crate::config::BleConfig;

/// AD type: service data with a 16-bit UUID.
const AD_SERVICE_DATA_16: u8 = 0x16;
/// AD type: service data with a 128-bit UUID.
const AD_SERVICE_DATA_128: u8 = 0x21;
/// AD type: complete local name.
const AD_COMPLETE_NAME: u8 = 0x09;
/// AD type: complete list of 16-bit service UUIDs.
const AD_COMPLETE_LIST_16: u8 = 0x03;
/// AD type: complete list of 128-bit service UUIDs.
const AD_COMPLETE_LIST_128: u8 = 0x07;
/// AD type: manufacturer-specific data.
const AD_MANUFACTURER: u8 = 0xFF;

/// One BlueZ monitor pattern: AD type and the bytes its data starts with.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pattern {
    /// Offset in the AD structure's data.
    pub start: u8,
    /// AD type.
    pub ad_type: u8,
    /// Bytes to match.
    pub content: Vec<u8>,
}

fn service16(uuid: u16) -> Pattern {
    Pattern {
        start: 0,
        ad_type: AD_SERVICE_DATA_16,
        content: uuid.to_le_bytes().to_vec(),
    }
}

fn manufacturer(company: u16, rest: &[u8]) -> Pattern {
    let mut content = company.to_le_bytes().to_vec();
    content.extend_from_slice(rest);
    Pattern {
        start: 0,
        ad_type: AD_MANUFACTURER,
        content,
    }
}

/// The pattern of one registry match.
fn match_pattern(m: &adverts::Match) -> Pattern {
    match *m {
        adverts::Match::Service16(u) => service16(u),
        adverts::Match::Service128(u) => Pattern {
            start: 0,
            ad_type: AD_SERVICE_DATA_128,
            content: u.to_le_bytes().to_vec(),
        },
        adverts::Match::Manufacturer(company, rest) => manufacturer(company, rest),
        // Complete local name; a shortened one is cut from its end, so its start matches too.
        adverts::Match::ServiceList16(u) => Pattern {
            start: 0,
            ad_type: AD_COMPLETE_LIST_16,
            content: u.to_le_bytes().to_vec(),
        },
        adverts::Match::ServiceList128(u) => Pattern {
            start: 0,
            ad_type: AD_COMPLETE_LIST_128,
            content: u.to_le_bytes().to_vec(),
        },
        adverts::Match::LocalName(prefix) => Pattern {
            start: 0,
            ad_type: AD_COMPLETE_NAME,
            content: prefix.as_bytes().to_vec(),
        },
    }
}

/// The patterns of a bundled advertisement format.
pub fn decoder_patterns(map: &str) -> Vec<Pattern> {
    adverts::format(map).map_or_else(Vec::new, |f| f.matches.iter().map(match_pattern).collect())
}

/// The pattern of a map-driven advertisement map.
fn custom_pattern(map: &crate::custom::AdvertMap) -> Option<Pattern> {
    if let Some(company) = map.source.manufacturer_id {
        return Some(manufacturer(company, &[]));
    }
    let uuid = uuid::Uuid::parse_str(map.source.service_uuid.as_deref()?).ok()?;
    Some(uuid_pattern(uuid))
}

/// The service-data pattern of a UUID (16 bits when on the base UUID).
fn uuid_pattern(uuid: uuid::Uuid) -> Pattern {
    // Bluetooth base UUID 0000xxxx-0000-1000-8000-00805f9b34fb: advertised in 16 bits.
    const BASE: u128 = 0x0000_0000_0000_1000_8000_0080_5F9B_34FB;
    const SHORT: u128 = 0xFFFF_u128 << 96;
    let value = uuid.as_u128();
    if value & !SHORT == BASE {
        service16((value >> 96) as u16)
    } else {
        Pattern {
            start: 0,
            ad_type: AD_SERVICE_DATA_128,
            content: value.to_le_bytes().to_vec(),
        }
    }
}

/// Every pattern the configuration needs: its advertisement devices and discovery's
/// decoders. GATT devices have none (they are connected to, not scanned for).
pub fn patterns(config: &BleConfig) -> Vec<Pattern> {
    let discovery = if config.discovery.enabled {
        crate::config::discovery_maps(&config.discovery)
    } else {
        Vec::new()
    };
    let mut out: Vec<Pattern> = config
        .devices
        .values()
        .flat_map(|d| match &d.custom {
            Some(m) => custom_pattern(m).into_iter().collect(),
            None => decoder_patterns(&d.map),
        })
        .chain(discovery.into_iter().flat_map(decoder_patterns))
        .collect();
    let raw = &config.discovery.raw;
    if config.discovery.enabled && raw.enabled {
        out.extend(raw.company_ids.iter().map(|c| manufacturer(*c, &[])));
        out.extend(raw.uuids().into_iter().map(uuid_pattern));
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn patterns_from_devices_discovery_and_custom_maps() {
        let config = crate::config::parse(&json!({
            "devices": {
                "t": {"address": "C0:FF:EE:00:00:01", "map": "bthome-v2"},
                "t2": {"address": "C0:FF:EE:00:00:02", "map": "bthome-v2"},
                "b": {"address": "C0:FF:EE:00:00:03", "map": "ibeacon"},
                "g": {"address": "C0:FF:EE:00:00:04", "map": "ble-battery"},
                "c": {"address": "C0:FF:EE:00:00:05", "map": {"name": "acme", "source": {"manufacturerId": 1234}, "fields": {"t": {"offset": 0, "type": "u8"}}}},
                "s": {"address": "C0:FF:EE:00:00:06", "map": {"name": "long", "source": {"serviceUuid": "12345678-1234-5678-1234-56789abcdef0"}, "fields": {"t": {"offset": 0, "type": "u8"}}}}
            },
            "discovery": {"enabled": true, "maps": ["ruuvi-rawv2", "bthome-v2"]}
        }))
        .unwrap();
        let long = 0x1234_5678_1234_5678_1234_5678_9abc_def0_u128
            .to_le_bytes()
            .to_vec();
        assert_eq!(long[0], 0xf0, "UUIDs go little-endian over the air");
        assert_eq!(
            patterns(&config),
            vec![
                service16(0xFCD2),
                Pattern {
                    start: 0,
                    ad_type: 0x21,
                    content: long
                },
                manufacturer(0x004C, &[0x02, 0x15]),
                manufacturer(0x0499, &[]),
                manufacturer(1234, &[]),
            ]
        );
        let gatt_only = crate::config::parse(
            &json!({"devices": {"g": {"address": "C0:FF:EE:00:00:04", "map": "ble-battery"}}}),
        )
        .unwrap();
        assert!(patterns(&gatt_only).is_empty());
        let short = crate::custom::parse(&json!({"name": "env", "source": {"serviceUuid": "0000181a-0000-1000-8000-00805f9b34fb"}, "fields": {"t": {"offset": 0, "type": "u8"}}}), "m").unwrap();
        assert_eq!(custom_pattern(&short), Some(service16(0x181A)));
    }

    #[test]
    fn registry_patterns_names_and_raw_discovery() {
        let govee = decoder_patterns("govee");
        assert!(govee.contains(&manufacturer(0xEC88, &[])));
        assert!(govee.contains(&Pattern {
            start: 0,
            ad_type: AD_COMPLETE_NAME,
            content: b"GVH5".to_vec()
        }));
        assert!(decoder_patterns("raw").is_empty());
        let config = crate::config::parse(&json!({"discovery": {"enabled": true, "maps": ["switchbot"],
            "raw": {"enabled": true, "companyIds": [0x5678], "serviceUuids": ["fd3d", "12345678-1234-5678-1234-56789abcdef0"]}}}))
        .unwrap();
        let p = patterns(&config);
        assert!(p.contains(&service16(0xFD3D)) && p.contains(&service16(0x0D00)));
        assert!(p.contains(&manufacturer(0x5678, &[])));
        assert!(p.iter().any(|x| x.ad_type == AD_SERVICE_DATA_128));
    }
}
