//! Benchmark (not a test): bridge-ble's resident memory and CPU with 200 advertising BTHome
//! devices (each changing its advertisement every second) on the python-dbusmock BlueZ.
//!
//! `cargo bench -p bridge-ble --bench ble_rss [-- 200]`

#![allow(clippy::unwrap_used, clippy::print_stdout)] // a benchmark prints its figures

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn proc_field(pid: u32, file: &str, name: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (t(11) + t(12)) / 100.0
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200);
    let secs = 20.0;
    let dir = tempfile::tempdir().unwrap();
    let address = format!("unix:path={}", dir.path().join("bus.sock").display());
    let mut daemon = Command::new("dbus-daemon")
        .args(["--session", "--nofork", &format!("--address={address}")])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut mock = Command::new("/usr/bin/python3")
        .args(["-m", "dbusmock", "--system", "--template"])
        .arg(here.join("tests/bluez_le_template.py"))
        .env("DBUS_SYSTEM_BUS_ADDRESS", &address)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        Command::new("gdbus")
            .args(["wait", "--system", "--timeout", "10", "org.bluez"])
            .env("DBUS_SYSTEM_BUS_ADDRESS", &address)
            .status()
            .unwrap()
            .success()
    );
    let mut driver = Command::new("/usr/bin/python3")
        .arg(here.join("benches/drive_adverts.py"))
        .args([n.to_string(), secs.to_string()])
        .env("DBUS_SYSTEM_BUS_ADDRESS", &address)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(driver.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    let cfg = dir.path().join("ble.json");
    std::fs::write(
        &cfg,
        r#"{"discovery": {"enabled": true, "maps": ["bthome-v2"]}}"#,
    )
    .unwrap();
    let mut module = Command::new(env!("CARGO_BIN_EXE_bridge-ble"))
        .args(["--upstream", "stdout", "--log", "warn", "--config"])
        .arg(&cfg)
        .env("DBUS_SYSTEM_BUS_ADDRESS", &address)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    let out = module.stdout.take().unwrap();
    std::thread::spawn(move || {
        for _ in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    });
    let pid = module.id();
    let t0 = Instant::now();
    let mut peak = 0;
    while t0.elapsed().as_secs_f64() < secs {
        std::thread::sleep(Duration::from_millis(500));
        peak = peak.max(proc_field(pid, "status", "VmRSS:"));
    }
    let cpu = cpu_secs(pid);
    let msgs = count.load(Ordering::Relaxed);
    println!(
        "ble_rss: {n} BTHome devices advertising once a second for {secs} s (python-dbusmock BlueZ)"
    );
    println!(
        "  messages published: {msgs}, CPU {:.2} s ({:.1} µs per message)",
        cpu,
        cpu * 1e6 / msgs.max(1) as f64
    );
    println!("  resident memory: peak {:.1} MiB", peak as f64 / 1024.0);
    for child in [&mut module, &mut driver, &mut mock, &mut daemon] {
        let _ = child.kill();
        let _ = child.wait();
    }
}
