//! Harness for end-to-end tests: the emulator on a private loopback address, the Python
//! peers from the project's venv, and free ports. Missing peers fail loudly.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use edgehub_sim::{Sim, SimOptions};

pub mod faults;
pub mod scale;
pub mod soak_ble;
pub mod soak_modbus;

/// Repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The venv Python with the pinned peers (`.ci/run` creates it).
pub fn peer_python() -> PathBuf {
    let path = std::env::var_os("EDGE_BRIDGE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv-peers/bin/python"));
    assert!(
        path.exists(),
        "Python peers are missing at {}: run `.ci/run` (or tests/setup-peers.sh) first",
        path.display()
    );
    path
}

/// Logs to the test output (once per process).
pub fn init_tracing() {
    let _ignored = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .try_init();
}

/// Starts the emulator on a random 127.x.y.z address at port 8883, which is what the
/// Python SDK always dials. Each test gets its own address, so tests run in parallel.
pub async fn sim_on_8883(mut options: SimOptions) -> Result<Sim> {
    for _ in 0..20 {
        let ip = Ipv4Addr::new(127, rand_byte(), rand_byte(), rand_byte());
        options.bind = IpAddr::V4(ip);
        options.tls_port = 8883;
        match Sim::start(options.clone()).await {
            Ok(sim) => return Ok(sim),
            Err(edgehub_sim::SimError::Bind { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    bail!("no free 127.x.y.z:8883 found")
}

fn rand_byte() -> u8 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(7);
    let mixed = nanos.wrapping_mul(2_654_435_761).rotate_left(13) ^ std::process::id();
    (mixed % 250) as u8 + 2
}

/// Runs `tests/python/{script}` with `args` and `envs`; returns the last stdout line as JSON.
pub async fn run_python(
    script: &str,
    args: &[&str],
    envs: &[(&str, String)],
    timeout: Duration,
) -> Result<serde_json::Value> {
    let mut cmd = tokio::process::Command::new(peer_python());
    cmd.arg(repo_root().join("tests/python").join(script))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let child = cmd.spawn().context("starting python")?;
    let output = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .context("python timed out")??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!(
            "{script} {args:?} failed ({}):\n{stdout}\n{stderr}",
            output.status
        );
    }
    let last = stdout.lines().last().context("no output")?;
    serde_json::from_str(last).with_context(|| format!("not JSON: {last}\n{stderr}"))
}

/// Writes the emulator's CA to a file in `dir` and returns its path.
pub fn write_ca(sim: &Sim, dir: &Path) -> Result<PathBuf> {
    let path = dir.join("ca.crt");
    std::fs::write(&path, &sim.certs.ca_pem)?;
    Ok(path)
}

/// Connection-string credentials for a module of the emulator, trusting its CA.
pub fn module_credentials(
    sim: &Sim,
    module: &str,
    key: &str,
) -> bridge_core::identity::Credentials {
    use bridge_core::identity::{Credentials, HubIdentity, Signer, SymmetricKey, TrustRoots};
    Credentials {
        identity: HubIdentity {
            hub_hostname: "myhub.azure-devices.net".into(),
            device_id: "edge-gw".into(),
            module_id: Some(module.into()),
            connect_host: "localhost".into(),
            port: sim.tls_addr.port(),
            model_id: None,
        },
        signer: Signer::Key(SymmetricKey::from_base64(key).expect("test key")),
        trust: TrustRoots::Pem(sim.certs.ca_pem.clone()),
    }
}

/// Waits until `cond` holds, polling every 20 ms.
pub async fn eventually(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + timeout;
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A free TCP port on 127.0.0.1 (bound and released; fine for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

#[derive(Debug)]
/// A mosquitto broker started by the test (Debian's `mosquitto`), persistent sessions on.
pub struct Mosquitto {
    child: Option<tokio::process::Child>,
    /// Its port.
    pub port: u16,
    conf: PathBuf,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    /// Starts mosquitto on a free port and waits until it accepts connections.
    pub async fn start() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let port = free_port();
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "user root\nlistener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\nlog_dest stderr\nlog_type error\n",
                dir.path().display()
            ),
        )?;
        let mut me = Self {
            child: None,
            port,
            conf,
            _dir: dir,
        };
        me.spawn().await?;
        Ok(me)
    }

    async fn spawn(&mut self) -> Result<()> {
        let child = tokio::process::Command::new("mosquitto")
            .arg("-c")
            .arg(&self.conf)
            .kill_on_drop(true)
            .spawn()
            .context("mosquitto is not installed: run .ci/run (apt-get install mosquitto)")?;
        self.child = Some(child);
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("mosquitto did not start on port {}", self.port)
    }

    /// Stops it with SIGTERM (it saves persistent sessions) and waits.
    pub async fn stop(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                std::process::Command::new("kill")
                    .arg("-TERM")
                    .arg(pid.to_string())
                    .status()?;
            }
            tokio::time::timeout(Duration::from_secs(10), child.wait()).await??;
        }
        Ok(())
    }

    /// Starts it again on the same port with the same persistence.
    pub async fn restart(&mut self) -> Result<()> {
        self.spawn().await
    }
}

