//! Disk trouble under the spool, on a real small file system (a 1 MiB tmpfs mounted by
//! the test: as root, or through `sudo -n` otherwise; without either it fails): full, read-only (a read-only bind mount over the
//! spool directory) and removed while running. The module keeps forwarding from memory,
//! says so in the log, reported `spool.error` and metrics, never crashes, writes to disk
//! again when it recovers, and what is on disk stays readable.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bridge_core::identity::SymmetricKey;
use bridge_core::spool::{Spool, SpoolOptions};
use bridge_e2e::{ModbusRun, init_tracing, reported_until, run_modbus_with};
use edgehub_sim::{Sim, SimOptions};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const KEY: &str = "ZGlzay10ZXN0LWtleS0wMTIzNDU2Nzg5YWJjZGVmZ2hp";
const ID: &str = "edge-gw/modbus";
const T: Duration = Duration::from_secs(30);

/// Unmounts on drop, so a failing test leaves no mount behind.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let path = self.0.to_string_lossy().into_owned();
        let _ignored = privileged(&["umount", "-l", &path]).status();
    }
}

fn id(flag: &str) -> String {
    let out = Command::new("id").arg(flag).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `cmd` as root: directly when we are root, through `sudo -n` otherwise.
fn privileged(cmd: &[&str]) -> Command {
    if id("-u") == "0" {
        let mut c = Command::new(cmd[0]);
        c.args(&cmd[1..]);
        c
    } else {
        let mut c = Command::new("sudo");
        c.arg("-n").args(cmd);
        c
    }
}

fn run(cmd: &[&str]) {
    let status = privileged(cmd).status().unwrap();
    assert!(
        status.success(),
        "{cmd:?} failed (the disk test mounts a tmpfs: run as root or with passwordless sudo)"
    );
}

async fn metric(addr: std::net::SocketAddr, name: &str) -> Option<f64> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
}

async fn metric_until(addr: std::net::SocketAddr, name: &str, want: f64) {
    let deadline = std::time::Instant::now() + T;
    loop {
        if metric(addr, name).await == Some(want) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name} never became {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn telemetry(sim: &Sim) -> usize {
    sim.hub
        .messages()
        .iter()
        .filter(|m| m.output.as_deref() == Some("telemetry"))
        .count()
}

/// Fills the file system with a filler file until it is full.
fn fill(path: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 4096];
    while f.write_all(&chunk).and_then(|()| f.flush()).is_ok() {}
}

async fn flows(sim: &Sim, what: &str) {
    let before = telemetry(sim);
    let deadline = std::time::Instant::now() + T;
    while telemetry(sim) < before + 20 {
        assert!(
            std::time::Instant::now() < deadline,
            "telemetry stopped: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_read_only_or_removed_spool_directory_never_stops_telemetry() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    run(&[
        "mount",
        "-t",
        "tmpfs",
        "-o",
        &format!("size=1m,uid={},gid={}", id("-u"), id("-g")),
        "tmpfs",
        mnt.to_str().unwrap(),
    ]);
    let _mount = Mount(mnt.clone());
    let spool = mnt.join("spool");

    let sim = Sim::start(SimOptions::default()).await.unwrap();
    sim.hub
        .add_module("edge-gw", "modbus", SymmetricKey::from_base64(KEY).unwrap());
    let devices: serde_json::Map<String, Value> = (0..5)
        .map(|i| {
            (
                format!("m{i}"),
                json!({"map": "eastron-sdm120", "connection": {"type": "simulated"}, "pollIntervalMs": 100}),
            )
        })
        .collect();
    sim.hub.set_desired(ID, &json!({"devices": devices}));
    let ip = std::net::Ipv4Addr::new(127, 11, rand::random::<u8>(), rand::random::<u8>().max(1));
    let addr = std::net::TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap();
    let stop = run_modbus_with(
        &sim,
        "modbus",
        KEY,
        dir.path(),
        ModbusRun {
            spool_dir: Some(spool.clone()),
            metrics: Some(addr),
            ..ModbusRun::default()
        },
    )
    .await
    .unwrap();
    flows(&sim, "at start").await;
    metric_until(addr, "edgebridge_spool_disk_ok", 1.0).await;

    // Full.
    let filler = mnt.join("filler");
    fill(&filler);
    metric_until(addr, "edgebridge_spool_disk_ok", 0.0).await;
    let r = reported_until(&sim.hub, ID, T, |r| r["spool"]["error"].is_string()).await;
    assert!(
        r["spool"]["error"].as_str().unwrap().contains("full"),
        "{}",
        r["spool"]
    );
    flows(&sim, "disk full").await;
    std::fs::remove_file(&filler).unwrap();
    metric_until(addr, "edgebridge_spool_disk_ok", 1.0).await;
    reported_until(&sim.hub, ID, T, |r| r["spool"]["error"].is_null()).await;
    flows(&sim, "after the disk had room again").await;

    // Read-only: new files cannot be created in the spool directory.
    let spool_str = spool.to_str().unwrap().to_owned();
    run(&["mount", "--bind", &spool_str, &spool_str]);
    let ro = Mount(spool.clone());
    run(&["mount", "-o", "remount,bind,ro", &spool_str]);
    metric_until(addr, "edgebridge_spool_disk_ok", 0.0).await;
    let r = reported_until(&sim.hub, ID, T, |r| r["spool"]["error"].is_string()).await;
    assert!(
        r["spool"]["error"].as_str().unwrap().contains("read-only"),
        "{}",
        r["spool"]
    );
    flows(&sim, "read-only").await;
    drop(ro);
    metric_until(addr, "edgebridge_spool_disk_ok", 1.0).await;
    flows(&sim, "writable again").await;

    // Removed while running: noticed, recreated, written again.
    let failures = metric(addr, "edgebridge_spool_write_failures_total")
        .await
        .unwrap();
    std::fs::remove_dir_all(&spool).unwrap();
    let deadline = std::time::Instant::now() + T;
    while metric(addr, "edgebridge_spool_write_failures_total")
        .await
        .unwrap()
        <= failures
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the removal went unnoticed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    flows(&sim, "directory removed").await;
    metric_until(addr, "edgebridge_spool_disk_ok", 1.0).await;
    assert!(
        spool.join("watermark").exists() || spool.is_dir(),
        "not recreated"
    );

    // An outage at the end: what waits is on disk, readable, in order.
    sim.pause();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.cancel();
    tokio::time::sleep(Duration::from_secs(7)).await;
    let reopened = Spool::open(&SpoolOptions {
        dir: Some(spool.clone()),
        max_bytes: 64 << 20,
    })
    .unwrap();
    let stats = reopened.stats();
    println!(
        "disk: {} messages recovered after the outage, {} damaged records skipped",
        stats.recovered, stats.corrupt
    );
    assert!(stats.recovered >= 20, "{stats:?}");
    let mut seqs = Vec::new();
    let mut cursor = 0;
    while let Some((seq, _)) = reopened.next_from(cursor) {
        seqs.push(seq);
        cursor = seq + 1;
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
}
