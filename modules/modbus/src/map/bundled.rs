//! Maps shipped with the module (`device-maps/modbus/*.json`), compiled in.

use bridge_core::config::ConfigErrors;

use super::{DeviceMap, parse_map};

const BUNDLED: &[(&str, &str)] = &[
    (
        "eastron-sdm120",
        include_str!("../../../../device-maps/modbus/eastron-sdm120.json"),
    ),
    (
        "eastron-sdm630",
        include_str!("../../../../device-maps/modbus/eastron-sdm630.json"),
    ),
    (
        "sunspec-inverter-103",
        include_str!("../../../../device-maps/modbus/sunspec-inverter-103.json"),
    ),
    (
        "xy-md02",
        include_str!("../../../../device-maps/modbus/xy-md02.json"),
    ),
];

/// Names of the bundled maps.
pub fn bundled_names() -> Vec<&'static str> {
    BUNDLED.iter().map(|(n, _)| *n).collect()
}

/// A bundled map by name (`None` if unknown), parsed and validated.
pub fn bundled(name: &str) -> Option<Result<DeviceMap, ConfigErrors>> {
    let (file, text) = BUNDLED.iter().find(|(n, _)| *n == name)?;
    let path = format!("device-maps/modbus/{file}.json");
    Some(match serde_json::from_str(text) {
        Ok(doc) => parse_map(&doc, &path),
        Err(e) => Err(ConfigErrors::one(path, format!("Not valid JSON: {e}."))),
    })
}

/// A bundled map parsed once per process and shared: 2,000 devices naming the same
/// bundled map hold one copy, not 2,000.
pub fn bundled_shared(name: &str) -> Option<std::sync::Arc<DeviceMap>> {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<DeviceMap>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Mutex::default);
    if let Some(m) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(name) {
        return Some(m.clone());
    }
    let map = Arc::new(bundled(name)?.ok()?);
    cache
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(name.to_owned(), map.clone());
    Some(map)
}
