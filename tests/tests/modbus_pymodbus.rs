//! bridge-modbus end to end: pymodbus servers (TCP, and RTU over socat ptys) → the module
//! → edgehub-sim. Values are encoded by the Python side with `struct`, independently of
//! our codec.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::time::Duration;

use bridge_core::identity::SymmetricKey;
use bridge_e2e::{PyModbus, init_tracing, reported_until, run_modbus_against};
use edgehub_sim::{Recorded, Sim, SimOptions};
use serde_json::{Value, json};

const KEY: &str = "Y2FwdHVyZS10ZXN0LWtleS0wMTIzNDU2Nzg5YWJjZGVm";
const T: Duration = Duration::from_secs(30);

async fn sim() -> Sim {
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    sim.hub
        .add_module("edge-gw", "modbus", SymmetricKey::from_base64(KEY).unwrap());
    sim
}

fn server_spec() -> Value {
    json!({"units": {
        "1": {
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
                {"address": 24, "type": "u16", "value": 5},
                {"address": 30, "type": "u16", "value": 2312},
                {"address": 40, "type": "u16", "value": 100},
                {"address": 42, "type": "i32", "value": 0, "order": "CDAB"},
                {"address": 44, "type": "f32", "value": 0.0},
                {"address": 46, "type": "u16", "value": 0},
                {"address": 50, "type": "string", "value": "init", "length": 4}
            ],
            "input": [{"address": 0, "type": "u16", "value": 1000}],
            "coils": [{"address": 0, "value": true}, {"address": 1, "value": false}, {"address": 2, "value": false}],
            "discrete": [{"address": 0, "value": true}]
        },
        "2": {"input": [{"address": 0, "type": "i16", "value": -5}]}
    }})
}

fn test_map() -> Value {
    json!({"name": "test-all-types", "points": {
        "u16v": {"table": "holding", "address": 0, "type": "u16"},
        "i16v": {"table": "holding", "address": 1, "type": "i16"},
        "u32v": {"table": "holding", "address": 2, "type": "u32"},
        "i32cdab": {"table": "holding", "address": 4, "type": "i32", "wordOrder": "little"},
        "u64v": {"table": "holding", "address": 6, "type": "u64"},
        "i64dcba": {"table": "holding", "address": 10, "type": "i64", "byteOrder": "little", "wordOrder": "little"},
        "f32badc": {"table": "holding", "address": 14, "type": "f32", "byteOrder": "little"},
        "f64cdab": {"table": "holding", "address": 16, "type": "f64", "wordOrder": "little"},
        "serial": {"table": "holding", "address": 20, "type": "string", "length": 4},
        "bit0": {"table": "holding", "address": 24, "type": "bit", "bit": 0, "writable": true},
        "bit1": {"table": "holding", "address": 24, "type": "bit", "bit": 1, "writable": true},
        "bit2": {"table": "holding", "address": 24, "type": "bit", "bit": 2},
        "voltage": {"table": "holding", "address": 30, "type": "u16", "scale": 0.1, "unit": "V"},
        "setpoint": {"table": "holding", "address": 40, "type": "u16", "writable": true, "min": 0, "max": 1000},
        "wideSetpoint": {"table": "holding", "address": 42, "type": "i32", "wordOrder": "little", "writable": true},
        "floatSetpoint": {"table": "holding", "address": 44, "type": "f32", "writable": true},
        "ghost": {"table": "holding", "address": 300, "type": "u16", "writable": true},
        "counter": {"table": "input", "address": 0, "type": "u16"},
        "relay": {"table": "coil", "address": 0, "type": "bool"},
        "fan": {"table": "coil", "address": 1, "type": "bool", "writable": true},
        "pump": {"table": "coil", "address": 2, "type": "bool", "writable": true, "writeMultiple": true},
        "limit": {"table": "holding", "address": 46, "type": "u16", "writable": true, "writeMultiple": true},
        "label": {"table": "holding", "address": 50, "type": "string", "length": 4, "writable": true},
        "alarm": {"table": "discreteInput", "address": 0, "type": "bool"}
    }})
}

