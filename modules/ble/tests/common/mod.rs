//! Shared harness of the BLE end-to-end tests: a private D-Bus daemon with BlueZ's API
//! served by python-dbusmock, and the module binary running against it.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)] // test helpers

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BTHOME: &str = "0000fcd2-0000-1000-8000-00805f9b34fb";
pub const ENV_SENSING: &str = "0000181a-0000-1000-8000-00805f9b34fb";

pub struct Bus {
    pub dir: tempfile::TempDir,
    pub address: String,
    pub children: Vec<Child>,
}

impl Drop for Bus {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Bus {
    /// A private D-Bus daemon, optionally with the BlueZ mock on it.
    pub fn start(with_bluez: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("bus.sock");
        let address = format!("unix:path={}", socket.display());
        let daemon = Command::new("dbus-daemon")
            .args(["--session", "--nofork", &format!("--address={address}")])
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-daemon is missing: run tests/setup-peers.sh");
        let mut bus = Self {
            dir,
            address,
            children: vec![daemon],
        };
        wait_for(Duration::from_secs(10), || socket.exists());
        if with_bluez {
            let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bluez_le_template.py");
            let mock = Command::new("/usr/bin/python3")
                .args(["-m", "dbusmock", "--system", "--template"])
                .arg(&template)
                .arg("-l")
                .arg(bus.dir.path().join("mock.log"))
                .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
                .stdout(Stdio::null())
                .spawn()
                .expect("python3-dbusmock is missing: run tests/setup-peers.sh");
            bus.children.push(mock);
            let ok = Command::new("gdbus")
                .args(["wait", "--system", "--timeout", "10", "org.bluez"])
                .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
                .status()
                .expect("gdbus is missing");
            assert!(ok.success(), "the BlueZ mock did not come up");
        }
        bus
    }

    pub fn busctl(&self, args: &[String]) {
        let out = Command::new("busctl")
            .arg(format!("--address={}", self.address))
            .args(args)
            .output()
            .expect("busctl");
        assert!(
            out.status.success(),
            "busctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn mock_call(&self, method: &str, signature: &str, args: Vec<String>) {
        let mut all = vec![
            "call".into(),
            "--".into(),
            "org.bluez".into(),
            "/".into(),
            "org.bluez.Mock".into(),
            method.into(),
            signature.into(),
        ];
        all.extend(args);
        self.busctl(&all);
    }

    /// Arguments for `a{qay}` / `a{say}` dictionaries.
    pub fn dict<K: ToString>(entries: &[(K, &[u8])]) -> Vec<String> {
        let mut out = vec![entries.len().to_string()];
        for (k, v) in entries {
            out.push(k.to_string());
            out.push(v.len().to_string());
            out.extend(v.iter().map(u8::to_string));
        }
        out
    }

    pub fn add_le(&self, address: &str, mfg: &[(u16, &[u8])], svc: &[(&str, &[u8])], rssi: i16) {
        self.add_le_named(address, "sensor", mfg, svc, rssi);
    }

    /// [`Bus::add_le`] with a local name (some formats tell the model by it).
    pub fn add_le_named(
        &self,
        address: &str,
        name: &str,
        mfg: &[(u16, &[u8])],
        svc: &[(&str, &[u8])],
        rssi: i16,
    ) {
        let mut args = vec!["hci0".to_owned(), address.to_owned(), name.to_owned()];
        args.extend(Self::dict(mfg));
        args.extend(Self::dict(svc));
        args.push(rssi.to_string());
        self.mock_call("AddLEDevice", "sssa{qay}a{say}n", args);
    }

    pub fn update(&self, address: &str, mfg: &[(u16, &[u8])], svc: &[(&str, &[u8])], rssi: i16) {
        let mut args = vec!["hci0".to_owned(), address.to_owned()];
        args.extend(Self::dict(mfg));
        args.extend(Self::dict(svc));
        args.push(rssi.to_string());
        self.mock_call("UpdateAdvert", "ssa{qay}a{say}n", args);
    }

    /// Runs bridge-ble on this bus; returns the child and a channel of stdout JSON lines.
    pub fn module(&self, config: &Value) -> (Child, mpsc::Receiver<Value>, PathBuf) {
        self.module_with(config, &[])
    }

    /// [`Bus::module`] with extra command-line arguments.
    pub fn module_with(
        &self,
        config: &Value,
        extra: &[String],
    ) -> (Child, mpsc::Receiver<Value>, PathBuf) {
        self.module_logged(config, extra, "info")
    }

    /// [`Bus::module_with`] at a `RUST_LOG` level.
    pub fn module_logged(
        &self,
        config: &Value,
        extra: &[String],
        rust_log: &str,
    ) -> (Child, mpsc::Receiver<Value>, PathBuf) {
        let cfg = self.dir.path().join("config.json");
        std::fs::write(&cfg, config.to_string()).unwrap();
        let log = self.dir.path().join("module.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_bridge-ble"))
            .args(["--upstream", "stdout", "--config"])
            .arg(&cfg)
            .args(extra)
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.address)
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        (child, rx, log)
    }
}

pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Lines seen so far, and the rest as they come.
pub struct Lines {
    pub seen: Vec<Value>,
    pub rx: mpsc::Receiver<Value>,
}

impl Lines {
    /// The first telemetry line (seen or coming) for `device` matching `pred`.
    pub fn expect(&mut self, device: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let hit = |l: &Value| l["deviceId"] == device && pred(&l["body"]);
        if let Some(l) = self.seen.iter().find(|l| hit(l)) {
            return l.clone();
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.rx.recv_timeout(left).unwrap_or_else(|_| {
                panic!("no matching telemetry for {device}; seen {:?}", self.seen)
            });
            self.seen.push(line.clone());
            if hit(&line) {
                return line;
            }
        }
    }
}

pub const RUUVI: [u8; 24] = [
    0x05, 0x12, 0xFC, 0x53, 0x94, 0xC3, 0x7C, 0x00, 0x04, 0xFF, 0xFC, 0x04, 0x0C, 0xAC, 0x36, 0x42,
    0x00, 0xCD, 0xCB, 0xB8, 0x33, 0x4C, 0x88, 0x4F,
];

impl Bus {
    pub fn object_call(&self, path: &str, method: &str, signature: &str, args: Vec<String>) {
        let mut all = vec![
            "call".into(),
            "--".into(),
            "org.bluez".into(),
            path.into(),
            "org.freedesktop.DBus.Mock".into(),
            method.into(),
            signature.into(),
        ];
        all.extend(args);
        self.busctl(&all);
    }

    /// Sets a characteristic's value (a notification when it is subscribed).
    pub fn set_value(&self, chrc: &str, value: &[u8]) {
        let mut args = vec![
            "org.bluez.GattCharacteristic1".to_owned(),
            "1".into(),
            "Value".into(),
            "ay".into(),
            value.len().to_string(),
        ];
        args.extend(value.iter().map(u8::to_string));
        self.object_call(chrc, "UpdateProperties", "sa{sv}", args);
    }

    pub fn gatt(
        &self,
        dev: &str,
        service: (u16, &str),
        chrc: (u16, &str, &[&str], &[u8]),
    ) -> String {
        let svc = format!("{dev}/service{:04x}", service.0);
        self.mock_call(
            "AddGattService",
            "sqs",
            vec![dev.into(), service.0.to_string(), service.1.into()],
        );
        let mut args = vec![
            svc.clone(),
            chrc.0.to_string(),
            chrc.1.into(),
            chrc.2.len().to_string(),
        ];
        args.extend(chrc.2.iter().map(|s| (*s).to_owned()));
        args.push(chrc.3.len().to_string());
        args.extend(chrc.3.iter().map(u8::to_string));
        self.mock_call("AddGattCharacteristic", "sqsasay", args);
        format!("{svc}/char{:04x}", chrc.0)
    }
}
