//! Benchmark (not a test): bridge-ble's CPU per forwarded message, resident memory and
//! delivery with many advertising devices (BTHome, Ruuvi RAWv2 and pvvx in turn) on the
//! python-dbusmock BlueZ. The advertisements are emitted inside the mock
//! (`benches/bluez_bench_template.py`), one `PropertiesChanged` each as bluetoothd sends
//! them, every one a new reading.
//!
//! `cargo bench -p bridge-ble --bench ble_rss [-- DEVICES RATE SECONDS MODE]`
//! Without arguments: 1000 devices at 1 Hz for 60 s, active then passive, then 1000
//! devices sharing 5000 advertisements/s for 20 s. Set `PERF=1` to record the module with
//! `perf record` during the first run and print the top of `perf report`.

#![allow(clippy::unwrap_used, clippy::print_stdout)] // a benchmark prints its figures

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
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

fn busctl(address: &str, args: &[&str]) -> String {
    let out = Command::new("busctl")
        .arg(format!("--address={address}"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "busctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn mock(address: &str, method: &str, sig: &str, args: &[&str]) -> String {
    let mut all = vec![
        "call",
        "--",
        "org.bluez",
        "/",
        "org.bluez.Mock",
        method,
        sig,
    ];
    all.extend(args);
    busctl(address, &all)
}

fn scrape(addr: std::net::SocketAddr, name: &str) -> f64 {
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return f64::NAN;
    };
    s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(f64::NAN)
}

/// Telemetry seen on the module's stdout.
#[derive(Default)]
struct Seen {
    telemetry: u64,
    /// (device, temperature) pairs: distinct readings.
    distinct: HashSet<(String, String)>,
}

/// Which part of the module a sampled symbol belongs to.
fn part(sym: &str, kernel: bool) -> &'static str {
    let has = |s: &str| sym.contains(s);
    if kernel {
        "kernel (syscalls, wake-ups, pipe and socket I/O)"
    } else if has("bridge_ble::signals") {
        "bridge-ble signal parse, cache, queue"
    } else if has("bridge_ble::adverts") || has("bridge_ble::custom") {
        "bridge-ble decoders"
    } else if has("bridge_ble") {
        "bridge-ble scanner (dispatch, dedup, presence, report, body)"
    } else if has("bridge_core") {
        "bridge-core (message, spool, forwarder, stdout upstream)"
    } else if has("dbus") {
        "libdbus (socket reads, message unmarshalling) and dbus-rs"
    } else if has("malloc") || has("free") || has("_int_") || has("unlink_chunk") {
        "allocator"
    } else if has("serde") || has("fmt") || has("zmij") || has("ryu") {
        "JSON and formatting"
    } else if has("tokio") || has("mio") {
        "tokio runtime"
    } else if has("hash") || has("memcmp") || has("memmove") || has("memcpy") || has("BTree") {
        "maps, compares, copies (shared)"
    } else {
        "other"
    }
}

/// Where `PERF=1` keeps the recording (for `perf report -i`).
fn perf_data() -> std::path::PathBuf {
    std::env::temp_dir().join("ble_rss.perf.data")
}

struct Run {
    n: usize,
    rate: f64,
    secs: f64,
    passive: bool,
}

