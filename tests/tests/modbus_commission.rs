//! Commissioning commands (`scan`, `read`, `write`) against pymodbus 3.16.1 over TCP and
//! over socat pty pairs (RTU, and ASCII), with three unit ids on the bus: 1 a SunSpec device (image
//! built by pysunspec2), 2 an Eastron SDM120 image (values encoded by Python's struct),
//! 3 silent (its requests are never answered; pymodbus answers for ids absent from its
//! context, so the server's `silent` list plays the dead device). The commands are parsed and run exactly
//! as main.rs does (`commission::parse` + `commission::run`).

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use bridge_e2e::{PyModbus, init_tracing, run_python};
use bridge_modbus::commission::{self, CommissionError};
use serde_json::{Value, json};
use std::time::Duration;

async fn spec() -> Value {
    let img = run_python(
        "sunspec_image.py",
        &["build", "--base", "40000"],
        &[],
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    let sunspec: Vec<Value> = img["registers"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, v)| json!({"address": 40000 + i, "type": "u16", "value": v}))
        .collect();
    let f = |address: u16, value: f64| json!({"address": address, "type": "f32", "value": value});
    json!({
        "silent": [3],
        "identity": {"VendorName": "Eastron", "ProductCode": "SDM120", "MajorMinorRevision": "2.1"},
        "units": {
            "1": {"holding": sunspec},
            "2": {
                "input": [f(0, 230.5), f(6, 4.25), f(12, 979.0), f(18, 980.0), f(24, -12.0), f(30, 0.99),
                          f(36, 2.5), f(70, 50.02), f(72, 1234.5), f(74, 0.5), f(76, 12.0), f(78, 1.0),
                          f(342, 1235.0), f(344, 13.0)],
                "holding": [f(20, 2.0), f(28, 2.0), {"address": 100, "type": "u16", "value": 7}]
            }
        }
    })
}

async fn run(args: &[&str]) -> Result<String, CommissionError> {
    let cmd = commission::parse(args)?;
    let mut out = Vec::new();
    commission::run(&cmd, &mut out).await?;
    Ok(String::from_utf8(out).unwrap())
}

