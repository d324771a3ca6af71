//! The plain MQTT upstream against a real broker (mosquitto): topic template, PUBACK
//! release, and a broker restart with nothing lost.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::collections::BTreeSet;
use std::time::Duration;

use bridge_core::forwarder::{ForwarderOptions, spawn_forwarder};
use bridge_core::message::Message;
use bridge_core::spool::{Spool, SpoolOptions};
use bridge_core::upstream::{self, mqtt::MqttUpstreamConfig};
use bridge_e2e::{Mosquitto, eventually, free_port, init_tracing};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn numbered(n: u64) -> Message {
    Message::json("telemetry", &json!({"n": n})).for_device("meter-1")
}

/// A persistent-session observer that re-subscribes after every CONNACK.
fn observer(port: u16) -> mpsc::UnboundedReceiver<(String, u64)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut opts = MqttOptions::new("observer", "127.0.0.1", port);
    opts.set_clean_session(false);
    let (client, mut el) = AsyncClient::new(opts, 64);
    tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let _ = client.subscribe("plant/#", QoS::AtLeastOnce).await;
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let n = serde_json::from_slice::<serde_json::Value>(&p.payload)
                        .ok()
                        .and_then(|v| v["n"].as_u64())
                        .unwrap_or(u64::MAX);
                    let _ = tx.send((p.topic.clone(), n));
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    });
    rx
}

#[tokio::test]
async fn broker_restart_loses_nothing() -> anyhow::Result<()> {
    init_tracing();
    let mut broker = Mosquitto::start().await?;
    let mut seen = observer(broker.port);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stop = CancellationToken::new();
    let (link, end) = upstream::link(64);
    let cfg = MqttUpstreamConfig::from_url(
        &format!("mqtt://127.0.0.1:{}", broker.port),
        "plant/{deviceId}/{output}",
        "bridge-test",
    )?;
    tokio::spawn(upstream::mqtt::run(cfg, end, stop.clone()));
    let (telemetry, fwd) = spawn_forwarder(
        Spool::open(&SpoolOptions::default())?,
        link,
        ForwarderOptions::default(),
        stop.clone(),
    );

    let mut got = BTreeSet::new();
    for n in 0..20 {
        telemetry.send(numbered(n)).await?;
    }
    while got.len() < 20 {
        let (topic, n) = tokio::time::timeout(Duration::from_secs(10), seen.recv())
            .await?
            .expect("observer");
        assert_eq!(topic, "plant/meter-1/telemetry");
        got.insert(n);
    }
    broker.stop().await?;
    for n in 20..40 {
        telemetry.send(numbered(n)).await?;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        fwd.stats.borrow().pending >= 1 || got.len() == 20,
        "messages wait in the spool while the broker is down"
    );
    broker.restart().await?;
    while got.len() < 40 {
        let (_, n) = tokio::time::timeout(Duration::from_secs(15), seen.recv())
            .await
            .map_err(|_| anyhow::anyhow!("only got {got:?}"))?
            .expect("observer");
        got.insert(n);
    }
    assert_eq!(got, (0..40).collect());
    eventually(Duration::from_secs(10), "spool drained", || {
        fwd.stats.borrow().pending == 0
    })
    .await;
    stop.cancel();
    Ok(())
}

#[tokio::test]
async fn unreachable_broker_keeps_messages_spooled() -> anyhow::Result<()> {
    init_tracing();
    let stop = CancellationToken::new();
    let (link, end) = upstream::link(64);
    let cfg = MqttUpstreamConfig::from_url(
        &format!("mqtt://127.0.0.1:{}", free_port()),
        "x/{deviceId}",
        "bridge-test",
    )?;
    tokio::spawn(upstream::mqtt::run(cfg, end, stop.clone()));
    let (telemetry, fwd) = spawn_forwarder(
        Spool::open(&SpoolOptions::default())?,
        link,
        ForwarderOptions::default(),
        stop.clone(),
    );
    for n in 0..5 {
        telemetry.send(numbered(n)).await?;
    }
    eventually(Duration::from_secs(5), "spooled", || {
        fwd.stats.borrow().pending == 5
    })
    .await;
    stop.cancel();
    Ok(())
}
