//! The emulator refuses what edgeHub refuses, and survives garbage.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bridge_core::identity::SymmetricKey;
use bridge_core::identity::sas::{resource_uri, token_with_key};
use bridge_e2e::init_tracing;
use edgehub_sim::{Sim, SimOptions};
use rumqttc::{AsyncClient, ConnectReturnCode, Event, MqttOptions, Packet};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const KEY: &str = "Y2FwdHVyZS10ZXN0LWtleS0wMTIzNDU2Nzg5YWJjZGVm";

async fn sim() -> Sim {
    let sim = Sim::start(SimOptions {
        plain_port: Some(0),
        connect_timeout: Duration::from_secs(1),
        ..SimOptions::default()
    })
    .await
    .unwrap();
    sim.hub
        .add_module("edge-gw", "bridge", SymmetricKey::from_base64(KEY).unwrap());
    sim
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// CONNECTs over plain MQTT and returns the CONNACK code (or the error text).
async fn connack(
    sim: &Sim,
    client_id: &str,
    username: &str,
    password: &str,
) -> Result<ConnectReturnCode, String> {
    let addr = sim.plain_addr.unwrap();
    let mut opts = MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
    opts.set_credentials(username, password);
    let (_client, mut el) = AsyncClient::new(opts, 8);
    match tokio::time::timeout(Duration::from_secs(5), el.poll()).await {
        Ok(Ok(Event::Incoming(Packet::ConnAck(a)))) => Ok(a.code),
        Ok(Ok(other)) => Err(format!("{other:?}")),
        Ok(Err(rumqttc::ConnectionError::ConnectionRefused(code))) => Ok(code),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timeout".into()),
    }
}

fn user(id: &str) -> String {
    format!("myhub.azure-devices.net/{id}/?api-version=2020-09-30")
}

fn token(expiry: u64) -> String {
    token_with_key(
        &resource_uri("myhub.azure-devices.net", "edge-gw", Some("bridge")),
        &SymmetricKey::from_base64(KEY).unwrap(),
        expiry,
    )
}

#[tokio::test]
async fn good_credentials_are_accepted() {
    init_tracing();
    let sim = sim().await;
    assert_eq!(
        connack(
            &sim,
            "edge-gw/bridge",
            &user("edge-gw/bridge"),
            &token(now() + 60)
        )
        .await,
        Ok(ConnectReturnCode::Success)
    );
}

#[tokio::test]
async fn refusals() {
    init_tracing();
    let sim = sim().await;
    // Expired beyond the 5-minute skew.
    let code = connack(
        &sim,
        "edge-gw/bridge",
        &user("edge-gw/bridge"),
        &token(now() - 400),
    )
    .await;
    assert_eq!(code, Ok(ConnectReturnCode::BadUserNamePassword));
    // Client id differs from the username identity.
    let code = connack(
        &sim,
        "edge-gw/other",
        &user("edge-gw/bridge"),
        &token(now() + 60),
    )
    .await;
    assert_eq!(code, Ok(ConnectReturnCode::BadClientId));
    // Unknown identity.
    let code = connack(
        &sim,
        "edge-gw/ghost",
        &user("edge-gw/ghost"),
        &token(now() + 60),
    )
    .await;
    assert_eq!(code, Ok(ConnectReturnCode::NotAuthorized));
    // Username without api-version, and a password that is not a SAS token.
    let code = connack(
        &sim,
        "edge-gw/bridge",
        "myhub.azure-devices.net/edge-gw/bridge/?x=1",
        &token(now() + 60),
    )
    .await;
    assert_eq!(code, Ok(ConnectReturnCode::BadUserNamePassword));
    let code = connack(&sim, "edge-gw/bridge", &user("edge-gw/bridge"), "hunter2").await;
    assert_eq!(code, Ok(ConnectReturnCode::BadUserNamePassword));
    let reasons: Vec<_> = sim.hub.refusals().into_iter().map(|r| r.reason).collect();
    assert_eq!(reasons.len(), 5, "{reasons:?}");
    assert!(reasons[0].contains("expired"), "{reasons:?}");
    assert!(sim.hub.connected().is_empty());
}

#[tokio::test]
async fn malformed_packets_close_the_connection_not_the_hub() {
    init_tracing();
    let sim = sim().await;
    let addr = sim.plain_addr.unwrap();
    for garbage in [
        &b"\xff\xff\xff\xff\xff"[..],
        b"\x10\x05\x00\x04MQ",
        b"GET / HTTP/1.1\r\n\r\n",
        b"\x30\x02\x00",
    ] {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(garbage).await.unwrap();
        let mut buf = [0u8; 16];
        // Closed (0 bytes or reset) within the CONNECT timeout.
        let read = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
            .await
            .expect("connection left open");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
    // A bad packet after a good CONNECT also only closes that connection.
    let mut opts = MqttOptions::new("edge-gw/bridge", addr.ip().to_string(), addr.port());
    opts.set_credentials(user("edge-gw/bridge"), token(now() + 60));
    let (_c, mut el) = AsyncClient::new(opts, 8);
    assert!(matches!(
        el.poll().await,
        Ok(Event::Incoming(Packet::ConnAck(_)))
    ));
    // The hub still serves others.
    assert_eq!(
        connack(
            &sim,
            "edge-gw/bridge",
            &user("edge-gw/bridge"),
            &token(now() + 60)
        )
        .await,
        Ok(ConnectReturnCode::Success)
    );
}
