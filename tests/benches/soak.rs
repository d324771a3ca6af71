//! Soak (not a test): bridge-modbus and bridge-ble in child processes, side by side.
//! bridge-modbus polls 500 simulated Modbus devices (5 points, 1 Hz) for edgehub-sim;
//! bridge-ble hears 50 advertisers (BTHome, Ruuvi, pvvx at 1 Hz each) on the
//! python-dbusmock BlueZ and publishes to a mosquitto started here. A fault every
//! 2 minutes in rotation: edgeHub down 15 s, BlueZ killed (SIGKILL) and started again
//! 3 s later, the broker stopped and started again on the same port 3 s later,
//! desired-property churn of 20 patches, 50 Modbus devices disabled for 30 s. Resident
//! memory of both modules every 10 s; at the end the counters, every emitted BLE reading
//! checked against the distinct readings received on the broker (a loss is attributed
//! to a fault window when it was due from 1 s before a BlueZ or broker fault to 10 s
//! after it), every Modbus device's poll times checked for gaps, and growth after
//! warm-up. Exits 1 when a module stopped, a BLE reading was lost outside the fault
//! windows or a Modbus poll went missing outside the soak's own changes to the device.
//!
//! `cargo bench -p bridge-e2e --bench soak -- MINUTES [DEVICES [ADVERTISERS]]`
//! (tests/soak/run.sh).

#![allow(clippy::unwrap_used, clippy::print_stdout)] // a benchmark prints its figures

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bridge_core::identity::SymmetricKey;
use bridge_e2e::soak_ble::{self, Bluez, Window, rss_kib, unix_now};
use bridge_e2e::soak_modbus::{self, Excused, HubSeen};
use edgehub_sim::{Sim, SimOptions};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const KEY: &str = "Y2FwdHVyZS10ZXN0LWtleS0wMTIzNDU2Nzg5YWJjZGVm";
/// After a BLE fault, how long a loss still counts as the fault's.
const GRACE_S: f64 = 10.0;

/// Modbus devices per group: a group is one twin entry (500 devices written out one by
/// one would break the twin's 32 KB limit) and the unit the faults switch off.
const GROUP: usize = 50;

/// The name of group `g` (device numbers `g * 100 + 1 ..= g * 100 + 50`).
fn group_name(g: usize) -> String {
    format!("g{g:02}")
}

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

/// `n` simulated devices in groups of [`GROUP`]: `dev-GGNN`, group `GG`, member `NN`.
fn devices(n: usize) -> Value {
    let groups: serde_json::Map<String, Value> = (0..n.div_ceil(GROUP))
        .map(|g| {
            let members = (n - g * GROUP).min(GROUP);
            (
                group_name(g),
                json!({"map": "soak5", "connection": {"type": "simulated"}, "pollIntervalMs": 1000,
                       "unitIds": format!("1-{members}"), "idPattern": format!("dev-{g:02}{{n:02}}")}),
            )
        })
        .collect();
    json!({"maps": {"soak5": map()}, "groups": groups})
}

/// A patch of group `g`'s device settings.
fn group_patch(g: usize, settings: Value) -> Value {
    json!({"groups": {group_name(g): settings}})
}

fn common_args(upstream: &str, metrics: &str) -> bridge_core::runtime::CommonArgs {
    let mut args = bridge_e2e::scale::module_args(upstream, "{deviceId}/{output}", "body", None);
    args.metrics = Some(metrics.parse().unwrap());
    args
}

/// Child: a module; exits 1 when it stops with an error (a watchdog exit among them),
/// and with the soak when the soak is killed.
fn child<P: bridge_core::runtime::Protocol>(protocol: P, args: bridge_core::runtime::CommonArgs) {
    let parent = std::os::unix::process::parent_id();
    std::thread::spawn(move || {
        while std::os::unix::process::parent_id() == parent {
            std::thread::sleep(Duration::from_secs(1));
        }
        std::process::exit(2);
    });
    let rt = bridge_core::runtime::module_runtime().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    if let Err(e) = rt.block_on(bridge_core::runtime::run_module(protocol, args, stop)) {
        eprintln!("module stopped: {e}");
        std::process::exit(1);
    }
}

