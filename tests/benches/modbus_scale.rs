//! Benchmark (not a test): bridge-modbus polling N simulated Modbus TCP devices (20 points
//! each, 1 Hz) and publishing to a local MQTT broker (mosquitto), for N = 10, 100, 1000,
//! 2000. Prints CPU time per value, resident memory, Modbus requests per device per poll,
//! poll jitter, poll-to-publish latency and the share of values delivered.
//!
//! Each N runs in its own process; the simulated devices and the MQTT subscriber run in
//! further child processes, so CPU and memory are the module's alone.
//!
//! `cargo bench -p bridge-e2e --bench modbus_scale [-- 10 100]`

#![allow(clippy::unwrap_used, clippy::print_stdout)] // a benchmark prints its figures

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bridge_e2e::{Mosquitto, procstat, rfc3339_millis};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;
use tokio_util::sync::CancellationToken;

const WARMUP: Duration = Duration::from_secs(4);
const WINDOW: Duration = Duration::from_secs(12);

fn bench_map() -> Value {
    let mut points = serde_json::Map::new();
    let mut addr = 0;
    for i in 0..20 {
        let (t, w, unit) = match i % 4 {
            0 => ("f32", 2, "V"),
            1 => ("u16", 1, "A"),
            2 => ("i16", 1, "W"),
            _ => ("u32", 2, "kWh"),
        };
        let mut p = json!({"table": "holding", "address": addr, "type": t, "unit": unit});
        if t == "u16" {
            p["scale"] = json!(0.1);
        }
        points.insert(format!("p{i}"), p);
        addr += w;
    }
    json!({"name": "bench20", "points": points})
}

fn args() -> Vec<String> {
    std::env::args().collect()
}

async fn self_child(
    args: &[String],
) -> (
    tokio::process::Child,
    tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
) {
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    (child, lines)
}

/// Child: N simulated devices, one TCP server each; prints their ports.
async fn farm(n: usize) {
    let map = std::sync::Arc::new(bridge_modbus::map::parse_map(&bench_map(), "bench").unwrap());
    let stop = CancellationToken::new();
    let mut ports = Vec::new();
    for _ in 0..n {
        ports.push(
            bridge_modbus::simulator::start(map.clone(), stop.clone())
                .await
                .unwrap()
                .port(),
        );
    }
    println!("{}", serde_json::to_string(&ports).unwrap());
    // Live until the parent goes away (stdin closes).
    let mut sink = Vec::new();
    let _ = tokio::task::spawn_blocking(move || {
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink)
    })
    .await;
}

/// Child: subscribes to bench/#, prints {"count", "latency p50/p99/max ms"} after `secs`.
async fn subscribe(port: u16, secs: u64) {
    let mut opts = MqttOptions::new(
        format!("bench-sub-{}", std::process::id()),
        "127.0.0.1",
        port,
    );
    opts.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut el) = AsyncClient::new(opts, 1024);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    let mut lat = Vec::new();
    let mut count = 0u64;
    let mut ready = false;
    loop {
        let ev = tokio::select! {
            _ = tokio::time::sleep_until(deadline) => break,
            ev = el.poll() => ev,
        };
        match ev {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                client.subscribe("bench/#", QoS::AtLeastOnce).await.unwrap()
            }
            Ok(Event::Incoming(Packet::SubAck(_))) if !ready => {
                ready = true;
                println!("ready");
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                count += 1;
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_millis() as i64;
                let v: Value = serde_json::from_slice(&p.payload).unwrap_or(Value::Null);
                if let Some(t) = v["properties"]["iothub-creation-time-utc"]
                    .as_str()
                    .and_then(rfc3339_millis)
                {
                    lat.push(now - t);
                }
            }
            Ok(_) => {}
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    lat.sort_unstable();
    let q = |f: f64| {
        lat.get(((lat.len() as f64 - 1.0) * f) as usize)
            .copied()
            .unwrap_or(-1)
    };
    println!(
        "{}",
        json!({"count": count, "p50": q(0.5), "p99": q(0.99), "max": lat.last().copied().unwrap_or(-1)})
    );
}

