//! Liveness end to end: a poll task wedged forever (through the module's test hook, as a
//! bug that never returns would) is found by the watchdog, restarted with the reason in
//! the reported `liveness` and the log, and telemetry resumes, without restarting the
//! module. Its own test binary: the watchdog is per process.

#![allow(clippy::unwrap_used)] // a panic is the failure report

use std::time::Duration;

use bridge_core::identity::SymmetricKey;
use bridge_e2e::faults::{continuity, now_ms};
use bridge_e2e::{init_tracing, reported_until, run_modbus_against};
use edgehub_sim::{Sim, SimOptions};
use serde_json::json;

const KEY: &str = "Y2FwdHVyZS10ZXN0LWtleS0wMTIzNDU2Nzg5YWJjZGVm";

#[tokio::test]
async fn a_wedged_poller_is_restarted_by_the_watchdog() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    sim.hub
        .add_module("edge-gw", "modbus", SymmetricKey::from_base64(KEY).unwrap());
    sim.hub.set_desired(
        "edge-gw/modbus",
        &json!({"devices": {
            "stuck": {"map": "eastron-sdm120", "connection": {"type": "simulated"}, "pollIntervalMs": 200, "timeoutMs": 300},
            "fine": {"map": "eastron-sdm120", "connection": {"type": "simulated"}, "pollIntervalMs": 200, "timeoutMs": 300}
        }}),
    );
    let stop = run_modbus_against(&sim, "modbus", KEY, dir.path(), None)
        .await
        .unwrap();
    let t = Duration::from_secs(60);
    sim.hub
        .wait_until(t, |m| continuity(m, "stuck", 0).messages >= 3)
        .await
        .expect("telemetry before the wedge");
    let connects = sim.hub.connect_count();
    bridge_modbus::hooks::wedge_next_poll("stuck");
    let wedged_at = now_ms();
    // Stall limit for 200 ms / 300 ms: (2.2 s + 0.3 s) * 3 + 10 s = 17.5 s.
    let reported = reported_until(&sim.hub, "edge-gw/modbus", Duration::from_secs(90), |r| {
        r["liveness"]["stalls"]["poller_stuck"]["reason"].is_string()
    })
    .await;
    assert!(reported["liveness"]["restarts"].as_u64().unwrap() >= 1);
    let restarted_at = now_ms();
    let msgs = sim
        .hub
        .wait_until(t, |m| {
            continuity(m, "stuck", restarted_at)
                .first_after_ms
                .is_some()
        })
        .await
        .expect("telemetry resumes after the restart");
    let stuck = continuity(&msgs, "stuck", wedged_at);
    assert!(
        stuck.largest_gap_ms >= 10_000,
        "the wedge really stopped polling: {stuck:?}"
    );
    let fine = continuity(&msgs, "fine", wedged_at);
    assert!(
        fine.largest_gap_ms < 10_000,
        "the other device kept polling: {fine:?}"
    );
    assert_eq!(sim.hub.connect_count(), connects, "no module restart");
    stop.cancel();
}
