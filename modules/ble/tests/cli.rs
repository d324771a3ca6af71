//! The built `bridge-ble` binary's shared commands (`--version`, `maps`, `validate`,
//! `models`, `manifest`), checked from the outside. The manifest's D-Bus bind is also
//! covered in `dbusmock.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test: a panic is the failure report

use std::process::{Command, Output};

use serde_json::{Value, json};

fn bin(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bridge-ble"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[test]
fn every_listed_map_is_accepted_by_validate_and_models() {
    let out = bin(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout),
        format!("bridge-ble {}\n", env!("CARGO_PKG_VERSION"))
    );

    let out = bin(&["maps"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let maps: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
    assert!(maps.contains(&"bthome-v2".to_owned()), "{maps:?}");
    assert!(maps.contains(&"ble-battery".to_owned()), "{maps:?}");
    let mut sorted = maps.clone();
    sorted.sort();
    assert_eq!(maps, sorted);

    // One device per listed map: the configuration is valid and gets one model per map.
    let devices: serde_json::Map<String, Value> = maps
        .iter()
        .enumerate()
        .map(|(i, map)| {
            (
                format!("d{i}"),
                json!({"address": format!("C0:FF:EE:00:00:{i:02X}"), "map": map}),
            )
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("all-maps.json");
    std::fs::write(&cfg, json!({ "devices": devices }).to_string()).unwrap();
    let cfg = cfg.to_str().unwrap();
    let out = bin(&["validate", cfg]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        format!("{cfg}: valid ({} devices).\n", maps.len())
    );
    let out = bin(&["models", "--from", cfg]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let models: Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    assert_eq!(models.as_array().unwrap().len(), maps.len() + 1);

    // The same map name misspelt: exit 2, the problem at its JSON path.
    std::fs::write(
        dir.path().join("bad.json"),
        r#"{"devices": {"x": {"address": "C0:FF:EE:00:00:01", "map": "bthome-v9"}}}"#,
    )
    .unwrap();
    let bad = dir.path().join("bad.json");
    let out = bin(&["validate", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains(&format!("{}: devices.x.map: ", bad.display())),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn manifest_binds_dbus_and_keeps_the_document() {
    let dir = tempfile::tempdir().unwrap();
    let doc = json!({"devices": {"freezer": {"address": "C0:FF:EE:00:00:01", "map": "bthome-v2"}},
        "discovery": {"enabled": false}});
    let cfg = dir.path().join("ble.json");
    std::fs::write(&cfg, doc.to_string()).unwrap();
    let out = bin(&[
        "manifest",
        "--from",
        cfg.to_str().unwrap(),
        "--image",
        "reg/bridge-ble:1",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let m: Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    let module = &m["modulesContent"]["$edgeAgent"]["properties.desired"]["modules"]["bridge-ble"];
    assert_eq!(
        module["settings"]["createOptions"],
        r#"{"HostConfig":{"Binds":["/var/run/dbus:/var/run/dbus","edge-bridge-ble-spool:/opt/edge-bridge/spool"]}}"#
    );
    assert_eq!(
        module["env"]["EDGE_BRIDGE_SPOOL_DIR"]["value"],
        "/opt/edge-bridge/spool"
    );
    assert_eq!(m["modulesContent"]["bridge-ble"]["properties.desired"], doc);
}
