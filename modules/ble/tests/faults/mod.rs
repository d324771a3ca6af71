//! Helpers for the fault tests: a private D-Bus daemon whose python-dbusmock BlueZ can be
//! killed and started again, the module as a child process, and edgehub-sim for
//! reported properties.

#![allow(dead_code, unreachable_pub)] // each test binary uses part of it

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BTHOME: &str = "0000fcd2-0000-1000-8000-00805f9b34fb";

/// A private bus with a BlueZ mock that can come and go.
pub struct Bus {
    pub dir: tempfile::TempDir,
    pub address: String,
    daemon: Child,
    bluez: Option<Child>,
    /// Mock instances started so far (each has its own call log).
    pub starts: usize,
    module: Option<Child>,
}

impl Drop for Bus {
    fn drop(&mut self) {
        for c in [
            self.module.as_mut(),
            self.bluez.as_mut(),
            Some(&mut self.daemon),
        ]
        .into_iter()
        .flatten()
        {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn wait_for(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Bus {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("bus.sock");
        let address = format!("unix:path={}", socket.display());
        let daemon = Command::new("dbus-daemon")
            .args(["--session", "--nofork", &format!("--address={address}")])
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-daemon is missing: run tests/setup-peers.sh");
        wait_for(Duration::from_secs(10), "the bus", || socket.exists());
        Self {
            dir,
            address,
            daemon,
            bluez: None,
            starts: 0,
            module: None,
        }
    }

    /// Starts (another) BlueZ mock with one adapter, `hci0`; its call log is
    /// [`Bus::mock_log`] of this start.
    pub fn start_bluez(&mut self) {
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
        self.mock_call("AddAdapter", "ss", vec!["hci0".into(), "host".into()]);
    }

    /// Kills the bus daemon (every connection on it is lost, BlueZ's too) and starts a
    /// new one at the same address, without BlueZ.
    pub fn restart_daemon(&mut self) {
        self.kill_bluez();
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
        let socket = self.dir.path().join("bus.sock");
        let _ = std::fs::remove_file(&socket);
        self.daemon = Command::new("dbus-daemon")
            .args([
                "--session",
                "--nofork",
                &format!("--address={}", self.address),
            ])
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for(Duration::from_secs(10), "the new bus", || socket.exists());
    }

    /// Kills the BlueZ mock (SIGKILL: no goodbye on the bus but the lost name).
    pub fn kill_bluez(&mut self) {
        if let Some(mut c) = self.bluez.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn mock_log_path(&self, start: usize) -> PathBuf {
        self.dir.path().join(format!("mock-{start}.log"))
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
        let mut all: Vec<String> = ["call", "--", "org.bluez", "/", "org.bluez.Mock"]
            .map(String::from)
            .to_vec();
        all.push(method.into());
        all.push(signature.into());
        all.extend(args);
        self.busctl(&all);
    }

    fn svc_dict(entries: &[(&str, &[u8])]) -> Vec<String> {
        let mut out = vec![entries.len().to_string()];
        for (k, v) in entries {
            out.push((*k).to_owned());
            out.push(v.len().to_string());
            out.extend(v.iter().map(u8::to_string));
        }
        out
    }

    /// A BLE device with service data (no manufacturer data).
    pub fn add_le(&self, address: &str, svc: &[(&str, &[u8])], rssi: i16) {
        let mut args = vec!["hci0".to_owned(), address.to_owned(), "sensor".to_owned()];
        args.push("0".into());
        args.extend(Self::svc_dict(svc));
        args.push(rssi.to_string());
        self.mock_call("AddLEDevice", "sssa{qay}a{say}n", args);
    }

    /// A new advertisement from a device.
    pub fn update(&self, address: &str, svc: &[(&str, &[u8])], rssi: i16) {
        let mut args = vec!["hci0".to_owned(), address.to_owned(), "0".into()];
        args.extend(Self::svc_dict(svc));
        args.push(rssi.to_string());
        self.mock_call("UpdateAdvert", "ssa{qay}a{say}n", args);
    }

    /// A GATT service with one characteristic on `dev`; the characteristic's path.
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

    /// Sets a characteristic's value (a notification when it is subscribed).
    pub fn set_value(&self, chrc: &str, value: &[u8]) {
        let mut args: Vec<String> = [
            "call",
            "--",
            "org.bluez",
            chrc,
            "org.freedesktop.DBus.Mock",
            "UpdateProperties",
            "sa{sv}",
            "org.bluez.GattCharacteristic1",
            "1",
            "Value",
            "ay",
        ]
        .map(String::from)
        .to_vec();
        args.push(value.len().to_string());
        args.extend(value.iter().map(u8::to_string));
        self.busctl(&args);
    }

    /// Runs bridge-ble on this bus printing telemetry on stdout; a channel of its JSON
    /// lines and its log file.
    pub fn module(&mut self, config: &Value) -> (mpsc::Receiver<Value>, PathBuf) {
        let cfg = self.dir.path().join("config.json");
        std::fs::write(&cfg, config.to_string()).unwrap();
        let log = self.dir.path().join("module.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_bridge-ble"))
            .args(["--upstream", "stdout", "--config"])
            .arg(&cfg)
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.address)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        self.module = Some(child);
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
        (rx, log)
    }

    /// Runs bridge-ble against edgehub-sim (reported properties are real there).
    pub fn module_on_hub(&mut self, hub: &Hub, log_name: &str) -> PathBuf {
        let ca = self.dir.path().join("ca.crt");
        std::fs::write(&ca, &hub.sim.certs.ca_pem).unwrap();
        let log = self.dir.path().join(log_name);
        let child = Command::new(env!("CARGO_BIN_EXE_bridge-ble"))
            .args(["--hub-port", &hub.sim.tls_addr.port().to_string(), "--ca-file"])
            .arg(&ca)
            .arg("--connection-string")
            .arg(format!("HostName=myhub.azure-devices.net;DeviceId=edge-gw;ModuleId=ble;SharedAccessKey={};GatewayHostName=localhost", Hub::KEY))
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.address)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        self.module = Some(child);
        log
    }

    /// The module's exit status, if it has exited.
    pub fn module_exited(&mut self) -> Option<std::process::ExitStatus> {
        self.module.as_mut()?.try_wait().unwrap()
    }

    /// The module's process id.
    pub fn module_pid(&self) -> Option<u32> {
        self.module.as_ref().map(Child::id)
    }
}

/// edgehub-sim with the module's identity and desired properties.
pub struct Hub {
    pub rt: tokio::runtime::Runtime,
    pub sim: edgehub_sim::Sim,
}

impl Hub {
    const KEY: &str = "Y2FwdHVyZS10ZXN0LWtleS0wMTIzNDU2Nzg5YWJjZGVm";

    pub fn start(desired: &Value) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        let sim = rt
            .block_on(edgehub_sim::Sim::start(edgehub_sim::SimOptions::default()))
            .unwrap();
        sim.hub.add_module(
            "edge-gw",
            "ble",
            bridge_core::identity::SymmetricKey::from_base64(Self::KEY).unwrap(),
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