fn latest(messages: &[Recorded], device: &str, output: &str) -> Option<Value> {
    messages
        .iter()
        .rev()
        .find(|m| {
            m.properties.get("deviceId").map(String::as_str) == Some(device)
                && m.output.as_deref() == Some(output)
        })
        .map(Recorded::json)
}

async fn method(sim: &Sim, name: &str, payload: Value) -> (u16, Value) {
    sim.hub
        .invoke_method("edge-gw/modbus", name, &payload, T)
        .await
        .unwrap()
}

#[tokio::test]
async fn tcp_all_tables_types_orders_two_units_and_writes() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let request_log = dir.path().join("requests.log");
    let mut spec = server_spec();
    spec["requestLog"] = json!(request_log);
    let server = PyModbus::tcp(&spec).await.unwrap();
    let sim = sim().await;
    let connection = json!({"type": "tcp", "host": "localhost", "port": server.port});
    sim.hub.set_desired(
        "edge-gw/modbus",
        &json!({"maps": {"t": test_map()}, "devices": {
            "dev-a": {"map": "t", "connection": connection, "unitId": 1, "pollIntervalMs": 300, "timeoutMs": 1000},
            "dev-b": {"map": {"name": "one", "points": {"temp": {"table": "input", "address": 0, "type": "i16", "scale": 0.5}}}, "connection": connection, "unitId": 2, "pollIntervalMs": 300}
        }}),
    );
    let stop = run_modbus_against(&sim, "modbus", KEY, dir.path(), None)
        .await
        .unwrap();
    let msgs = sim
        .hub
        .wait_until(T, |m| {
            latest(m, "dev-a", "telemetry").is_some() && latest(m, "dev-b", "telemetry").is_some()
        })
        .await
        .expect("telemetry from both units");
    let a = latest(&msgs, "dev-a", "telemetry").unwrap();
    let expected = json!({
        "u16v": 4660, "i16v": -1234, "u32v": 617001, "i32cdab": -100000, "u64v": 1234567890123u64,
        "i64dcba": -9876543210i64, "f32badc": 21.5, "f64cdab": -3.25, "serial": "SN-42",
        "bit0": true, "bit1": false, "bit2": true, "voltage": 231.2, "setpoint": 100, "wideSetpoint": 0,
        "floatSetpoint": 0.0, "counter": 1000, "relay": true, "fan": false, "alarm": true,
        "pump": false, "limit": 0, "label": "init"
    });
    assert_eq!(
        a, expected,
        "ghost (undefined on the server) is left out; everything else decodes"
    );
    assert_eq!(
        latest(&msgs, "dev-b", "telemetry").unwrap(),
        json!({"temp": -2.5})
    );
    let m = msgs
        .iter()
        .find(|m| m.properties.get("deviceId").map(String::as_str) == Some("dev-a"))
        .unwrap();
    assert_eq!(m.output.as_deref(), Some("telemetry"));
    assert_eq!(m.properties["$.ct"], "application/json");
    assert!(m.properties["iothub-creation-time-utc"].starts_with("20"));
    assert_eq!(latest(&msgs, "dev-a", "status").unwrap()["state"], "online");
    let health = sim.hub.twin("edge-gw/modbus")["reported"]["deviceHealth"]["dev-a"].clone();
    assert_eq!(health["state"], "online");
    assert_eq!(
        sim.hub.twin("edge-gw/modbus")["reported"]["configStatus"]["status"],
        "applied"
    );

    // Writes, each read back from the server.
    for (point, value) in [
        ("setpoint", json!(555)),
        ("wideSetpoint", json!(-123456)),
        ("floatSetpoint", json!(3.5)),
        ("fan", json!(true)),
        ("bit1", json!(true)),
        ("pump", json!(true)),
        ("limit", json!(7)),
        ("label", json!("AB-9")),
        ("label", json!("X")),
    ] {
        let (status, body) = method(
            &sim,
            "write",
            json!({"deviceId": "dev-a", "point": point, "value": value, "verify": true}),
        )
        .await;
        assert_eq!(status, 200, "{point}: {body}");
        assert_eq!(body["readBack"], value, "{point}");
    }
    let (status, body) = method(
        &sim,
        "read",
        json!({"deviceId": "dev-a", "points": ["bit0", "bit1", "bit2", "wideSetpoint", "fan"]}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["values"],
        json!({"bit0": true, "bit1": true, "bit2": true, "wideSetpoint": -123456, "fan": true})
    );

    // Refusals.
    let cases = [
        (
            json!({"deviceId": "dev-a", "point": "voltage", "value": 1}),
            400,
            "read-only",
        ),
        (
            json!({"deviceId": "dev-a", "point": "setpoint", "value": 5000}),
            400,
            "outside",
        ),
        (
            json!({"deviceId": "dev-a", "point": "setpoint", "value": "high"}),
            400,
            "takes a number",
        ),
        (
            json!({"deviceId": "dev-a", "point": "nope", "value": 1}),
            404,
            "no point",
        ),
        (
            json!({"deviceId": "dev-x", "point": "setpoint", "value": 1}),
            404,
            "Unknown device",
        ),
        (json!({"deviceId": "dev-a"}), 400, "write needs"),
        (
            json!({"deviceId": "dev-a", "point": "label", "value": "too long!"}),
            400,
            "holds 8",
        ),
        (
            json!({"deviceId": "dev-a", "point": "ghost", "value": 1}),
            502,
            "illegal data address",
        ),
    ];
    for (req, want, text) in cases {
        let (status, body) = method(&sim, "write", req.clone()).await;
        assert_eq!(status, want, "{req} → {body}");
        assert!(body.to_string().contains(text), "{req} → {body}");
    }
    // Audit trail of writes that reached the device (the last was the refused `ghost`).
    let reported = reported_until(&sim.hub, "edge-gw/modbus", T, |r| {
        r["lastWrite"]["dev-a"]["point"] == "ghost"
    })
    .await;
    let last = &reported["lastWrite"]["dev-a"];
    assert!(
        last["result"].as_str().unwrap().contains("exception 2") && last["value"] == 1,
        "{last}"
    );
    // The function codes the server saw: FC5/FC6 by default, FC15/FC16 with writeMultiple.
    let seen = std::fs::read_to_string(&request_log).unwrap();
    for (line, what) in [
        ("1 5 1", "fan by FC5"),
        ("1 6 40", "setpoint by FC6"),
        ("1 16 42", "wideSetpoint by FC16"),
        ("1 15 2", "pump by FC15"),
        ("1 16 46", "limit by FC16"),
        ("1 16 50", "label by FC16"),
    ] {
        assert!(seen.lines().any(|l| l == line), "{what}: {seen}");
    }
    for line in ["1 5 2", "1 6 46"] {
        assert!(!seen.lines().any(|l| l == line), "{line} in {seen}");
    }
    let (status, body) = method(
        &sim,
        "read",
        json!({"deviceId": "dev-a", "points": ["ghost"]}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        body["errors"]["ghost"]
            .as_str()
            .unwrap()
            .contains("exception 2"),
        "{body}"
    );
    stop.cancel();
}

#[tokio::test]
async fn bad_desired_config_is_rejected_and_the_last_good_keeps_running() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let server = PyModbus::tcp(&server_spec()).await.unwrap();
    let sim = sim().await;
    let good = json!({"devices": {"dev-a": {"map": {"name": "m", "points": {"counter": {"table": "input", "address": 0, "type": "u16"}}},
        "connection": {"type": "tcp", "host": "127.0.0.1", "port": server.port}, "pollIntervalMs": 200}}});
    sim.hub.set_desired("edge-gw/modbus", &good);
    let stop = run_modbus_against(&sim, "modbus", KEY, dir.path(), None)
        .await
        .unwrap();
    sim.hub
        .wait_until(T, |m| latest(m, "dev-a", "telemetry").is_some())
        .await
        .unwrap();

    // An unknown map, a wrong type and an out-of-range address in one patch.
    sim.hub.set_desired(
        "edge-gw/modbus",
        &json!({"devices": {
            "dev-b": {"map": "no-such-map", "connection": {"type": "tcp", "host": "127.0.0.1", "port": 1}},
            "dev-c": {"map": "xy-md02", "connection": {"type": "tcp", "host": "127.0.0.1"}, "pollIntervalMs": "often"},
            "dev-d": {"map": {"name": "x", "points": {"v": {"table": "holding", "address": 65535, "type": "f32"}}}, "connection": {"type": "tcp", "host": "h"}}
        }}),
    );
    let reported = reported_until(&sim.hub, "edge-gw/modbus", T, |r| {
        r["configStatus"]["status"] == "rejected"
    })
    .await;
    let paths: Vec<String> = reported["configStatus"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_owned())
        .collect();
    for p in [
        "devices.dev-b.map",
        "devices.dev-c.pollIntervalMs",
        "devices.dev-d.map.points.v.address",
    ] {
        assert!(paths.contains(&p.to_owned()), "{p} not in {paths:?}");
    }
    assert_eq!(reported["configStatus"]["appliedVersion"], 2);
    assert_eq!(reported["devices"]["ac"], 400);
    // The last good configuration keeps polling.
    let before = sim.hub.messages().len();
    sim.hub
        .wait_until(T, |m| m.len() > before + 2)
        .await
        .expect("telemetry continues");
    stop.cancel();
}

