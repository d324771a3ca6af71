//! What the shared command line needs from bridge-ble (`validate`, `maps`, `models`,
//! `manifest`): the container gets the host's D-Bus socket (BlueZ) and a spool volume.

use std::process::ExitCode;

use bridge_core::runtime::NoExtra;
use bridge_core::runtime::commands::CommandLine;
use bridge_core::runtime::manifest::Deployment;
use serde_json::Value;

use crate::Ble;
use crate::config::BleConfig;

impl CommandLine for Ble {
    type Extra = NoExtra;

    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const ABOUT: &'static str = "Scans BLE advertisements (BTHome, RuuviTag, Xiaomi pvvx/ATC \
        and MiBeacon, Govee, SwitchBot, Inkbird, Qingping, ThermoBeacon, iBeacon, Eddystone, \
        raw) and reads GATT devices through BlueZ, and forwards decoded \
        telemetry per device through Azure IoT Edge (or MQTT, or stdout). Without \
        configuration it discovers BTHome, Ruuvi, pvvx, MiBeacon, Govee, SwitchBot and Qingping sensors";

    fn device_count(&self, config: &BleConfig) -> usize {
        config.devices.len()
    }

    fn bundled_maps(&self) -> Vec<String> {
        // The registry's advertisement formats and the GATT map documents.
        let mut names: Vec<String> = crate::adverts::FORMATS
            .iter()
            .map(|f| f.name)
            .chain(crate::gatt::names())
            .map(str::to_owned)
            .collect();
        names.sort();
        names
    }

    fn models(&self, config: &BleConfig) -> Value {
        crate::models::models(config)
    }

    fn schemas(&self) -> Vec<(&'static str, Value)> {
        crate::config::schema::files()
    }

    fn deployment(&self, config: &BleConfig) -> Deployment {
        deployment(config)
    }

    fn run_extra(&self, extra: NoExtra) -> ExitCode {
        match extra {}
    }
}

/// The host's system D-Bus (BlueZ answers there) and the spool volume; the same for every
/// configuration.
pub fn deployment(_config: &BleConfig) -> Deployment {
    Deployment {
        binds: vec!["/var/run/dbus:/var/run/dbus".into()],
        spool_volume: Some("edge-bridge-ble-spool".into()),
        ..Deployment::default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    #[test]
    fn bundled_maps_are_the_names_configurations_accept() {
        let ble = Ble::default();
        let names = ble.bundled_maps();
        assert_eq!(
            names.len(),
            crate::adverts::FORMATS.len() + crate::gatt::names().count()
        );
        let devices: serde_json::Map<String, Value> = names
            .iter()
            .enumerate()
            .map(|(i, map)| {
                (
                    format!("d{i}"),
                    json!({"address": format!("C0:FF:EE:00:00:{i:02X}"), "map": map}),
                )
            })
            .collect();
        let config = crate::config::parse(&json!({ "devices": devices })).unwrap();
        assert_eq!(ble.device_count(&config), names.len());
        assert_eq!(
            ble.deployment(&config).binds,
            ["/var/run/dbus:/var/run/dbus"]
        );
        let program = bridge_core::runtime::commands::program(&ble);
        type Cli = bridge_core::runtime::cli::Cli<<Ble as CommandLine>::Extra>;
        Cli::command_for(program).debug_assert();
        assert_eq!(Cli::clashes(program), Vec::<String>::new());
    }
}