/// Child: one measurement for N devices against the broker on `port`.
async fn measure(n: usize, port: u16) {
    let (_farm, mut farm_out) = self_child(&["--farm".into(), n.to_string()]).await;
    let ports: Vec<u16> =
        serde_json::from_str(&farm_out.next_line().await.unwrap().unwrap()).unwrap();
    let total_secs = (WARMUP + WINDOW).as_secs() + 6;
    let (_sub, mut sub_out) = self_child(&[
        "--subscribe".into(),
        port.to_string(),
        total_secs.to_string(),
    ])
    .await;
    assert_eq!(sub_out.next_line().await.unwrap().as_deref(), Some("ready"));
    let devices: BTreeMap<String, Value> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| (format!("dev-{i:04}"), json!({"map": "bench20", "connection": {"type": "tcp", "host": "127.0.0.1", "port": p}, "pollIntervalMs": 1000, "timeoutMs": 1000})))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        json!({"maps": {"bench20": bench_map()}, "devices": devices}).to_string(),
    )
    .unwrap();
    let module = std::sync::Arc::new(bridge_modbus::Modbus::new());
    let args = bridge_core::runtime::CommonArgs {
        config: Some(config),
        upstream: Some(format!("mqtt://127.0.0.1:{port}")),
        topic_template: "bench/{deviceId}/{output}".into(),
        mqtt_payload: "envelope".into(),
        connection_string: None,
        connection_string_file: None,
        ca_file: None,
        hub_port: 8883,
        spool_dir: None,
        spool_max_mb: 64,
        metrics: None,
        spool_fsync: bridge_core::forwarder::FsyncPolicy::default(),
        log: "warn".into(),
    };
    let stop = CancellationToken::new();
    let run = tokio::spawn(bridge_core::runtime::run_module(
        SharedModbus(module.clone()),
        args,
        stop.clone(),
    ));
    tokio::time::sleep(WARMUP).await;
    let sum = |f: fn(&bridge_modbus::poller::PollStats) -> u64| {
        module.stats().values().map(|s| f(s)).sum::<u64>()
    };
    let (cpu0, polls0, req0, values0, late0) = (
        procstat::cpu_seconds(),
        sum(|s| s.polls.load(Ordering::Relaxed)),
        sum(|s| s.requests.load(Ordering::Relaxed)),
        sum(|s| s.values.load(Ordering::Relaxed)),
        sum(|s| s.lateness_us.load(Ordering::Relaxed)),
    );
    let t0 = Instant::now();
    tokio::time::sleep(WINDOW).await;
    let secs = t0.elapsed().as_secs_f64();
    let cpu = procstat::cpu_seconds() - cpu0;
    let polls = sum(|s| s.polls.load(Ordering::Relaxed)) - polls0;
    let requests = sum(|s| s.requests.load(Ordering::Relaxed)) - req0;
    let values = sum(|s| s.values.load(Ordering::Relaxed)) - values0;
    let lateness = sum(|s| s.lateness_us.load(Ordering::Relaxed)) - late0;
    let max_late = module
        .stats()
        .values()
        .map(|s| s.max_lateness_us.load(Ordering::Relaxed))
        .max()
        .unwrap_or(0);
    let (rss, peak) = procstat::rss_kib();
    stop.cancel();
    let _ = run.await;
    let published_msgs =
        sum(|s| s.polls.load(Ordering::Relaxed)) - sum(|s| s.failures.load(Ordering::Relaxed));
    let sub: Value = serde_json::from_str(&sub_out.next_line().await.unwrap().unwrap_or_default())
        .unwrap_or(Value::Null);
    // Status messages (one per device at start) also arrive on bench/#.
    let received = sub["count"].as_u64().unwrap_or(0).saturating_sub(n as u64);
    println!(
        "{}",
        json!({
            "devices": n,
            "valuesPerSecond": values as f64 / secs,
            "cpuMicrosPerValue": cpu * 1e6 / values.max(1) as f64,
            "cpuPercentOfOneCore": cpu * 100.0 / secs,
            "requestsPerDevicePerPoll": requests as f64 / polls.max(1) as f64,
            "meanPollJitterMs": lateness as f64 / polls.max(1) as f64 / 1000.0,
            "maxPollJitterMs": max_late as f64 / 1000.0,
            "latencyMs": {"p50": sub["p50"], "p99": sub["p99"], "max": sub["max"]},
            "deliveredPercent": received as f64 * 100.0 / published_msgs.max(1) as f64,
            "rssMiB": rss as f64 / 1024.0,
            "peakRssMiB": peak as f64 / 1024.0,
        })
    );
}

