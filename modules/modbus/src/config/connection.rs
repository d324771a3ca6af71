//! `devices.<id>.connection`, read field by field (every problem with its own path).

use bridge_core::config::{ConfigIssue, from_value};
use serde_json::Value;

use super::fields::{Fields, MAX_SERIAL_PATH, check_host, check_len};
use super::{
    Connection, Parity, default_baud, default_data_bits, default_parity, default_stop_bits,
    default_tcp_port,
};

/// Longest pause between frames, ms.
const MAX_FRAME_GAP_MS: u64 = 10_000;
/// Fastest serial line we accept, baud.
const MAX_BAUD: u32 = 4_000_000;

/// Reads a connection; `None` when it has problems (all of them recorded).
pub(super) fn parse_connection(
    value: &Value,
    path: &str,
    issues: &mut Vec<ConfigIssue>,
) -> Option<Connection> {
    let mut f = Fields::of(value, path, "connection", issues)?;
    let kind: String = f.req("type", issues)?;
    let before = issues.len();
    let gap = |f: &mut Fields<'_>, default: u64, issues: &mut Vec<ConfigIssue>| {
        let ms = f.or("frameGapMs", default, issues);
        if ms > MAX_FRAME_GAP_MS {
            issues.push(ConfigIssue::new(
                f.at("frameGapMs"),
                format!("frameGapMs must be at most {MAX_FRAME_GAP_MS}."),
            ));
        }
        ms
    };
    // RTU gaps are fractional ms and default to 3.5 character times (None).
    let rtu_gap = |f: &mut Fields<'_>, issues: &mut Vec<ConfigIssue>| {
        let ms: Option<f64> = f.opt("frameGapMs", issues);
        if let Some(v) = ms
            && !(0.0..=MAX_FRAME_GAP_MS as f64).contains(&v)
        {
            issues.push(ConfigIssue::new(
                f.at("frameGapMs"),
                format!("frameGapMs must be 0-{MAX_FRAME_GAP_MS}."),
            ));
        }
        ms
    };
    let host = |f: &mut Fields<'_>, issues: &mut Vec<ConfigIssue>| {
        let host: Option<String> = f.req("host", issues);
        if let Some(h) = &host {
            check_host(h, &f.at("host"), issues);
        }
        host
    };
    let tcp_port = |f: &mut Fields<'_>, default: Option<u16>, issues: &mut Vec<ConfigIssue>| {
        let port: Option<u16> = match default {
            Some(d) => Some(f.or("port", d, issues)),
            None => f.req("port", issues),
        };
        if port == Some(0) {
            issues.push(ConfigIssue::new(f.at("port"), "port must be 1-65535."));
        }
        port
    };
    let connection = match kind.as_str() {
        "tcp" => {
            let host = host(&mut f, issues);
            let port = tcp_port(&mut f, Some(default_tcp_port()), issues);
            let frame_gap_ms = gap(&mut f, 0, issues);
            host.zip(port).map(|(host, port)| Connection::Tcp {
                host,
                port,
                frame_gap_ms,
            })
        }
        "rtuOverTcp" => {
            let host = host(&mut f, issues);
            let port = tcp_port(&mut f, None, issues);
            let frame_gap_ms = rtu_gap(&mut f, issues);
            host.zip(port).map(|(host, port)| Connection::RtuOverTcp {
                host,
                port,
                frame_gap_ms,
            })
        }
        "rtu" => {
            let port: Option<String> = f.req("port", issues);
            if let Some(p) = &port {
                if p.is_empty() {
                    issues.push(ConfigIssue::new(
                        f.at("port"),
                        "port names the serial device, e.g. /dev/ttyUSB0.",
                    ));
                }
                check_len(p, MAX_SERIAL_PATH, &f.at("port"), "port", issues);
            }
            let baud_rate: u32 = f.or("baudRate", default_baud(), issues);
            if !(1..=MAX_BAUD).contains(&baud_rate) {
                issues.push(ConfigIssue::new(
                    f.at("baudRate"),
                    format!("baudRate must be 1-{MAX_BAUD}."),
                ));
            }
            let parity: Parity = f.or("parity", default_parity(), issues);
            let data_bits: u8 = f.or("dataBits", default_data_bits(), issues);
            if !matches!(data_bits, 7 | 8) {
                issues.push(ConfigIssue::new(
                    f.at("dataBits"),
                    "dataBits must be 7 or 8.",
                ));
            }
            let stop_bits: u8 = f.or("stopBits", default_stop_bits(), issues);
            if !matches!(stop_bits, 1 | 2) {
                issues.push(ConfigIssue::new(
                    f.at("stopBits"),
                    "stopBits must be 1 or 2.",
                ));
            }
            let frame_gap_ms = rtu_gap(&mut f, issues);
            port.map(|port| Connection::Rtu {
                port,
                baud_rate,
                parity,
                data_bits,
                stop_bits,
                frame_gap_ms,
            })
        }
        "simulated" => Some(Connection::Simulated {}),
        // Other connection types are checked by their serde definition.
        _ => {
            return match from_value::<Connection>(value, path) {
                Ok(c) => Some(c),
                Err(e) => {
                    issues.extend(e.0);
                    None
                }
            };
        }
    };
    f.finish(issues);
    connection.filter(|_| issues.len() == before)
}
