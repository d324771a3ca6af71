//! Commissioning commands: `scan`, `read`, `write`, one-shot tools for an integrator
//! in front of a bus, built on the module's own bus layer (one task per bus, timeouts,
//! late-reply protection) and its config validation (maps, points, connections).
//!
//! Exit codes: 0 success, 1 the device or bus failed, 2 bad arguments.

pub mod read;
pub mod scan;
pub mod write;

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::bus::{BusError, BusHandle, spawn_bus};
use crate::config::{Connection, Device};
use crate::device::DeviceEntry;

/// How to reach the bus (shared by the three commands).
#[derive(Debug, Clone, clap::Args)]
pub struct TargetArgs {
    /// Modbus TCP server: HOST or HOST:PORT (port 502 by default).
    #[arg(long)]
    pub tcp: Option<String>,
    /// Serial port (Modbus RTU; ASCII with --ascii), e.g. /dev/ttyUSB0.
    #[arg(long)]
    pub serial: Option<String>,
    /// Serial: baud rate.
    #[arg(long, default_value_t = 9600)]
    pub baud: u32,
    /// Serial: parity.
    #[arg(long, default_value = "none", value_parser = ["none", "even", "odd"])]
    pub parity: String,
    /// Serial: data bits (7 or 8).
    #[arg(long, default_value_t = 8)]
    pub data_bits: u8,
    /// Serial: stop bits (1 or 2).
    #[arg(long, default_value_t = 1)]
    pub stop_bits: u8,
    /// Serial: Modbus ASCII framing instead of RTU.
    #[arg(long)]
    pub ascii: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// A commissioning command failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CommissionError {
    /// The arguments are wrong (exit code 2).
    #[error("{0}")]
    Usage(String),
    /// The bus or the device failed (exit code 1).
    #[error("Unit {unit}: {error}")]
    Bus {
        /// Unit id.
        unit: u8,
        /// What went wrong.
        error: BusError,
    },
    /// Anything else that went wrong with the device (exit code 1).
    #[error("{0}")]
    Failed(String),
    /// Writing the output failed.
    #[error("Cannot write the output: {0}")]
    Output(String),
}

impl From<std::io::Error> for CommissionError {
    fn from(e: std::io::Error) -> Self {
        CommissionError::Output(e.to_string())
    }
}

/// The three commands: bridge-modbus's own subcommands beside the shared ones
/// (`CommandLine::Extra` in [`crate::deploy`]).
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Find the unit ids that answer on a bus, their identification, SunSpec models and
    /// the bundled maps that plausibly fit.
    Scan(scan::ScanArgs),
    /// Read a device once through a map, SunSpec discovery, or as raw registers.
    Read(read::ReadArgs),
    /// Write one point (with the `write` method's checks) or one raw register or coil.
    Write(write::WriteArgs),
}

pub use read::ReadArgs;
pub use scan::ScanArgs;
pub use write::WriteArgs;

#[derive(Debug, clap::Parser)]
#[command(name = "bridge-modbus")]
struct Cli {
    #[command(subcommand)]
    cmd: Sub,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    Scan(ScanArgs),
    Read(ReadArgs),
    Write(WriteArgs),
}

/// Parses a command line (`scan ...`, `read ...`, `write ...`, without the program name),
/// as main.rs would.
pub fn parse(args: &[&str]) -> Result<Command, CommissionError> {
    use clap::Parser;
    let cli = Cli::try_parse_from(std::iter::once("bridge-modbus").chain(args.iter().copied()))
        .map_err(|e| CommissionError::Usage(e.to_string()))?;
    Ok(match cli.cmd {
        Sub::Scan(a) => Command::Scan(a),
        Sub::Read(a) => Command::Read(a),
        Sub::Write(a) => Command::Write(a),
    })
}

/// The process exit code for an error: 2 for bad arguments, 1 otherwise.
pub fn exit_code(e: &CommissionError) -> u8 {
    if matches!(e, CommissionError::Usage(_)) {
        2
    } else {
        1
    }
}

/// Runs one command to completion, writing to `out`.
pub async fn run(cmd: &Command, out: &mut dyn Write) -> Result<(), CommissionError> {
    match cmd {
        Command::Scan(a) => scan::run(a, out).await,
        Command::Read(a) => read::run(a, out).await,
        Command::Write(a) => write::run(a, out).await,
    }
}

/// Runs a command on its own runtime; prints errors to stderr; the exit code.
pub fn main(cmd: Command) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout().lock();
    match rt.block_on(run(&cmd, &mut stdout)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(exit_code(&e))
        }
    }
}

/// The `connection` object of the configuration for these arguments.
pub fn connection_json(t: &TargetArgs) -> Result<Value, CommissionError> {
    match (&t.tcp, &t.serial) {
        (Some(_), Some(_)) => Err(CommissionError::Usage(
            "Give either --tcp or --serial, not both.".into(),
        )),
        (None, None) => Err(CommissionError::Usage(
            "Give the bus: --tcp HOST[:PORT] or --serial PORT.".into(),
        )),
        (Some(target), None) => {
            let (host, port) = match target.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') || h.starts_with('[') => {
                    let port: u16 = p.parse().map_err(|_| {
                        CommissionError::Usage(format!("--tcp {target}: the port must be 1-65535."))
                    })?;
                    (h.trim_matches(['[', ']']).to_owned(), port)
                }
                _ => (target.clone(), 502),
            };
            if host.is_empty() || port == 0 {
                return Err(CommissionError::Usage(format!(
                    "--tcp {target}: expected HOST or HOST:PORT."
                )));
            }
            Ok(json!({"type": "tcp", "host": host, "port": port}))
        }
        (None, Some(port)) => Ok(json!({
            "type": if t.ascii { "ascii" } else { "rtu" },
            "port": port, "baudRate": t.baud, "parity": t.parity,
            "dataBits": t.data_bits, "stopBits": t.stop_bits,
        })),
    }
}

