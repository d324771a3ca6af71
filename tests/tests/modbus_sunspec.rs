//! SunSpec discovery end to end: a register image built with the SunSpec Alliance's
//! pysunspec2 (common model 1, inverter 103, MPPT 160 with 3 modules, two meters 203,
//! batteries 802 and 124, volt-var 705 with nested repeating groups) served by pymodbus at
//! base 40000, 0 and 50000; pysunspec2's own Modbus client decodes it as the oracle; the
//! module's telemetry and facts must agree point for point, with unimplemented points
//! absent in both. The DTDL generated from the models found passes Microsoft's parser.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::time::Duration;

use bridge_core::identity::SymmetricKey;
use bridge_e2e::{
    PyModbus, init_tracing, repo_root, reported_until, run_modbus_against, run_python,
};
use edgehub_sim::{Recorded, Sim, SimOptions};
use serde_json::{Value, json};

const KEY: &str = "Y2FwdHVyZS10ZXN0LWtleS0wMTIzNDU2Nzg5YWJjZGVm";
const T: Duration = Duration::from_secs(40);

async fn sim() -> Sim {
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    sim.hub
        .add_module("edge-gw", "modbus", SymmetricKey::from_base64(KEY).unwrap());
    sim
}

/// The pymodbus server spec holding a pysunspec2-built image at `base`.
pub async fn sunspec_spec(base: u16) -> Value {
    sunspec_image(base).await.0
}

