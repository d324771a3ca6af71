//! Benchmark (not a test): time from process start to the first telemetry line of the
//! real `bridge-modbus` binary (release build, `--upstream stdout`) polling one
//! reachable Modbus TCP device served by pymodbus 3.16.1, over 10 starts with 10
//! different device ids (the slot phase derives from the id, so this also shows that
//! the first poll does not wait for it). Prints each start and the median.
//!
//! `cargo bench -p bridge-e2e --bench first_value [-- STARTS]`

#![allow(clippy::unwrap_used, clippy::print_stdout)] // a benchmark prints its figures

use std::process::Stdio;
use std::time::{Duration, Instant};

use bridge_e2e::{PyModbus, repo_root};
use serde_json::json;
use tokio::io::AsyncBufReadExt;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let starts: usize = args
        .iter()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10);
    // The binary under test, built as users run it.
    let built = std::process::Command::new(env!("CARGO"))
        .args(["build", "--release", "--quiet", "-p", "bridge-modbus"])
        .current_dir(repo_root())
        .status()
        .unwrap();
    assert!(built.success(), "cargo build -p bridge-modbus failed");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let binary = target.join("release/bridge-modbus");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let spec = json!({"units": {"1": {"holding": [
            {"address": 0, "type": "f32", "value": 230.5},
            {"address": 6, "type": "f32", "value": 5.25},
            {"address": 12, "type": "f32", "value": 1210.0}
        ]}}});
        let server = PyModbus::tcp(&spec).await.unwrap();
        let map = json!({"name": "first", "points": {
            "voltage": {"table": "holding", "address": 0, "type": "f32"},
            "current": {"table": "holding", "address": 6, "type": "f32"},
            "power": {"table": "holding", "address": 12, "type": "f32"}
        }});
        let dir = tempfile::tempdir().unwrap();
        let mut times = Vec::new();
        println!(
            "first_value: process start -> first telemetry line, bridge-modbus --upstream stdout, pymodbus TCP on 127.0.0.1:{}, pollIntervalMs 1000",
            server.port
        );
        for i in 0..starts {
            let id = format!("meter-{i}");
            let config = dir.path().join(format!("c{i}.json"));
            std::fs::write(
                &config,
                json!({"maps": {"first": map}, "devices": {id.clone(): {
                    "map": "first", "pollIntervalMs": 1000,
                    "connection": {"type": "tcp", "host": "127.0.0.1", "port": server.port}}}})
                .to_string(),
            )
            .unwrap();
            let t0 = Instant::now();
            let mut child = tokio::process::Command::new(&binary)
                .arg("--config")
                .arg(&config)
                .args(["--upstream", "stdout", "--log", "warn"])
                .env_remove("IOTEDGE_WORKLOADURI")
                .env_remove("IOTHUB_CONNECTION_STRING")
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .unwrap();
            let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
            let first = tokio::time::timeout(Duration::from_secs(10), async {
                while let Ok(Some(line)) = lines.next_line().await {
                    if line.contains("\"output\":\"telemetry\"") && line.contains("voltage") {
                        return Some(t0.elapsed());
                    }
                }
                None
            })
            .await
            .ok()
            .flatten();
            let _ = child.kill().await;
            match first {
                Some(t) => {
                    println!("  start {i:>2} ({id}): {:>6.1} ms", t.as_secs_f64() * 1e3);
                    times.push(t);
                }
                None => println!("  start {i:>2} ({id}): no telemetry within 10 s"),
            }
        }
        times.sort();
        if let (Some(min), Some(max)) = (times.first(), times.last()) {
            let median = times[times.len() / 2];
            println!(
                "  median {:.1} ms, min {:.1} ms, max {:.1} ms over {} starts (target: median <= 500 ms)",
                median.as_secs_f64() * 1e3,
                min.as_secs_f64() * 1e3,
                max.as_secs_f64() * 1e3,
                times.len()
            );
        }
    });
}
