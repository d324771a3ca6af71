//! What the shared command line needs from bridge-modbus (`validate`, `maps`, `models`,
//! `manifest`), from the validated configuration: the container gets every serial port the
//! enabled devices use, the `dialout` group and a spool volume.

use std::process::ExitCode;

use bridge_core::runtime::commands::CommandLine;
use bridge_core::runtime::manifest::Deployment;
use serde_json::Value;

use crate::Modbus;
use crate::config::{Connection, ModbusConfig};

/// GID of `dialout` on Debian-family hosts, the group serial devices belong to.
const DIALOUT_GID: &str = "20";

impl CommandLine for Modbus {
    type Extra = crate::commission::Command;

    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const ABOUT: &'static str = "Polls Modbus RTU, ASCII, TCP and RTU-over-TCP devices through \
        device maps and forwards typed telemetry per downstream device through Azure IoT \
        Edge (or an MQTT broker, or stdout)";

    fn device_count(&self, config: &ModbusConfig) -> usize {
        config.devices.len()
    }

    fn bundled_maps(&self) -> Vec<String> {
        crate::map::bundled_names()
            .into_iter()
            .map(str::to_owned)
            .collect()
    }

    fn models(&self, config: &ModbusConfig) -> Value {
        // SunSpec devices are described by the models they hold: discover them now.
        let rt = match bridge_core::runtime::module_runtime() {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("Cannot start the runtime for SunSpec discovery ({e}).");
                return crate::models::models(config);
            }
        };
        let (models, problems) = rt.block_on(crate::sunspec::dtdl::models(config));
        for (device, problem) in problems {
            eprintln!(
                "{device}: SunSpec discovery failed ({problem}); its model has no telemetry."
            );
        }
        models
    }

    fn schemas(&self) -> Vec<(&'static str, Value)> {
        crate::config::schema::files()
    }

    fn deployment(&self, config: &ModbusConfig) -> Deployment {
        deployment(config)
    }

    fn run_extra(&self, extra: crate::commission::Command) -> ExitCode {
        crate::commission::main(extra)
    }
}

/// The serial ports of the configuration's devices (sorted, each once), the `dialout`
/// group and the spool volume.
pub fn deployment(config: &ModbusConfig) -> Deployment {
    let devices = config
        .devices
        .values()
        .filter_map(|d| match &d.connection {
            Connection::Rtu { port, .. } | Connection::Ascii { port, .. } => Some(port.clone()),
            Connection::Tcp { .. } | Connection::RtuOverTcp { .. } | Connection::Simulated {} => {
                None
            }
        })
        .collect();
    Deployment {
        devices,
        group_add: vec![DIALOUT_GID.into()],
        spool_volume: Some("edge-bridge-modbus-spool".into()),
        ..Deployment::default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    #[test]
    fn serial_ports_of_enabled_devices_become_host_devices() {
        let config = crate::config::parse(&json!({"devices": {
            "a": {"map": "eastron-sdm120", "connection": {"type": "rtu", "port": "/dev/ttyUSB1"}},
            "b": {"map": "eastron-sdm120", "connection": {"type": "rtu", "port": "/dev/ttyUSB1"}, "unitId": 2},
            "c": {"map": "eastron-sdm120", "connection": {"type": "rtu", "port": "/dev/ttyUSB0"}, "unitId": 3},
            "d": {"map": "eastron-sdm120", "connection": {"type": "tcp", "host": "h"}},
            "e": {"map": "eastron-sdm120", "connection": {"type": "rtuOverTcp", "host": "h", "port": 4001}},
            "f": {"map": "eastron-sdm120", "connection": {"type": "simulated"}},
            "g": {"map": "eastron-sdm120", "connection": {"type": "ascii", "port": "/dev/ttyS2"}}
        }}))
        .unwrap();
        assert_eq!(
            deployment(&config),
            Deployment {
                devices: ["/dev/ttyS2", "/dev/ttyUSB0", "/dev/ttyUSB1"]
                    .map(str::to_owned)
                    .into(),
                group_add: vec!["20".into()],
                spool_volume: Some("edge-bridge-modbus-spool".into()),
                ..Deployment::default()
            }
        );
        assert_eq!(Modbus::new().device_count(&config), 7);
        let tcp_only = crate::config::parse(&json!({"devices": {
            "d": {"map": "eastron-sdm120", "connection": {"type": "tcp", "host": "h"}}
        }}))
        .unwrap();
        assert!(deployment(&tcp_only).devices.is_empty());
    }

    /// The shared commands and options and bridge-modbus's own subcommands do not clash
    /// (names, flags), whatever `Extra` holds.
    #[test]
    fn own_subcommands_fit_beside_the_shared_ones() {
        use bridge_core::runtime::cli::Cli;
        use bridge_core::runtime::commands::program;
        let program = program(&Modbus::new());
        Cli::<<Modbus as CommandLine>::Extra>::command_for(program).debug_assert();
        assert_eq!(
            Cli::<<Modbus as CommandLine>::Extra>::clashes(program),
            Vec::<String>::new()
        );
        assert_eq!(program.name, "bridge-modbus");
    }
}