/// Checks a unit id given on the command line.
pub fn unit_id(unit: u16) -> Result<u8, CommissionError> {
    u8::try_from(unit)
        .ok()
        .filter(|u| (1..=247).contains(u))
        .ok_or_else(|| CommissionError::Usage(format!("--unit {unit}: unit ids are 1-247.")))
}

/// A validated device for these arguments, through the module's config validation, so
/// maps, points and connection settings are checked exactly as in a deployment.
pub fn device(
    t: &TargetArgs,
    unit: u8,
    timeout_ms: u64,
    map: Value,
    points: Option<&[String]>,
) -> Result<Device, CommissionError> {
    let mut dev = json!({"map": map, "connection": connection_json(t)?, "unitId": unit, "timeoutMs": timeout_ms});
    if let Some(p) = points {
        dev["points"] = json!(p);
    }
    let cfg = crate::config::parse(&json!({"devices": {"cli": dev}})).map_err(|e| {
        let lines: Vec<String> =
            e.0.iter()
                .map(|i| {
                    let path = i.path.strip_prefix("devices.cli.").unwrap_or(&i.path);
                    format!("{path}: {}", i.message)
                })
                .collect();
        CommissionError::Usage(lines.join("\n"))
    })?;
    cfg.devices
        .get("cli")
        .cloned()
        .ok_or_else(|| CommissionError::Usage("The device is not usable.".into()))
}

/// A bus for the command's lifetime; stopped when dropped.
#[derive(Debug)]
pub struct Session {
    /// The bus.
    pub bus: BusHandle,
    token: CancellationToken,
}

impl Session {
    /// Opens (lazily: on the first request) the bus of `connection`.
    pub fn open(connection: Connection) -> Self {
        let token = CancellationToken::new();
        Self {
            bus: spawn_bus(connection, None, token.clone()),
            token,
        }
    }

    /// A device entry on this bus.
    pub fn entry(&self, device: Device) -> Arc<DeviceEntry> {
        DeviceEntry::new(device, self.bus.clone())
    }

    /// Stops the bus and waits until its port is closed (the next command may open it).
    pub async fn close(self) {
        self.token.cancel();
        let closed = self.bus.closed();
        let _ignored = tokio::time::timeout(Duration::from_secs(2), closed).await;
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

/// Runs `f` with a bus for `connection`, then stops the bus and waits until its port is
/// closed, so the next command can open it (serial ports are opened exclusively).
pub async fn with_session<T>(connection: Connection, f: impl AsyncFnOnce(&Session) -> T) -> T {
    let s = Session::open(connection);
    let out = f(&s).await;
    s.close().await;
    out
}

/// Writes rows as an aligned text table.
pub fn table(out: &mut dyn Write, header: &[&str], rows: &[Vec<String>]) -> std::io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        s.trim_end().to_owned()
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for r in rows {
        writeln!(out, "{}", line(r.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

/// A timeout from milliseconds, checked.
pub fn timeout(ms: u64) -> Result<Duration, CommissionError> {
    if (10..=60_000).contains(&ms) {
        Ok(Duration::from_millis(ms))
    } else {
        Err(CommissionError::Usage(
            "--timeout-ms must be 10-60000.".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(tcp: Option<&str>, serial: Option<&str>) -> TargetArgs {
        TargetArgs {
            tcp: tcp.map(Into::into),
            serial: serial.map(Into::into),
            baud: 9600,
            parity: "none".into(),
            data_bits: 8,
            stop_bits: 1,
            ascii: false,
            json: false,
        }
    }

    #[test]
    fn targets_units_and_devices() {
        assert_eq!(
            connection_json(&target(Some("10.0.0.5"), None)).unwrap(),
            json!({"type": "tcp", "host": "10.0.0.5", "port": 502})
        );
        assert_eq!(
            connection_json(&target(Some("plc.local:1502"), None)).unwrap()["port"],
            1502
        );
        assert!(matches!(
            connection_json(&target(Some("h:x"), None)),
            Err(CommissionError::Usage(_))
        ));
        assert!(matches!(
            connection_json(&target(None, None)),
            Err(CommissionError::Usage(_))
        ));
        assert!(matches!(
            connection_json(&target(Some("h"), Some("/dev/ttyUSB0"))),
            Err(CommissionError::Usage(_))
        ));
        assert_eq!(
            connection_json(&target(None, Some("/dev/ttyUSB0"))).unwrap()["type"],
            "rtu"
        );
        assert_eq!(unit_id(1), Ok(1));
        assert!(unit_id(0).is_err() && unit_id(248).is_err() && unit_id(300).is_err());
        let t = target(Some("h"), None);
        let e = device(&t, 1, 500, json!("no-such-map"), None).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("map: Unknown device map 'no-such-map'"),
            "{e}"
        );
        let e = device(&t, 1, 500, json!("eastron-sdm120"), Some(&["nope".into()])).unwrap_err();
        assert!(
            e.to_string()
                .contains("points[0]: The map 'eastron-sdm120' has no point 'nope'"),
            "{e}"
        );
        assert!(device(&t, 1, 500, json!("eastron-sdm120"), None).is_ok());
    }

    #[test]
    fn table_is_aligned() {
        let mut out = Vec::new();
        table(&mut out, &["a", "bb"], &[vec!["xxx".into(), "1".into()]]).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "a    bb\nxxx  1\n");
    }
}
