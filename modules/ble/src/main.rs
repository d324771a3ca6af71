//! `bridge-ble`: the BLE module binary.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use bridge_ble::Ble;
use bridge_core::runtime::{CommonArgs, init_logging, module_runtime, run_module, validate_file};
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
}

fn main() -> Result<ExitCode> {
    let cli = Cli::parse();
    init_logging(&cli.common.log);
    match cli.command.unwrap_or(Command::Run) {
        Command::Validate { file } => Ok(match validate_file(&Ble::default(), &file) {
            Ok(cfg) => {
                eprintln!("{}: valid ({} devices).", file.display(), cfg.devices.len());
                ExitCode::SUCCESS
            }
            Err(errors) => {
                for issue in errors.0 {
                    eprintln!("{}: {}: {}", file.display(), issue.path, issue.message);
                }
                ExitCode::from(2)
            }
        }),
        Command::Run => {
            module_runtime()?.block_on(run_module(
                Ble::default(),
                cli.common,
                CancellationToken::new(),
            ))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