fn modbus_child(port: u16, ca: &str, metrics: &str) {
    let mut args = common_args("edge", metrics);
    args.connection_string = Some(format!(
        "HostName=myhub.azure-devices.net;DeviceId=edge-gw;ModuleId=modbus;SharedAccessKey={KEY};GatewayHostName=localhost"
    ));
    args.ca_file = Some(ca.into());
    args.hub_port = port;
    child(bridge_modbus::Modbus::new(), args);
}

fn ble_child(config: &str, broker_port: u16, metrics: &str) {
    let mut args = common_args(&format!("mqtt://127.0.0.1:{broker_port}"), metrics);
    args.config = Some(config.into());
    child(bridge_ble::Ble::default(), args);
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

/// Growth of resident memory after warm-up (the first 5 minutes, or the first third of
/// a short run): first sample after it, mean of the last six, percent.
fn growth(rss: &[u64]) -> (f64, f64, f64) {
    let warm = rss.len().min(30).min(rss.len() / 3).max(1);
    let after = &rss[warm.min(rss.len().saturating_sub(1))..];
    let first = after.first().copied().unwrap_or(0) as f64;
    let last = after.iter().rev().take(6).sum::<u64>() as f64 / after.len().clamp(1, 6) as f64;
    (first, last, (last - first) / first.max(1.0) * 100.0)
}

/// The faults, in rotation (a 1-minute run gets the first three).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    HubDown,
    BluezRestart,
    BrokerRestart,
    TwinChurn,
    DevicesOff,
}

const ROTATION: [Fault; 5] = [
    Fault::HubDown,
    Fault::BluezRestart,
    Fault::BrokerRestart,
    Fault::TwinChurn,
    Fault::DevicesOff,
];

impl Fault {
    fn what(self) -> &'static str {
        match self {
            Self::HubDown => "edgeHub down 15 s",
            Self::BluezRestart => "BlueZ killed, back after 3 s",
            Self::BrokerRestart => "broker stopped, back after 3 s",
            Self::TwinChurn => "20 desired patches (50 devices' interval)",
            Self::DevicesOff => "50 devices off 30 s",
        }
    }

    fn length(self) -> Duration {
        Duration::from_secs(match self {
            Self::HubDown => 15,
            Self::BluezRestart | Self::BrokerRestart => 3,
            Self::TwinChurn => 0,
            Self::DevicesOff => 30,
        })
    }

    fn touches_ble(self) -> bool {
        matches!(self, Self::BluezRestart | Self::BrokerRestart)
    }
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if let Some(i) = a.iter().position(|x| x == "--child") {
        return modbus_child(a[i + 1].parse().unwrap(), &a[i + 2], &a[i + 3]);
    }
    if let Some(i) = a.iter().position(|x| x == "--ble-child") {
        return ble_child(&a[i + 1], a[i + 2].parse().unwrap(), &a[i + 3]);
    }
    let nums: Vec<u64> = a.iter().skip(1).filter_map(|x| x.parse().ok()).collect();
    let minutes = nums.first().copied().unwrap_or(60);
    let n = nums.get(1).copied().unwrap_or(500) as usize;
    let adverts = nums.get(2).copied().unwrap_or(50) as usize;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let failed = rt.block_on(soak(minutes, n, adverts));
    drop(rt);
    if !failed.is_empty() {
        println!("SOAK FAILED: {}", failed.join("; "));
        std::process::exit(1);
    }
    println!("soak passed: both modules alive, nothing lost outside the fault windows");
}

