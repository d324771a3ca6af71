//! Every bundled device map against a real peer: `tests/python/map_image.py` builds a
//! register image per map (test values encoded with Python's `struct`, expected engineering
//! values computed there from the raw encodings), one pymodbus TCP server serves all of
//! them on one unit id per map, and the module polls each through its bundled map. Every
//! point must decode to the expected value: telemetry, device facts (static points) and,
//! through the `read` method, helper points that are not published.

#![allow(clippy::unwrap_used)] // test: a panic is the failure report

use std::collections::BTreeMap;
use std::time::Duration;

use bridge_core::identity::SymmetricKey;
use bridge_e2e::{
    PyModbus, init_tracing, peer_python, repo_root, reported_until, run_modbus_against,
};
use edgehub_sim::{Recorded, Sim, SimOptions};
use serde_json::{Map, Value, json};

const KEY: &str = "bWFwLWxpYnJhcnktdGVzdC1rZXktMDEyMzQ1Njc4OWFi";
const T: Duration = Duration::from_secs(40);

/// The last telemetry body of each device.
fn telemetry_by_device(messages: &[Recorded]) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for m in messages {
        if m.output.as_deref() == Some("telemetry")
            && let Some(id) = m.properties.get("deviceId")
        {
            out.insert(id.clone(), m.json());
        }
    }
    out
}

/// Whether `got` is the expected point value: integers exactly, floats within the scale's
/// resolution (`tolerance`) or a relative 1e-6, booleans and strings exactly.
fn matches(expected: &Value, got: &Value) -> bool {
    let want = &expected["value"];
    match expected["kind"].as_str().unwrap() {
        "int" => match (want.as_i64(), want.as_u64()) {
            (Some(w), _) => got.as_i64() == Some(w),
            (None, Some(w)) => got.as_u64() == Some(w),
            _ => false,
        },
        "float" => {
            let (w, Some(g)) = (want.as_f64().unwrap(), got.as_f64()) else {
                return false;
            };
            let tolerance = expected["tolerance"].as_f64().unwrap_or(0.0);
            (w - g).abs() <= tolerance.max(1e-6 * w.abs()).max(1e-9)
        }
        _ => want == got,
    }
}

/// Mismatches of one source (telemetry, facts, read) for one map, as readable lines.
fn check(
    map: &str,
    source: &str,
    points: &Map<String, Value>,
    got: &Value,
    wanted: &[&str],
) -> Vec<String> {
    let mut bad = Vec::new();
    for name in wanted {
        let e = &points[*name];
        match got.get(*name) {
            Some(v) if matches(e, v) => {}
            other => bad.push(format!(
                "{map} {source} {name}: expected {} got {other:?}",
                e["value"]
            )),
        }
    }
    if let Some(obj) = got.as_object() {
        for k in obj.keys() {
            if !wanted.contains(&k.as_str()) {
                bad.push(format!("{map} {source}: unexpected field {k}"));
            }
        }
    }
    bad
}

#[tokio::test]
async fn every_bundled_map_decodes_its_register_image() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let (spec_path, expected_path) = (
        dir.path().join("spec.json"),
        dir.path().join("expected.json"),
    );
    let status = tokio::process::Command::new(peer_python())
        .arg(repo_root().join("tests/python/map_image.py"))
        .arg("--spec")
        .arg(&spec_path)
        .arg("--expected")
        .arg(&expected_path)
        .status()
        .await
        .unwrap();
    assert!(status.success(), "map_image.py failed");
    let spec: Value = serde_json::from_str(&std::fs::read_to_string(&spec_path).unwrap()).unwrap();
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(&expected_path).unwrap()).unwrap();
    let maps = expected["maps"].as_object().unwrap();
    let names: Vec<&str> = maps.keys().map(String::as_str).collect();
    assert_eq!(
        bridge_modbus::map::bundled_names(),
        names,
        "every bundled map is imaged, and nothing else"
    );

    let server = PyModbus::tcp(&spec).await.unwrap();
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    sim.hub
        .add_module("edge-gw", "modbus", SymmetricKey::from_base64(KEY).unwrap());
    let connection = json!({"type": "tcp", "host": "127.0.0.1", "port": server.port});
    let devices: Map<String, Value> = maps
        .iter()
        .map(|(name, m)| {
            (
                name.clone(),
                json!({"map": name, "connection": connection, "unitId": m["unit"],
                       "pollIntervalMs": 2000, "timeoutMs": 2000}),
            )
        })
        .collect();
    sim.hub
        .set_desired("edge-gw/modbus", &json!({"devices": devices}));
    let stop = run_modbus_against(&sim, "modbus", KEY, dir.path(), None)
        .await
        .unwrap();

    let channel = |m: &Value, c: &str| -> Vec<String> {
        m["points"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, p)| p["channel"] == c)
            .map(|(n, _)| n.clone())
            .collect()
    };
    let msgs = sim
        .hub
        .wait_until(T, |m| {
            let seen = telemetry_by_device(m);
            maps.iter()
                .all(|(n, m)| channel(m, "telemetry").is_empty() || seen.contains_key(n))
        })
        .await;
    let telemetry = match msgs {
        Ok(m) => telemetry_by_device(&m),
        Err(m) => {
            let seen = telemetry_by_device(&m);
            let missing: Vec<&&str> = names.iter().filter(|n| !seen.contains_key(**n)).collect();
            panic!(
                "no telemetry from {missing:?}; health: {}",
                sim.hub.twin("edge-gw/modbus")["reported"]["deviceHealth"]
            )
        }
    };
    let with_facts: Vec<&str> = maps
        .iter()
        .filter(|(_, m)| !channel(m, "fact").is_empty())
        .map(|(n, _)| n.as_str())
        .collect();
    let reported = reported_until(&sim.hub, "edge-gw/modbus", T, |r| {
        with_facts
            .iter()
            .all(|n| r["deviceFacts"].get(*n).is_some())
    })
    .await;

    let mut bad = Vec::new();
    let mut checked = 0;
    for (name, m) in maps {
        let points = m["points"].as_object().unwrap();
        let tel = channel(m, "telemetry");
        let facts = channel(m, "fact");
        let tel: Vec<&str> = tel.iter().map(String::as_str).collect();
        let facts: Vec<&str> = facts.iter().map(String::as_str).collect();
        if !tel.is_empty() {
            bad.extend(check(name, "telemetry", points, &telemetry[name], &tel));
        }
        if !facts.is_empty() {
            bad.extend(check(
                name,
                "facts",
                points,
                &reported["deviceFacts"][name],
                &facts,
            ));
        }
        // Every point, published or not, through a live read.
        let all: Vec<&str> = points.keys().map(String::as_str).collect();
        let (status, body) = sim
            .hub
            .invoke_method(
                "edge-gw/modbus",
                "read",
                &json!({"deviceId": name, "points": all}),
                T,
            )
            .await
            .unwrap();
        assert_eq!(status, 200, "{name}: {body}");
        assert_eq!(body["errors"], json!({}), "{name}");
        bad.extend(check(name, "read", points, &body["values"], &all));
        checked += points.len();
    }
    stop.cancel();
    assert!(
        bad.is_empty(),
        "{} mismatches:\n{}",
        bad.len(),
        bad.join("\n")
    );
    eprintln!("{} maps, {checked} points decoded as expected", maps.len());
}