async fn exercise(bus: &[&str]) {
    let with = |rest: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
        v.splice(1..1, bus.iter().map(|s| s.to_string()));
        v
    };
    let call = |rest: &[&str]| {
        let v = with(rest);
        async move {
            let refs: Vec<&str> = v.iter().map(String::as_str).collect();
            run(&refs).await
        }
    };

    // scan: units 1 and 2 answer, 3 is silent.
    let out = call(&["scan", "--units", "1-3", "--timeout-ms", "300", "--json"])
        .await
        .unwrap();
    let scan: Value = serde_json::from_str(out.trim()).unwrap();
    let units = scan["units"].as_array().unwrap();
    assert_eq!(units.len(), 2, "{scan}");
    assert_eq!(units[0]["unit"], 1);
    assert_eq!(
        units[0]["sunspec"],
        json!({"base": 40000, "models": [1, 103, 160, 203, 203, 802, 124, 705]})
    );
    assert_eq!(units[1]["unit"], 2);
    assert_eq!(units[1]["sunspec"], Value::Null);
    assert!(
        units[1]["maps"]
            .as_array()
            .unwrap()
            .contains(&json!("eastron-sdm120")),
        "{scan}"
    );
    assert!(
        !units[0]["maps"]
            .as_array()
            .unwrap()
            .contains(&json!("eastron-sdm120")),
        "{scan}"
    );
    assert_eq!(
        units[1]["identification"]["VendorName"], "Eastron",
        "{scan}"
    );
    assert_eq!(
        units[1]["identification"]["ProductCode"], "SDM120",
        "{scan}"
    );
    let table = call(&["scan", "--units", "1-3", "--timeout-ms", "300"])
        .await
        .unwrap();
    assert!(table.starts_with("unit"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("2 ") && l.contains("eastron-sdm120")),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("1 ") && l.contains("1,103,160")),
        "{table}"
    );
    assert!(!table.lines().any(|l| l.starts_with("3 ")), "{table}");

    // read through a map, as a table and as JSON.
    let out = call(&[
        "read",
        "--unit",
        "2",
        "--map",
        "eastron-sdm120",
        "--points",
        "voltage,frequency",
    ])
    .await
    .unwrap();
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["voltage", "230.5", "V"]),
        "{out}"
    );
    let out = call(&["read", "--unit", "2", "--map", "eastron-sdm120", "--json"])
        .await
        .unwrap();
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["values"]["current"], 4.25);
    assert_eq!(
        v["values"]["frequency"]
            .as_f64()
            .map(|f| (f * 100.0).round()),
        Some(5002.0)
    );
    // raw registers and SunSpec.
    let out = call(&[
        "read",
        "--unit",
        "2",
        "--table",
        "input",
        "--address",
        "0",
        "--count",
        "1",
        "--type",
        "f32",
        "--json",
    ])
    .await
    .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(out.trim()).unwrap()["values"]["a0"],
        230.5
    );
    let out = call(&["read", "--unit", "1", "--map", "sunspec", "--json"])
        .await
        .unwrap();
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["models"], json!([1, 103, 160, 203, 203, 802, 124, 705]));
    assert!(v["values"]["m1_Mn"].is_string(), "{v}");

    // write through a map (checks, verify) and raw, each confirmed by reading back.
    let out = call(&[
        "write",
        "--unit",
        "2",
        "--map",
        "eastron-sdm120",
        "--point",
        "baudRateCode",
        "--value",
        "3",
        "--verify",
    ])
    .await
    .unwrap();
    assert!(
        out.contains("Read back: 3.0") || out.contains("Read back: 3."),
        "{out}"
    );
    let out = call(&[
        "read",
        "--unit",
        "2",
        "--map",
        "eastron-sdm120",
        "--points",
        "baudRateCode",
        "--json",
    ])
    .await
    .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(out.trim()).unwrap()["values"]["baudRateCode"],
        3.0
    );
    call(&[
        "write",
        "--unit",
        "2",
        "--table",
        "holding",
        "--address",
        "100",
        "--value",
        "4242",
    ])
    .await
    .unwrap();
    let out = call(&[
        "read",
        "--unit",
        "2",
        "--table",
        "holding",
        "--address",
        "100",
        "--json",
    ])
    .await
    .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(out.trim()).unwrap()["values"]["a100"],
        4242
    );

    // Refusals: clear messages, exit code 2 for arguments, 1 for the device.
    let usage = |r: Result<String, CommissionError>, what: &str| {
        let e = r.unwrap_err();
        assert_eq!(commission::exit_code(&e), 2, "{what}: {e}");
        e.to_string()
    };
    let e = usage(
        call(&["read", "--unit", "2", "--map", "no-such-map"]).await,
        "unknown map",
    );
    assert!(e.contains("Unknown device map 'no-such-map'"), "{e}");
    let e = usage(
        call(&["read", "--unit", "0", "--map", "eastron-sdm120"]).await,
        "unit 0",
    );
    assert!(e.contains("unit ids are 1-247"), "{e}");
    let e = usage(
        call(&["read", "--unit", "300", "--map", "eastron-sdm120"]).await,
        "unit 300",
    );
    assert!(e.contains("unit ids are 1-247"), "{e}");
    let e = usage(
        call(&["read", "--unit", "2", "--table", "holding"]).await,
        "missing address",
    );
    assert!(e.contains("--address"), "{e}");
    let e = usage(
        call(&[
            "write",
            "--unit",
            "2",
            "--map",
            "eastron-sdm120",
            "--point",
            "voltage",
            "--value",
            "1",
        ])
        .await,
        "read-only",
    );
    assert!(e.contains("read-only"), "{e}");
    let e = usage(
        call(&[
            "write",
            "--unit",
            "2",
            "--map",
            "eastron-sdm120",
            "--point",
            "baudRateCode",
            "--value",
            "9",
        ])
        .await,
        "range",
    );
    assert!(e.contains("outside the allowed range"), "{e}");
    let e = call(&[
        "read",
        "--unit",
        "3",
        "--map",
        "eastron-sdm120",
        "--timeout-ms",
        "300",
    ])
    .await
    .unwrap_err();
    assert_eq!(commission::exit_code(&e), 1);
    assert!(e.to_string().contains("No response"), "{e}");
}

#[tokio::test]
async fn commissioning_over_tcp() {
    init_tracing();
    let server = PyModbus::tcp(&spec().await).await.unwrap();
    let port = server.port.to_string();
    let target = format!("127.0.0.1:{port}");
    exercise(&["--tcp", &target]).await;
    // An unreachable host is a clear error with exit code 1.
    let closed = bridge_e2e::free_port();
    let e = run(&[
        "scan",
        "--tcp",
        &format!("127.0.0.1:{closed}"),
        "--units",
        "1",
    ])
    .await
    .unwrap_err();
    assert_eq!(commission::exit_code(&e), 1);
    assert!(e.to_string().contains("Cannot connect"), "{e}");
    let e = run(&["scan", "--units", "1"]).await.unwrap_err();
    assert!(
        e.to_string().contains("--tcp HOST[:PORT] or --serial PORT"),
        "{e}"
    );
}

#[tokio::test]
async fn commissioning_over_rtu() {
    init_tracing();
    let server = PyModbus::rtu(&spec().await).await.unwrap();
    let tty = server.client_tty.display().to_string();
    exercise(&["--serial", &tty]).await;
    let e = run(&["scan", "--serial", "/dev/no-such-tty", "--units", "1"])
        .await
        .unwrap_err();
    assert_eq!(commission::exit_code(&e), 1);
    assert!(e.to_string().contains("Cannot connect"), "{e}");
}

#[tokio::test]
async fn commissioning_over_ascii() {
    init_tracing();
    let server = PyModbus::ascii(&spec().await).await.unwrap();
    let tty = server.client_tty.display().to_string();
    exercise(&[
        "--serial",
        &tty,
        "--ascii",
        "--data-bits",
        "7",
        "--parity",
        "even",
    ])
    .await;
}
