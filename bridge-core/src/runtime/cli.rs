//! The command line every module binary shares: the global options ([`CommonArgs`]) and
//! the subcommands ([`Command`]), generic over the protocol's own extra subcommands.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

/// A module binary's command line.
#[derive(Debug, Parser)]
pub struct Cli<E: Subcommand> {
    /// Options for running (accepted before or after any subcommand).
    #[command(flatten)]
    pub common: CommonArgs,
    /// What to do; `run` when absent.
    #[command(subcommand)]
    pub command: Option<Command<E>>,
}

/// The subcommands every module has, then the protocol's own (`E`).
#[derive(Debug, Subcommand)]
pub enum Command<E: Subcommand> {
    /// Run the module (the default).
    Run,
    /// Check a configuration file without running it; prints each problem with its JSON path.
    Validate {
        /// The configuration file.
        file: PathBuf,
    },
    /// List the bundled device maps.
    Maps,
    /// Write DTDL v2 models (a JSON array) for a configuration: one interface per device
    /// map in use and the gateway module's interface with relationships to them.
    Models {
        /// The module configuration (validated first).
        #[arg(long = "from")]
        from: PathBuf,
    },
    /// Write an IoT Edge deployment manifest for a configuration file: the module with its
    /// image and the host access it needs (serial ports, D-Bus socket), a spool volume,
    /// routes for its outputs, and the configuration as desired properties.
    Manifest {
        /// The module configuration (validated first).
        #[arg(long = "from")]
        from: PathBuf,
        /// Container image reference, e.g. myregistry.azurecr.io/MODULE:0.1.0.
        #[arg(long)]
        image: String,
        /// Module name in the deployment.
        #[arg(long)]
        name: Option<String>,
        /// edgeHub store-and-forward time to live, in seconds.
        #[arg(long, default_value_t = 7200)]
        ttl_secs: u64,
    },
    /// Print the JSON Schemas of the configuration and of device maps (generated from the
    /// module's configuration types), or write each file into a directory.
    Schemas {
        /// Write `<name>.schema.json` files here instead of printing them.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The protocol's own subcommands.
    #[command(flatten)]
    Extra(E),
}

/// A protocol without subcommands of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub enum NoExtra {}

/// Who the binary is, for `--help` and `--version`.
#[derive(Debug, Clone, Copy)]
pub struct Program {
    /// Binary name, e.g. `bridge-modbus` (also the default module name in manifests).
    pub name: &'static str,
    /// Its version (the module crate's `CARGO_PKG_VERSION`).
    pub version: &'static str,
    /// One paragraph for `--help`.
    pub about: &'static str,
}

impl<E: Subcommand> Cli<E> {
    /// The clap command for `program`.
    pub fn command_for(program: Program) -> clap::Command {
        Self::command()
            .name(program.name)
            .bin_name(program.name)
            .version(program.version)
            .about(program.about)
            .mut_subcommand("manifest", |m| {
                m.mut_arg("name", |a| a.default_value(program.name))
                    .mut_arg("image", |a| {
                        a.help(format!(
                            "Container image reference, e.g. myregistry.azurecr.io/{}:{}",
                            program.name, program.version
                        ))
                    })
            })
    }

    /// Arguments of the subcommands (the protocol's included) that reuse the id or the
    /// long flag of a global option (`--log`, `--config`…): clap neither refuses nor
    /// separates them and panics when such a command line is parsed, so a module's tests
    /// assert this list is empty. Each as `SUBCOMMAND --FLAG`.
    pub fn clashes(program: Program) -> Vec<String> {
        fn walk(cmd: &clap::Command, global: &[(String, Option<String>)], out: &mut Vec<String>) {
            for sub in cmd.get_subcommands() {
                for arg in sub.get_arguments() {
                    let (id, long) = (arg.get_id().as_str(), arg.get_long());
                    if global
                        .iter()
                        .any(|(g, l)| g == id || (long.is_some() && l.as_deref() == long))
                    {
                        out.push(format!("{} --{}", sub.get_name(), long.unwrap_or(id)));
                    }
                }
                walk(sub, global, out);
            }
        }
        let command = Self::command_for(program);
        let global: Vec<(String, Option<String>)> = command
            .get_arguments()
            .filter(|a| a.is_global_set())
            .map(|a| (a.get_id().to_string(), a.get_long().map(str::to_owned)))
            .collect();
        let mut out = Vec::new();
        walk(&command, &global, &mut out);
        out
    }

