//! The command line every module binary shares.

use std::path::PathBuf;

use clap::Args;

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
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        common: CommonArgs,
    }

    fn parse(args: &[&str]) -> CommonArgs {
        Cli::parse_from(std::iter::once("x").chain(args.iter().copied())).common
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
