//! Field-side faults end to end (pymodbus → bridge-modbus → edgehub-sim): a serial adapter
//! unplugged and plugged back at the same path, a TCP device that hangs half-open, a TCP
//! device that goes away. Each test asserts correctness with generous timeouts
//! (telemetry resumes, the device went offline and came back online, no duplicates, no
//! restart: the module runs in-process the whole time) and prints a `FAULT-RESULT` JSON
//! line with the measured recovery time, which `tests/faults/run.sh` turns into a table.
//! `FAULT_OUTAGE_S` overrides every outage's length (the script runs 10 s, 20 s, 5 min).

#![allow(clippy::unwrap_used, clippy::print_stdout)] // a panic is the failure report; FAULT-RESULT lines feed tests/faults/run.sh

use std::time::Duration;

use bridge_core::identity::SymmetricKey;
use bridge_e2e::faults::{Relay, RelayState, continuity, now_ms, wait_for_messages};
use bridge_e2e::{PyModbus, init_tracing, reported_until, run_modbus_against};
use edgehub_sim::{Sim, SimOptions};
use serde_json::{Value, json};

const KEY: &str = "Y2FwdHVyZS10ZXN0LWtleS0wMTIzNDU2Nzg5YWJjZGVm";
const POLL_MS: u64 = 500;
const TIMEOUT_MS: u64 = 500;

fn outage(default_s: u64) -> Duration {
    Duration::from_secs(
        std::env::var("FAULT_OUTAGE_S")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default_s),
    )
}

fn spec() -> Value {
    json!({"units": {"1": {"holding": [{"address": 0, "type": "u16", "value": 4660}]}}})
}

fn map() -> Value {
    json!({"name": "one", "points": {"v": {"table": "holding", "address": 0, "type": "u16"}}})
}

async fn sim() -> Sim {
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    sim.hub
        .add_module("edge-gw", "modbus", SymmetricKey::from_base64(KEY).unwrap());
    sim
}

fn state_of(r: &Value, id: &str) -> Option<String> {
    r["deviceHealth"][id]["state"].as_str().map(str::to_owned)
}

/// Configures one device on `connection`, waits for telemetry, injects the fault with
/// `start`, waits until the device is reported offline, keeps the fault for `length`,
/// ends it with `end`, and measures how long telemetry takes to resume.
async fn run_fault<S, E>(
    name: &str,
    injection: &str,
    connection: Value,
    length: Duration,
    start: S,
    end: E,
) where
    S: AsyncFnOnce(),
    E: AsyncFnOnce(),
{
    let dir = tempfile::tempdir().unwrap();
    let sim = sim().await;
    sim.hub.set_desired(
        "edge-gw/modbus",
        &json!({"maps": {"one": map()}, "devices": {"d": {
            "map": "one", "connection": connection, "pollIntervalMs": POLL_MS, "timeoutMs": TIMEOUT_MS
        }}}),
    );
    let stop = run_modbus_against(&sim, "modbus", KEY, dir.path(), None)
        .await
        .unwrap();
    let generous = Duration::from_secs(60);
    reported_until(&sim.hub, "edge-gw/modbus", generous, |r| {
        state_of(r, "d").as_deref() == Some("online")
    })
    .await;
    sim.hub
        .wait_until(generous, |m| continuity(m, "d", 0).messages >= 2)
        .await
        .expect("telemetry before the fault");
    let fault_at = now_ms();
    start().await;
    reported_until(&sim.hub, "edge-gw/modbus", generous, |r| {
        state_of(r, "d").as_deref() == Some("offline")
    })
    .await;
    let offline_ms = now_ms() - fault_at;
    tokio::time::sleep(length.saturating_sub(Duration::from_millis(offline_ms as u64))).await;
    let connects_before = sim.hub.connect_count();
    end().await;
    let back_at = now_ms();
    // Generous: the target is timeout + poll interval + 5 s; the script reports the time.
    let msgs = wait_for_messages(&sim.hub, Duration::from_secs(60), |m| {
        continuity(m, "d", back_at).first_after_ms.is_some()
    })
    .await
    .expect("telemetry resumes after the fault ends, without a restart");
    let c = continuity(&msgs, "d", back_at);
    let recovered_ms = c.first_after_ms.unwrap() - back_at;
    reported_until(&sim.hub, "edge-gw/modbus", generous, |r| {
        state_of(r, "d").as_deref() == Some("online")
    })
    .await;
    assert_eq!(c.duplicates, 0, "no telemetry twice: {c:?}");
    assert_eq!(
        sim.hub.connect_count(),
        connects_before,
        "the hub session was not restarted by a field fault"
    );
    println!(
        "FAULT-RESULT {}",
        json!({
            "fault": name, "injection": injection, "outageS": length.as_secs(),
            "offlineReportedMs": offline_ms, "recoveredMs": recovered_ms,
            "targetMs": TIMEOUT_MS + POLL_MS + 5000,
            "messages": c.messages, "duplicates": c.duplicates, "restart": false
        })
    );
    stop.cancel();
}

async fn rtu_unplugged_for(length: Duration) {
    init_tracing();
    let server = std::sync::Arc::new(tokio::sync::Mutex::new(
        PyModbus::rtu(&spec()).await.unwrap(),
    ));
    let tty = server.lock().await.client_tty.display().to_string();
    let (s1, s2) = (server.clone(), server.clone());
    run_fault(
        "serial adapter unplugged",
        "socat pty pair killed (link removed), recreated at the same path",
        json!({"type": "rtu", "port": tty, "baudRate": 9600}),
        length,
        async move || s1.lock().await.unplug().await,
        async move || s2.lock().await.plug().await.unwrap(),
    )
    .await;
}

#[tokio::test]
async fn rtu_adapter_unplugged_10s() {
    rtu_unplugged_for(outage(10)).await;
}

#[tokio::test]
async fn rtu_adapter_unplugged_20s() {
    rtu_unplugged_for(outage(20)).await;
}

async fn tcp_relay_fault(name: &str, injection: &str, state: RelayState, length: Duration) {
    init_tracing();
    let server = PyModbus::tcp(&spec()).await.unwrap();
    let relay = std::sync::Arc::new(
        Relay::start(([127, 0, 0, 1], server.port).into())
            .await
            .unwrap(),
    );
    let port = relay.addr.port();
    let (r1, r2) = (relay.clone(), relay.clone());
    run_fault(
        name,
        injection,
        json!({"type": "tcp", "host": "127.0.0.1", "port": port}),
        length,
        async move || r1.set(state),
        async move || r2.set(RelayState::Open),
    )
    .await;
    drop(server);
}

#[tokio::test]
async fn tcp_device_half_open() {
    tcp_relay_fault(
        "TCP device half-open",
        "relay frozen: sockets open, nothing passes",
        RelayState::Frozen,
        outage(20),
    )
    .await;
}

#[tokio::test]
async fn tcp_device_gone() {
    tcp_relay_fault(
        "TCP device gone",
        "relay cut: connections closed and refused",
        RelayState::Cut,
        outage(20),
    )
    .await;
}