#[tokio::test]
async fn rtu_over_socat_two_slaves_one_bus() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let server = PyModbus::rtu(&json!({"units": {
        "1": {"input": [{"address": 1, "type": "i16", "value": 215}, {"address": 2, "type": "u16", "value": 456}],
              "holding": [{"address": 259, "type": "i16", "value": 0}]},
        "2": {"input": [{"address": 1, "type": "i16", "value": -35}, {"address": 2, "type": "u16", "value": 800}]}
    }}))
    .await
    .unwrap();
    let sim = sim().await;
    let conn = json!({"type": "rtu", "port": server.client_tty, "baudRate": 9600, "parity": "none", "dataBits": 8, "stopBits": 1});
    sim.hub.set_desired(
        "edge-gw/modbus",
        &json!({"devices": {
            "th-1": {"map": "xy-md02", "connection": conn, "unitId": 1, "pollIntervalMs": 300, "points": ["temperature", "humidity"]},
            "th-2": {"map": "xy-md02", "connection": conn, "unitId": 2, "pollIntervalMs": 300, "points": ["temperature", "humidity"]}
        }}),
    );
    let stop = run_modbus_against(&sim, "modbus", KEY, dir.path(), None)
        .await
        .unwrap();
    let msgs = sim
        .hub
        .wait_until(T, |m| {
            latest(m, "th-1", "telemetry").is_some() && latest(m, "th-2", "telemetry").is_some()
        })
        .await
        .expect("both slaves");
    assert_eq!(
        latest(&msgs, "th-1", "telemetry").unwrap(),
        json!({"temperature": 21.5, "humidity": 45.6})
    );
    assert_eq!(
        latest(&msgs, "th-2", "telemetry").unwrap(),
        json!({"temperature": -3.5, "humidity": 80.0})
    );
    // A write over RTU (FC6), read back.
    let (status, body) = method(&sim, "write", json!({"deviceId": "th-1", "point": "temperatureCorrection", "value": -1.5, "verify": true})).await;
    assert_eq!(
        (status, body["readBack"].clone()),
        (200, json!(-1.5)),
        "{body}"
    );
    assert!(server.has_socat());
    stop.cancel();
}

