//! Benchmark (not a test): bridge-modbus polling N simulated Modbus TCP devices (20 points
//! each, 1 Hz) and publishing to a local MQTT broker (mosquitto), for N = 10, 100, 1000,
//! 2000. Prints CPU time per value, resident memory, Modbus requests per device per poll,
//! poll jitter, poll-to-publish latency and the share of values delivered.
//!
//! Each N runs in its own process; the simulated devices and the MQTT subscriber run in
//! further child processes, so CPU and memory are the module's alone.
//!
//! `cargo bench -p bridge-e2e --bench modbus_scale [-- 10 100]`; `DEAD_DEVICES=1` adds a
//! device that accepts connections and never answers, to see whether it moves the
//! others' poll jitter (p99 of |poll-to-poll - interval| over every live device, polls
//! after the warm-up).
//! `RT_PRIORITY=10` runs the module's process under `chrt -f 10` (root), so other load
//! on the machine does not move its timers.

#![allow(clippy::unwrap_used, clippy::print_stdout)] // a benchmark prints its figures

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bridge_e2e::scale::{bench_map, module_args, run_sampled, self_child, until_stdin_closes};
use bridge_e2e::{Mosquitto, rfc3339_millis};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const WARMUP: Duration = Duration::from_secs(4);
const WINDOW: Duration = Duration::from_secs(12);

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
    until_stdin_closes().await;
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
    let mut jitter = Vec::new();
    let mut last_poll: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
    let mut count = 0u64;
    let mut ready = false;
    // Jitter counts polls after the warm-up: a device's first poll-to-poll gap is its
    // phase offset (devices are spread over the interval on purpose), not jitter.
    let jitter_from = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        + WARMUP.as_millis() as i64;
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
                    // Poll jitter: how far each poll of a device is from one interval
                    // after its previous one (creation time = poll time).
                    if v["output"] == "telemetry"
                        && let Some(id) = v["deviceId"].as_str()
                        && let Some(prev) = last_poll.insert(id.to_owned(), t)
                        && prev >= jitter_from
                    {
                        jitter.push((t - prev - 1000).abs());
                    }
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
    jitter.sort_unstable();
    let jitter_p99 = jitter
        .get(((jitter.len() as f64 - 1.0) * 0.99) as usize)
        .copied()
        .unwrap_or(-1);
    println!(
        "{}",
        json!({"count": count, "p50": q(0.5), "p99": q(0.99), "max": lat.last().copied().unwrap_or(-1), "jitterP99": jitter_p99})
    );
}

/// Child: one measurement for N devices against the broker on `port`.
async fn measure(n: usize, port: u16) {
    let (_farm, mut farm_out) = self_child(&["--farm".into(), n.to_string()]);
    let ports: Vec<u16> =
        serde_json::from_str(&farm_out.next_line().await.unwrap().unwrap()).unwrap();
    let total_secs = (WARMUP + WINDOW).as_secs() + 6;
    let (_sub, mut sub_out) = self_child(&[
        "--subscribe".into(),
        port.to_string(),
        total_secs.to_string(),
    ]);
    assert_eq!(sub_out.next_line().await.unwrap().as_deref(), Some("ready"));
    let mut devices: BTreeMap<String, Value> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| (format!("dev-{i:04}"), json!({"map": "bench20", "connection": {"type": "tcp", "host": "127.0.0.1", "port": p}, "pollIntervalMs": 1000, "timeoutMs": 1000})))
        .collect();
    // DEAD_DEVICES=k adds k devices that accept a connection and never answer (the
    // worst kind of dead: every poll costs a timeout and the link is reopened).
    let dead: usize = std::env::var("DEAD_DEVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    for i in 0..dead {
        devices.insert(
            format!("dead-{i:02}"),
            json!({"map": "bench20", "connection": {"type": "tcp", "host": "127.0.0.1", "port": silent_port}, "pollIntervalMs": 1000, "timeoutMs": 1000}),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        json!({"maps": {"bench20": bench_map()}, "devices": devices}).to_string(),
    )
    .unwrap();
    let upstream = format!("mqtt://127.0.0.1:{port}");
    let args = module_args(
        &upstream,
        "bench/{deviceId}/{output}",
        "envelope",
        Some(config),
    );
    let m = run_sampled(args, WARMUP, WINDOW).await;
    let sub: Value = serde_json::from_str(&sub_out.next_line().await.unwrap().unwrap_or_default())
        .unwrap_or(Value::Null);
    // Status messages (one per device at start) also arrive on bench/#.
    let received = sub["count"].as_u64().unwrap_or(0).saturating_sub(n as u64);
    println!(
        "{}",
        json!({
            "devices": n,
            "valuesPerSecond": m.values as f64 / m.secs,
            "cpuMicrosPerValue": m.cpu * 1e6 / m.values.max(1) as f64,
            "cpuPercentOfOneCore": m.cpu * 100.0 / m.secs,
            "requestsPerDevicePerPoll": m.requests as f64 / m.polls.max(1) as f64,
            "meanPollJitterMs": m.lateness_us as f64 / m.polls.max(1) as f64 / 1000.0,
            "maxPollJitterMs": m.max_lateness_us as f64 / 1000.0,
            "latencyMs": {"p50": sub["p50"], "p99": sub["p99"], "max": sub["max"]},
            "pollJitterP99Ms": sub["jitterP99"],
            "deliveredPercent": received as f64 * 100.0 / m.published.max(1) as f64,
            "rssMiB": m.rss_kib.0 as f64 / 1024.0,
            "peakRssMiB": m.rss_kib.1 as f64 / 1024.0,
        })
    );
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
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
            let (_c, mut out) = self_child(&["--measure".into(), n.to_string(), broker.port.to_string()]);
            let line = out.next_line().await.unwrap().unwrap_or_default();
            let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
            println!(
                "  N={:>5}: {:>8.0} values/s  CPU {:>5.2} µs/value ({:>4.1} % of a core)  requests/device/poll {:.2}  jitter mean {:.1} ms max {:.0} ms p99 {} ms  latency p50 {} ms p99 {} ms  delivered {:.2} %  RSS {:.1} MiB (peak {:.1})",
                n,
                v["valuesPerSecond"].as_f64().unwrap_or(0.0),
                v["cpuMicrosPerValue"].as_f64().unwrap_or(0.0),
                v["cpuPercentOfOneCore"].as_f64().unwrap_or(0.0),
                v["requestsPerDevicePerPoll"].as_f64().unwrap_or(0.0),
                v["meanPollJitterMs"].as_f64().unwrap_or(0.0),
                v["maxPollJitterMs"].as_f64().unwrap_or(0.0),
                v["pollJitterP99Ms"],
                v["latencyMs"]["p50"],
                v["latencyMs"]["p99"],
                v["deliveredPercent"].as_f64().unwrap_or(0.0),
                v["rssMiB"].as_f64().unwrap_or(0.0),
                v["peakRssMiB"].as_f64().unwrap_or(0.0),
            );
        }
    });
}