    /// Parses `args` (the first is the program path); `--help`, `--version` and usage
    /// errors come back as a `clap::Error` (`.exit()` prints it with the right status).
    pub fn try_parse_for<I, T>(program: Program, args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let mut command = Self::command_for(program);
        let matches = command.try_get_matches_from_mut(args)?;
        Self::from_arg_matches(&matches).map_err(|e| e.format(&mut command))
    }
}

/// Options common to every module binary (flatten into the module's own parser).
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Configuration file of the same shape as the module twin's desired properties;
    /// reloaded when it changes. Without it the module takes its configuration from the
    /// twin (under IoT Edge) or runs its built-in demo.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Where telemetry goes: `edge` (edgeHub / IoT Hub), `stdout` (JSON lines), or
    /// `mqtt://HOST:PORT` / `mqtts://HOST:PORT`. Default: edge when the IoT Edge
    /// environment or a connection string is present, stdout otherwise.
    #[arg(long, global = true)]
    pub upstream: Option<String>,
    /// Topic template for MQTT upstreams: `{deviceId}`, `{output}`, `{moduleId}`.
    #[arg(long, global = true, default_value = "{deviceId}/{output}")]
    pub topic_template: String,
    /// MQTT upstream payload: `body` (the telemetry JSON) or `envelope`
    /// (`{"deviceId", "output", "properties", "body"}`, as on stdout).
    #[arg(long, global = true, default_value = "body", value_parser = ["body", "envelope"])]
    pub mqtt_payload: String,
    /// Module or device connection string, to run without IoT Edge. On the command line
    /// it is visible to every local user (`ps`): prefer `--connection-string-file` or
    /// the environment variable.
    #[arg(
        long,
        global = true,
        env = "IOTHUB_CONNECTION_STRING",
        hide_env_values = true
    )]
    pub connection_string: Option<String>,
    /// File holding the connection string (e.g. a mounted secret, mode 0600); read once at
    /// start and preferred over `--connection-string`.
    #[arg(long, global = true, env = "IOTHUB_CONNECTION_STRING_FILE")]
    pub connection_string_file: Option<PathBuf>,
    /// PEM file of the CA to trust for the hub or broker (default: the workload trust
    /// bundle under IoT Edge, the system roots otherwise).
    #[arg(long, global = true, env = "EdgeModuleCACertificateFile")]
    pub ca_file: Option<String>,
    /// edgeHub's MQTT port.
    #[arg(
        long,
        global = true,
        env = "EDGE_BRIDGE_HUB_PORT",
        default_value_t = 8883
    )]
    pub hub_port: u16,
    /// Directory for the disk spool (store-and-forward across restarts). Memory only if unset.
    #[arg(long, global = true, env = "EDGE_BRIDGE_SPOOL_DIR")]
    pub spool_dir: Option<PathBuf>,
    /// Largest spool size in MiB; past it the oldest messages are dropped and counted.
    #[arg(long, global = true, default_value_t = 64)]
    pub spool_max_mb: u64,
    /// When the disk spool is fsynced: `interval:500ms` (a power loss may take the last
    /// interval), `batch` (after every burst of messages), or `never`. Every burst is
    /// written to the file before the next is taken either way, so a killed process
    /// loses at most the burst in progress.
    #[arg(
        long,
        global = true,
        env = "EDGE_BRIDGE_SPOOL_FSYNC",
        default_value = "interval:500ms"
    )]
    pub spool_fsync: crate::forwarder::FsyncPolicy,
    /// Serve Prometheus metrics at `http://ADDR/metrics` (e.g. `0.0.0.0:9600` for the IoT
    /// Edge metrics-collector). Off if unset.
    #[arg(long, global = true, env = "EDGE_BRIDGE_METRICS")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Log filter (`info`, `debug`, `bridge_modbus=debug`, …).
    #[arg(long, global = true, env = "RUST_LOG", default_value = "info")]
    pub log: String,
}

/// Where telemetry goes, resolved from the arguments and environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamChoice {
    /// edgeHub via the IoT Edge environment.
    EdgeEnvironment,
    /// IoT Hub / edgeHub via a connection string.
    ConnectionString(String),
    /// JSON lines on stdout.
    Stdout,
    /// A plain MQTT broker URL.
    Mqtt(String),
}

/// The `--upstream` value is not understood.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UpstreamChoiceError {
    /// Unknown word.
    #[error("--upstream must be edge, stdout, mqtt://HOST:PORT or mqtts://HOST:PORT, not '{0}'.")]
    Unknown(String),
    /// `edge` without an environment or connection string.
    #[error("--upstream edge needs the IoT Edge environment (IOTEDGE_*) or --connection-string.")]
    NoIdentity,
}

/// The connection string file could not be read.
#[derive(Debug, thiserror::Error)]
#[error("The connection string file {path} could not be read.")]
pub struct SecretFileError {
    /// Which file.
    pub path: PathBuf,
    /// Cause.
    #[source]
    pub source: std::io::Error,
}