#[tokio::test]
async fn silent_unit_goes_offline_without_delaying_the_others() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let mut spec = server_spec();
    spec["silent"] = json!([7]);
    spec["units"]["7"] = json!({"input": [{"address": 0, "type": "u16", "value": 1}]});
    let server = PyModbus::tcp(&spec).await.unwrap();
    let sim = sim().await;
    let conn = json!({"type": "tcp", "host": "127.0.0.1", "port": server.port});
    let map = json!({"name": "c", "points": {"counter": {"table": "input", "address": 0, "type": "u16"}}});
    sim.hub.set_desired(
        "edge-gw/modbus",
        &json!({"devices": {
            "alive": {"map": map, "connection": conn, "unitId": 1, "pollIntervalMs": 200, "timeoutMs": 300},
            "dead": {"map": map, "connection": conn, "unitId": 7, "pollIntervalMs": 200, "timeoutMs": 300}
        }}),
    );
    let stop = run_modbus_against(&sim, "modbus", KEY, dir.path(), None)
        .await
        .unwrap();
    let msgs = sim
        .hub
        .wait_until(T, |m| latest(m, "dead", "status").is_some())
        .await
        .expect("offline status");
    let status = latest(&msgs, "dead", "status").unwrap();
    assert_eq!(status["state"], "offline");
    assert!(
        status["lastError"]
            .as_str()
            .unwrap()
            .contains("No response"),
        "{status}"
    );
    // The live device keeps publishing at about its rate while the dead one times out.
    let start = sim
        .hub
        .messages()
        .iter()
        .filter(|m| m.properties.get("deviceId").map(String::as_str) == Some("alive"))
        .count();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = sim
        .hub
        .messages()
        .iter()
        .filter(|m| m.properties.get("deviceId").map(String::as_str) == Some("alive"))
        .count();
    assert!(
        after - start >= 8,
        "only {} messages in 3 s from the live device",
        after - start
    );
    assert_eq!(
        sim.hub.twin("edge-gw/modbus")["reported"]["deviceHealth"]["dead"]["state"],
        "offline"
    );
    stop.cancel();
}

