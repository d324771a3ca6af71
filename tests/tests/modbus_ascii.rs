//! Modbus ASCII end to end: a pymodbus 3.16.1 ASCII server on a socat pty pair
//! serves the types fixture (values encoded by Python's struct); the module decodes it,
//! writes and reads back. A fake serial peer on a second pty pair injects garbage and a
//! frame with a wrong LRC: they are never taken for the answer.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::io::{Read, Write};
use std::time::Duration;

use bridge_core::identity::SymmetricKey;
use bridge_e2e::{PyModbus, init_tracing, run_modbus_against};
use bridge_modbus::bus::{BusError, Op, OpResult, spawn_bus};
use bridge_modbus::config::{Connection, Parity};
use bridge_modbus::map::Table;
use edgehub_sim::{Recorded, Sim, SimOptions};
use serde_json::{Value, json};

const KEY: &str = "Y2FwdHVyZS10ZXN0LWtleS0wMTIzNDU2Nzg5YWJjZGVm";
const T: Duration = Duration::from_secs(30);

fn latest(messages: &[Recorded], device: &str) -> Option<Value> {
    messages
        .iter()
        .rev()
        .find(|m| {
            m.properties.get("deviceId").map(String::as_str) == Some(device)
                && m.output.as_deref() == Some("telemetry")
        })
        .map(Recorded::json)
}

/// The types fixture of modbus_pymodbus.rs (holding registers of every type and order).
fn spec() -> Value {
    json!({"units": {"1": {
        "holding": [
            {"address": 0, "type": "u16", "value": 4660},
            {"address": 1, "type": "i16", "value": -1234},
            {"address": 2, "type": "u32", "value": 617001},
            {"address": 4, "type": "i32", "value": -100000, "order": "CDAB"},
            {"address": 6, "type": "u64", "value": 1234567890123u64},
            {"address": 10, "type": "i64", "value": -9876543210i64, "order": "DCBA"},
            {"address": 14, "type": "f32", "value": 21.5, "order": "BADC"},
            {"address": 16, "type": "f64", "value": -3.25, "order": "CDAB"},
            {"address": 20, "type": "string", "value": "SN-42", "length": 4},
            {"address": 30, "type": "u16", "value": 2312},
            {"address": 40, "type": "u16", "value": 100}
        ],
        "coils": [{"address": 0, "value": true}, {"address": 1, "value": false}]
    }}})
}

fn map() -> Value {
    json!({"name": "types", "points": {
        "u16v": {"table": "holding", "address": 0, "type": "u16"},
        "i16v": {"table": "holding", "address": 1, "type": "i16"},
        "u32v": {"table": "holding", "address": 2, "type": "u32"},
        "i32cdab": {"table": "holding", "address": 4, "type": "i32", "wordOrder": "little"},
        "u64v": {"table": "holding", "address": 6, "type": "u64"},
        "i64dcba": {"table": "holding", "address": 10, "type": "i64", "byteOrder": "little", "wordOrder": "little"},
        "f32badc": {"table": "holding", "address": 14, "type": "f32", "byteOrder": "little"},
        "f64cdab": {"table": "holding", "address": 16, "type": "f64", "wordOrder": "little"},
        "serial": {"table": "holding", "address": 20, "type": "string", "length": 4},
        "voltage": {"table": "holding", "address": 30, "type": "u16", "scale": 0.1, "unit": "V"},
        "setpoint": {"table": "holding", "address": 40, "type": "u16", "writable": true, "max": 1000},
        "relay": {"table": "coil", "address": 0, "type": "bool"},
        "fan": {"table": "coil", "address": 1, "type": "bool", "writable": true}
    }})
}

