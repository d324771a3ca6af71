//! Benchmark (not a test): how busy the module keeps an RS-485 line. The release
//! `bridge-modbus` binary polls 10 unit ids on one serial port as fast as configured
//! (`pollIntervalMs` 10); between it and a pymodbus 3.16.1 RTU server sits
//! `tests/python/rtu_relay.py`, which delivers bytes at the baud rate and character
//! framing, holds each reply to a fixed turnaround, and counts requests sent inside the
//! 3.5-character gap. Runs 8E1 (11 bits per character) at 9600 and 19200 baud with 10
//! live ids, then with an 11th, silent id among them.
//!
//! Theoretical maximum: one transaction takes
//! `T = (request chars + reply chars) × bits per char / baud + 2 × t3.5 + turnaround`
//! (request on the wire, the slave's t3.5 and turnaround, reply on the wire, the master's
//! t3.5 before the next request), so at most 1 / T transactions per second.
//!
//! `cargo bench -p bridge-e2e --bench rtu_bus_timing [-- 9600 19200]`

#![allow(clippy::unwrap_used, clippy::print_stdout)] // a benchmark prints its figures

use std::process::Stdio;
use std::time::Duration;

use bridge_e2e::{peer_python, repo_root};
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

const REGISTERS: u16 = 30;
const TURNAROUND_MS: f64 = 5.0;
const BITS: u32 = 11;
const WARMUP_S: f64 = 3.0;
const WINDOW_S: f64 = 15.0;
const SILENT_TIMEOUT_MS: u64 = 100;

fn map() -> Value {
    let mut points = serde_json::Map::new();
    for i in 0..REGISTERS {
        points.insert(
            format!("r{i}"),
            json!({"table": "holding", "address": i, "type": "u16"}),
        );
    }
    json!({"name": "regs", "points": points})
}

fn binary() -> std::path::PathBuf {
    let built = std::process::Command::new(env!("CARGO"))
        .args(["build", "--release", "--quiet", "-p", "bridge-modbus"])
        .current_dir(repo_root())
        .status()
        .unwrap();
    assert!(built.success(), "cargo build -p bridge-modbus failed");
    std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
        .join("release/bridge-modbus")
}