#[tokio::test]
async fn stalled_rtu_reply_is_never_taken_for_the_next_answer() {
    stalled_reply_is_never_taken_for_the_next_answer(true).await;
}

/// Modbus TCP drops the late reply by its transaction id.
#[tokio::test]
async fn stalled_tcp_reply_is_never_taken_for_the_next_answer() {
    stalled_reply_is_never_taken_for_the_next_answer(false).await;
}

async fn stalled_reply_is_never_taken_for_the_next_answer(rtu: bool) {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let spec = json!({
        "units": {"1": {"holding": [{"address": 0, "type": "u16", "value": 1111}, {"address": 100, "type": "u16", "value": 2222}]}},
        "stall": {"unit": 1, "address": 0, "seconds": 0.8}
    });
    let server = if rtu {
        PyModbus::rtu(&spec).await
    } else {
        PyModbus::tcp(&spec).await
    }
    .unwrap();
    let connection = if rtu {
        json!({"type": "rtu", "port": server.client_tty})
    } else {
        json!({"type": "tcp", "host": "127.0.0.1", "port": server.port})
    };
    let sim = sim().await;
    let map = json!({"name": "two", "points": {"a": {"table": "holding", "address": 0, "type": "u16"}, "b": {"table": "holding", "address": 100, "type": "u16"}}});
    sim.hub.set_desired(
        "edge-gw/modbus",
        &json!({"devices": {"d": {"map": map, "connection": connection, "pollIntervalMs": 100, "timeoutMs": 300}}}),
    );
    let stop = run_modbus_against(&sim, "modbus", KEY, dir.path(), None)
        .await
        .unwrap();
    let msgs = sim
        .hub
        .wait_until(T, |m| {
            m.iter()
                .filter(|r| r.output.as_deref() == Some("telemetry"))
                .count()
                >= 10
        })
        .await
        .expect("telemetry after the stall");
    for m in msgs
        .iter()
        .filter(|r| r.output.as_deref() == Some("telemetry"))
    {
        assert_eq!(
            m.json(),
            json!({"a": 1111, "b": 2222}),
            "a reply was attributed to the wrong request"
        );
    }
    assert!(
        msgs.iter()
            .any(|r| r.output.as_deref() == Some("status") && r.json()["state"] == "offline"),
        "the stall was seen as a timeout"
    );
    stop.cancel();
}

