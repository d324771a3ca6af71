//! The BLE half of the soak: a private D-Bus daemon with the python-dbusmock BlueZ
//! (`tests/soak/bluez_soak_template.py`, the BLE benchmark's advertisers on a wall-clock
//! schedule) that can be killed and started again, an MQTT observer with a persistent
//! session, and the accounting of emitted against received readings.
//!
//! Slot `k` of the schedule is due at `epoch + k / rate` and is reading number
//! `k / n + 1` of device `k % n`; the temperature tells the reading, so every received
//! message names the slot it came from, and a slot never received names the time it was
//! lost at.

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};

/// The advertiser kinds of the benchmark template, by `i % 3`: its decoder map.
const MAPS: [&str; 3] = ["bthome-v2", "ruuvi-rawv2", "xiaomi-pvvx"];

/// The device id of advertiser `i` in the module's configuration.
pub fn device_id(i: usize) -> String {
    format!("ble-{i:03}")
}

/// Advertiser `i`'s index from its device id.
pub fn device_index(id: &str) -> Option<usize> {
    id.strip_prefix("ble-")?.parse().ok()
}

/// The template's address of advertiser `i` (`C0:FF:EE:xx:xx:xx`).
pub fn address(i: usize) -> String {
    format!(
        "C0:FF:EE:{:02X}:{:02X}:{:02X}",
        i >> 16 & 255,
        i >> 8 & 255,
        i & 255
    )
}

/// bridge-ble's configuration: the `n` advertisers, each with its decoder.
pub fn config(n: usize) -> Value {
    let devices: serde_json::Map<String, Value> = (0..n)
        .map(|i| {
            (
                device_id(i),
                json!({"address": address(i), "map": MAPS[i % 3]}),
            )
        })
        .collect();
    json!({ "devices": devices })
}

/// The slot a decoded reading of advertiser `i` came from: the template steps the
/// temperature by 0.01 °C from 10.00 °C (BTHome, pvvx) or by 0.005 °C from 10.00 °C
/// (Ruuvi) per reading.
pub fn slot(n: usize, i: usize, temperature: f64) -> Option<i64> {
    let step = if i % 3 == 1 {
        (temperature / 0.005).round() as i64 - 2000
    } else {
        (temperature * 100.0).round() as i64 - 1000
    };
    Some((step - 1) * i64::try_from(n).ok()? + i64::try_from(i).ok()?)
}

/// Every slot the mock's incarnations logged as emitted (`lo hi` lines, inclusive).
pub fn emitted_slots(log: &str) -> BTreeSet<i64> {
    log.lines()
        .filter_map(|l| {
            let (lo, hi) = l.split_once(' ')?;
            Some((
                lo.trim().parse::<i64>().ok()?,
                hi.trim().parse::<i64>().ok()?,
            ))
        })
        .flat_map(|(lo, hi)| lo..=hi)
        .collect()
}

/// A fault's span in unix seconds, and what it was.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// What was done.
    pub what: String,
    /// Start (unix seconds).
    pub start: f64,
    /// End (unix seconds).
    pub end: f64,
}

/// Emitted against received.
#[derive(Debug, Default, PartialEq)]
pub struct Account {
    /// Distinct readings emitted.
    pub emitted: usize,
    /// Of those, received on the broker.
    pub received: usize,
    /// Not received, due within a fault window (its start - 1 s to its end + grace).
    pub lost_in_faults: Vec<usize>,
    /// Not received, due outside every fault window: due times (unix seconds).
    pub lost_outside: Vec<f64>,
}

/// Emitted slots against received ones, losses attributed to the fault windows.
pub fn account(
    emitted: &BTreeSet<i64>,
    received: &HashSet<i64>,
    epoch: f64,
    rate: f64,
    windows: &[Window],
    grace_s: f64,
) -> Account {
    let mut a = Account {
        emitted: emitted.len(),
        lost_in_faults: vec![0; windows.len()],
        ..Account::default()
    };
    for k in emitted {
        if received.contains(k) {
            a.received += 1;
            continue;
        }
        let due = epoch + *k as f64 / rate;
        match windows
            .iter()
            .position(|w| due >= w.start - 1.0 && due <= w.end + grace_s)
        {
            Some(w) => a.lost_in_faults[w] += 1,
            None => a.lost_outside.push(due),
        }
    }
    a
}

/// What the observer saw on the broker.
#[derive(Debug, Default)]
pub struct Seen {
    /// Messages (duplicates included).
    pub messages: u64,
    /// Messages that were not an advertiser's temperature reading.
    pub other: u64,
    /// Distinct slots received.
    pub slots: HashSet<i64>,
    /// Topics of the first few other messages.
    pub other_topics: Vec<String>,
}

