//! `bridge-modbus`: the Modbus module binary.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use bridge_core::runtime::{CommonArgs, checked_config, init_logging, print_json, run_module};
use bridge_modbus::Modbus;
use bridge_modbus::commission::{self, Command as Commission};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

/// Polls Modbus RTU, TCP and RTU-over-TCP devices through device maps and forwards typed
/// telemetry per downstream device through Azure IoT Edge (or an MQTT broker, or stdout).
#[derive(Debug, Parser)]
#[command(version, name = "bridge-modbus")]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the module (the default).
    Run,
    /// Check a configuration file without running it; prints each problem with its JSON path.
    Validate {
        /// The configuration file.
        file: PathBuf,
    },
    /// List the bundled device maps.
    Maps,
    /// Write DTDL v2 models (a JSON array) for a configuration: one interface per device map
    /// in use and the gateway module's interface with relationships to them.
    Models {
        /// The module configuration.
        #[arg(long = "from")]
        from: PathBuf,
    },
    /// Find the unit ids that answer on a bus, their identification, SunSpec models and
    /// the bundled maps that plausibly fit.
    Scan(commission::ScanArgs),
    /// Read a device once through a map, SunSpec discovery, or as raw registers.
    Read(commission::ReadArgs),
    /// Write one point (with the `write` method's checks) or one raw register or coil.
    Write(commission::WriteArgs),
    /// Write an IoT Edge deployment manifest for a configuration file: the module with its
    /// image, the serial ports the configuration uses, a spool volume, routes for its
    /// outputs, and the configuration as desired properties.
    Manifest {
        /// The module configuration (validated first).
        #[arg(long = "from")]
        from: PathBuf,
        /// Container image reference, e.g. myregistry.azurecr.io/bridge-modbus:0.1.0.
        #[arg(long)]
        image: String,
        /// Module name in the deployment.
        #[arg(long, default_value = "bridge-modbus")]
        name: String,
        /// edgeHub store-and-forward time to live, in seconds.
        #[arg(long, default_value_t = 7200)]
        ttl_secs: u64,
    },
}

fn main() -> Result<ExitCode> {
    let cli = Cli::parse();
    init_logging(&cli.common.log);
    let protocol = Modbus::new();
    match cli.command.unwrap_or(Command::Run) {
        Command::Validate { file } => Ok(match checked_config(&protocol, &file) {
            Some((cfg, _)) => {
                eprintln!("{}: valid ({} devices).", file.display(), cfg.devices.len());
                ExitCode::SUCCESS
            }
            None => ExitCode::from(2),
        }),
        Command::Maps => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            for name in bridge_modbus::map::bundled_names() {
                writeln!(out, "{name}")?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Models { from } => Ok(match checked_config(&protocol, &from) {
            Some((cfg, _)) => {
                // SunSpec devices are described by the models they hold: discover them now.
                let rt = bridge_core::runtime::module_runtime()?;
                let (models, problems) = rt.block_on(bridge_modbus::sunspec::dtdl::models(&cfg));
                for (device, problem) in problems {
                    eprintln!(
                        "{device}: SunSpec discovery failed ({problem}); its model has no telemetry."
                    );
                }
                print_json(&models)?;
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
                print_json(&bridge_modbus::deploy::manifest(
                    &name, &image, &doc, ttl_secs,
                ))?;
                ExitCode::SUCCESS
            }
            None => ExitCode::from(2),
        }),
        Command::Scan(a) => Ok(commission::main(Commission::Scan(a))),
        Command::Read(a) => Ok(commission::main(Commission::Read(a))),
        Command::Write(a) => Ok(commission::main(Commission::Write(a))),
        Command::Run => {
            let rt = bridge_core::runtime::module_runtime()?;
            rt.block_on(run_module(protocol, cli.common, CancellationToken::new()))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
