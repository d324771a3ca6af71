//! A wall-clock step of +2 h and then -4 h (to 2 h behind), without touching the system
//! clock: the module runs in a child process under libfaketime with a fake wall clock
//! driven from a file (monotonic time left real). Polling must go on at its interval
//! through both steps (schedules run on monotonic time) while creation times follow the
//! wall clock. libfaketime comes from tests/setup-peers.sh; missing, the test fails.

#![allow(clippy::unwrap_used)] // a panic is the failure report

use std::process::Stdio;
use std::time::{Duration, Instant};

use bridge_e2e::faults::now_ms;
use bridge_e2e::rfc3339_millis;
use serde_json::json;
use tokio::io::AsyncBufReadExt;

const CHILD: &str = "EDGE_BRIDGE_CLOCK_CHILD";
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// The child: bridge-modbus with a simulated device polled every 250 ms, telemetry as JSON
/// lines on stdout, until killed.
fn run_child(config: &str) {
    let rt = bridge_core::runtime::module_runtime().unwrap();
    rt.block_on(async {
        let args = bridge_core::runtime::CommonArgs {
            config: Some(config.into()),
            upstream: Some("stdout".into()),
            topic_template: "{deviceId}/{output}".into(),
            mqtt_payload: "body".into(),
            connection_string: None,
            connection_string_file: None,
            ca_file: None,
            hub_port: 8883,
            spool_dir: None,
            spool_max_mb: 16,
            spool_fsync: bridge_core::forwarder::FsyncPolicy::default(),
            metrics: None,
            log: "warn".into(),
        };
        let stop = tokio_util::sync::CancellationToken::new();
        let _ = bridge_core::runtime::run_module(bridge_modbus::Modbus::new(), args, stop).await;
    });
}

#[test]
fn polling_survives_wall_clock_steps() {
    if let Ok(config) = std::env::var(CHILD) {
        return run_child(&config);
    }
    assert!(
        std::path::Path::new(LIBFAKETIME).exists(),
        "{LIBFAKETIME} is missing: run tests/setup-peers.sh (apt-get install libfaketime)"
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.json");
        std::fs::write(
            &config,
            json!({"devices": {"m": {"map": "eastron-sdm120", "connection": {"type": "simulated"}, "pollIntervalMs": 250}}}).to_string(),
        )
        .unwrap();
        let offset_file = dir.path().join("faketime");
        std::fs::write(&offset_file, "+0").unwrap();
        let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "polling_survives_wall_clock_steps", "--nocapture"])
            .env(CHILD, &config)
            .env("LD_PRELOAD", LIBFAKETIME)
            .env("FAKETIME_TIMESTAMP_FILE", &offset_file)
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
            .env("FAKETIME_NO_CACHE", "1")
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        // (real ms when read, creation time ms) of each telemetry line.
        let mut phase = async |secs: u64| {
            let mut seen = Vec::new();
            let end = Instant::now() + Duration::from_secs(secs);
            while let Ok(Ok(Some(line))) =
                tokio::time::timeout(end.saturating_duration_since(Instant::now()), lines.next_line()).await
            {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                if v["output"] != "telemetry" {
                    continue;
                }
                if let Some(t) = v["properties"]["iothub-creation-time-utc"].as_str().and_then(rfc3339_millis) {
                    seen.push((now_ms(), t));
                }
            }
            seen
        };
        let two_hours: i64 = 2 * 3600 * 1000;
        let before = phase(4).await;
        std::fs::write(&offset_file, "+7200").unwrap();
        let _ = phase(1).await;
        let ahead = phase(4).await;
        std::fs::write(&offset_file, "-7200").unwrap();
        let _ = phase(1).await;
        let behind = phase(4).await;
        let _ = child.kill().await;
        for (name, seen, skew) in [("before", &before, 0), ("ahead", &ahead, two_hours), ("behind", &behind, -two_hours)] {
            // 4 s at 250 ms is 16 polls; a schedule on the wall clock would stop for
            // hours after the backward step (or burst after the forward one).
            assert!(
                (8..=24).contains(&seen.len()),
                "{name}: {} polls in 4 s",
                seen.len()
            );
            for (real, created) in seen.iter() {
                let off = created - real - skew;
                assert!(off.abs() < 60_000, "{name}: creation time off the (fake) wall clock by {off} ms");
            }
        }
        println!(
            "wall-clock steps: polls in 4 s before {}, 2 h ahead {}, 2 h behind {}",
            before.len(),
            ahead.len(),
            behind.len()
        );
    });
}