async fn soak(minutes: u64, n: usize, adverts: usize) -> Vec<String> {
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    sim.hub
        .add_module("edge-gw", "modbus", SymmetricKey::from_base64(KEY).unwrap());
    sim.hub
        .try_set_desired("edge-gw/modbus", &devices(n))
        .expect("the devices fit in the twin");
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.crt");
    std::fs::write(&ca, &sim.certs.ca_pem).unwrap();
    let hub_seen = Arc::new(Mutex::new(HubSeen::default()));
    let mut feed = sim.hub.subscribe();
    let h = hub_seen.clone();
    tokio::spawn(async move {
        loop {
            let got = feed.recv().await;
            let mut h = h.lock().unwrap();
            match got {
                Ok(m) => h.add(&m),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(k)) => h.lagged += k,
                Err(_) => break,
            }
        }
    });
    let exe = std::env::current_exe().unwrap();
    let metrics = format!("127.0.0.1:{}", bridge_e2e::free_port());
    let mut modbus = tokio::process::Command::new(&exe)
        .args([
            "--child",
            &sim.tls_addr.port().to_string(),
            &ca.display().to_string(),
            &metrics,
        ])
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let modbus_pid = modbus.id().unwrap();

    // BLE: the broker, an observer, the mock (one advertisement per advertiser per
    // second; none in the last 5 s so the end is drained), then the module.
    let mut broker = bridge_e2e::Mosquitto::start().await.unwrap();
    let seen = soak_ble::observe(broker.port, adverts);
    let total = Duration::from_secs(minutes * 60);
    let epoch = unix_now();
    let rate = adverts as f64;
    let mut bluez = tokio::task::block_in_place(|| {
        Bluez::start(adverts, rate, epoch, epoch + total.as_secs_f64() - 5.0)
    })
    .unwrap();
    let ble_cfg = bluez.file("ble.json");
    std::fs::write(&ble_cfg, soak_ble::config(adverts).to_string()).unwrap();
    let ble_metrics = format!("127.0.0.1:{}", bridge_e2e::free_port());
    let mut ble = tokio::process::Command::new(&exe)
        .args([
            "--ble-child",
            &ble_cfg.display().to_string(),
            &broker.port.to_string(),
            &ble_metrics,
        ])
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bluez.address)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let ble_pid = ble.id().unwrap();

    let ble_seen = || {
        let s = seen.lock().unwrap();
        (s.messages, s.slots.len())
    };
    println!(
        "soak: {minutes} min, {n} simulated Modbus devices x 5 points at 1 Hz (edgehub-sim), {adverts} BLE advertisers at 1 Hz (dbusmock BlueZ -> mosquitto), a fault every 2 min"
    );
    println!("t_s,modbus_rss_kib,ble_rss_kib,hub_messages,ble_messages,ble_distinct,fault");
    let start = Instant::now();
    let end = start + total;
    let mut next_sample = start;
    // A fault every 2 minutes; short runs (CI) get three, evenly spread.
    let period = Duration::from_secs((minutes * 20).clamp(20, 120));
    let mut next_fault = start + period / 2;
    let mut fault_no = 0usize;
    let mut active: Option<(Fault, Instant)> = None;
    let mut windows: Vec<(Fault, Window)> = Vec::new();
    let (mut rss_modbus, mut rss_ble) = (Vec::new(), Vec::new());
    let mut note = String::new();
    let mut exits = Vec::new();
    while Instant::now() < end {
        if let Ok(Some(status)) = modbus.try_wait() {
            exits.push(format!("bridge-modbus exited: {status}"));
            break;
        }
        if let Ok(Some(status)) = ble.try_wait() {
            exits.push(format!("bridge-ble exited: {status}"));
            break;
        }
        if let Some((fault, until)) = active
            && Instant::now() >= until
        {
            end_fault(fault, &sim, &mut bluez, &mut broker).await;
            if let Some((_, w)) = windows.last_mut() {
                w.end = unix_now();
            }
            active = None;
        }
        if active.is_none() && Instant::now() >= next_fault {
            let fault = ROTATION[fault_no % ROTATION.len()];
            fault_no += 1;
            let started = unix_now();
            match fault {
                Fault::HubDown => sim.pause(),
                Fault::BluezRestart => tokio::task::block_in_place(|| bluez.kill_mock()),
                Fault::BrokerRestart => broker.stop().await.unwrap(),
                Fault::TwinChurn => {
                    for k in 0..20u64 {
                        let interval = if k % 2 == 0 { 1000 } else { 2000 };
                        sim.hub.set_desired(
                            "edge-gw/modbus",
                            &group_patch(0, json!({"pollIntervalMs": interval})),
                        );
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    sim.hub.set_desired(
                        "edge-gw/modbus",
                        &group_patch(0, json!({"pollIntervalMs": 1000})),
                    );
                }
                Fault::DevicesOff => {
                    sim.hub
                        .set_desired("edge-gw/modbus", &group_patch(0, json!({"enabled": false})));
                }
            }
            windows.push((
                fault,
                Window {
                    what: fault.what().into(),
                    start: started,
                    end: unix_now(),
                },
            ));
            active = Some((fault, Instant::now() + fault.length()));
            note = fault.what().into();
            next_fault += period;
        }
        if Instant::now() >= next_sample {
            let (m, b) = (rss_kib(modbus_pid), rss_kib(ble_pid));
            rss_modbus.push(m);
            rss_ble.push(b);
            sim.hub.clear_messages();
            let (ble_msgs, ble_distinct) = ble_seen();
            println!(
                "{},{m},{b},{},{ble_msgs},{ble_distinct},{}",
                start.elapsed().as_secs(),
                hub_seen.lock().unwrap().messages,
                std::mem::take(&mut note)
            );
            next_sample += Duration::from_secs(10);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A fault still open at the end is ended, so what it held back can arrive.
    if let Some((fault, _)) = active {
        end_fault(fault, &sim, &mut bluez, &mut broker).await;
        if let Some((_, w)) = windows.last_mut() {
            w.end = unix_now();
        }
    }
    // Polling stops (every device disabled, which drops their counters: scraped first)
    // so the last polls are drained with the rest.
    let modbus_metrics = scrape(&metrics).await;
    for g in 0..n.div_ceil(GROUP) {
        sim.hub
            .set_desired("edge-gw/modbus", &group_patch(g, json!({"enabled": false})));
    }
    // Drain: until neither the hub nor the broker has seen anything new for 3 s (at
    // most 30 s).
    let hub_count = || hub_seen.lock().unwrap().messages;
    let drain = Instant::now();
    let mut last = ((ble_seen(), hub_count()), Instant::now());
    while drain.elapsed() < Duration::from_secs(30) && last.1.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = (ble_seen(), hub_count());
        if now != last.0 {
            last = (now, Instant::now());
        }
    }
    report(Report {
        modbus: modbus_metrics,
        ble: scrape(&ble_metrics).await,
        hub: &hub_seen.lock().unwrap(),
        devices: n,
        modbus_alive: modbus.try_wait().ok().flatten().is_none(),
        ble_alive: ble.try_wait().ok().flatten().is_none(),
        exits,
        rss_modbus,
        rss_ble,
        windows,
        bluez: &bluez,
        seen: &seen.lock().unwrap(),
        epoch,
        rate,
    })
}

/// Ends a fault: what was stopped comes back.
async fn end_fault(fault: Fault, sim: &Sim, bluez: &mut Bluez, broker: &mut bridge_e2e::Mosquitto) {
    match fault {
        Fault::HubDown => sim.resume(),
        Fault::BluezRestart => tokio::task::block_in_place(|| bluez.start_mock()).unwrap(),
        Fault::BrokerRestart => broker.restart().await.unwrap(),
        Fault::TwinChurn => {}
        Fault::DevicesOff => {
            sim.hub
                .set_desired("edge-gw/modbus", &group_patch(0, json!({"enabled": true})));
        }
    }
}

struct Report<'a> {
    modbus: HashMap<String, f64>,
    ble: HashMap<String, f64>,
    hub: &'a HubSeen,
    devices: usize,
    modbus_alive: bool,
    ble_alive: bool,
    exits: Vec<String>,
    rss_modbus: Vec<u64>,
    rss_ble: Vec<u64>,
    windows: Vec<(Fault, Window)>,
    bluez: &'a Bluez,
    seen: &'a soak_ble::Seen,
    epoch: f64,
    rate: f64,
}