/// Lets the bench keep a handle on the module's stats while the runtime owns it.
struct SharedModbus(std::sync::Arc<bridge_modbus::Modbus>);

impl bridge_core::runtime::Protocol for SharedModbus {
    type Config = bridge_modbus::config::ModbusConfig;
    fn name(&self) -> &'static str {
        "bridge-modbus"
    }
    fn parse_config(&self, doc: &Value) -> Result<Self::Config, bridge_core::config::ConfigErrors> {
        self.0.parse_config(doc)
    }
    fn demo_config(&self) -> Value {
        self.0.demo_config()
    }
    async fn run(
        self: std::sync::Arc<Self>,
        cx: bridge_core::runtime::ModuleContext<Self::Config>,
    ) {
        self.0.clone().run(cx).await;
    }
}

fn main() {
    let a = args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if a.iter().any(|x| x == "--list") {
        return;
    }
    if let Some(i) = a.iter().position(|x| x == "--farm") {
        return rt.block_on(farm(a[i + 1].parse().unwrap()));
    }
    if let Some(i) = a.iter().position(|x| x == "--subscribe") {
        return rt.block_on(subscribe(
            a[i + 1].parse().unwrap(),
            a[i + 2].parse().unwrap(),
        ));
    }
    if let Some(i) = a.iter().position(|x| x == "--measure") {
        // The same runtime the module binary uses.
        let rt = bridge_core::runtime::module_runtime().unwrap();
        return rt.block_on(measure(
            a[i + 1].parse().unwrap(),
            a[i + 2].parse().unwrap(),
        ));
    }
    let sizes: Vec<usize> = a.iter().skip(1).filter_map(|x| x.parse().ok()).collect();
    let sizes = if sizes.is_empty() {
        vec![10, 100, 1000, 2000]
    } else {
        sizes
    };
    rt.block_on(async {
        let broker = Mosquitto::start().await.unwrap();
        println!("modbus_scale: 20 points per device, 1 Hz, Modbus TCP to simulated devices, QoS 1 to mosquitto {}", broker.port);
        for n in sizes {
            let (_c, mut out) = self_child(&["--measure".into(), n.to_string(), broker.port.to_string()]).await;
            let line = out.next_line().await.unwrap().unwrap_or_default();
            let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
            println!(
                "  N={:>5}: {:>8.0} values/s  CPU {:>5.2} µs/value ({:>4.1} % of a core)  requests/device/poll {:.2}  jitter mean {:.1} ms max {:.0} ms  latency p50 {} ms p99 {} ms  delivered {:.2} %  RSS {:.1} MiB (peak {:.1})",
                n,
                v["valuesPerSecond"].as_f64().unwrap_or(0.0),
                v["cpuMicrosPerValue"].as_f64().unwrap_or(0.0),
                v["cpuPercentOfOneCore"].as_f64().unwrap_or(0.0),
                v["requestsPerDevicePerPoll"].as_f64().unwrap_or(0.0),
                v["meanPollJitterMs"].as_f64().unwrap_or(0.0),
                v["maxPollJitterMs"].as_f64().unwrap_or(0.0),
                v["latencyMs"]["p50"],
                v["latencyMs"]["p99"],
                v["deliveredPercent"].as_f64().unwrap_or(0.0),
                v["rssMiB"].as_f64().unwrap_or(0.0),
                v["peakRssMiB"].as_f64().unwrap_or(0.0),
            );
        }
    });
}
