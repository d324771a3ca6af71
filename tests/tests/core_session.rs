//! bridge-core's hub session, forwarder and spool against edgehub-sim (whose fidelity
//! the python_sdk tests establish).

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::collections::BTreeSet;
use std::time::Duration;

use bridge_core::forwarder::{ForwarderOptions, spawn_forwarder};
use bridge_core::hub::{ConnState, SessionOptions, spawn_session};
use bridge_core::identity::{
    Credentials, EdgeEnvironment, Signer, WorkloadClient, WorkloadEndpoint,
};
use bridge_core::message::Message;
use bridge_core::methods::{MethodResponse, MethodRouter};
use bridge_core::spool::{Spool, SpoolOptions};
use bridge_core::upstream;
use bridge_e2e::{eventually, init_tracing, module_credentials};
use edgehub_sim::{Sim, SimOptions};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const KEY: &str = "Y2FwdHVyZS10ZXN0LWtleS0wMTIzNDU2Nzg5YWJjZGVm";
const T: Duration = Duration::from_secs(20);

async fn sim() -> Sim {
    let sim = Sim::start(SimOptions {
        plain_port: Some(0),
        ..SimOptions::default()
    })
    .await
    .unwrap();
    sim.hub.add_module(
        "edge-gw",
        "bridge",
        bridge_core::identity::SymmetricKey::from_base64(KEY).unwrap(),
    );
    sim
}

fn fast_session() -> SessionOptions {
    SessionOptions {
        backoff_min: Duration::from_millis(100),
        backoff_max: Duration::from_millis(500),
        ..SessionOptions::default()
    }
}

fn numbered(n: u64) -> Message {
    Message::json("telemetry", &json!({"n": n}))
        .for_device("meter-1")
        .with_property("site", "plant A/hall 3")
}

#[tokio::test]
async fn twin_methods_inputs_and_telemetry_round_trip() {
    init_tracing();
    let sim = sim().await;
    sim.hub
        .set_desired("edge-gw/bridge", &json!({"devices": {"a": 1}}));
    let stop = CancellationToken::new();
    let (link, end) = upstream::link(64);
    let router =
        MethodRouter::new().route(
            "echo",
            |v| async move { MethodResponse::ok(json!({"got": v})) },
        );
    let (input_tx, mut input_rx) = mpsc::channel(8);
    let session = spawn_session(
        module_credentials(&sim, "bridge", KEY),
        fast_session(),
        router,
        Some(input_tx),
        end,
        stop.clone(),
    );
    let (telemetry, _fwd) = spawn_forwarder(
        Spool::open(&SpoolOptions::default()).unwrap(),
        link,
        ForwarderOptions::default(),
        stop.clone(),
    );

    // Full twin GET at start.
    let mut desired = session.desired();
    let d = tokio::time::timeout(T, desired.wait_for(Option::is_some))
        .await
        .unwrap()
        .unwrap()
        .clone()
        .unwrap();
    assert_eq!(d.doc, json!({"devices": {"a": 1}}));
    assert_eq!(d.version, 2);

    // Desired patch with a null that removes a key, merged into the full document.
    sim.hub.set_desired(
        "edge-gw/bridge",
        &json!({"devices": {"a": null, "b": 2}, "extra": true}),
    );
    let d = tokio::time::timeout(
        T,
        desired.wait_for(|d| d.as_ref().is_some_and(|d| d.version == 3)),
    )
    .await
    .unwrap()
    .unwrap()
    .clone()
    .unwrap();
    assert_eq!(d.doc, json!({"devices": {"b": 2}, "extra": true}));

    // Malformed patches (not JSON; JSON but not an object, with a higher $version) are
    // ignored: neither the document nor its version moves, so the next real patch applies.
    for (version, body) in [(4, &b"{not json"[..]), (99, b"[1,2]"), (98, b"\"text\"")] {
        let topic = format!("$iothub/twin/PATCH/properties/desired/?$version={version}");
        assert!(sim.hub.publish_raw("edge-gw/bridge", &topic, body));
    }
    sim.hub
        .set_desired("edge-gw/bridge", &json!({"extra": false}));
    let d = tokio::time::timeout(
        T,
        desired.wait_for(|d| d.as_ref().is_some_and(|d| d.version >= 4)),
    )
    .await
    .unwrap()
    .unwrap()
    .clone()
    .unwrap();
    assert_eq!(
        (d.version, d.doc),
        (4, json!({"devices": {"b": 2}, "extra": false}))
    );

    // Reported patch, acknowledged by the hub.
    session
        .report_and_wait(json!({"status": {"ok": true}}), T)
        .await
        .unwrap();
    assert_eq!(
        sim.hub.twin("edge-gw/bridge")["reported"]["status"]["ok"],
        true
    );

    // Direct method.
    let (status, payload) = sim
        .hub
        .invoke_method("edge-gw/bridge", "echo", &json!({"x": 1}), T)
        .await
        .unwrap();
    assert_eq!((status, payload), (200, json!({"got": {"x": 1}})));
    let (status, _) = sim
        .hub
        .invoke_method("edge-gw/bridge", "nope", &json!({}), T)
        .await
        .unwrap();
    assert_eq!(status, 404);

    // Input message.
    sim.hub.send_to_input(
        "edge-gw/bridge",
        "commands",
        &[("$.mid", "m-1"), ("kind", "ping")],
        b"{\"ping\":1}",
    );
    let input = tokio::time::timeout(T, input_rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            input.input.as_str(),
            input.properties["kind"].as_str(),
            input.body.as_slice()
        ),
        ("commands", "ping", &b"{\"ping\":1}"[..])
    );

    // Telemetry with output and properties, released on PUBACK.
    telemetry.send(numbered(7)).await.unwrap();
    let got = sim.hub.wait_until(T, |m| !m.is_empty()).await.unwrap();
    let m = &got[0];
    assert_eq!(m.output.as_deref(), Some("telemetry"));
    assert_eq!(m.properties["deviceId"], "meter-1");
    assert_eq!(m.properties["site"], "plant A/hall 3");
    assert_eq!(m.properties["$.ct"], "application/json");
    assert!(m.properties["iothub-creation-time-utc"].ends_with('Z'));
    assert_eq!(m.json(), json!({"n": 7}));
    stop.cancel();
}