/// Prints the figures; returns what failed: a module gone, a BLE reading lost outside
/// the fault windows, a Modbus poll missing outside the soak's own changes.
fn report(r: Report<'_>) -> Vec<String> {
    let get = |m: &HashMap<String, f64>, k: &str| m.get(k).copied().unwrap_or(-1.0);
    let mut failed = r.exits.clone();
    for e in &r.exits {
        println!("MODULE EXITED: {e}");
    }
    if !(r.modbus_alive && r.ble_alive) {
        failed.push(format!(
            "module alive: bridge-modbus {}, bridge-ble {}",
            r.modbus_alive, r.ble_alive
        ));
    }
    // Gaps in a device's poll times are excused where the soak disabled it or changed
    // its interval (until 5 s after).
    let ms = |t: f64| (t * 1000.0) as i64;
    let excused: Vec<Excused> = r
        .windows
        .iter()
        .filter_map(|(f, w)| {
            // Both change group 0: device numbers 1 to 50.
            if !matches!(f, Fault::DevicesOff | Fault::TwinChurn) {
                return None;
            }
            let last = 100;
            Some(Excused {
                first: 0,
                last,
                from_ms: ms(w.start),
                to_ms: ms(w.end) + 5000,
            })
        })
        .collect();
    let g = soak_modbus::gaps(&r.hub.distinct, 1000, &excused);
    println!(
        "modbus counters: hub messages {}, distinct (device, poll time) {}, duplicates {}, unparsed {}, skipped by the feed (uncounted) {}; devices delivering {} of {}; gaps of 2+ intervals outside the soak's own changes {} ({} polls missing, largest {} ms), excused {}; polls {} and poll failures {} (counters since each device's last reconfiguration); spool pending {} dropped {}; watchdog restarts {}; hub connected {}; module alive {}",
        r.hub.messages,
        r.hub.distinct.len(),
        r.hub.duplicates,
        r.hub.unparsed,
        r.hub.lagged,
        g.devices,
        r.devices,
        g.gaps,
        g.missing,
        g.largest_ms,
        g.excused,
        get(&r.modbus, "edgebridge_modbus_polls_total"),
        get(&r.modbus, "edgebridge_modbus_poll_failures_total"),
        get(&r.modbus, "edgebridge_spool_pending_messages"),
        get(&r.modbus, "edgebridge_spool_dropped_total"),
        get(&r.modbus, "edgebridge_watchdog_restarts_total"),
        get(&r.modbus, "edgebridge_hub_connected"),
        r.modbus_alive
    );
    // Start-up counts as a window of its own: the seeds (each device's reading before
    // the first slot) race the first advertisements while the module starts.
    let startup = Window {
        what: "start-up: the first 10 s".into(),
        start: r.epoch - 1.0,
        end: r.epoch + 10.0 - GRACE_S,
    };
    let ble_windows: Vec<Window> = std::iter::once(startup)
        .chain(
            r.windows
                .iter()
                .filter(|(f, _)| f.touches_ble())
                .map(|(_, w)| w.clone()),
        )
        .collect();
    let a = soak_ble::account(
        &r.bluez.emitted(),
        &r.seen.slots,
        r.epoch,
        r.rate,
        &ble_windows,
        GRACE_S,
    );
    let lost_in: usize = a.lost_in_faults.iter().sum();
    println!(
        "ble counters: emitted {} distinct readings, received {} ({} broker messages, {} other), lost in start-up and BlueZ/broker fault windows {lost_in}, lost outside them {}, superseded (replaced by the same device's newer reading before sending) {} spool pending {} spool dropped {} watchdog restarts {} module alive {}",
        a.emitted,
        a.received,
        r.seen.messages,
        r.seen.other,
        a.lost_outside.len(),
        get(&r.ble, "edgebridge_ble_superseded_total"),
        get(&r.ble, "edgebridge_spool_pending_messages"),
        get(&r.ble, "edgebridge_spool_dropped_total"),
        get(&r.ble, "edgebridge_ble_watchdog_restarts_total"),
        r.ble_alive
    );
    for (w, lost) in ble_windows.iter().zip(&a.lost_in_faults) {
        println!(
            "  window at t = {:.0} s ({}, {:.1} s): {lost} readings lost",
            w.start - r.epoch,
            w.what,
            w.end - w.start
        );
    }
    for t in &r.seen.other_topics {
        println!("  other message: {t}");
    }
    for due in a.lost_outside.iter().take(20) {
        println!(
            "  LOST outside fault windows: reading due at t = {:.1} s",
            due - r.epoch
        );
    }
    if !a.lost_outside.is_empty() {
        failed.push(format!(
            "{} BLE readings lost outside the fault windows",
            a.lost_outside.len()
        ));
    }
    if g.missing > 0 {
        failed.push(format!(
            "{} Modbus polls missing outside the soak's own changes",
            g.missing
        ));
    }
    for (name, rss) in [("bridge-modbus", &r.rss_modbus), ("bridge-ble", &r.rss_ble)] {
        let (first, last, pct) = growth(rss);
        println!(
            "{name} rss after warm-up: first {:.1} MiB, last minute {:.1} MiB, growth {pct:+.1} %",
            first / 1024.0,
            last / 1024.0
        );
    }
    failed
}
