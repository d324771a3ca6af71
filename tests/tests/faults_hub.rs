//! Hub-side faults end to end (bridge-core's session, forwarder and spool → edgehub-sim):
//! an edgeHub that hangs half-open (a frozen relay: sockets open, nothing passes), an
//! edgeHub outage longer than the SAS token lifetime, and desired patches arriving while
//! the connection flaps. Correctness is asserted with generous timeouts; the measured
//! figures are printed as `FAULT-RESULT` lines for `tests/faults/run.sh`.

#![allow(clippy::unwrap_used, clippy::print_stdout)] // a panic is the failure report; FAULT-RESULT lines feed tests/faults/run.sh

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bridge_core::forwarder::{ForwarderOptions, TelemetrySender, spawn_forwarder};
use bridge_core::hub::{ConnState, SessionOptions, spawn_session};
use bridge_core::message::Message;
use bridge_core::methods::MethodRouter;
use bridge_core::spool::{Spool, SpoolOptions};
use bridge_core::upstream;
use bridge_e2e::faults::{Relay, RelayState, wait_for_messages};
use bridge_e2e::{eventually, init_tracing, module_credentials};
use edgehub_sim::{Recorded, Sim, SimOptions};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const KEY: &str = "Y2FwdHVyZS10ZXN0LWtleS0wMTIzNDU2Nzg5YWJjZGVm";
const T: Duration = Duration::from_secs(60);

fn outage(default_s: u64) -> Duration {
    Duration::from_secs(
        std::env::var("FAULT_OUTAGE_S")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default_s),
    )
}

async fn sim(options: SimOptions) -> Sim {
    let sim = Sim::start(options).await.unwrap();
    sim.hub.add_module(
        "edge-gw",
        "bridge",
        bridge_core::identity::SymmetricKey::from_base64(KEY).unwrap(),
    );
    sim
}

fn numbered(n: u64) -> Message {
    Message::json("telemetry", &json!({"n": n})).for_device("meter-1")
}

fn distinct(m: &[Recorded]) -> BTreeSet<u64> {
    m.iter().filter_map(|r| r.json()["n"].as_u64()).collect()
}

fn connected(state: &ConnState) -> bool {
    matches!(state, ConnState::Connected { .. })
}

/// Sends one numbered message every 100 ms until `stop`; returns how many.
fn feed(telemetry: TelemetrySender, stop: CancellationToken) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut n = 0;
        while !stop.is_cancelled() {
            if telemetry.send(numbered(n)).await.is_err() {
                break;
            }
            n += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        n
    })
}

