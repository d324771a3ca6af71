//! SunSpec discovery: a device configured with `"map": "sunspec"` is probed for the `SunS`
//! marker at holding registers 40000, 0 and 50000, its model chain walked to the end
//! marker, and every model decoded from the SunSpec Alliance's model definitions shipped
//! with the module (`device-maps/sunspec/`). Telemetry names are described in [`decode`].
//!
//! - [`defs`], [`decode`]: pure (definitions, decoding, sentinels, scale factors).
//! - [`discover`]: the I/O: probe, chain walk, model reads through the bus layer.
//! - [`poll`]: the poll loop of a SunSpec device.
//! - [`dtdl`]: a device map built from the models found, for DTDL generation.

pub mod decode;
pub mod defs;
pub mod discover;
pub mod dtdl;
pub mod poll;

use std::sync::Arc;

use crate::map::{DeviceMap, MapSpec, Order};

/// The map name that selects SunSpec discovery.
pub const MAP_NAME: &str = "sunspec";

/// Whether a device uses SunSpec discovery rather than a fixed map.
pub fn is_sunspec(map: &DeviceMap) -> bool {
    map.name == MAP_NAME && map.points.is_empty()
}

/// The placeholder map of a SunSpec device (its points are only known after discovery).
pub fn placeholder(name: &str) -> Option<Arc<DeviceMap>> {
    (name == MAP_NAME).then(|| {
        Arc::new(DeviceMap {
            name: MAP_NAME.into(),
            spec: MapSpec {
                schema: None,
                name: MAP_NAME.into(),
                manufacturer: None,
                model: Some("SunSpec device (models discovered at run time)".into()),
                source: Some("SunSpec Alliance information models".into()),
                description: None,
                byte_order: Order::Big,
                word_order: Order::Big,
                write_multiple: false,
                points: Default::default(),
            },
            points: Vec::new(),
        })
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn sunspec_devices_are_configured_by_map_name() {
        let cfg = crate::config::parse(&json!({"devices": {"pv": {"map": "sunspec", "connection": {"type": "tcp", "host": "h"}}}})).unwrap();
        let d = &cfg.devices["pv"];
        assert!(super::is_sunspec(&d.map));
        assert!(d.wanted.is_empty());
        assert_eq!(
            crate::config::model_id(&d.map),
            "dtmi:edgebridge:modbus:sunspec;1"
        );
        // An inline map that happens to be called "sunspec" is an ordinary map.
        let cfg = crate::config::parse(&json!({"devices": {"x": {"map": {"name": "sunspec", "points": {"a": {"table": "holding", "address": 0, "type": "u16"}}}, "connection": {"type": "tcp", "host": "h"}}}})).unwrap();
        assert!(!super::is_sunspec(&cfg.devices["x"].map));
    }
}