/// Subscribes to everything on the broker with a persistent session (QoS 1), so what
/// is published while the observer reconnects after a broker restart waits for it.
pub fn observe(port: u16, n: usize) -> Arc<Mutex<Seen>> {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let out = seen.clone();
    let mut opts = MqttOptions::new("soak-observer", "127.0.0.1", port);
    opts.set_clean_session(false);
    opts.set_keep_alive(Duration::from_secs(5));
    let (client, mut events) = AsyncClient::new(opts, 1024);
    tokio::spawn(async move {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let _ = client.subscribe("#", QoS::AtLeastOnce).await;
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let found = p
                        .topic
                        .split('/')
                        .next()
                        .and_then(device_index)
                        .and_then(|i| {
                            let body: Value = serde_json::from_slice(&p.payload).ok()?;
                            slot(n, i, body["temperature"].as_f64()?)
                        });
                    let mut s = out
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    s.messages += 1;
                    match found {
                        Some(k) => {
                            s.slots.insert(k);
                        }
                        None => {
                            s.other += 1;
                            if s.other_topics.len() < 5 {
                                let sample =
                                    format!("{} {}", p.topic, String::from_utf8_lossy(&p.payload));
                                s.other_topics.push(sample.chars().take(200).collect());
                            }
                        }
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    seen
}

/// A private bus with the BlueZ mock on it.
#[derive(Debug)]
pub struct Bluez {
    dir: tempfile::TempDir,
    /// The bus address (for `DBUS_SYSTEM_BUS_ADDRESS`).
    pub address: String,
    daemon: Child,
    mock: Option<Child>,
    params: String,
    /// The emitted-slot log.
    pub log: PathBuf,
}

impl Bluez {
    /// A bus daemon and the mock with `n` advertisers sharing `rate` advertisements/s,
    /// slot 0 at `epoch`, nothing emitted after `stop` (unix seconds).
    pub fn start(n: usize, rate: f64, epoch: f64, stop: f64) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let socket = dir.path().join("bus.sock");
        let address = format!("unix:path={}", socket.display());
        let daemon = Command::new("dbus-daemon")
            .args(["--session", "--nofork", &format!("--address={address}")])
            .stderr(Stdio::null())
            .spawn()
            .context("dbus-daemon is missing: run tests/setup-peers.sh")?;
        let log = dir.path().join("emitted.log");
        let params =
            json!({"n": n, "rate": rate, "epoch": epoch, "stop": stop, "log": log}).to_string();
        let mut me = Self {
            dir,
            address,
            daemon,
            mock: None,
            params,
            log,
        };
        let t0 = Instant::now();
        while !socket.exists() {
            if t0.elapsed() > Duration::from_secs(10) {
                bail!("dbus-daemon did not come up");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        me.start_mock()?;
        Ok(me)
    }

    /// Starts the mock (again): adapter and devices come back as bluetoothd reloads them.
    pub fn start_mock(&mut self) -> Result<()> {
        let template = crate::repo_root().join("tests/soak/bluez_soak_template.py");
        let mock = Command::new("/usr/bin/python3")
            .args(["-m", "dbusmock", "--system", "--template"])
            .arg(&template)
            .arg("-p")
            .arg(&self.params)
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.address)
            .stdout(Stdio::null())
            .spawn()
            .context("python3-dbusmock is missing: run tests/setup-peers.sh")?;
        self.mock = Some(mock);
        let ok = Command::new("gdbus")
            .args(["wait", "--system", "--timeout", "10", "org.bluez"])
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.address)
            .status()
            .context("gdbus is missing")?;
        if !ok.success() {
            bail!("the BlueZ mock did not come up");
        }
        Ok(())
    }

    /// Kills the mock (SIGKILL: BlueZ crashing; its name leaves the bus).
    pub fn kill_mock(&mut self) {
        if let Some(mut c) = self.mock.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The mock's process id.
    pub fn mock_pid(&self) -> Option<u32> {
        self.mock.as_ref().map(Child::id)
    }

    /// A file in the bus's private directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The emitted slots so far.
    pub fn emitted(&self) -> BTreeSet<i64> {
        emitted_slots(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }
}

impl Drop for Bluez {
    fn drop(&mut self) {
        self.kill_mock();
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

/// Resident memory of a process (KiB), 0 when it is gone.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Unix time in seconds.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_reading_names_its_slot() {
        // n = 50: device 0 (BTHome) reading 3 = 10.03 °C is slot 100; device 1 (Ruuvi)
        // reading 1 = (2000 + 1) * 0.005 °C is slot 1; device 2 (pvvx) reading 0 (the
        // seed before the first slot) is slot -48.
        assert_eq!(slot(50, 0, 10.03), Some(100));
        assert_eq!(slot(50, 1, 10.005), Some(1));
        assert_eq!(slot(50, 2, 10.0), Some(-48));
        assert_eq!(device_index(&device_id(42)), Some(42));
        assert_eq!(address(258), "C0:FF:EE:00:01:02");
    }

    #[test]
    fn losses_are_attributed_to_fault_windows() {
        let emitted = emitted_slots("0 9\n-2 -2\nbad line\n12 12\n");
        assert_eq!(emitted.len(), 12);
        let received: HashSet<i64> = [0, 1, 2, 3, 9, -2].into_iter().collect();
        // rate 1/s from epoch 100: slots 4-6 fall in the window 103.5-104 (+ 2 s grace,
        // - 1 s), 7, 8 and 12 outside.
        let windows = [Window {
            what: "broker restart".into(),
            start: 103.5,
            end: 104.0,
        }];
        let a = account(&emitted, &received, 100.0, 1.0, &windows, 2.0);
        assert_eq!(a.emitted, 12);
        assert_eq!(a.received, 6);
        assert_eq!(a.lost_in_faults, vec![3]);
        assert_eq!(a.lost_outside, vec![107.0, 108.0, 112.0]);
    }
}
