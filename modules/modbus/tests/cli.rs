//! The built `bridge-modbus` binary's shared commands: `--version`, `maps`, `validate`,
//! `models`, `manifest`, checked from the outside (exit status, stdout, stderr).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test: a panic is the failure report

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

fn bin(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bridge-modbus"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn write_config(dir: &Path, name: &str, doc: &Value) -> String {
    let path = dir.join(name);
    std::fs::write(&path, doc.to_string()).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn version_and_bundled_maps() {
    let out = bin(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        stdout(&out),
        format!("bridge-modbus {}\n", env!("CARGO_PKG_VERSION"))
    );

    // `maps` lists exactly the map files of device-maps/modbus, sorted.
    let out = bin(&["maps"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut files: Vec<String> = std::fs::read_dir(repo().join("device-maps/modbus"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| p.file_stem().unwrap().to_str().unwrap().to_owned())
        .collect();
    files.sort();
    let listed: Vec<String> = stdout(&out).lines().map(str::to_owned).collect();
    assert_eq!(listed, files);
    assert!(listed.len() > 50, "{}", listed.len());

    // Unknown subcommands are usage errors (status 2), as for any clap program.
    let out = bin(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("unrecognized subcommand"));
}

#[test]
fn validate_counts_devices_or_lists_every_problem() {
    let example = repo().join("device-maps/examples/modbus-config.json");
    let example = example.to_str().unwrap();
    let out = bin(&["validate", example]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), format!("{example}: valid (3 devices).\n"));

    let dir = tempfile::tempdir().unwrap();
    // Problems of the runtime's section (identity) and of the protocol's, all reported.
    let bad = write_config(
        dir.path(),
        "bad.json",
        &json!({"identity": {"mode": "bogus"}, "devices": {
            "a": {"map": "no-such-map", "connection": {"type": "tcp", "host": "h"}},
            "b": {"map": "eastron-sdm120", "connection": {"type": "tcp"}}
        }}),
    );
    let out = bin(&["validate", &bad]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    for path in [
        "identity.mode",
        "devices.a.map",
        "devices.b.connection.host",
    ] {
        assert!(
            err.lines()
                .any(|l| l.starts_with(&format!("{bad}: {path}: "))),
            "{path} missing from:\n{err}"
        );
    }
    let out = bin(&["validate", "/nonexistent/config.json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).starts_with("/nonexistent/config.json: "));
}

#[test]
fn models_for_the_maps_in_use_and_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        "site.json",
        &json!({"devices": {
            "m1": {"map": "eastron-sdm120", "connection": {"type": "tcp", "host": "h"}},
            "m2": {"map": "eastron-sdm120", "connection": {"type": "tcp", "host": "h"}, "unitId": 2},
            "th": {"map": "xy-md02", "connection": {"type": "rtu", "port": "/dev/ttyUSB0"}}
        }}),
    );
    let out = bin(&["models", "--from", &cfg]);
    assert!(out.status.success(), "{}", stderr(&out));
    let models: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let ids: Vec<&str> = models
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["@id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert!(ids.iter().any(|id| id.contains("eastron")), "{ids:?}");
    assert!(ids.iter().any(|id| id.contains("xy")), "{ids:?}");
}

#[test]
fn manifest_from_the_validated_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let doc = json!({"devices": {
        "a": {"map": "eastron-sdm120", "connection": {"type": "rtu", "port": "/dev/ttyUSB1"}},
        "b": {"map": "eastron-sdm120", "connection": {"type": "rtu", "port": "/dev/ttyUSB1"}, "unitId": 2},
        "c": {"map": "xy-md02", "connection": {"type": "rtu", "port": "/dev/ttyAMA0", "baudRate": 19200}},
        "d": {"map": "eastron-sdm120", "connection": {"type": "tcp", "host": "10.0.0.5"}}
    }, "identity": {"mode": "module"}});
    let cfg = write_config(dir.path(), "site.json", &doc);
    let out = bin(&[
        "manifest",
        "--from",
        &cfg,
        "--image",
        "reg.example/bridge-modbus:1.2.3",
        "--name",
        "modbus-west",
        "--ttl-secs",
        "600",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let m: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let content = &m["modulesContent"];
    let module = &content["$edgeAgent"]["properties.desired"]["modules"]["modbus-west"];
    assert_eq!(
        module["settings"]["image"],
        "reg.example/bridge-modbus:1.2.3"
    );
    let opts: Value =
        serde_json::from_str(module["settings"]["createOptions"].as_str().unwrap()).unwrap();
    assert_eq!(
        opts,
        json!({"HostConfig": {
            "Binds": ["edge-bridge-modbus-spool:/opt/edge-bridge/spool"],
            "Devices": [
                {"PathOnHost": "/dev/ttyAMA0", "PathInContainer": "/dev/ttyAMA0", "CgroupPermissions": "rwm"},
                {"PathOnHost": "/dev/ttyUSB1", "PathInContainer": "/dev/ttyUSB1", "CgroupPermissions": "rwm"}
            ],
            "GroupAdd": ["20"]
        }})
    );
    assert_eq!(
        module["env"],
        json!({"EDGE_BRIDGE_SPOOL_DIR": {"value": "/opt/edge-bridge/spool"}, "RUST_LOG": {"value": "info"}})
    );
    // The configuration document, identity included, is the module's desired properties.
    assert_eq!(content["modbus-west"]["properties.desired"], doc);
    let hub = &content["$edgeHub"]["properties.desired"];
    assert_eq!(hub["storeAndForwardConfiguration"]["timeToLiveSecs"], 600);
    assert_eq!(
        hub["routes"]["modbuswestTelemetry"],
        "FROM /messages/modules/modbus-west/outputs/telemetry INTO $upstream"
    );

    // The default module name is the binary's; the default TTL two hours.
    let out = bin(&["manifest", "--from", &cfg, "--image", "i:1"]);
    let m: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(m["modulesContent"]["bridge-modbus"]["properties.desired"].is_object());
    assert_eq!(
        m["modulesContent"]["$edgeHub"]["properties.desired"]["storeAndForwardConfiguration"]["timeToLiveSecs"],
        7200
    );

    // An invalid configuration gives no manifest, only its problems.
    let bad = write_config(
        dir.path(),
        "bad.json",
        &json!({"devices": {"a": {"map": "eastron-sdm120", "connection": {"type": "rtu"}}}}),
    );
    let out = bin(&["manifest", "--from", &bad, "--image", "i:1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(
        stderr(&out).contains(&format!("{bad}: devices.a.connection")),
        "{}",
        stderr(&out)
    );
}

/// `schemas` writes the files checked in under device-maps/schema (generated from the
/// configuration and map types), or prints them as one object.
#[test]
fn schemas_are_the_checked_in_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin(&["schemas", "--out", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    for name in ["modbus-config.schema.json", "modbus-device-map.schema.json"] {
        let written = std::fs::read_to_string(dir.path().join(name)).unwrap();
        let checked_in =
            std::fs::read_to_string(repo().join("device-maps/schema").join(name)).unwrap();
        assert_eq!(written, checked_in, "{name}");
    }
    let out = bin(&["schemas"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let all: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        all["modbus-config.schema.json"]["title"],
        "bridge-modbus configuration"
    );
    assert_eq!(
        all["modbus-device-map.schema.json"]["title"],
        "Modbus device map"
    );
}