/// The server spec and the image's registers.
async fn sunspec_image(base: u16) -> (Value, Vec<u16>) {
    let img = run_python(
        "sunspec_image.py",
        &["build", "--base", &base.to_string()],
        &[],
        T,
    )
    .await
    .unwrap();
    let holding: Vec<Value> = img["registers"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, v)| json!({"address": u64::from(base) + i as u64, "type": "u16", "value": v}))
        .collect();
    let regs = img["registers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u16)
        .collect();
    (json!({"units": {"1": {"holding": holding}}}), regs)
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

fn same(ours: &Value, theirs: &Value) -> bool {
    match (ours.as_f64(), theirs.as_f64()) {
        (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * b.abs().max(1.0),
        _ => ours == theirs,
    }
}

async fn check_base(base: u16) {
    let server = PyModbus::tcp(&sunspec_spec(base).await).await.unwrap();
    let oracle = run_python(
        "sunspec_image.py",
        &["read", "--port", &server.port.to_string()],
        &[],
        T,
    )
    .await
    .unwrap();
    assert_eq!(oracle["base"], json!(base));
    assert_eq!(
        oracle["models"],
        json!([1, 103, 160, 203, 203, 802, 124, 705])
    );
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    sim.hub.set_desired(
        "edge-gw/modbus",
        &json!({"devices": {"pv": {"map": "sunspec", "unitId": 1, "pollIntervalMs": 500,
            "connection": {"type": "tcp", "host": "127.0.0.1", "port": server.port}}}}),
    );
    let stop = run_modbus_against(&sim, "modbus", KEY, dir.path(), None)
        .await
        .unwrap();
    let msgs = sim
        .hub
        .wait_until(T, |m| latest(m, "pv", "telemetry").is_some())
        .await
        .expect("SunSpec telemetry");
    let telemetry = latest(&msgs, "pv", "telemetry").unwrap();
    let reported = reported_until(&sim.hub, "edge-gw/modbus", T, |r| {
        r["deviceFacts"]["pv"].is_object()
    })
    .await;
    let mut ours = telemetry.as_object().unwrap().clone();
    for (k, v) in reported["deviceFacts"]["pv"].as_object().unwrap() {
        assert!(k.starts_with("m1_"), "facts are the common model: {k}");
        ours.insert(k.clone(), v.clone());
    }
    let theirs = oracle["values"].as_object().unwrap();
    assert!(theirs.len() > 150, "{}", theirs.len());
    for (k, v) in theirs {
        let got = ours
            .get(k)
            .unwrap_or_else(|| panic!("base {base}: {k} missing (pysunspec2: {v})"));
        assert!(same(got, v), "base {base}: {k}: ours {got}, pysunspec2 {v}");
    }
    for k in oracle["absent"].as_array().unwrap() {
        assert!(
            !ours.contains_key(k.as_str().unwrap()),
            "base {base}: {k} should be absent"
        );
    }
    assert!(oracle["absent"].as_array().unwrap().len() > 30);
    let extra: Vec<&String> = ours.keys().filter(|k| !theirs.contains_key(*k)).collect();
    assert!(
        extra.is_empty(),
        "base {base}: not decoded by pysunspec2: {extra:?}"
    );
    for k in [
        "m160_module_3_DCW",
        "m203_2_W",
        "m705_Crv_2_Pt_4_V",
        "m802_SoC",
    ] {
        assert!(
            ours.contains_key(k) || oracle["absent"].as_array().unwrap().contains(&json!(k)),
            "{k} is in the layout"
        );
    }

    // The read method: the same values, and a clear error for an absent point.
    let absent = oracle["absent"][0].as_str().unwrap();
    let (status, body) = sim
        .hub
        .invoke_method(
            "edge-gw/modbus",
            "read",
            &json!({"deviceId": "pv", "points": ["m1_Mn", "m160_module_1_ID", absent]}),
            T,
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["values"]["m1_Mn"], theirs["m1_Mn"]);
    assert_eq!(
        body["values"]["m160_module_1_ID"],
        theirs["m160_module_1_ID"]
    );
    assert!(body["errors"][absent].is_string(), "{body}");
    let (status, _) = sim
        .hub
        .invoke_method(
            "edge-gw/modbus",
            "write",
            &json!({"deviceId": "pv", "point": "m1_DA", "value": 3}),
            T,
        )
        .await
        .unwrap();
    assert_eq!(status, 400);

    // DTDL from the models found: parsed by Microsoft's parser; every telemetry field is
    // in the interface with a matching schema.
    let cfg = bridge_modbus::config::parse(&json!({"devices": {"pv": {"map": "sunspec",
        "connection": {"type": "tcp", "host": "127.0.0.1", "port": server.port}}}}))
    .unwrap();
    let (models, problems) = bridge_modbus::sunspec::dtdl::models(&cfg).await;
    assert!(problems.is_empty(), "{problems:?}");
    let iface = models
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["@id"] == "dtmi:edgebridge:modbus:sunspec_1_103_160_203_203_802_124_705;1")
        .unwrap_or_else(|| panic!("{models}"));
    let contents = iface["contents"].as_array().unwrap();
    for (k, v) in &telemetry.as_object().unwrap().clone() {
        let e = contents
            .iter()
            .find(|c| c["name"] == json!(k))
            .unwrap_or_else(|| panic!("{k} not in the model"));
        let ok = match e["schema"].as_str().unwrap() {
            "double" => v.is_number(),
            "integer" => v.as_i64().is_some_and(|x| i32::try_from(x).is_ok()),
            "long" => v.is_i64() || v.is_u64(),
            "string" => v.is_string(),
            other => panic!("{other}"),
        };
        assert!(ok, "{k}: {v} vs {}", e["schema"]);
    }
    parse_with_dtdl_parser(&models);
    stop.cancel();
}

fn parse_with_dtdl_parser(models: &Value) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("models.json");
    std::fs::write(&file, models.to_string()).unwrap();
    let out = std::process::Command::new("node")
        .arg(repo_root().join("tests/node/check_dtdl.js"))
        .arg(&file)
        .output()
        .expect("node is not installed");
    assert!(
        out.status.success(),
        "the DTDL parser rejected the models:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[tokio::test]
async fn sunspec_at_base_40000_matches_pysunspec2() {
    init_tracing();
    check_base(40000).await;
}

#[tokio::test]
async fn sunspec_at_base_0_matches_pysunspec2() {
    init_tracing();
    check_base(0).await;
}

#[tokio::test]
async fn sunspec_at_base_50000_matches_pysunspec2() {
    init_tracing();
    check_base(50000).await;
}

#[tokio::test]
async fn a_device_without_sunspec_is_a_clear_error() {
    init_tracing();
    let server = PyModbus::tcp(&json!({"units": {"1": {"holding": [
        {"address": 0, "type": "u16", "value": 1}, {"address": 40000, "type": "u16", "value": 2},
        {"address": 40001, "type": "u16", "value": 3}
    ]}}}))
    .await
    .unwrap();
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    sim.hub.set_desired(
        "edge-gw/modbus",
        &json!({"devices": {"plain": {"map": "sunspec", "pollIntervalMs": 300, "timeoutMs": 500,
            "connection": {"type": "tcp", "host": "127.0.0.1", "port": server.port}}}}),
    );
    let stop = run_modbus_against(&sim, "modbus", KEY, dir.path(), None)
        .await
        .unwrap();
    let r = reported_until(&sim.hub, "edge-gw/modbus", T, |r| {
        r["deviceHealth"]["plain"]["lastError"].is_string()
    })
    .await;
    assert_eq!(r["deviceHealth"]["plain"]["state"], "offline");
    assert_eq!(
        r["deviceHealth"]["plain"]["lastError"],
        "No SunSpec marker at 40000, 0 or 50000."
    );
    stop.cancel();
}

#[tokio::test]
async fn a_changed_model_list_is_rediscovered() {
    init_tracing();
    let (spec, regs) = sunspec_image(40000).await;
    let server = PyModbus::tcp(&spec).await.unwrap();
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    sim.hub.set_desired(
        "edge-gw/modbus",
        &json!({"devices": {"pv": {"map": "sunspec", "pollIntervalMs": 200,
            "connection": {"type": "tcp", "host": "127.0.0.1", "port": server.port}}}}),
    );
    let stop = run_modbus_against(&sim, "modbus", KEY, dir.path(), None)
        .await
        .unwrap();
    let has_705 = |m: &[Recorded]| {
        latest(m, "pv", "telemetry").is_some_and(|t| {
            t.as_object()
                .unwrap()
                .keys()
                .any(|k| k.starts_with("m705_"))
        })
    };
    sim.hub
        .wait_until(T, has_705)
        .await
        .expect("model 705 at first");
    // Walk the chain in the image to the 705 model and turn it into the end marker, as a
    // device reconfigured at run time would.
    let mut at = 2usize;
    while regs[at] != 705 {
        at += 2 + usize::from(regs[at + 1]);
    }
    let target = format!("127.0.0.1:{}", server.port);
    let address = (40000 + at).to_string();
    let cmd = bridge_modbus::commission::parse(&[
        "write",
        "--tcp",
        &target,
        "--unit",
        "1",
        "--table",
        "holding",
        "--address",
        &address,
        "--value",
        "65535",
    ])
    .unwrap();
    bridge_modbus::commission::run(&cmd, &mut Vec::new())
        .await
        .unwrap();
    let msgs = sim
        .hub
        .wait_until(T, |m| {
            latest(m, "pv", "telemetry").is_some_and(|t| {
                let o = t.as_object().unwrap();
                !o.keys().any(|k| k.starts_with("m705_"))
                    && o.keys().any(|k| k.starts_with("m124_"))
            })
        })
        .await
        .expect("telemetry without model 705 after the change");
    let t = latest(&msgs, "pv", "telemetry").unwrap();
    assert!(
        t.as_object()
            .unwrap()
            .keys()
            .any(|k| k.starts_with("m160_module_3_"))
    );
    stop.cancel();
}

#[tokio::test]
async fn a_model_the_device_refuses_does_not_hide_the_others() {
    init_tracing();
    let (mut spec, regs) = sunspec_image(40000).await;
    // Leave a hole in model 802: reading it gives "illegal data address".
    let mut at = 2usize;
    while regs[at] != 802 {
        at += 2 + usize::from(regs[at + 1]);
    }
    let hole = 40000 + at as u64 + 10;
    spec["units"]["1"]["holding"]
        .as_array_mut()
        .unwrap()
        .retain(|e| e["address"].as_u64() != Some(hole));
    let server = PyModbus::tcp(&spec).await.unwrap();
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    sim.hub.set_desired(
        "edge-gw/modbus",
        &json!({"devices": {"pv": {"map": "sunspec", "pollIntervalMs": 300,
            "connection": {"type": "tcp", "host": "127.0.0.1", "port": server.port}}}}),
    );
    let stop = run_modbus_against(&sim, "modbus", KEY, dir.path(), None)
        .await
        .unwrap();
    let msgs = sim
        .hub
        .wait_until(T, |m| latest(m, "pv", "telemetry").is_some())
        .await
        .expect("telemetry from the other models");
    let t = latest(&msgs, "pv", "telemetry").unwrap();
    let keys: Vec<&String> = t.as_object().unwrap().keys().collect();
    assert!(!keys.iter().any(|k| k.starts_with("m802_")), "{keys:?}");
    assert!(keys.iter().any(|k| k.starts_with("m124_")), "{keys:?}");
    let r = reported_until(&sim.hub, "edge-gw/modbus", T, |r| {
        r["deviceHealth"]["pv"]["state"] == "online"
    })
    .await;
    assert_eq!(r["deviceHealth"]["pv"]["state"], "online");
    let e = r["deviceHealth"]["pv"]["lastError"]
        .as_str()
        .unwrap_or_default();
    assert!(
        e.starts_with("Model 802 at register") && e.contains("exception 2"),
        "{e}"
    );
    stop.cancel();
}
