//! The one harness of the BLE end-to-end tests: a private D-Bus daemon with BlueZ's API
//! served by python-dbusmock (which the fault tests kill and start again, or whose whole
//! bus they restart), the module binary running against it (printing telemetry on stdout
//! or talking to edgehub-sim), and waits on both.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)] // test helpers

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BTHOME: &str = "0000fcd2-0000-1000-8000-00805f9b34fb";
pub const ENV_SENSING: &str = "0000181a-0000-1000-8000-00805f9b34fb";

pub struct Bus {
    pub dir: tempfile::TempDir,
    pub address: String,
    /// Other processes that end with the bus (peers a test starts).
    pub children: Vec<Child>,
    daemon: Child,
    bluez: Option<Child>,
    /// BlueZ mocks started so far (each has its own call log, [`Bus::mock_log_path`]).
    pub starts: usize,
    /// The module a test left to the bus ([`Bus::module_kept`], [`Bus::module_on_hub`]).
    module: Option<Child>,
}

impl Drop for Bus {
    fn drop(&mut self) {
        let module = self.module.as_mut();
        let bluez = self.bluez.as_mut();
        for c in module
            .into_iter()
            .chain(self.children.iter_mut())
            .chain(bluez)
            .chain([&mut self.daemon])
        {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn spawn_daemon(address: &str) -> Child {
    Command::new("dbus-daemon")
        .args(["--session", "--nofork", &format!("--address={address}")])
        .stderr(Stdio::null())
        .spawn()
        .expect("dbus-daemon is missing: run tests/setup-peers.sh")
}

impl Bus {
    /// A private D-Bus daemon, optionally with the BlueZ mock on it (no adapter yet).
    pub fn start(with_bluez: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("bus.sock");
        let address = format!("unix:path={}", socket.display());
        let daemon = spawn_daemon(&address);
        let mut bus = Self {
            dir,
            address,
            children: Vec::new(),
            daemon,
            bluez: None,
            starts: 0,
            module: None,
        };
        wait_until(Duration::from_secs(10), "the bus", || socket.exists());
        if with_bluez {
            bus.launch_bluez();
        }
        bus
    }

    /// Starts (another) BlueZ mock and waits for its name on the bus.
    fn launch_bluez(&mut self) {
        self.starts += 1;
        let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bluez_le_template.py");
        let mock = Command::new("/usr/bin/python3")
            .args(["-m", "dbusmock", "--system", "--template"])
            .arg(&template)
            .arg("-l")
            .arg(self.mock_log_path(self.starts))
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.address)
            .stdout(Stdio::null())
            .spawn()
            .expect("python3-dbusmock is missing: run tests/setup-peers.sh");
        self.bluez = Some(mock);
        let ok = Command::new("gdbus")
            .args(["wait", "--system", "--timeout", "10", "org.bluez"])
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.address)
            .status()
            .expect("gdbus is missing");
        assert!(ok.success(), "the BlueZ mock did not come up");
    }

    /// Starts (another) BlueZ mock with one adapter, `hci0`; its call log is
    /// [`Bus::mock_log`] of this start.
    pub fn start_bluez(&mut self) {
        self.launch_bluez();
        self.mock_call("AddAdapter", "ss", vec!["hci0".into(), "host".into()]);
    }

    /// Kills the BlueZ mock (SIGKILL: no goodbye on the bus but the lost name).
    pub fn kill_bluez(&mut self) {
        if let Some(mut c) = self.bluez.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kills the bus daemon (every connection on it is lost, BlueZ's too) and starts a
    /// new one at the same address, without BlueZ.
    pub fn restart_daemon(&mut self) {
        self.kill_bluez();
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
        let socket = self.dir.path().join("bus.sock");
        let _ = std::fs::remove_file(&socket);
        self.daemon = spawn_daemon(&self.address);
        wait_until(Duration::from_secs(10), "the new bus", || socket.exists());
    }

    /// The call log of the `start`th mock (`mock.log` for the first).
    pub fn mock_log_path(&self, start: usize) -> PathBuf {
        match start {
            0 | 1 => self.dir.path().join("mock.log"),
            n => self.dir.path().join(format!("mock-{n}.log")),
        }
    }

    /// The call log of the current mock.
    pub fn mock_log(&self) -> String {
        std::fs::read_to_string(self.mock_log_path(self.starts)).unwrap_or_default()
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

    /// [`Bus::module`], the process left to the bus (ended with it; see
    /// [`Bus::module_exited`]).
    pub fn module_kept(&mut self, config: &Value) -> (mpsc::Receiver<Value>, PathBuf) {
        let (child, rx, log) = self.module(config);
        self.module = Some(child);
        (rx, log)
    }

    /// Runs bridge-ble against `sim` as module `edge-gw/ble` (key [`MODULE_KEY`]); the
    /// process and its log.
    pub fn module_on_sim(&self, sim: &edgehub_sim::Sim, log_name: &str) -> (Child, PathBuf) {
        let ca = self.dir.path().join("ca.crt");
        std::fs::write(&ca, &sim.certs.ca_pem).unwrap();
        let log = self.dir.path().join(log_name);
        let child = Command::new(env!("CARGO_BIN_EXE_bridge-ble"))
            .args(["--hub-port", &sim.tls_addr.port().to_string(), "--ca-file"])
            .arg(&ca)
            .arg("--connection-string")
            .arg(format!("HostName=myhub.azure-devices.net;DeviceId=edge-gw;ModuleId=ble;SharedAccessKey={MODULE_KEY};GatewayHostName=localhost"))
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.address)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        (child, log)
    }

    /// [`Bus::module_on_sim`] against a [`Hub`] (reported properties are real there), the
    /// process left to the bus.
    pub fn module_on_hub(&mut self, hub: &Hub, log_name: &str) -> PathBuf {
        let (child, log) = self.module_on_sim(&hub.sim, log_name);
        self.module = Some(child);
        log
    }

    /// The kept module's exit status, if it has exited.
    pub fn module_exited(&mut self) -> Option<ExitStatus> {
        self.module.as_mut()?.try_wait().unwrap()
    }

    /// The kept module's process id.
    pub fn module_pid(&self) -> Option<u32> {
        self.module.as_ref().map(Child::id)
    }
}

/// Waits until `cond` holds; past `timeout` the test fails naming `what`.
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn wait_for(timeout: Duration, cond: impl FnMut() -> bool) {
    wait_until(timeout, "a condition", cond);
}

/// edgehub-sim with the module's identity (`edge-gw/ble`) and desired properties.
pub struct Hub {
    pub rt: tokio::runtime::Runtime,
    pub sim: edgehub_sim::Sim,
}

/// The module's key at edgehub-sim (`edge-gw/ble`).
pub const MODULE_KEY: &str = "Y2FwdHVyZS10ZXN0LWtleS0wMTIzNDU2Nzg5YWJjZGVm";

/// A multi-threaded runtime for the tests that drive edgehub-sim.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

impl Hub {
    pub fn start(desired: &Value) -> Self {
        let rt = runtime();
        let sim = rt
            .block_on(edgehub_sim::Sim::start(edgehub_sim::SimOptions::default()))
            .unwrap();
        sim.hub.add_module(
            "edge-gw",
            "ble",
            bridge_core::identity::SymmetricKey::from_base64(MODULE_KEY).unwrap(),
        );
        sim.hub.set_desired("edge-gw/ble", desired);
        Self { rt, sim }
    }

    /// The module's reported properties.
    pub fn reported(&self) -> Value {
        self.sim.hub.twin("edge-gw/ble")["reported"].clone()
    }

    /// Waits for a telemetry body matching `pred` (whatever identity sent it).
    pub fn expect_body(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let found = self
            .rt
            .block_on(self.sim.hub.wait_until(Duration::from_secs(30), |m| {
                m.iter().any(|r| pred(&r.json()))
            }));
        match found {
            Ok(m) => m
                .into_iter()
                .map(|r| r.json())
                .find(|b| pred(b))
                .unwrap_or_default(),
            Err(m) => panic!(
                "no telemetry with {what}; got {:?}",
                m.iter().map(|r| r.body.clone()).collect::<Vec<_>>()
            ),
        }
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
