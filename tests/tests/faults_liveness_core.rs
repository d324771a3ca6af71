//! Liveness of the core's long-lived tasks, end to end: the module runs as a separate
//! process (this test binary re-executed, with a test hook armed in that process only)
//! against the edgeHub emulator, and a wedged task must end it with `EXIT_STALLED` so
//! the IoT Edge agent restarts it, with the reason in the reported `liveness`.
//! - the forwarder, wedged while the hub is connected and telemetry flows: exit, and a
//!   restart on the same spool delivers again;
//! - the config follower, wedged applying a desired patch: exit, the patch never
//!   reported as applied.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bridge_core::identity::SymmetricKey;
use bridge_e2e::faults::{continuity, now_ms};
use bridge_e2e::{init_tracing, reported_until, write_ca};
use edgehub_sim::{Sim, SimOptions};
use serde_json::{Value, json};

const KEY: &str = "bGl2ZW5lc3MtdGVzdC1rZXktMDEyMzQ1Njc4OWFiY2Q=";
const CHILD: &str = "EDGE_BRIDGE_LIVENESS_TEST_CHILD";
const EXIT_STALLED: i32 = bridge_core::watchdog::EXIT_STALLED;

/// In the child: arm the hook the spec names, then run the module until it ends.
async fn child(spec: &str) {
    let spec: Value = serde_json::from_str(spec).unwrap();
    let s = |k: &str| spec[k].as_str().map(PathBuf::from);
    if let Some(n) = spec["wedgeForwarderAfter"].as_u64() {
        bridge_core::forwarder::hooks::wedge_after_sent(n);
    }
    if let Some(v) = spec["wedgeApplyOf"].as_u64() {
        bridge_core::runtime::config_source::wedge_apply_of_version(v);
    }
    let args = bridge_core::runtime::CommonArgs {
        config: s("config"),
        upstream: Some("edge".into()),
        topic_template: "{deviceId}/{output}".into(),
        mqtt_payload: "body".into(),
        connection_string: None,
        connection_string_file: s("csFile"),
        ca_file: spec["ca"].as_str().map(str::to_owned),
        hub_port: spec["port"].as_u64().unwrap() as u16,
        spool_dir: s("spool"),
        spool_max_mb: 16,
        spool_fsync: "interval:500ms".parse().unwrap(),
        metrics: None,
        log: "info".into(),
    };
    bridge_core::runtime::init_logging("info");
    let ended = bridge_core::runtime::run_module(
        bridge_modbus::Modbus::new(),
        args,
        tokio_util::sync::CancellationToken::new(),
    )
    .await;
    // Only the watchdog ends this module (with EXIT_STALLED); anything else is a failure.
    eprintln!("module ended: {ended:?}");
    std::process::exit(3);
}

