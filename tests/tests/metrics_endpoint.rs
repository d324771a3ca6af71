//! The Prometheus endpoint (`--metrics`) of a module connected to the emulator, parsed
//! by the reference Python client library's text-format parser.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::time::Duration;

use bridge_core::identity::SymmetricKey;
use bridge_e2e::{init_tracing, run_modbus_with_metrics, run_python};
use edgehub_sim::{Sim, SimOptions};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const KEY: &str = "c2VjcmV0LWtleS1mb3ItdGVzdHMtMDEyMzQ1Njc4OQ==";

async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

fn sample(families: &Value, name: &str, device: Option<&str>) -> Option<f64> {
    let family = name.trim_end_matches("_total");
    families[family]["samples"]
        .as_array()?
        .iter()
        .find(|s| s[0] == name && device.is_none_or(|d| s[1]["device"] == d))
        .and_then(|s| s[2].as_f64())
}

#[tokio::test]
async fn metrics_parse_with_the_reference_parser() {
    init_tracing();
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    sim.hub
        .add_module("edge-gw", "modbus", SymmetricKey::from_base64(KEY).unwrap());
    sim.hub.set_desired(
        "edge-gw/modbus",
        &json!({"devices": {
            "meter-1": {"map": "eastron-sdm120", "connection": {"type": "simulated"}, "pollIntervalMs": 200},
            "ghost": {"map": "xy-md02", "connection": {"type": "tcp", "host": "127.0.0.1", "port": 1}, "pollIntervalMs": 200, "timeoutMs": 200}
        }}),
    );
    // A free port on a loopback address of its own, so parallel tests never collide.
    let ip = std::net::Ipv4Addr::new(127, 9, rand::random::<u8>(), rand::random::<u8>().max(1));
    let addr = std::net::TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let stop = run_modbus_with_metrics(&sim, "modbus", KEY, dir.path(), None, Some(addr))
        .await
        .unwrap();
    let file = dir.path().join("metrics.txt");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let families = loop {
        let response = tokio::net::TcpStream::connect(addr).await;
        if response.is_ok() {
            let text = get(addr, "/metrics").await;
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            assert!(head.contains("text/plain; version=0.0.4"), "{head}");
            std::fs::write(&file, body).unwrap();
            let families = run_python(
                "check_metrics.py",
                &[file.to_str().unwrap()],
                &[],
                Duration::from_secs(30),
            )
            .await
            .unwrap();
            let polls = sample(&families, "edgebridge_modbus_polls_total", Some("meter-1"));
            if polls.unwrap_or(0.0) >= 2.0
                && sample(&families, "edgebridge_hub_connected", None) == Some(1.0)
                && sample(&families, "edgebridge_modbus_device_online", Some("ghost")) == Some(0.0)
            {
                break families;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "metrics never showed the polls"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(families["edgebridge_modbus_polls"]["type"], "counter");
    assert_eq!(
        families["edgebridge_spool_pending_messages"]["type"],
        "gauge"
    );
    assert_eq!(
        sample(&families, "edgebridge_up", None),
        Some(1.0),
        "{families}"
    );
    assert_eq!(
        sample(
            &families,
            "edgebridge_modbus_device_online",
            Some("meter-1")
        ),
        Some(1.0)
    );
    assert!(sample(&families, "edgebridge_modbus_values_total", Some("meter-1")).unwrap() > 0.0);
    assert!(
        sample(
            &families,
            "edgebridge_modbus_poll_seconds_total",
            Some("meter-1")
        )
        .unwrap()
            > 0.0
    );
    assert!(
        sample(
            &families,
            "edgebridge_modbus_poll_failures_total",
            Some("ghost")
        )
        .unwrap()
            >= 1.0
    );
    assert_eq!(
        sample(&families, "edgebridge_spool_dropped_total", None),
        Some(0.0)
    );
    assert!(get(addr, "/").await.starts_with("HTTP/1.1 404"));
    stop.cancel();
}
