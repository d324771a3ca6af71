//! What the Modbus scale benchmarks share (`benches/modbus_scale.rs`,
//! `benches/modbus_edgehub_scale.rs`): the 20-point device map, child processes of the
//! bench binary itself (simulated devices, subscribers, the measured module, so CPU and
//! memory are the module's alone), the module's command line, and one measurement: the
//! module run in-process, its poll counters and CPU sampled over a window after warm-up.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bridge_modbus::poller::PollStats;
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;
use tokio_util::sync::CancellationToken;

use crate::procstat;

/// The benchmarks' device map: 20 holding-register points (f32, u16 scaled, i16, u32 in
/// turn), 30 registers.
pub fn bench_map() -> Value {
    let mut points = serde_json::Map::new();
    let mut addr = 0;
    for i in 0..20 {
        let (t, w, unit) = match i % 4 {
            0 => ("f32", 2, "V"),
            1 => ("u16", 1, "A"),
            2 => ("i16", 1, "W"),
            _ => ("u32", 2, "kWh"),
        };
        let mut p = json!({"table": "holding", "address": addr, "type": t, "unit": unit});
        if t == "u16" {
            p["scale"] = json!(0.1);
        }
        points.insert(format!("p{i}"), p);
        addr += w;
    }
    json!({"name": "bench20", "points": points})
}

/// Stdout lines of a child.
pub type ChildLines = tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>;

/// The bench binary itself as a child with `args`, its stdin held open (children live
/// until it closes) and its stdout read line by line. With `RT_PRIORITY=N` in the
/// environment, a `--measure` child (the module) runs under `chrt -f N`, so the load of
/// other processes does not reach its timers.
pub fn self_child(args: &[String]) -> (tokio::process::Child, ChildLines) {
    let exe = std::env::current_exe().unwrap_or_default();
    let rt = std::env::var("RT_PRIORITY")
        .ok()
        .filter(|_| args.first().map(String::as_str) == Some("--measure"));
    let mut cmd = match &rt {
        Some(p) => {
            let mut c = tokio::process::Command::new("chrt");
            c.args(["-f", p]).arg(&exe);
            c
        }
        None => tokio::process::Command::new(&exe),
    };
    #[allow(clippy::expect_used)] // a benchmark that cannot start its children stops
    let mut child = cmd
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the bench starts itself as a child");
    #[allow(clippy::expect_used)]
    let stdout = child.stdout.take().expect("piped stdout");
    (child, tokio::io::BufReader::new(stdout).lines())
}

/// Returns once the parent goes away (stdin closes): a child's lifetime.
pub async fn until_stdin_closes() {
    let mut sink = Vec::new();
    let _ = tokio::task::spawn_blocking(move || {
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink)
    })
    .await;
}

/// The module's command line: `upstream` with `topic_template` and `mqtt_payload`,
/// configuration from `config` (or the twin), in-memory spool, no metrics endpoint.
pub fn module_args(
    upstream: &str,
    topic_template: &str,
    mqtt_payload: &str,
    config: Option<PathBuf>,
) -> bridge_core::runtime::CommonArgs {
    bridge_core::runtime::CommonArgs {
        config,
        upstream: Some(upstream.into()),
        topic_template: topic_template.into(),
        mqtt_payload: mqtt_payload.into(),
        connection_string: None,
        connection_string_file: None,
        ca_file: None,
        hub_port: 8883,
        spool_dir: None,
        spool_max_mb: 64,
        spool_fsync: bridge_core::forwarder::FsyncPolicy::default(),
        metrics: None,
        log: "warn".into(),
    }
}

/// Lets a benchmark keep a handle on the module's stats while the runtime owns it.
#[derive(Debug)]
pub struct SharedModbus(pub Arc<bridge_modbus::Modbus>);

impl bridge_core::runtime::Protocol for SharedModbus {
    type Config = bridge_modbus::config::ModbusConfig;
    fn name(&self) -> &'static str {
        "bridge-modbus"
    }
    fn parse_config(&self, doc: &Value) -> Result<Self::Config, bridge_core::config::ConfigErrors> {
        self.0.parse_config(doc)
    }
    fn demo_config(&self) -> Value {
        self.0.demo_config()
    }
    async fn run(self: Arc<Self>, cx: bridge_core::runtime::ModuleContext<Self::Config>) {
        self.0.clone().run(cx).await;
    }
}

/// The module's counters over the measurement window (deltas) and at the end.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    /// Window length, s.
    pub secs: f64,
    /// CPU time of this process in the window, s.
    pub cpu: f64,
    /// Poll cycles completed in the window.
    pub polls: u64,
    /// Modbus requests sent in the window.
    pub requests: u64,
    /// Values published in the window.
    pub values: u64,
    /// Sum of poll lateness in the window, µs.
    pub lateness_us: u64,
    /// Largest poll lateness of any device since start, µs.
    pub max_lateness_us: u64,
    /// Resident memory and its peak at the end of the window, KiB.
    pub rss_kib: (u64, u64),
    /// Devices online at the end of the window.
    pub online: u64,
    /// Polls that published a message (polls minus failures), since start, after stop.
    pub published: u64,
}

/// Runs the module in this process with `args`, waits `warmup`, samples its counters
/// over `window`, stops it.
pub async fn run_sampled(
    args: bridge_core::runtime::CommonArgs,
    warmup: Duration,
    window: Duration,
) -> Sample {
    let module = Arc::new(bridge_modbus::Modbus::new());
    let stop = CancellationToken::new();
    let run = tokio::spawn(bridge_core::runtime::run_module(
        SharedModbus(module.clone()),
        args,
        stop.clone(),
    ));
    tokio::time::sleep(warmup).await;
    let sum = |f: fn(&PollStats) -> &std::sync::atomic::AtomicU64| {
        module
            .stats()
            .values()
            .map(|s| f(s).load(Ordering::Relaxed))
            .sum::<u64>()
    };
    let (cpu0, polls0, req0, values0, late0) = (
        procstat::cpu_seconds(),
        sum(|s| &s.polls),
        sum(|s| &s.requests),
        sum(|s| &s.values),
        sum(|s| &s.lateness_us),
    );
    let t0 = Instant::now();
    tokio::time::sleep(window).await;
    let mut out = Sample {
        secs: t0.elapsed().as_secs_f64(),
        cpu: procstat::cpu_seconds() - cpu0,
        polls: sum(|s| &s.polls) - polls0,
        requests: sum(|s| &s.requests) - req0,
        values: sum(|s| &s.values) - values0,
        lateness_us: sum(|s| &s.lateness_us) - late0,
        max_lateness_us: module
            .stats()
            .values()
            .map(|s| s.max_lateness_us.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0),
        rss_kib: procstat::rss_kib(),
        online: sum(|s| &s.online),
        published: 0,
    };
    stop.cancel();
    let _ = run.await;
    out.published = sum(|s| &s.polls) - sum(|s| &s.failures);
    out
}
