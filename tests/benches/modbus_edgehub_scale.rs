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
use std::time::Duration;

use bridge_core::identity::SymmetricKey;
use bridge_e2e::scale::{bench_map, module_args, run_sampled, self_child, until_stdin_closes};
use edgehub_sim::{Sim, SimOptions};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const KEY: &str = "Y2FwdHVyZS10ZXN0LWtleS0wMTIzNDU2Nzg5YWJjZGVm";
const GROUP: &str =
    "8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw==";
const WARMUP: Duration = Duration::from_secs(8);
const WINDOW: Duration = Duration::from_secs(15);
const FIRST_HOST: [u8; 4] = [127, 1, 0, 1];

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
    until_stdin_closes().await;
}

/// Child: the module against the hub at `hub_port` (its CA in `ca`), measured.
async fn measure(hub_port: u16, ca: String) {
    let mut args = module_args("edge", "{deviceId}/{output}", "body", None);
    args.connection_string = Some(format!(
        "HostName=myhub.azure-devices.net;DeviceId=edge-gw;ModuleId=modbus;SharedAccessKey={KEY};GatewayHostName=localhost"
    ));
    args.ca_file = Some(ca);
    args.hub_port = hub_port;
    let m = run_sampled(args, WARMUP, WINDOW).await;
    println!(
        "{}",
        json!({
            "valuesPerSecond": m.values as f64 / m.secs,
            "pollsPerSecond": m.polls as f64 / m.secs,
            "cpuMicrosPerValue": m.cpu * 1e6 / m.values.max(1) as f64,
            "cpuPercentOfOneCore": m.cpu * 100.0 / m.secs,
            "rssMiB": m.rss_kib.0 as f64 / 1024.0,
            "peakRssMiB": m.rss_kib.1 as f64 / 1024.0,
            "published": m.published,
            "online": m.online,
        })
    );
}

/// Parent: one scenario.
async fn scenario(n: usize, device_mode: bool) {
    let dir = tempfile::tempdir().unwrap();
    let port = bridge_e2e::free_port();
    let (_farm, mut farm_out) = self_child(&["--farm".into(), n.to_string(), port.to_string()]);
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
    ]);
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
