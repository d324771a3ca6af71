//! Benchmark (not a test): telemetry messages per second through bridge-core's spool and
//! forwarder to the edgeHub emulator over TLS, with the spool in memory and on disk, and
//! this process's resident memory. The emulator runs in a child process so the figures
//! are the module side only.
//!
//! `cargo bench -p bridge-e2e --bench telemetry_throughput`

#![allow(clippy::unwrap_used, clippy::print_stdout)] // a benchmark prints its figures

use std::time::{Duration, Instant};

use bridge_core::forwarder::{ForwarderOptions, spawn_forwarder};
use bridge_core::hub::{SessionOptions, spawn_session};
use bridge_core::identity::{Credentials, HubIdentity, Signer, SymmetricKey, TrustRoots};
use bridge_core::message::Message;
use bridge_core::methods::MethodRouter;
use bridge_core::spool::{Spool, SpoolOptions};
use bridge_core::upstream;
use bridge_e2e::procstat;
use serde_json::json;
use tokio::io::AsyncBufReadExt;
use tokio_util::sync::CancellationToken;

const KEY: &str = "Y2FwdHVyZS10ZXN0LWtleS0wMTIzNDU2Nzg5YWJjZGVm";

async fn serve_sim() {
    let sim = edgehub_sim::Sim::start(edgehub_sim::SimOptions::default())
        .await
        .unwrap();
    sim.hub
        .add_module("edge-gw", "bench", SymmetricKey::from_base64(KEY).unwrap());
    let dir = std::env::temp_dir().join(format!("bench-sim-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ca.crt"), &sim.certs.ca_pem).unwrap();
    println!("{} {}", sim.tls_addr.port(), dir.join("ca.crt").display());
    let mut feed = sim.hub.subscribe();
    let mut n = 0u64;
    loop {
        if feed.recv().await.is_ok() {
            n += 1;
        }
        if n.is_multiple_of(10_000) {
            // Keep memory flat: the bench does not need the record.
            sim.hub.clear_messages();
        }
    }
}

async fn run(port: u16, ca: &str, disk: Option<&std::path::Path>, count: u64) -> f64 {
    let creds = Credentials {
        identity: HubIdentity {
            hub_hostname: "myhub.azure-devices.net".into(),
            device_id: "edge-gw".into(),
            module_id: Some("bench".into()),
            connect_host: "localhost".into(),
            port,
            model_id: None,
        },
        signer: Signer::Key(SymmetricKey::from_base64(KEY).unwrap()),
        trust: TrustRoots::Pem(std::fs::read_to_string(ca).unwrap()),
    };
    let stop = CancellationToken::new();
    let (link, end) = upstream::link(256);
    let _session = spawn_session(
        creds,
        SessionOptions::default(),
        MethodRouter::new(),
        None,
        end,
        stop.clone(),
    );
    let spool = Spool::open(&SpoolOptions {
        dir: disk.map(ToOwned::to_owned),
        max_bytes: 256 << 20,
    })
    .unwrap();
    let (tx, fwd) = spawn_forwarder(
        spool,
        link,
        ForwarderOptions {
            window: 128,
            ..ForwarderOptions::default()
        },
        stop.clone(),
    );
    let started = Instant::now();
    for n in 0..count {
        let body = json!({"voltage": 230.1, "current": 5.2, "power": 1196.5, "n": n});
        tx.send(Message::json("telemetry", &body).for_device("meter-1"))
            .await
            .unwrap();
    }
    let mut stats = fwd.stats.clone();
    loop {
        let s = *stats.borrow_and_update();
        if s.pending == 0 && started.elapsed() > Duration::from_millis(100) {
            break;
        }
        let _ = tokio::time::timeout(Duration::from_millis(600), stats.changed()).await;
    }
    let secs = started.elapsed().as_secs_f64();
    stop.cancel();
    count as f64 / secs
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--serve-sim") {
        serve_sim().await;
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return; // cargo bench --list
    }
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .arg("--serve-sim")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next_line().await.unwrap().unwrap();
    let (port, ca) = first.split_once(' ').unwrap();
    let port: u16 = port.parse().unwrap();
    let count = 50_000;
    let cpu0 = procstat::cpu_seconds();
    let mem = run(port, ca, None, count).await;
    let cpu1 = procstat::cpu_seconds();
    let dir = tempfile::tempdir().unwrap();
    let disk = run(port, ca, Some(dir.path()), count).await;
    let cpu2 = procstat::cpu_seconds();
    let (rss, peak) = procstat::rss_kib();
    println!(
        "telemetry_throughput: {count} messages (~80-byte JSON bodies, QoS 1, TLS, each released on PUBACK)"
    );
    println!(
        "  memory spool: {mem:>9.0} msg/s   CPU {:.1} µs/msg",
        (cpu1 - cpu0) * 1e6 / count as f64
    );
    println!(
        "  disk spool:   {disk:>9.0} msg/s   CPU {:.1} µs/msg",
        (cpu2 - cpu1) * 1e6 / count as f64
    );
    println!(
        "  resident memory: {rss} KiB now, {peak} KiB peak (module side only; emulator in a child process)"
    );
}
