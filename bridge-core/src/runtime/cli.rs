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
    /// Module or device connection string, to run without IoT Edge.
    #[arg(
        long,
        global = true,
        env = "IOTHUB_CONNECTION_STRING",
        hide_env_values = true
    )]
    pub connection_string: Option<String>,
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

impl CommonArgs {
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