#[tokio::test]
async fn server_that_goes_away_and_comes_back() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let mut server = PyModbus::tcp(&server_spec()).await.unwrap();
    let sim = sim().await;
    let map = json!({"name": "c", "points": {"counter": {"table": "input", "address": 0, "type": "u16"}}});
    sim.hub.set_desired(
        "edge-gw/modbus",
        &json!({"devices": {"d": {"map": map, "connection": {"type": "tcp", "host": "127.0.0.1", "port": server.port}, "pollIntervalMs": 200, "timeoutMs": 300}}}),
    );
    let stop = run_modbus_against(&sim, "modbus", KEY, dir.path(), None)
        .await
        .unwrap();
    sim.hub
        .wait_until(T, |m| latest(m, "d", "telemetry").is_some())
        .await
        .unwrap();
    server.stop().await;
    sim.hub
        .wait_until(T, |m| {
            latest(m, "d", "status").is_some_and(|s| s["state"] == "offline")
        })
        .await
        .expect("offline");
    server.restart().await.unwrap();
    sim.hub
        .wait_until(T, |m| {
            latest(m, "d", "status").is_some_and(|s| s["state"] == "online")
        })
        .await
        .expect("back online");
    let n = sim.hub.messages().len();
    sim.hub
        .wait_until(T, |m| {
            m.len() > n && latest(m, "d", "telemetry") == Some(json!({"counter": 1000}))
        })
        .await
        .unwrap();
    stop.cancel();
}

#[tokio::test]
async fn garbage_frames_from_a_tcp_peer_are_errors_not_crashes() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    // A "device" that answers every request with junk bytes.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = [0u8; 260];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let junk: Vec<u8> = (0..n + 7)
                        .map(|i| (i as u8).wrapping_mul(37) ^ 0x5a)
                        .collect();
                    if s.write_all(&junk).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let server = PyModbus::tcp(&server_spec()).await.unwrap();
    let sim = sim().await;
    let map = json!({"name": "c", "points": {"counter": {"table": "input", "address": 0, "type": "u16"}}});
    sim.hub.set_desired(
        "edge-gw/modbus",
        &json!({"devices": {
            "junk": {"map": map, "connection": {"type": "tcp", "host": "127.0.0.1", "port": port}, "pollIntervalMs": 200, "timeoutMs": 300},
            "good": {"map": map, "connection": {"type": "tcp", "host": "127.0.0.1", "port": server.port}, "pollIntervalMs": 200}
        }}),
    );
    let stop = run_modbus_against(&sim, "modbus", KEY, dir.path(), None)
        .await
        .unwrap();
    let msgs = sim
        .hub
        .wait_until(T, |m| {
            latest(m, "junk", "status").is_some() && latest(m, "good", "telemetry").is_some()
        })
        .await
        .expect("junk offline, good flowing");
    assert_eq!(latest(&msgs, "junk", "status").unwrap()["state"], "offline");
    assert_eq!(
        latest(&msgs, "good", "telemetry").unwrap(),
        json!({"counter": 1000})
    );
    let (status, body) = method(&sim, "read", json!({"deviceId": "junk"})).await;
    assert!(matches!(status, 503 | 504), "{status} {body}");
    stop.cancel();
}

#[tokio::test]
async fn report_on_change_sends_unchanged_values_only_after_max_silence() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let server = PyModbus::tcp(&server_spec()).await.unwrap();
    let sim = sim().await;
    let map = json!({"name": "c", "points": {"counter": {"table": "input", "address": 0, "type": "u16"}}});
    sim.hub.set_desired(
        "edge-gw/modbus",
        &json!({"devices": {"d": {"map": map, "connection": {"type": "tcp", "host": "127.0.0.1", "port": server.port},
            "pollIntervalMs": 100, "report": {"onChange": true, "deadband": 0.5, "maxSilenceMs": 1500}}}}),
    );
    let stop = run_modbus_against(&sim, "modbus", KEY, dir.path(), None)
        .await
        .unwrap();
    let count = |m: &[Recorded]| {
        m.iter()
            .filter(|r| r.output.as_deref() == Some("telemetry"))
            .count()
    };
    sim.hub
        .wait_until(T, |m| count(m) == 1)
        .await
        .expect("first value");
    let first = std::time::Instant::now();
    // The value never changes: about 12 polls pass without a message...
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        count(&sim.hub.messages()),
        1,
        "an unchanged value was sent before maxSilenceMs"
    );
    // ...until the maximum silence is reached.
    sim.hub
        .wait_until(T, |m| count(m) == 2)
        .await
        .expect("the heartbeat after maxSilenceMs");
    assert!(
        first.elapsed() >= Duration::from_millis(1300),
        "{:?}",
        first.elapsed()
    );
    stop.cancel();
}
