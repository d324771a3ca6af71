//! `bridge-ble`: the BLE module binary.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use bridge_ble::Ble;
use bridge_core::runtime::{
    CommonArgs, checked_config, init_logging, module_runtime, print_json, run_module,
};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

/// Scans BLE advertisements (BTHome, RuuviTag, Xiaomi pvvx/ATC, iBeacon, Eddystone) through
/// BlueZ and forwards decoded telemetry per device through Azure IoT Edge (or MQTT, or stdout).
#[derive(Debug, Parser)]
#[command(version, name = "bridge-ble")]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the module (the default). Without configuration it discovers BTHome, Ruuvi
    /// and pvvx sensors and prints their telemetry.
    Run,
    /// Check a configuration file; prints each problem with its JSON path.
    Validate {
        /// The configuration file.
        file: PathBuf,
    },
    /// Write DTDL v2 models (a JSON array) for a configuration's devices and the gateway.
    Models {
        /// The module configuration.
        #[arg(long = "from")]
        from: PathBuf,
    },
    /// Write an IoT Edge deployment manifest for a configuration file: the module with
    /// its image, the host's D-Bus socket (BlueZ), a spool volume, routes, and the
    /// configuration as desired properties.
    Manifest {
        /// The module configuration (validated first).
        #[arg(long = "from")]
        from: PathBuf,
        /// Container image reference.
        #[arg(long)]
        image: String,
        /// Module name in the deployment.
        #[arg(long, default_value = "bridge-ble")]
        name: String,
        /// edgeHub store-and-forward time to live, in seconds.
        #[arg(long, default_value_t = 7200)]
        ttl_secs: u64,
    },
}

fn main() -> Result<ExitCode> {
    let cli = Cli::parse();
    init_logging(&cli.common.log);
    let protocol = Ble::default();
    match cli.command.unwrap_or(Command::Run) {
        Command::Validate { file } => Ok(match checked_config(&protocol, &file) {
            Some((cfg, _)) => {
                eprintln!("{}: valid ({} devices).", file.display(), cfg.devices.len());
                ExitCode::SUCCESS
            }
            None => ExitCode::from(2),
        }),
        Command::Models { from } => Ok(match checked_config(&protocol, &from) {
            Some((cfg, _)) => {
                print_json(&bridge_ble::models::models(&cfg))?;
                ExitCode::SUCCESS
            }
            None => ExitCode::from(2),
        }),
        Command::Manifest {
            from,
            image,
            name,
            ttl_secs,
        } => Ok(match checked_config(&protocol, &from) {
            Some((_, doc)) => {
                print_json(&bridge_ble::deploy::manifest(&name, &image, &doc, ttl_secs))?;
                ExitCode::SUCCESS
            }
            None => ExitCode::from(2),
        }),
        Command::Run => {
            module_runtime()?.block_on(run_module(
                protocol,
                cli.common,
                CancellationToken::new(),
            ))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