fn spawn_child(test: &str, spec: &Value, log: &Path) -> std::process::Child {
    std::process::Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture"])
        .env(CHILD, spec.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// The child's exit code, waiting at most `timeout`.
async fn exit_code(child: &mut std::process::Child, timeout: Duration) -> Option<i32> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct Setup {
    sim: Sim,
    dir: tempfile::TempDir,
    spec: Value,
}

async fn setup() -> Setup {
    init_tracing();
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    sim.hub
        .add_module("edge-gw", "modbus", SymmetricKey::from_base64(KEY).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let cs_file = dir.path().join("cs");
    std::fs::write(
        &cs_file,
        format!("HostName=myhub.azure-devices.net;DeviceId=edge-gw;ModuleId=modbus;SharedAccessKey={KEY};GatewayHostName=localhost\n"),
    )
    .unwrap();
    let spec = json!({
        "csFile": cs_file, "ca": write_ca(&sim, dir.path()).unwrap(),
        "port": sim.tls_addr.port(), "spool": dir.path().join("spool"),
    });
    Setup { sim, dir, spec }
}

fn meter(poll_ms: u64) -> Value {
    json!({"map": "eastron-sdm120", "connection": {"type": "simulated"}, "pollIntervalMs": poll_ms})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wedged_forwarder_ends_the_module_and_a_restart_delivers_again() {
    const TEST: &str = "a_wedged_forwarder_ends_the_module_and_a_restart_delivers_again";
    if let Ok(spec) = std::env::var(CHILD) {
        return child(&spec).await;
    }
    let Setup { sim, dir, mut spec } = setup().await;
    let config = dir.path().join("config.json");
    std::fs::write(&config, json!({"devices": {"m1": meter(100)}}).to_string()).unwrap();
    spec["config"] = json!(config);
    let mut wedged = spec.clone();
    wedged["wedgeForwarderAfter"] = json!(20);
    let log = dir.path().join("first.log");
    let started = Instant::now();
    let mut first = spawn_child(TEST, &wedged, &log);
    sim.hub
        .wait_until(Duration::from_secs(30), |m| {
            continuity(m, "m1", 0).messages >= 10
        })
        .await
        .map_err(|m| m.len())
        .expect("telemetry before the wedge");
    // The loop wedges with the hub connected: the turn limit (tick + 30 s) applies.
    let code = exit_code(&mut first, Duration::from_secs(90)).await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(code, Some(EXIT_STALLED), "log:\n{text}");
    println!(
        "forwarder wedge to exit: {:.1} s after start",
        started.elapsed().as_secs_f64()
    );
    assert!(
        text.contains("Exiting: a task stalled beyond healing"),
        "{text}"
    );
    let reported = reported_until(&sim.hub, "edge-gw/modbus", Duration::from_secs(5), |r| {
        r["liveness"]["stalls"]["forwarder"]["reason"].is_string()
    })
    .await;
    println!("reported: {}", reported["liveness"]);
    let delivered = continuity(&sim.hub.messages(), "m1", 0).messages;
    assert!(
        delivered <= 20 + 64,
        "the wedge stopped delivery (at most a window in flight): {delivered}"
    );
    // The agent's restart, on the same spool and without the hook: telemetry again.
    let restarted_at = now_ms();
    let mut second = spawn_child(TEST, &spec, &dir.path().join("second.log"));
    let msgs = sim
        .hub
        .wait_until(Duration::from_secs(30), |m| {
            continuity(m, "m1", restarted_at).messages >= 5
        })
        .await
        .expect("telemetry after the restart");
    let _ = second.kill();
    let _ = second.wait();
    println!(
        "after the restart: {:?}",
        continuity(&msgs, "m1", restarted_at)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wedged_config_apply_ends_the_module() {
    const TEST: &str = "a_wedged_config_apply_ends_the_module";
    if let Ok(spec) = std::env::var(CHILD) {
        return child(&spec).await;
    }
    let Setup { sim, dir, mut spec } = setup().await;
    let first = sim
        .hub
        .set_desired("edge-gw/modbus", &json!({"devices": {"m1": meter(200)}}));
    spec["wedgeApplyOf"] = json!(first + 1);
    let log = dir.path().join("module.log");
    let mut child = spawn_child(TEST, &spec, &log);
    sim.hub
        .wait_until(Duration::from_secs(30), |m| {
            continuity(m, "m1", 0).messages >= 3
        })
        .await
        .expect("telemetry from the first configuration");
    let patched_at = Instant::now();
    let second = sim
        .hub
        .set_desired("edge-gw/modbus", &json!({"devices": {"m2": meter(200)}}));
    assert_eq!(second, first + 1);
    let code = exit_code(&mut child, Duration::from_secs(90)).await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(code, Some(EXIT_STALLED), "log:\n{text}");
    println!(
        "wedged apply to exit: {:.1} s (limit 30 s)",
        patched_at.elapsed().as_secs_f64()
    );
    let reported = reported_until(&sim.hub, "edge-gw/modbus", Duration::from_secs(5), |r| {
        r["liveness"]["stalls"]["config_follower"]["reason"].is_string()
    })
    .await;
    assert_eq!(
        reported["configStatus"]["appliedVersion"],
        json!(first),
        "the wedged patch was never reported as applied: {reported}"
    );
    assert!(
        continuity(&sim.hub.messages(), "m2", 0).messages == 0,
        "the wedged patch's device never polled"
    );
}