impl CommonArgs {
    /// Reads `--connection-string-file` into `connection_string`, and warns when the
    /// connection string was given on the command line (`argv` is the process's).
    pub fn resolve_secrets(
        &mut self,
        argv: impl IntoIterator<Item = String>,
    ) -> Result<(), SecretFileError> {
        let on_command_line = argv
            .into_iter()
            .any(|a| a == "--connection-string" || a.starts_with("--connection-string="));
        if let Some(path) = &self.connection_string_file {
            let text = std::fs::read_to_string(path).map_err(|source| SecretFileError {
                path: path.clone(),
                source,
            })?;
            // A BOM or a trailing newline from an editor is not part of the string.
            self.connection_string = Some(text.trim_start_matches('\u{feff}').trim().to_owned());
        } else if on_command_line {
            tracing::warn!(
                "The connection string was given on the command line, where every local user can read it (ps); use --connection-string-file or IOTHUB_CONNECTION_STRING instead."
            );
        }
        Ok(())
    }

    /// Resolves the upstream; `edge_env_present` is whether `IOTEDGE_MODULEID` is set.
    pub fn upstream_choice(
        &self,
        edge_env_present: bool,
    ) -> Result<UpstreamChoice, UpstreamChoiceError> {
        let edge = || match (&self.connection_string, edge_env_present) {
            (Some(cs), _) => Ok(UpstreamChoice::ConnectionString(cs.clone())),
            (None, true) => Ok(UpstreamChoice::EdgeEnvironment),
            (None, false) => Err(UpstreamChoiceError::NoIdentity),
        };
        match self.upstream.as_deref() {
            None => edge().or(Ok(UpstreamChoice::Stdout)),
            Some("edge") => edge(),
            Some("stdout") => Ok(UpstreamChoice::Stdout),
            Some(url) if url.starts_with("mqtt://") || url.starts_with("mqtts://") => {
                Ok(UpstreamChoice::Mqtt(url.to_owned()))
            }
            Some(other) => Err(UpstreamChoiceError::Unknown(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::path::Path;

    use super::*;

    fn parse(args: &[&str]) -> CommonArgs {
        Cli::<NoExtra>::parse_from(std::iter::once("x").chain(args.iter().copied())).common
    }

    /// A protocol's own subcommands, as a module would declare them.
    #[derive(Debug, PartialEq, Eq, Subcommand)]
    enum Tool {
        /// Find devices.
        Scan {
            /// Where.
            #[arg(long)]
            tcp: String,
        },
    }

    /// Subcommands whose flags collide with the global ones.
    #[derive(Debug, Subcommand)]
    enum Clash {
        /// Fetch.
        Fetch {
            /// Same id and flag as the global `--log`.
            #[arg(long)]
            log: bool,
            /// Another id, the flag of the global `--upstream`.
            #[arg(long = "upstream")]
            source: String,
            /// Fine.
            #[arg(long)]
            url: String,
        },
    }

    const PROGRAM: Program = Program {
        name: "bridge-test",
        version: "9.8.7",
        about: "A test module",
    };

    fn cli<E: Subcommand>(args: &[&str]) -> Result<Cli<E>, clap::Error> {
        Cli::try_parse_for(
            PROGRAM,
            std::iter::once("bridge-test").chain(args.iter().copied()),
        )
    }

    #[test]
    fn shared_subcommands_parse() {
        Cli::<Tool>::command_for(PROGRAM).debug_assert();
        Cli::<NoExtra>::command_for(PROGRAM).debug_assert();
        assert!(Cli::<NoExtra>::clashes(PROGRAM).is_empty());
        assert!(cli::<NoExtra>(&[]).unwrap().command.is_none());
        let run = cli::<NoExtra>(&["run", "--config", "c.json"]).unwrap();
        assert!(matches!(run.command, Some(Command::Run)));
        assert_eq!(run.common.config, Some(PathBuf::from("c.json")));
        let before = cli::<NoExtra>(&["--log", "debug", "validate", "f.json"]).unwrap();
        assert_eq!(before.common.log, "debug");
        assert!(
            matches!(before.command, Some(Command::Validate { file }) if file == Path::new("f.json"))
        );
        assert!(matches!(
            cli::<NoExtra>(&["maps"]).unwrap().command,
            Some(Command::Maps)
        ));
        assert!(matches!(
            cli::<NoExtra>(&["schemas", "--out", "d"]).unwrap().command,
            Some(Command::Schemas { out: Some(d) }) if d == Path::new("d")
        ));
        assert!(matches!(
            cli::<NoExtra>(&["models", "--from", "f.json"]).unwrap().command,
            Some(Command::Models { from }) if from == Path::new("f.json")
        ));
        // The module name defaults to the binary's.
        let manifest = cli::<NoExtra>(&["manifest", "--from", "f.json", "--image", "i:1"]);
        assert!(matches!(
            manifest.unwrap().command,
            Some(Command::Manifest { from, image, name: Some(name), ttl_secs: 7200 })
                if from == Path::new("f.json") && image == "i:1" && name == "bridge-test"
        ));
        let named = cli::<NoExtra>(&[
            "manifest",
            "--from",
            "f",
            "--image",
            "i",
            "--name",
            "m2",
            "--ttl-secs",
            "60",
        ]);
        assert!(matches!(
            named.unwrap().command,
            Some(Command::Manifest { name: Some(name), ttl_secs: 60, .. }) if name == "m2"
        ));
    }

    #[test]
    fn protocol_subcommands_sit_beside_the_shared_ones() {
        let scan = cli::<Tool>(&["scan", "--tcp", "h:502"]).unwrap();
        assert!(matches!(
            scan.command,
            Some(Command::Extra(Tool::Scan { tcp })) if tcp == "h:502"
        ));
        assert!(matches!(
            cli::<Tool>(&["maps"]).unwrap().command,
            Some(Command::Maps)
        ));
        assert!(Cli::<Tool>::clashes(PROGRAM).is_empty());
        assert_eq!(
            Cli::<Clash>::clashes(PROGRAM),
            ["fetch --log", "fetch --upstream"]
        );
        let help = Cli::<Tool>::command_for(PROGRAM).render_help().to_string();
        assert!(help.contains("scan") && help.contains("manifest"), "{help}");
        // Without extras the word is refused like any unknown subcommand.
        let refused = cli::<NoExtra>(&["scan", "--tcp", "h"]).unwrap_err();
        assert_eq!(refused.kind(), clap::error::ErrorKind::InvalidSubcommand);
        assert_eq!(refused.exit_code(), 2);
    }

    #[test]
    fn version_help_and_usage_errors_come_back_as_errors() {
        let version = cli::<NoExtra>(&["--version"]).unwrap_err();
        assert_eq!(version.kind(), clap::error::ErrorKind::DisplayVersion);
        assert_eq!(version.to_string(), "bridge-test 9.8.7\n");
        assert_eq!(version.exit_code(), 0);
        let help = cli::<NoExtra>(&["--help"]).unwrap_err().to_string();
        assert!(help.starts_with("A test module"), "{help}");
        let missing = cli::<NoExtra>(&["manifest", "--from", "f"]).unwrap_err();
        assert_eq!(
            missing.kind(),
            clap::error::ErrorKind::MissingRequiredArgument
        );
        assert!(missing.to_string().contains("--image"), "{missing}");
        let image_help = Cli::<NoExtra>::command_for(PROGRAM)
            .find_subcommand_mut("manifest")
            .map(|m| m.render_help().to_string())
            .unwrap_or_default();
        assert!(image_help.contains("myregistry.azurecr.io/bridge-test:9.8.7"));
    }

    #[test]
    fn connection_string_file_wins_and_is_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cs");
        std::fs::write(
            &file,
            "\u{feff}HostName=h;DeviceId=d;SharedAccessKey=YQ==\n",
        )
        .unwrap();
        let mut args = parse(&[
            "--connection-string",
            "HostName=other;DeviceId=x;SharedAccessKey=YQ==",
            "--connection-string-file",
            file.to_str().unwrap(),
        ]);
        args.resolve_secrets(Vec::new()).unwrap();
        assert_eq!(
            args.connection_string.as_deref(),
            Some("HostName=h;DeviceId=d;SharedAccessKey=YQ==")
        );
        let mut missing = parse(&["--connection-string-file", "/nonexistent/cs"]);
        assert!(missing.resolve_secrets(Vec::new()).is_err());
        assert_eq!(
            parse(&["--spool-fsync", "batch"]).spool_fsync,
            crate::forwarder::FsyncPolicy::Batch
        );
    }

    #[test]
    fn default_upstream_follows_the_environment() {
        let plain = parse(&[]);
        assert_eq!(plain.upstream_choice(false), Ok(UpstreamChoice::Stdout));
        assert_eq!(
            plain.upstream_choice(true),
            Ok(UpstreamChoice::EdgeEnvironment)
        );
        let cs = parse(&[
            "--connection-string",
            "HostName=h;DeviceId=d;SharedAccessKey=YQ==",
        ]);
        assert!(matches!(
            cs.upstream_choice(false),
            Ok(UpstreamChoice::ConnectionString(_))
        ));
        assert_eq!(
            parse(&["--upstream", "edge"]).upstream_choice(false),
            Err(UpstreamChoiceError::NoIdentity)
        );
        assert_eq!(
            parse(&["--upstream", "mqtt://b:1883"]).upstream_choice(true),
            Ok(UpstreamChoice::Mqtt("mqtt://b:1883".into()))
        );
        assert!(matches!(
            parse(&["--upstream", "kafka"]).upstream_choice(true),
            Err(UpstreamChoiceError::Unknown(_))
        ));
    }
}
