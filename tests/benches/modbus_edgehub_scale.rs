//! Benchmark (not a test): bridge-modbus at scale through edgehub-sim over TLS, as under
//! IoT Edge: configured through the module twin (one device group, well inside the 32 KB
//! of desired properties), 20 points per device at 1 Hz from simulated Modbus TCP
//! devices (one loopback address each, one port: a fleet on a LAN), telemetry through
//! the module's MQTT session to the emulator.
//!
//! - module mode: N devices (default 2000) on the module identity;
//! - device mode: 90 devices, each its own IoT Hub device with its own MQTT session.
//!
//! Prints CPU per value and RSS of the module's process alone (the devices and the hub
//! run in other processes), the share of messages delivered to the hub, and the size of
//! the desired and reported sections as IoT Hub counts them (refused reported patches
//! too: the emulator enforces the limits).
//!
//! `cargo bench -p bridge-e2e --bench modbus_edgehub_scale [-- 2000 device90]`

#![allow(clippy::unwrap_used, clippy::print_stdout)] // a benchmark prints its figures

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bridge_core::identity::SymmetricKey;
use bridge_e2e::procstat;
use edgehub_sim::{Sim, SimOptions};
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;
use tokio_util::sync::CancellationToken;

const KEY: &str = "Y2FwdHVyZS10ZXN0LWtleS0wMTIzNDU2Nzg5YWJjZGVm";
const GROUP: &str =
    "8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw==";
const WARMUP: Duration = Duration::from_secs(8);
const WINDOW: Duration = Duration::from_secs(15);
const FIRST_HOST: [u8; 4] = [127, 1, 0, 1];

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

fn host(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::from(FIRST_HOST)) + i as u32)
}

/// The twin's desired properties: one group for the whole fleet.
fn desired(n: usize, port: u16, device_mode: Option<&std::path::Path>) -> Value {
    let mut doc = json!({
        "maps": {"bench20": bench_map()},
        "groups": {"fleet": {
            "map": "bench20",
            "connection": {"type": "tcp", "port": port},
            "hosts": [format!("{}-{}", host(0), host(n - 1))],
            "idPattern": "dev-{n:04}",
            "pollIntervalMs": 1000,
            "timeoutMs": 1000
        }}
    });
    if let Some(key_file) = device_mode {
        doc["identity"] = json!({"mode": "device", "keys": {"source": "groupKey", "file": key_file},
                                 "maxConnections": 90, "connectIntervalMs": 20});
    }
    doc
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

/// Child: N simulated devices on 127.1.x.y:port.
async fn farm(n: usize, port: u16) {
    let map = std::sync::Arc::new(bridge_modbus::map::parse_map(&bench_map(), "bench").unwrap());
    let stop = CancellationToken::new();
    for i in 0..n {
        bridge_modbus::simulator::start_at(
            map.clone(),
            SocketAddr::from((host(i), port)),
            stop.clone(),
        )
        .await
        .unwrap();
    }
    println!("ready");
    let mut sink = Vec::new();
    let _ = tokio::task::spawn_blocking(move || {
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink)
    })
    .await;
}