#[tokio::test]
async fn half_open_edgehub_is_detected_by_keep_alive() {
    init_tracing();
    let sim = sim(SimOptions::default()).await;
    let relay = Relay::start(sim.tls_addr).await.unwrap();
    let mut creds = module_credentials(&sim, "bridge", KEY);
    creds.identity.port = relay.addr.port();
    let keep_alive = Duration::from_secs(2);
    let stop = CancellationToken::new();
    let (link, end) = upstream::link(64);
    let session = spawn_session(
        creds,
        SessionOptions {
            keep_alive,
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_millis(500),
            ..SessionOptions::default()
        },
        MethodRouter::new(),
        None,
        end,
        stop.clone(),
    );
    let (telemetry, fwd) = spawn_forwarder(
        Spool::open(&SpoolOptions::default()).unwrap(),
        link,
        ForwarderOptions::default(),
        stop.clone(),
    );
    let mut state = session.state();
    tokio::time::timeout(T, state.wait_for(connected))
        .await
        .unwrap()
        .unwrap();
    let feeding = CancellationToken::new();
    let fed = feed(telemetry, feeding.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    relay.set(RelayState::Frozen);
    let frozen = Instant::now();
    tokio::time::timeout(T, state.wait_for(|s| !connected(s)))
        .await
        .expect("the half-open hub is detected")
        .unwrap();
    let detected = frozen.elapsed();
    let length = outage(10);
    tokio::time::sleep(length.saturating_sub(detected)).await;
    relay.set(RelayState::Open);
    let back = Instant::now();
    tokio::time::timeout(T, state.wait_for(connected))
        .await
        .expect("reconnected after the hub is back")
        .unwrap();
    let reconnected = back.elapsed();
    feeding.cancel();
    let total = fed.await.unwrap();
    let got = wait_for_messages(&sim.hub, T, |m| distinct(m).len() as u64 == total)
        .await
        .unwrap_or_else(|m| panic!("{} of {total} arrived", distinct(&m).len()));
    let duplicates = got.len() - distinct(&got).len();
    eventually(T, "spool drained", || fwd.stats.borrow().pending == 0).await;
    println!(
        "FAULT-RESULT {}",
        json!({
            "fault": "edgeHub half-open", "injection": "TLS relay frozen: sockets open, nothing passes",
            "outageS": length.as_secs(), "keepAliveMs": keep_alive.as_millis() as u64,
            "detectedMs": detected.as_millis() as u64, "recoveredMs": reconnected.as_millis() as u64,
            "targetMs": (keep_alive * 3 / 2).as_millis() as u64,
            "messages": total, "lost": 0, "duplicates": duplicates, "restart": false
        })
    );
    stop.cancel();
}

#[tokio::test]
async fn hub_outage_longer_than_the_token_lifetime() {
    init_tracing();
    let sim = sim(SimOptions {
        token_skew: Duration::ZERO,
        ..SimOptions::default()
    })
    .await;
    let stop = CancellationToken::new();
    let (link, end) = upstream::link(64);
    let lifetime = Duration::from_secs(4);
    let session = spawn_session(
        module_credentials(&sim, "bridge", KEY),
        SessionOptions {
            token_lifetime: lifetime,
            renew_before: Duration::from_secs(1),
            backoff_min: Duration::from_millis(100),
            ..SessionOptions::default()
        },
        MethodRouter::new(),
        None,
        end,
        stop.clone(),
    );
    let (telemetry, fwd) = spawn_forwarder(
        Spool::open(&SpoolOptions::default()).unwrap(),
        link,
        ForwarderOptions::default(),
        stop.clone(),
    );
    let mut state = session.state();
    tokio::time::timeout(T, state.wait_for(connected))
        .await
        .unwrap()
        .unwrap();
    let feeding = CancellationToken::new();
    let fed = feed(telemetry, feeding.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let length = outage(12).max(lifetime * 2);
    sim.pause();
    tokio::time::sleep(length).await;
    sim.resume();
    let back = Instant::now();
    tokio::time::timeout(T, state.wait_for(connected))
        .await
        .expect("reconnected with a fresh token")
        .unwrap();
    let reconnected = back.elapsed();
    feeding.cancel();
    let total = fed.await.unwrap();
    let got = wait_for_messages(&sim.hub, T, |m| distinct(m).len() as u64 == total)
        .await
        .unwrap_or_else(|m| panic!("{} of {total} arrived", distinct(&m).len()));
    eventually(T, "spool drained", || fwd.stats.borrow().pending == 0).await;
    assert!(
        sim.hub.refusals().is_empty(),
        "no expired token was offered: {:?}",
        sim.hub.refusals()
    );
    println!(
        "FAULT-RESULT {}",
        json!({
            "fault": "edgeHub outage > token lifetime", "injection": "emulator paused (clients dropped, connections closed)",
            "outageS": length.as_secs(), "tokenLifetimeS": lifetime.as_secs(),
            "recoveredMs": reconnected.as_millis() as u64, "targetMs": 5000,
            "messages": total, "lost": 0, "duplicates": got.len() - distinct(&got).len(), "restart": false
        })
    );
    stop.cancel();
}

#[tokio::test]
async fn desired_patches_while_the_connection_flaps() {
    init_tracing();
    let sim = sim(SimOptions::default()).await;
    let stop = CancellationToken::new();
    let (_link, end) = upstream::link(64);
    let session = spawn_session(
        module_credentials(&sim, "bridge", KEY),
        SessionOptions {
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_millis(200),
            ..SessionOptions::default()
        },
        MethodRouter::new(),
        None,
        end,
        stop.clone(),
    );
    let mut desired = session.desired();
    tokio::time::timeout(T, desired.wait_for(Option::is_some))
        .await
        .unwrap()
        .unwrap();
    // Patches land on the hub while the module is connected, disconnected, and in the
    // middle of reconnecting; some are lost to the module as pushes and must be made up
    // for by the full GET after each reconnect.
    for round in 0..12u64 {
        sim.hub.set_desired(
            "edge-gw/bridge",
            &json!({"round": round, "keys": {format!("k{round}"): round}}),
        );
        if round % 3 == 0 {
            sim.pause();
        }
        sim.hub
            .set_desired("edge-gw/bridge", &json!({"during": round}));
        tokio::time::sleep(Duration::from_millis(150 + 40 * (round % 4))).await;
        if round % 3 == 0 {
            sim.resume();
        }
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    let twin = sim.hub.twin("edge-gw/bridge")["desired"].clone();
    let want_version = twin["$version"].as_u64().unwrap();
    let d = tokio::time::timeout(
        T,
        desired.wait_for(|d| d.as_ref().is_some_and(|d| d.version == want_version)),
    )
    .await
    .expect("the module's desired document reaches the hub's version")
    .unwrap()
    .clone()
    .unwrap();
    let mut expected = twin.clone();
    if let Some(o) = expected.as_object_mut() {
        o.retain(|k, _| !k.starts_with('$'));
    }
    assert_eq!(d.doc, expected, "the merged document equals the hub's");
    assert!(sim.hub.connect_count() >= 5, "the connection flapped");
    stop.cancel();
}

#[tokio::test]
async fn edgehub_restart_with_its_state_directory() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let options = SimOptions {
        state_dir: Some(dir.path().to_owned()),
        ..SimOptions::default()
    };
    let first = sim(options.clone()).await;
    first
        .hub
        .set_desired("edge-gw/bridge", &json!({"devices": {"a": 1}}));
    let stop = CancellationToken::new();
    let (link, end) = upstream::link(64);
    // The module trusts the first instance's CA and never hears of another.
    let creds = module_credentials(&first, "bridge", KEY);
    let session = spawn_session(
        creds,
        SessionOptions {
            backoff_min: Duration::from_millis(100),
            ..SessionOptions::default()
        },
        MethodRouter::new(),
        None,
        end,
        stop.clone(),
    );
    let (telemetry, fwd) = spawn_forwarder(
        Spool::open(&SpoolOptions::default()).unwrap(),
        link,
        ForwarderOptions::default(),
        stop.clone(),
    );
    let mut desired = session.desired();
    tokio::time::timeout(T, desired.wait_for(Option::is_some))
        .await
        .unwrap()
        .unwrap();
    session
        .report_and_wait(json!({"kept": true}), T)
        .await
        .unwrap();
    let before = first.hub.twin("edge-gw/bridge");
    let port = first.tls_addr.port();
    let feeding = CancellationToken::new();
    let fed = feed(telemetry, feeding.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let early = first.hub.messages();
    drop(first);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let second = Sim::start(SimOptions {
        tls_port: port,
        ..options
    })
    .await
    .unwrap();
    // No add_module: the identity, its twin and the CA come from the state directory.
    assert_eq!(second.hub.twin("edge-gw/bridge"), before);
    second
        .hub
        .set_desired("edge-gw/bridge", &json!({"devices": {"b": 2}}));
    let d = tokio::time::timeout(
        T,
        desired.wait_for(|d| d.as_ref().is_some_and(|d| d.doc["devices"]["b"] == 2)),
    )
    .await
    .expect("the module reconnects to the restarted hub and sees the new patch")
    .unwrap()
    .clone()
    .unwrap();
    assert_eq!(d.doc["devices"], json!({"a": 1, "b": 2}));
    assert_eq!(
        d.version,
        before["desired"]["$version"].as_u64().unwrap() + 1
    );
    feeding.cancel();
    let total = fed.await.unwrap();
    let late = wait_for_messages(&second.hub, T, |m| {
        let mut all = distinct(m);
        all.extend(distinct(&early));
        all.len() as u64 == total
    })
    .await;
    assert!(late.is_ok(), "telemetry lost across the hub restart");
    eventually(T, "spool drained", || fwd.stats.borrow().pending == 0).await;
    stop.cancel();
}