fn run(r: &Run, perf: bool) {
    let dir = tempfile::tempdir().unwrap();
    let address = format!("unix:path={}", dir.path().join("bus.sock").display());
    let mut children: Vec<Child> = Vec::new();
    children.push(
        Command::new("dbus-daemon")
            .args(["--session", "--nofork", &format!("--address={address}")])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(300));
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bluez = Command::new("/usr/bin/python3")
        .args(["-m", "dbusmock", "--system", "--template"])
        .arg(here.join("benches/bluez_bench_template.py"))
        .env("DBUS_SYSTEM_BUS_ADDRESS", &address)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mock_pid = bluez.id();
    children.push(bluez);
    assert!(
        Command::new("gdbus")
            .args(["wait", "--system", "--timeout", "10", "org.bluez"])
            .env("DBUS_SYSTEM_BUS_ADDRESS", &address)
            .status()
            .unwrap()
            .success()
    );
    mock(&address, "AddAdapter", "ss", &["hci0", "host"]);
    if r.passive {
        mock(&address, "AddMonitorManager", "s", &["hci0"]);
    }
    mock(&address, "AddSensors", "su", &["hci0", &r.n.to_string()]);
    let cfg = dir.path().join("ble.json");
    let mode = if r.passive { "passive" } else { "active" };
    std::fs::write(
        &cfg,
        format!(
            r#"{{"scan": {{"mode": "{mode}"}}, "discovery": {{"enabled": true, "maps": ["bthome-v2", "ruuvi-rawv2", "xiaomi-pvvx"]}}}}"#
        ),
    )
    .unwrap();
    let metrics = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    // BLE_BIN: another build of the module (e.g. an earlier commit) on the same bench.
    let bin = std::env::var("BLE_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_bridge-ble").into());
    let mut module = Command::new(bin)
        .args(["--upstream", "stdout", "--log", "warn", "--metrics"])
        .arg(metrics.to_string())
        .arg("--config")
        .arg(&cfg)
        .env("DBUS_SYSTEM_BUS_ADDRESS", &address)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let s = seen.clone();
    let out = module.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if v["output"] != "telemetry" {
                continue;
            }
            let mut s = s.lock().unwrap();
            s.telemetry += 1;
            let id = v["deviceId"].as_str().unwrap_or_default().to_owned();
            s.distinct
                .insert((id, v["body"]["temperature"].to_string()));
        }
    });
    let pid = module.id();
    // Start-up: every device's first reading (seeded from GetManagedObjects).
    let t0 = Instant::now();
    while seen.lock().unwrap().telemetry < r.n as u64 && t0.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let startup = t0.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let (msgs0, distinct0) = {
        let s = seen.lock().unwrap();
        (s.telemetry, s.distinct.len())
    };
    let (cpu0, mock_cpu0) = (cpu_secs(pid), cpu_secs(mock_pid));
    let mut recorder = perf.then(|| {
        Command::new("perf")
            .args(["record", "-g", "-q", "-o"])
            .arg(perf_data())
            .args(["-p", &pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    });
    mock(
        &address,
        "RunAdverts",
        "sudd",
        &[
            "hci0",
            &r.n.to_string(),
            &r.rate.to_string(),
            &r.secs.to_string(),
        ],
    );
    let t1 = Instant::now();
    let mut peak = 0;
    while t1.elapsed().as_secs_f64() < r.secs {
        std::thread::sleep(Duration::from_millis(500));
        peak = peak.max(proc_field(pid, "status", "VmRSS:"));
    }
    // Let the module drain what is queued.
    let mut last = 0;
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(250));
        let now = seen.lock().unwrap().telemetry;
        if now == last {
            break;
        }
        last = now;
    }
    let (cpu, mock_cpu) = (cpu_secs(pid) - cpu0, cpu_secs(mock_pid) - mock_cpu0);
    if let Some(p) = recorder.as_mut() {
        let _ = Command::new("kill")
            .args(["-INT", &p.id().to_string()])
            .status();
        let _ = p.wait();
    }
    let stats = mock(&address, "AdvertStats", "", &[]);
    let mut it = stats.split_whitespace().skip(1);
    let emitted: u64 = it.next().and_then(|v| v.parse().ok()).unwrap_or(0);
    let elapsed: f64 = it.next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let superseded = scrape(metrics, "edgebridge_ble_superseded_total ");
    peak = peak.max(proc_field(pid, "status", "VmHWM:"));
    let (msgs, distinct) = {
        let s = seen.lock().unwrap();
        (s.telemetry - msgs0, s.distinct.len() - distinct0)
    };
    println!(
        "ble_rss: {} devices (BTHome/Ruuvi/pvvx), {} advertisements/s for {} s, {mode} scan (python-dbusmock BlueZ)",
        r.n, r.rate, r.secs
    );
    println!(
        "  mock emitted {emitted} in {elapsed:.1} s ({:.0}/s; mock CPU {:.0} % of a core)",
        emitted as f64 / elapsed.max(1e-9),
        mock_cpu * 100.0 / elapsed.max(1e-9)
    );
    println!(
        "  forwarded {msgs} messages, {distinct} distinct readings ({:.2} % of emitted), superseded {superseded}; distinct + superseded = {:.2} % of emitted",
        distinct as f64 * 100.0 / emitted.max(1) as f64,
        (distinct as f64 + superseded) * 100.0 / emitted.max(1) as f64
    );
    println!(
        "  module CPU {cpu:.2} s ({:.1} µs per forwarded message, {:.0} % of a core); start-up with {} seeded devices {:.1} s",
        cpu * 1e6 / msgs.max(1) as f64,
        cpu * 100.0 / elapsed.max(1e-9),
        r.n,
        startup.as_secs_f64()
    );
    println!("  resident memory: peak {:.1} MiB", peak as f64 / 1024.0);
    if recorder.is_some() {
        let report = Command::new("perf")
            .args([
                "report",
                "--no-children",
                "--stdio",
                "-q",
                "-g",
                "none",
                "-i",
            ])
            .arg(perf_data())
            .output()
            .unwrap();
        println!("  perf (self time, top 25):");
        let text = String::from_utf8_lossy(&report.stdout);
        if text.trim().is_empty() {
            println!(
                "    perf report ({}): {}",
                report.status,
                String::from_utf8_lossy(&report.stderr)
            );
        }
        let mut by_part: HashMap<&str, f64> = HashMap::new();
        for l in text.lines().filter(|l| l.contains('%')) {
            let cols: Vec<&str> = l.split_whitespace().collect();
            let Some(pct) = cols
                .first()
                .and_then(|p| p.trim_end_matches('%').parse::<f64>().ok())
            else {
                continue;
            };
            let sym = cols.get(4..).map(|c| c.join(" ")).unwrap_or_default();
            *by_part
                .entry(part(&sym, cols.get(3).copied() == Some("[k]")))
                .or_default() += pct;
        }
        for l in text.lines().filter(|l| l.contains('%')).take(25) {
            println!("    {}", l.trim());
        }
        let mut parts: Vec<_> = by_part.into_iter().collect();
        parts.sort_by(|a, b| b.1.total_cmp(&a.1));
        println!("  perf self time by part:");
        for (p, pct) in parts {
            println!("    {pct:5.1} %  {p}");
        }
        println!("  (recording kept in {})", perf_data().display());
    }
    let _ = module.kill();
    let _ = module.wait();
    for c in children.iter_mut().rev() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// The module's own share of a message, without D-Bus or the upstream: one BlueZ