/// One scenario; returns the relay's figures.
async fn run(bin: &std::path::Path, baud: u32, live: u8, silent: Option<u8>) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let mut relay = tokio::process::Command::new(peer_python())
        .arg(repo_root().join("tests/python/rtu_relay.py"))
        .args(["--baud", &baud.to_string(), "--bits", &BITS.to_string()])
        .args(["--turnaround-ms", &TURNAROUND_MS.to_string()])
        .args([
            "--warmup",
            &WARMUP_S.to_string(),
            "--seconds",
            &WINDOW_S.to_string(),
        ])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut relay_out = tokio::io::BufReader::new(relay.stdout.take().unwrap()).lines();
    let paths: Value =
        serde_json::from_str(&relay_out.next_line().await.unwrap().unwrap()).unwrap();
    let units: serde_json::Map<String, Value> = (1..=live)
        .map(|u| {
            let regs: Vec<Value> = (0..REGISTERS)
                .map(|a| json!({"address": a, "type": "u16", "value": u16::from(u) * 100 + a}))
                .collect();
            (u.to_string(), json!({"holding": regs}))
        })
        .collect();
    let mut spec = json!({"units": units});
    let mut all: Vec<u8> = (1..=live).collect();
    if let Some(s) = silent {
        spec["units"][s.to_string()] =
            json!({"holding": [{"address": 0, "type": "u16", "value": 0}]});
        spec["silent"] = json!([s]);
        all.push(s);
    }
    let spec_path = dir.path().join("spec.json");
    std::fs::write(&spec_path, spec.to_string()).unwrap();
    let mut server = tokio::process::Command::new(peer_python())
        .arg(repo_root().join("tests/python/modbus_server.py"))
        .args([
            "--mode",
            "rtu",
            "--device",
            paths["server"].as_str().unwrap(),
        ])
        .arg("--spec")
        .arg(&spec_path)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut server_out = tokio::io::BufReader::new(server.stdout.take().unwrap()).lines();
    assert_eq!(
        server_out.next_line().await.unwrap().as_deref(),
        Some("ready")
    );
    let devices: serde_json::Map<String, Value> = all
        .iter()
        .map(|u| {
            (
                format!("unit-{u}"),
                json!({
                "map": "regs", "unitId": u, "pollIntervalMs": 10,
                "timeoutMs": if Some(*u) == silent { SILENT_TIMEOUT_MS } else { 1000 },
                "connection": {"type": "rtu", "port": paths["master"], "baudRate": baud,
                                "parity": "even", "dataBits": 8, "stopBits": 1}}),
            )
        })
        .collect();
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        json!({"maps": {"regs": map()}, "devices": devices}).to_string(),
    )
    .unwrap();
    let mut module = tokio::process::Command::new(bin)
        .arg("--config")
        .arg(&config)
        .args(["--upstream", "stdout", "--log", "warn"])
        .env_remove("IOTEDGE_WORKLOADURI")
        .env_remove("IOTHUB_CONNECTION_STRING")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let line = tokio::time::timeout(
        Duration::from_secs_f64(WARMUP_S + WINDOW_S + 30.0),
        relay_out.next_line(),
    )
    .await
    .unwrap()
    .unwrap()
    .unwrap_or_default();
    let _ = module.kill().await;
    let _ = server.kill().await;
    serde_json::from_str(&line).unwrap_or(Value::Null)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let bauds: Vec<u32> = args.iter().skip(1).filter_map(|a| a.parse().ok()).collect();
    let bauds = if bauds.is_empty() {
        vec![9600, 19_200]
    } else {
        bauds
    };
    let bin = binary();
    let rt = tokio::runtime::Runtime::new().unwrap();
    // Read of 30 registers: request 8 chars, reply 5 + 60 = 65 chars.
    let (req, rep) = (8.0, 5.0 + 2.0 * f64::from(REGISTERS));
    println!(
        "rtu_bus_timing: 8E1 ({BITS} bits/char), FC3 reads of {REGISTERS} registers ({req} + {rep} chars), slave turnaround {TURNAROUND_MS} ms, {WINDOW_S} s window; T = (req + rep) x bits / baud + 2 x t3.5 + turnaround"
    );
    rt.block_on(async {
        for baud in bauds {
            let t35 = if baud > 19_200 { 1.75 } else { 3.5 * f64::from(BITS) / f64::from(baud) * 1e3 };
            let t_ms = (req + rep) * f64::from(BITS) / f64::from(baud) * 1e3 + 2.0 * t35 + TURNAROUND_MS;
            let max_tps = 1000.0 / t_ms;
            for silent in [None, Some(11u8)] {
                let v = run(&bin, baud, 10, silent).await;
                let replies = v["replies"].as_f64().unwrap_or(0.0);
                let tps = replies / WINDOW_S;
                let live: Vec<&Value> = (1..=10)
                    .filter_map(|u| v["intervals"].get(u.to_string()))
                    .collect();
                let mean = |k: &str| live.iter().filter_map(|x| x[k].as_f64()).sum::<f64>() / live.len().max(1) as f64;
                let max_of = |k: &str| live.iter().filter_map(|x| x[k].as_f64()).fold(0.0, f64::max);
                let silent_polls = silent
                    .and_then(|s| v["intervals"].get(s.to_string()))
                    .and_then(|x| x["n"].as_u64())
                    .unwrap_or(0);
                println!(
                    "  {baud:>5} baud, {}: {tps:>6.2} transactions/s of {max_tps:.2} theoretical ({:.1} %; T = {t_ms:.2} ms, t3.5 = {t35:.2} ms); live poll period mean {:.1} ms (ideal {:.1}), jitter sd {:.2} ms, max {:.1} ms; violations {}, min gap {:.2} ms, late slave replies {}{}",
                    if silent.is_some() { "10 live + 1 silent id" } else { "10 live ids" },
                    tps * 100.0 / max_tps,
                    mean("meanMs"),
                    10.0 * t_ms,
                    mean("sdMs"),
                    max_of("maxMs"),
                    v["violations"],
                    v["minGapMs"].as_f64().unwrap_or(f64::NAN),
                    v["lateReplies"],
                    if silent.is_some() {
                        format!("; silent id polled {silent_polls} times (timeout {SILENT_TIMEOUT_MS} ms, then backoff)")
                    } else {
                        String::new()
                    },
                );
            }
        }
    });
}