/// A pymodbus server (tests/python/modbus_server.py) over TCP or RTU on a socat pty pair.
#[derive(Debug)]
pub struct PyModbus {
    server: Option<tokio::process::Child>,
    socat: Option<tokio::process::Child>,
    /// TCP port (TCP mode).
    pub port: u16,
    /// The client's end of the pty pair (RTU mode).
    pub client_tty: PathBuf,
    spec: PathBuf,
    mode: &'static str,
    server_tty: PathBuf,
    _dir: tempfile::TempDir,
}

impl PyModbus {
    /// Serves `spec` over Modbus TCP on a free port.
    pub async fn tcp(spec: &serde_json::Value) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let spec_path = dir.path().join("spec.json");
        std::fs::write(&spec_path, spec.to_string())?;
        let mut me = Self {
            server: None,
            socat: None,
            port: free_port(),
            client_tty: PathBuf::new(),
            spec: spec_path,
            mode: "tcp",
            server_tty: PathBuf::new(),
            _dir: dir,
        };
        me.start_server().await?;
        Ok(me)
    }

    /// Serves `spec` over RTU on one end of a socat pty pair; the module uses `client_tty`.
    pub async fn rtu(spec: &serde_json::Value) -> Result<Self> {
        Self::serial(spec, "rtu").await
    }

    /// Serves `spec` over Modbus ASCII on one end of a socat pty pair.
    pub async fn ascii(spec: &serde_json::Value) -> Result<Self> {
        Self::serial(spec, "ascii").await
    }

    async fn serial(spec: &serde_json::Value, mode: &'static str) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let spec_path = dir.path().join("spec.json");
        std::fs::write(&spec_path, spec.to_string())?;
        let (server_tty, client_tty) = (dir.path().join("ttyS0"), dir.path().join("ttyS1"));
        let socat = tokio::process::Command::new("socat")
            .arg(format!("pty,raw,echo=0,link={}", server_tty.display()))
            .arg(format!("pty,raw,echo=0,link={}", client_tty.display()))
            .kill_on_drop(true)
            .spawn()
            .context("socat is not installed: run .ci/run (apt-get install socat)")?;
        for _ in 0..100 {
            if server_tty.exists() && client_tty.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut me = Self {
            server: None,
            socat: Some(socat),
            port: 0,
            client_tty,
            spec: spec_path,
            mode,
            server_tty,
            _dir: dir,
        };
        me.start_server().await?;
        Ok(me)
    }

    async fn start_server(&mut self) -> Result<()> {
        use tokio::io::AsyncBufReadExt;
        let mut cmd = tokio::process::Command::new(peer_python());
        cmd.arg(repo_root().join("tests/python/modbus_server.py"))
            .arg("--mode")
            .arg(self.mode)
            .arg("--spec")
            .arg(&self.spec);
        if self.mode == "tcp" {
            cmd.arg("--port").arg(self.port.to_string());
        } else {
            cmd.arg("--device").arg(&self.server_tty);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting pymodbus")?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .context("pymodbus did not start")??;
        if ready.as_deref() != Some("ready") {
            bail!("pymodbus failed to start: {ready:?}");
        }
        self.server = Some(child);
        Ok(())
    }

    /// Kills the server (the device goes away).
    pub async fn stop(&mut self) {
        if let Some(mut c) = self.server.take() {
            let _ignored = c.kill().await;
        }
    }

    /// Starts the server again with the same spec.
    pub async fn restart(&mut self) -> Result<()> {
        self.stop().await;
        self.start_server().await
    }

    /// Whether socat is still up (RTU).
    pub fn has_socat(&self) -> bool {
        self.socat.is_some()
    }
}

/// Runs a module binary's logic in-process against the emulator, as IoT Edge would
/// (connection string with the emulator's CA), until the returned token is cancelled.
pub async fn run_modbus_against(
    sim: &Sim,
    module: &str,
    key: &str,
    dir: &Path,
    config_file: Option<PathBuf>,
) -> Result<tokio_util::sync::CancellationToken> {
    run_modbus_with_metrics(sim, module, key, dir, config_file, None).await
}

/// [`run_modbus_against`], also serving Prometheus metrics on `metrics`.
pub async fn run_modbus_with_metrics(
    sim: &Sim,
    module: &str,
    key: &str,
    dir: &Path,
    config_file: Option<PathBuf>,
    metrics: Option<std::net::SocketAddr>,
) -> Result<tokio_util::sync::CancellationToken> {
    run_modbus_with(
        sim,
        module,
        key,
        dir,
        ModbusRun {
            config_file,
            metrics,
            spool_dir: None,
        },
    )
    .await
}

/// Optional settings of an in-process module run.
#[derive(Debug, Default, Clone)]
pub struct ModbusRun {
    /// `--config`.
    pub config_file: Option<PathBuf>,
    /// `--metrics`.
    pub metrics: Option<std::net::SocketAddr>,
    /// `--spool-dir`.
    pub spool_dir: Option<PathBuf>,
}

/// [`run_modbus_against`] with any of [`ModbusRun`]'s settings.
pub async fn run_modbus_with(
    sim: &Sim,
    module: &str,
    key: &str,
    dir: &Path,
    run: ModbusRun,
) -> Result<tokio_util::sync::CancellationToken> {
    let ModbusRun {
        config_file,
        metrics,
        spool_dir,
    } = run;
    let ca = write_ca(sim, dir)?;
    let args = bridge_core::runtime::CommonArgs {
        config: config_file,
        upstream: Some("edge".into()),
        topic_template: "{deviceId}/{output}".into(),
        mqtt_payload: "body".into(),
        connection_string: Some(format!(
            "HostName=myhub.azure-devices.net;DeviceId=edge-gw;ModuleId={module};SharedAccessKey={key};GatewayHostName=localhost"
        )),
        connection_string_file: None,
        ca_file: Some(ca.display().to_string()),
        hub_port: sim.tls_addr.port(),
        spool_dir,
        spool_max_mb: 16,
        metrics,
        spool_fsync: bridge_core::forwarder::FsyncPolicy::default(),
        log: "info".into(),
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(async move {
        if let Err(e) =
            bridge_core::runtime::run_module(bridge_modbus::Modbus::new(), args, token).await
        {
            tracing::error!(error = %e, "module ended");
        }
    });
    Ok(stop)
}

/// Process resource figures read from /proc (Linux), for benchmarks.
pub mod procstat {
    /// Current and peak resident set size of this process, KiB.
    pub fn rss_kib() -> (u64, u64) {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// User + system CPU time of this process, seconds.
    pub fn cpu_seconds() -> f64 {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        // Fields after the ")" that ends the command name; utime and stime are 14 and 15.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        // rest starts at field 3 (state), so utime (14) is index 11.
        (ticks(11) + ticks(12)) / 100.0
    }
}

/// Epoch milliseconds of an RFC 3339 UTC time as we write it (`2026-11-26T13:03:15.127Z`).
pub fn rfc3339_millis(t: &str) -> Option<i64> {
    let (date, time) = t.trim_end_matches('Z').split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, ms) = time.split_once('.').unwrap_or((time, "0"));
    let mut h = hms.split(':').map(|x| x.parse::<i64>().ok());
    let (hh, mm, ss) = (h.next()??, h.next()??, h.next()??);
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(
        ((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1000)
            + ms.get(..3).unwrap_or("0").parse::<i64>().ok()?,
    )
}

/// Polls `id`'s reported properties on the emulator until `pred` holds; panics with the
/// last document after `timeout`.
pub async fn reported_until(
    hub: &edgehub_sim::Hub,
    id: &str,
    timeout: Duration,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let r = hub.twin(id)["reported"].clone();
        if pred(&r) {
            return r;
        }
        assert!(std::time::Instant::now() < deadline, "{id} reported: {r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
