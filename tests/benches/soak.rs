//! Soak (not a test): bridge-modbus in a child process with 500 simulated Modbus devices
//! (5 points, 1 Hz) against edgehub-sim, a fault every 2 minutes in rotation (edgeHub down
//! for 15 s, desired-property churn of 20 patches, 50 devices disabled for 30 s and
//! re-enabled), resident memory of the module sampled every 10 s, counters at the end.
//!
//! `cargo bench -p bridge-e2e --bench soak -- MINUTES [DEVICES]` (tests/soak/run.sh).
//! Not covered: BLE advertisers (dbusmock) are not part of this soak.

#![allow(clippy::unwrap_used, clippy::print_stdout)] // a benchmark prints its figures

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bridge_core::identity::SymmetricKey;
use edgehub_sim::{Sim, SimOptions};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const KEY: &str = "Y2FwdHVyZS10ZXN0LWtleS0wMTIzNDU2Nzg5YWJjZGVm";

fn map() -> Value {
    let points: serde_json::Map<String, Value> = (0..5)
        .map(|i| {
            (
                format!("p{i}"),
                json!({"table": "holding", "address": i, "type": "u16"}),
            )
        })
        .collect();
    json!({"name": "soak5", "points": points})
}

fn devices(n: usize, disabled: std::ops::Range<usize>, interval_ms: u64) -> Value {
    let d: serde_json::Map<String, Value> = (0..n)
        .map(|i| {
            (
                format!("dev-{i:04}"),
                json!({"map": "soak5", "connection": {"type": "simulated"}, "pollIntervalMs": interval_ms,
                       "enabled": !disabled.contains(&i)}),
            )
        })
        .collect();
    json!({"maps": {"soak5": map()}, "devices": d})
}