#[tokio::test]
async fn ascii_types_fixture_and_writes_against_pymodbus() {
    init_tracing();
    let server = PyModbus::ascii(&spec()).await.unwrap();
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    sim.hub
        .add_module("edge-gw", "modbus", SymmetricKey::from_base64(KEY).unwrap());
    let dir = tempfile::tempdir().unwrap();
    // Defaults for ASCII: 9600 baud, 7 data bits, even parity, 1 stop bit (a pty passes
    // bytes whatever the line settings, so the server's 8N1 end still talks to it).
    sim.hub.set_desired(
        "edge-gw/modbus",
        &json!({"maps": {"types": map()}, "devices": {"plc": {"map": "types", "pollIntervalMs": 300,
            "connection": {"type": "ascii", "port": server.client_tty}}}}),
    );
    let stop = run_modbus_against(&sim, "modbus", KEY, dir.path(), None)
        .await
        .unwrap();
    let msgs = sim
        .hub
        .wait_until(T, |m| latest(m, "plc").is_some())
        .await
        .expect("telemetry over ASCII");
    assert_eq!(
        latest(&msgs, "plc").unwrap(),
        json!({"u16v": 4660, "i16v": -1234, "u32v": 617001, "i32cdab": -100000, "u64v": 1234567890123u64,
            "i64dcba": -9876543210i64, "f32badc": 21.5, "f64cdab": -3.25, "serial": "SN-42",
            "voltage": 231.2, "setpoint": 100, "relay": true, "fan": false})
    );
    for (point, value) in [("setpoint", json!(777)), ("fan", json!(true))] {
        let (status, body) = sim
            .hub
            .invoke_method(
                "edge-gw/modbus",
                "write",
                &json!({"deviceId": "plc", "point": point, "value": value, "verify": true}),
                T,
            )
            .await
            .unwrap();
        assert_eq!(
            (status, &body["readBack"]),
            (200, &value),
            "{point}: {body}"
        );
    }
    assert!(server.has_socat());
    stop.cancel();
}

/// A pty pair: (the module's end, the fake peer's end), and socat.
async fn pty_pair(
    dir: &std::path::Path,
) -> (
    std::path::PathBuf,
    std::path::PathBuf,
    tokio::process::Child,
) {
    let (a, b) = (dir.join("ttyA"), dir.join("ttyB"));
    let socat = tokio::process::Command::new("socat")
        .arg(format!("pty,raw,echo=0,link={}", a.display()))
        .arg(format!("pty,raw,echo=0,link={}", b.display()))
        .kill_on_drop(true)
        .spawn()
        .expect("socat is not installed: run tests/setup-peers.sh");
    for _ in 0..100 {
        if a.exists() && b.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (a, b, socat)
}

fn read_frame(peer: &mut std::fs::File) -> Vec<u8> {
    let mut frame = Vec::new();
    let mut byte = [0u8; 1];
    while frame.last() != Some(&b'\n') {
        peer.read_exact(&mut byte).unwrap();
        frame.push(byte[0]);
    }
    frame
}

#[tokio::test]
async fn garbage_and_wrong_lrc_from_a_serial_peer_are_rejected() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let (module_end, peer_end, _socat) = pty_pair(dir.path()).await;
    let peer = std::thread::spawn(move || {
        let mut peer = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&peer_end)
            .unwrap();
        let mut requests = Vec::new();
        // 1: garbage, a wrong LRC (value 0x0999), another unit's frame, then the answer 0x0007.
        requests.push(read_frame(&mut peer));
        peer.write_all(
            b"\x00\xff\x13noise\r\n:01030209990000\r\n:020302000AEF\r\n:0103020007F3\r\n",
        )
        .unwrap();
        // 2: only a wrong LRC: the module must time out.
        requests.push(read_frame(&mut peer));
        peer.write_all(b":0103020008F0\r\n").unwrap();
        // 3: a good answer again.
        requests.push(read_frame(&mut peer));
        peer.write_all(b":0103020009F1\r\n").unwrap();
        requests
    });
    let token = tokio_util::sync::CancellationToken::new();
    let bus = spawn_bus(
        Connection::Ascii {
            port: module_end.display().to_string(),
            baud_rate: 9600,
            parity: Parity::Even,
            data_bits: 7,
            stop_bits: 1,
            frame_gap_ms: 5,
        },
        None,
        token.clone(),
    );
    let op = Op::Read(Table::Holding, 0, 1);
    assert_eq!(
        bus.call(1, op.clone(), Duration::from_millis(1000)).await,
        Ok(OpResult::Registers(vec![7]))
    );
    assert!(matches!(
        bus.call(1, op.clone(), Duration::from_millis(300)).await,
        Err(BusError::Timeout(_))
    ));
    assert_eq!(
        bus.call(1, op, Duration::from_millis(1000)).await,
        Ok(OpResult::Registers(vec![9]))
    );
    let requests = peer.join().unwrap();
    assert!(
        requests.iter().all(|r| r == b":010300000001FB\r\n"),
        "{requests:?}"
    );
    token.cancel();
}