#[tokio::test]
async fn hub_restart_loses_nothing() {
    init_tracing();
    let sim = sim().await;
    let stop = CancellationToken::new();
    let (link, end) = upstream::link(64);
    let session = spawn_session(
        module_credentials(&sim, "bridge", KEY),
        fast_session(),
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
    let total = 300u64;
    for n in 0..total {
        telemetry.send(numbered(n)).await.unwrap();
        if n == 100 {
            sim.pause();
        }
        if n == 200 {
            tokio::time::sleep(Duration::from_millis(700)).await;
            sim.resume();
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let got = sim
        .hub
        .wait_until(T, |m| {
            m.iter()
                .filter_map(|r| r.json()["n"].as_u64())
                .collect::<BTreeSet<_>>()
                .len() as u64
                == total
        })
        .await
        .unwrap_or_else(|m| panic!("only {} of {total} arrived", m.len()));
    assert!(got.len() as u64 >= total);
    assert!(sim.hub.connect_count() >= 2, "the session reconnected");
    assert!(matches!(
        *session.state().borrow(),
        ConnState::Connected { .. }
    ));
    eventually(T, "spool drained", || fwd.stats.borrow().pending == 0).await;
    stop.cancel();
}

#[tokio::test]
async fn tokens_are_renewed_before_they_expire() {
    init_tracing();
    let sim = Sim::start(SimOptions {
        token_skew: Duration::ZERO,
        ..SimOptions::default()
    })
    .await
    .unwrap();
    sim.hub.add_module(
        "edge-gw",
        "bridge",
        bridge_core::identity::SymmetricKey::from_base64(KEY).unwrap(),
    );
    let stop = CancellationToken::new();
    let (link, end) = upstream::link(64);
    let opts = SessionOptions {
        token_lifetime: Duration::from_secs(3),
        renew_before: Duration::from_secs(1),
        ..fast_session()
    };
    let _session = spawn_session(
        module_credentials(&sim, "bridge", KEY),
        opts,
        MethodRouter::new(),
        None,
        end,
        stop.clone(),
    );
    let (telemetry, _fwd) = spawn_forwarder(
        Spool::open(&SpoolOptions::default()).unwrap(),
        link,
        ForwarderOptions::default(),
        stop.clone(),
    );
    for n in 0..60 {
        telemetry.send(numbered(n)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = sim
        .hub
        .wait_until(T, |m| {
            m.iter()
                .filter_map(|r| r.json()["n"].as_u64())
                .collect::<BTreeSet<_>>()
                .len()
                == 60
        })
        .await;
    assert!(got.is_ok(), "messages lost across token renewals");
    assert!(
        sim.hub.connect_count() >= 3,
        "expected at least two renewals in 6 s, saw {} connects",
        sim.hub.connect_count()
    );
    assert!(sim.hub.refusals().is_empty(), "{:?}", sim.hub.refusals());
    stop.cancel();
}

#[tokio::test]
async fn edge_environment_credentials_through_the_workload_api() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("workload.sock");
    let sim = Sim::start(SimOptions {
        workload_socket: Some(socket.clone()),
        ..SimOptions::default()
    })
    .await
    .unwrap();
    sim.hub.add_module(
        "edge-gw",
        "bridge",
        bridge_core::identity::SymmetricKey::from_base64(KEY).unwrap(),
    );
    let vars = [
        (
            "IOTEDGE_WORKLOADURI",
            format!("unix://{}", socket.display()),
        ),
        ("IOTEDGE_DEVICEID", "edge-gw".into()),
        ("IOTEDGE_MODULEID", "bridge".into()),
        ("IOTEDGE_MODULEGENERATIONID", "1".into()),
        ("IOTEDGE_IOTHUBHOSTNAME", "myhub.azure-devices.net".into()),
        ("IOTEDGE_GATEWAYHOSTNAME", "localhost".into()),
    ];
    let env =
        EdgeEnvironment::from_vars(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))
            .unwrap();
    let creds = Credentials::from_edge_environment(&env, sim.tls_addr.port())
        .await
        .unwrap();
    let stop = CancellationToken::new();
    let (_link, end) = upstream::link(8);
    let session = spawn_session(
        creds,
        fast_session(),
        MethodRouter::new(),
        None,
        end,
        stop.clone(),
    );
    session
        .report_and_wait(json!({"viaWorkload": true}), T)
        .await
        .unwrap();
    assert_eq!(
        sim.hub.twin("edge-gw/bridge")["reported"]["viaWorkload"],
        true
    );
    stop.cancel();
}

#[tokio::test]
async fn failing_workload_api_and_refused_credentials_are_reported_and_retried() {
    init_tracing();
    let sim = sim().await;
    let stop = CancellationToken::new();
    // Signing through a workload socket that does not exist.
    let mut creds = module_credentials(&sim, "bridge", KEY);
    creds.signer = Signer::Workload(WorkloadClient::new(
        WorkloadEndpoint::Unix("/nonexistent/workload.sock".into()),
        "bridge",
        "1",
        "2019-01-30",
    ));
    let (_l1, end) = upstream::link(8);
    let broken = spawn_session(
        creds,
        fast_session(),
        MethodRouter::new(),
        None,
        end,
        stop.clone(),
    );
    let mut state = broken.state();
    let s = tokio::time::timeout(
        T,
        state.wait_for(|s| matches!(s, ConnState::Disconnected { .. })),
    )
    .await
    .unwrap()
    .unwrap()
    .clone();
    assert!(format!("{s:?}").contains("workload"), "{s:?}");

    // A wrong key: the hub refuses, the session keeps retrying (refusals accumulate).
    let (_l2, end) = upstream::link(8);
    let wrong = spawn_session(
        module_credentials(&sim, "bridge", "d3Jvbmcta2V5"),
        fast_session(),
        MethodRouter::new(),
        None,
        end,
        stop.clone(),
    );
    let mut state = wrong.state();
    let s = tokio::time::timeout(
        T,
        state.wait_for(|s| matches!(s, ConnState::Disconnected { .. })),
    )
    .await
    .unwrap()
    .unwrap()
    .clone();
    assert!(format!("{s:?}").to_lowercase().contains("refused"), "{s:?}");
    eventually(T, "retries", || sim.hub.refusals().len() >= 2).await;
    stop.cancel();
}
