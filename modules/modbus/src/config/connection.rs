//! `devices.<id>.connection`: read as [`ConnectionDoc`] (unknown fields and a bad
//! `type` refused by its serde definition), then every field typed and checked with
//! its own path.

use bridge_core::config::{ConfigIssue, join_path};
use serde_json::Value;

use super::Connection;
use super::doc::{
    BAUD, ConnectionDoc, DATA_BITS, FRAME_GAP_MS, RTU_FRAME_GAP_MS, STOP_BITS, TCP_PORT,
};
use super::fields::{Checked, MAX_SERIAL_PATH, check_host, check_len, read_object};

/// Reads a connection; `None` when it has problems (all of them recorded).
pub(super) fn parse_connection(
    value: &Value,
    path: &str,
    issues: &mut Vec<ConfigIssue>,
) -> Option<Connection> {
    let doc: ConnectionDoc = read_object(value, path, "connection", issues)?;
    let before = issues.len();
    let at = |name: &str| join_path(path, name);
    let host = |host: &Checked<String>, issues: &mut Vec<ConfigIssue>| {
        let host = host.get(&at("host"), issues);
        if let Some(h) = &host {
            check_host(h, &at("host"), issues);
        }
        host
    };
    let serial_port = |port: &Checked<String>, issues: &mut Vec<ConfigIssue>| {
        let port = port.get(&at("port"), issues);
        if let Some(p) = &port {
            if p.is_empty() {
                issues.push(ConfigIssue::new(
                    at("port"),
                    "port names the serial device, e.g. /dev/ttyUSB0.",
                ));
            }
            check_len(p, MAX_SERIAL_PATH, &at("port"), "port", issues);
        }
        port
    };
    let tcp_port = |port: &Checked<u16>, issues: &mut Vec<ConfigIssue>| {
        port.get_in(TCP_PORT, &at("port"), issues)
    };
    let gap = |gap: &Checked<u64>, issues: &mut Vec<ConfigIssue>| {
        gap.get_in(FRAME_GAP_MS, &at("frameGapMs"), issues)
    };
    let rtu_gap = |gap: &Checked<Option<f64>>, issues: &mut Vec<ConfigIssue>| {
        gap.get(&at("frameGapMs"), issues)
            .map(|g| g.filter(|g| RTU_FRAME_GAP_MS.check(*g, &at("frameGapMs"), issues)))
    };
    let baud =
        |b: &Checked<u32>, issues: &mut Vec<ConfigIssue>| b.get_in(BAUD, &at("baudRate"), issues);
    let data_bits = |b: &Checked<u8>, issues: &mut Vec<ConfigIssue>| {
        b.get_in(DATA_BITS, &at("dataBits"), issues)
    };
    let stop_bits = |b: &Checked<u8>, issues: &mut Vec<ConfigIssue>| {
        b.get_in(STOP_BITS, &at("stopBits"), issues)
    };
    let connection = match &doc {
        ConnectionDoc::Tcp {
            host: h,
            port,
            frame_gap_ms,
        } => {
            let (host, port, gap) = (
                host(h, issues),
                tcp_port(port, issues),
                gap(frame_gap_ms, issues),
            );
            Some(Connection::Tcp {
                host: host?,
                port: port?,
                frame_gap_ms: gap?,
            })
        }
        ConnectionDoc::RtuOverTcp {
            host: h,
            port,
            frame_gap_ms,
        } => {
            let (host, port, gap) = (
                host(h, issues),
                tcp_port(port, issues),
                rtu_gap(frame_gap_ms, issues),
            );
            Some(Connection::RtuOverTcp {
                host: host?,
                port: port?,
                frame_gap_ms: gap?,
            })
        }
        ConnectionDoc::Rtu {
            port,
            baud_rate,
            parity,
            data_bits: db,
            stop_bits: sb,
            frame_gap_ms,
        } => {
            let port = serial_port(port, issues);
            let baud_rate = baud(baud_rate, issues);
            let parity = parity.get(&at("parity"), issues);
            let (db, sb) = (data_bits(db, issues), stop_bits(sb, issues));
            let gap = rtu_gap(frame_gap_ms, issues);
            Some(Connection::Rtu {
                port: port?,
                baud_rate: baud_rate?,
                parity: parity?,
                data_bits: db?,
                stop_bits: sb?,
                frame_gap_ms: gap?,
            })
        }
        ConnectionDoc::Ascii {
            port,
            baud_rate,
            parity,
            data_bits: db,
            stop_bits: sb,
            frame_gap_ms,
        } => {
            let port = serial_port(port, issues);
            let baud_rate = baud(baud_rate, issues);
            let parity = parity.get(&at("parity"), issues);
            let (db, sb) = (data_bits(db, issues), stop_bits(sb, issues));
            let gap = gap(frame_gap_ms, issues);
            Some(Connection::Ascii {
                port: port?,
                baud_rate: baud_rate?,
                parity: parity?,
                data_bits: db?,
                stop_bits: sb?,
                frame_gap_ms: gap?,
            })
        }
        ConnectionDoc::Simulated {} => Some(Connection::Simulated {}),
    };
    connection.filter(|_| issues.len() == before)
}
