//! `bridge-ble`: the BLE module binary.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use bridge_ble::Ble;
use bridge_core::runtime::manifest::{ModuleSpec, default_routes, deployment_manifest};
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
        Command::Models { from } => match validate_file(&Ble::default(), &from) {
            Ok(cfg) => {
                use std::io::Write;
                writeln!(
                    std::io::stdout().lock(),
                    "{}",
                    serde_json::to_string_pretty(&bridge_ble::models::models(&cfg))?
                )?;
                Ok(ExitCode::SUCCESS)
            }
            Err(errors) => {
                for issue in errors.0 {
                    eprintln!("{}: {}: {}", from.display(), issue.path, issue.message);
                }
                Ok(ExitCode::from(2))
            }
        },
        Command::Manifest {
            from,
            image,
            name,
            ttl_secs,
        } => {
            if let Err(errors) = validate_file(&Ble::default(), &from) {
                for issue in errors.0 {
                    eprintln!("{}: {}: {}", from.display(), issue.path, issue.message);
                }
                return Ok(ExitCode::from(2));
            }
            let doc =
                bridge_core::runtime::config_source::read_doc(&from).map_err(anyhow::Error::msg)?;
            let spool = "/opt/edge-bridge/spool";
            let module = ModuleSpec {
                name: name.clone(),
                image,
                create_options: serde_json::json!({"HostConfig": {"Binds": ["/var/run/dbus:/var/run/dbus", format!("edge-bridge-ble-spool:{spool}")]}}),
                env: [
                    ("EDGE_BRIDGE_SPOOL_DIR".to_owned(), spool.to_owned()),
                    ("RUST_LOG".to_owned(), "info".to_owned()),
                ]
                .into(),
                desired: doc,
            };
            let routes = default_routes(std::slice::from_ref(&module));
            let manifest = deployment_manifest(&[module], &routes, ttl_secs);
            use std::io::Write;
            writeln!(
                std::io::stdout().lock(),
                "{}",
                serde_json::to_string_pretty(&manifest)?
            )?;
            Ok(ExitCode::SUCCESS)
        }
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