/// `PropertiesChanged` (BTHome service data and RSSI) parsed into the device cache (in
/// batches of 20, as the signal thread applies them), queued and visited in place
/// (decoding adds about 0.5 µs: `adverts` bench figure).
fn signal_path() {
    use dbus::arg::{PropMap, RefArg, Variant};
    let feed = bridge_ble::signals::Feed::new();
    let uuid = "0000fcd2-0000-1000-8000-00805f9b34fb";
    let signals: Vec<dbus::Message> = (0..1000u16)
        .map(|i| {
            let t = 1000 + i;
            let mut data: HashMap<String, Variant<Box<dyn RefArg>>> = HashMap::new();
            data.insert(
                uuid.into(),
                Variant(Box::new(vec![
                    0x40,
                    0x02,
                    t as u8,
                    (t >> 8) as u8,
                    0x03,
                    0x88,
                    0x13,
                ])),
            );
            let mut props = PropMap::new();
            props.insert("ServiceData".into(), Variant(Box::new(data)));
            props.insert("RSSI".into(), Variant(Box::new(-60_i16)));
            dbus::Message::new_signal(
                format!(
                    "/org/bluez/hci0/dev_C0_FF_EE_00_{:02X}_{:02X}",
                    i >> 8,
                    i & 255
                ),
                "org.freedesktop.DBus.Properties",
                "PropertiesChanged",
            )
            .unwrap()
            .append3("org.bluez.Device1", props, Vec::<String>::new())
        })
        .collect();
    let rounds = 100;
    let t0 = Instant::now();
    let mut taken = 0;
    for _ in 0..rounds {
        for batch in signals.chunks(20) {
            feed.on_signals(batch);
        }
        feed.take_each(usize::MAX, |p| {
            taken += usize::from(!p.service_data.is_empty());
            true
        });
    }
    let per = t0.elapsed().as_secs_f64() * 1e6 / (rounds * signals.len()) as f64;
    println!(
        "signal path (parse, cache, queue, take; no D-Bus I/O, no decoding, no upstream): {per:.2} µs per advertisement ({taken} taken)"
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        return;
    }
    signal_path();
    let perf = std::env::var_os("PERF").is_some();
    let nums: Vec<f64> = args.iter().filter_map(|a| a.parse().ok()).collect();
    if let [n, rate, secs, ..] = nums[..] {
        let passive = args.iter().any(|a| a == "passive");
        run(
            &Run {
                n: n as usize,
                rate,
                secs,
                passive,
            },
            perf,
        );
        return;
    }
    for (i, (rate, secs, passive)) in [
        (1000.0, 60.0, false),
        (1000.0, 60.0, true),
        (5000.0, 20.0, false),
    ]
    .into_iter()
    .enumerate()
    {
        run(
            &Run {
                n: 1000,
                rate,
                secs,
                passive,
            },
            perf && i == 0,
        );
    }
}