/// Child: the module against the hub at `hub_port` (its CA in `ca`), measured.
async fn measure(hub_port: u16, ca: String) {
    let module = std::sync::Arc::new(bridge_modbus::Modbus::new());
    let args = bridge_core::runtime::CommonArgs {
        config: None,
        upstream: Some("edge".into()),
        topic_template: "{deviceId}/{output}".into(),
        mqtt_payload: "body".into(),
        connection_string: Some(format!(
            "HostName=myhub.azure-devices.net;DeviceId=edge-gw;ModuleId=modbus;SharedAccessKey={KEY};GatewayHostName=localhost"
        )),
        connection_string_file: None,
        ca_file: Some(ca),
        hub_port,
        spool_dir: None,
        spool_max_mb: 64,
        spool_fsync: bridge_core::forwarder::FsyncPolicy::default(),
        metrics: None,
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
    let (cpu0, values0, polls0) = (
        procstat::cpu_seconds(),
        sum(|s| s.values.load(Ordering::Relaxed)),
        sum(|s| s.polls.load(Ordering::Relaxed)),
    );
    let t0 = Instant::now();
    tokio::time::sleep(WINDOW).await;
    let secs = t0.elapsed().as_secs_f64();
    let cpu = procstat::cpu_seconds() - cpu0;
    let values = sum(|s| s.values.load(Ordering::Relaxed)) - values0;
    let polls = sum(|s| s.polls.load(Ordering::Relaxed)) - polls0;
    let (rss, peak) = procstat::rss_kib();
    let online = sum(|s| s.online.load(Ordering::Relaxed));
    stop.cancel();
    let _ = run.await;
    let published =
        sum(|s| s.polls.load(Ordering::Relaxed)) - sum(|s| s.failures.load(Ordering::Relaxed));
    println!(
        "{}",
        json!({
            "valuesPerSecond": values as f64 / secs,
            "pollsPerSecond": polls as f64 / secs,
            "cpuMicrosPerValue": cpu * 1e6 / values.max(1) as f64,
            "cpuPercentOfOneCore": cpu * 100.0 / secs,
            "rssMiB": rss as f64 / 1024.0,
            "peakRssMiB": peak as f64 / 1024.0,
            "published": published,
            "online": online,
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

/// Parent: one scenario.
async fn scenario(n: usize, device_mode: bool) {
    let dir = tempfile::tempdir().unwrap();
    let port = bridge_e2e::free_port();
    let (_farm, mut farm_out) =
        self_child(&["--farm".into(), n.to_string(), port.to_string()]).await;
    assert_eq!(
        farm_out.next_line().await.unwrap().as_deref(),
        Some("ready")
    );
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    sim.hub
        .add_module("edge-gw", "modbus", SymmetricKey::from_base64(KEY).unwrap());
    let key_file = dir.path().join("group.key");
    std::fs::write(&key_file, GROUP).unwrap();
    if device_mode {
        let group = SymmetricKey::from_base64(GROUP).unwrap();
        for i in 1..=n {
            let id = format!("dev-{i:04}");
            sim.hub.add_device(&id, group.derive(&id));
        }
    }
    let doc = desired(n, port, device_mode.then_some(key_file.as_path()));
    let desired_size = edgehub_sim::limits::section_size(&doc);
    sim.hub
        .try_set_desired("edge-gw/modbus", &doc)
        .expect("the configuration fits in the twin");
    let ca = dir.path().join("ca.crt");
    std::fs::write(&ca, &sim.certs.ca_pem).unwrap();
    let (mut child, mut out) = self_child(&[
        "--measure".into(),
        sim.tls_addr.port().to_string(),
        ca.display().to_string(),
    ])
    .await;
    let line = out.next_line().await.unwrap().unwrap_or_default();
    let _ = child.wait().await;
    let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
    let received = sim
        .hub
        .messages()
        .iter()
        .filter(|m| m.output.as_deref() == Some("telemetry"))
        .count();
    let sessions = sim.hub.connect_count();
    let refused_connects = sim.hub.refusals().len();
    let reported = sim.hub.twin("edge-gw/modbus")["reported"].clone();
    let reported_size = edgehub_sim::limits::section_size(&reported);
    let health_entries = reported["deviceHealth"].as_object().map_or(0, |m| m.len());
    let published = v["published"].as_u64().unwrap_or(0);
    println!(
        "  {} N={n:>5}: {:>8.0} values/s  CPU {:>5.2} µs/value ({:>4.1} % of a core)  RSS {:.1} MiB (peak {:.1})  delivered {received}/{published} = {:.2} %  online {}  MQTT sessions opened {sessions} (refused {refused_connects})  desired {desired_size} B  reported {reported_size} B ({health_entries} deviceHealth entries, {} reported patches refused)",
        if device_mode {
            "device mode"
        } else {
            "module mode"
        },
        v["valuesPerSecond"].as_f64().unwrap_or(0.0),
        v["cpuMicrosPerValue"].as_f64().unwrap_or(0.0),
        v["cpuPercentOfOneCore"].as_f64().unwrap_or(0.0),
        v["rssMiB"].as_f64().unwrap_or(0.0),
        v["peakRssMiB"].as_f64().unwrap_or(0.0),
        received as f64 * 100.0 / published.max(1) as f64,
        v["online"],
        sim.hub.refused_reported_patches(),
    );
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.iter().any(|x| x == "--list") {
        return;
    }
    if let Some(i) = a.iter().position(|x| x == "--farm") {
        let rt = tokio::runtime::Runtime::new().unwrap();
        return rt.block_on(farm(a[i + 1].parse().unwrap(), a[i + 2].parse().unwrap()));
    }
    if let Some(i) = a.iter().position(|x| x == "--measure") {
        // The same runtime the module binary uses.
        let rt = bridge_core::runtime::module_runtime().unwrap();
        return rt.block_on(measure(a[i + 1].parse().unwrap(), a[i + 2].clone()));
    }
    let mut runs: Vec<(usize, bool)> = a
        .iter()
        .skip(1)
        .filter_map(|x| match x.strip_prefix("device") {
            Some(n) => n.parse().ok().map(|n| (n, true)),
            None => x.parse().ok().map(|n| (n, false)),
        })
        .collect();
    if runs.is_empty() {
        runs = vec![(2000, false), (90, true)];
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    println!(
        "modbus_edgehub_scale: 20 points per device at 1 Hz, simulated Modbus TCP devices, through edgehub-sim over TLS (QoS 1), configured through the twin ({} s warm-up, {} s window)",
        WARMUP.as_secs(),
        WINDOW.as_secs()
    );
    rt.block_on(async {
        for (n, device_mode) in runs {
            scenario(n, device_mode).await;
        }
    });
}