/// Child: the module against the emulator (port, CA file, metrics address).
fn child(port: u16, ca: &str, metrics: &str) {
    let rt = bridge_core::runtime::module_runtime().unwrap();
    rt.block_on(async {
        let args = bridge_core::runtime::CommonArgs {
            config: None,
            upstream: Some("edge".into()),
            topic_template: "{deviceId}/{output}".into(),
            mqtt_payload: "body".into(),
            connection_string: Some(format!(
                "HostName=myhub.azure-devices.net;DeviceId=edge-gw;ModuleId=modbus;SharedAccessKey={KEY};GatewayHostName=localhost"
            )),
            connection_string_file: None,
            ca_file: Some(ca.into()),
            hub_port: port,
            spool_dir: None,
            spool_max_mb: 64,
            spool_fsync: bridge_core::forwarder::FsyncPolicy::default(),
            metrics: Some(metrics.parse().unwrap()),
            log: "warn".into(),
        };
        let stop = tokio_util::sync::CancellationToken::new();
        let _ = bridge_core::runtime::run_module(bridge_modbus::Modbus::new(), args, stop).await;
    });
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn scrape(addr: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return out;
    };
    let _ = s
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let mut text = String::new();
    let _ = s.read_to_string(&mut text).await;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        if let Some((name, value)) = line.rsplit_once(' ')
            && let Ok(v) = value.parse::<f64>()
        {
            let family = name.split('{').next().unwrap_or(name).to_owned();
            *out.entry(family).or_default() += v;
        }
    }
    out
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if let Some(i) = a.iter().position(|x| x == "--child") {
        return child(a[i + 1].parse().unwrap(), &a[i + 2], &a[i + 3]);
    }
    let nums: Vec<u64> = a.iter().skip(1).filter_map(|x| x.parse().ok()).collect();
    let minutes = nums.first().copied().unwrap_or(60);
    let n = nums.get(1).copied().unwrap_or(500) as usize;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let sim = Sim::start(SimOptions::default()).await.unwrap();
        sim.hub.add_module("edge-gw", "modbus", SymmetricKey::from_base64(KEY).unwrap());
        sim.hub.set_desired("edge-gw/modbus", &devices(n, 0..0, 1000));
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.crt");
        std::fs::write(&ca, &sim.certs.ca_pem).unwrap();
        let metrics = format!("127.0.0.1:{}", bridge_e2e::free_port());
        let mut module = tokio::process::Command::new(std::env::current_exe().unwrap())
            .args(["--child", &sim.tls_addr.port().to_string(), &ca.display().to_string(), &metrics])
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let pid = module.id().unwrap();
        let mut feed = sim.hub.subscribe();
        let received = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let r = received.clone();
        tokio::spawn(async move {
            loop {
                match feed.recv().await {
                    Ok(_) => {
                        r.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(k)) => {
                        r.fetch_add(k, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(_) => break,
                }
            }
        });
        println!("soak: {minutes} min, {n} simulated Modbus devices x 5 points at 1 Hz, a fault every 2 min");
        println!("t_s,rss_kib,messages,fault");
        let start = Instant::now();
        let end = start + Duration::from_secs(minutes * 60);
        let mut next_sample = start;
        // A fault every 2 minutes; short runs (CI) get three, evenly spread.
        let period = Duration::from_secs((minutes * 20).clamp(20, 120));
        let mut next_fault = start + period / 2;
        let mut fault_no = 0u64;
        let mut rss = Vec::new();
        let mut fault_note = String::new();
        while Instant::now() < end {
            if let Ok(Some(status)) = module.try_wait() {
                println!("MODULE EXITED: {status}");
                break;
            }
            if Instant::now() >= next_fault {
                fault_no += 1;
                fault_note = match fault_no % 3 {
                    1 => {
                        sim.pause();
                        tokio::time::sleep(Duration::from_secs(15)).await;
                        sim.resume();
                        "edgeHub down 15 s".into()
                    }
                    2 => {
                        for k in 0..20u64 {
                            let interval = if k % 2 == 0 { 1000 } else { 2000 };
                            sim.hub.set_desired(
                                "edge-gw/modbus",
                                &json!({"devices": {"dev-0000": {"pollIntervalMs": interval}}}),
                            );
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        sim.hub.set_desired("edge-gw/modbus", &json!({"devices": {"dev-0000": {"pollIntervalMs": 1000}}}));
                        "20 desired patches".into()
                    }
                    _ => {
                        sim.hub.set_desired("edge-gw/modbus", &devices(n, 0..n.min(50), 1000));
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        sim.hub.set_desired("edge-gw/modbus", &devices(n, 0..0, 1000));
                        "50 devices off 30 s".into()
                    }
                };
                next_fault += period;
            }
            if Instant::now() >= next_sample {
                let kib = rss_kib(pid);
                rss.push(kib);
                sim.hub.clear_messages();
                println!(
                    "{},{},{},{}",
                    start.elapsed().as_secs(),
                    kib,
                    received.load(std::sync::atomic::Ordering::Relaxed),
                    std::mem::take(&mut fault_note)
                );
                next_sample += Duration::from_secs(10);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let m = scrape(&metrics).await;
        let get = |k: &str| m.get(k).copied().unwrap_or(-1.0);
        // Warm-up: the first 5 minutes (or the first third of a short run).
        let warm = rss.len().min(30).min(rss.len() / 3).max(1);
        let after = &rss[warm.min(rss.len().saturating_sub(1))..];
        let first = after.first().copied().unwrap_or(0) as f64;
        let last_avg = after.iter().rev().take(6).sum::<u64>() as f64 / after.len().clamp(1, 6) as f64;
        println!(
            "counters: messages {} polls {} poll failures {} spool pending {} spool dropped {} watchdog restarts {} hub connected {} module alive {}",
            received.load(std::sync::atomic::Ordering::Relaxed),
            get("edgebridge_modbus_polls_total"),
            get("edgebridge_modbus_poll_failures_total"),
            get("edgebridge_spool_pending_messages"),
            get("edgebridge_spool_dropped_total"),
            get("edgebridge_watchdog_restarts_total"),
            get("edgebridge_hub_connected"),
            module.try_wait().ok().flatten().is_none()
        );
        println!(
            "rss after warm-up: first {:.1} MiB, last minute {:.1} MiB, growth {:+.1} %",
            first / 1024.0,
            last_avg / 1024.0,
            (last_avg - first) / first.max(1.0) * 100.0
        );
    });
}
