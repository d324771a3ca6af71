//! Microsoft's Python SDK (azure-iot-device 2.14.0) against edgehub-sim: the emulator
//! must speak the real edgeHub protocol, and our topic builder must match the SDK's bytes.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::time::Duration;

use bridge_core::hub::topics::telemetry_topic;
use bridge_core::identity::{HubIdentity, SymmetricKey};
use bridge_core::message::Message;
use bridge_e2e::{init_tracing, run_python, sim_on_8883, write_ca};
use edgehub_sim::SimOptions;
use serde_json::json;

const KEY1: &str = "Y2FwdHVyZS10ZXN0LWtleS0wMTIzNDU2Nzg5YWJjZGVm";
const KEY2: &str = "c2Vjb25kLW1vZHVsZS1rZXktMDEyMzQ1Njc4OWFiY2RlZg==";
const T: Duration = Duration::from_secs(90);

fn key(k: &str) -> SymmetricKey {
    SymmetricKey::from_base64(k).unwrap()
}

#[tokio::test]
async fn module_client_by_connection_string_full_round_trip() -> anyhow::Result<()> {
    init_tracing();
    let dir = tempfile::tempdir()?;
    let sim = sim_on_8883(SimOptions {
        control_port: Some(0),
        ..SimOptions::default()
    })
    .await?;
    sim.hub.add_module("edge-gw", "mod1", key(KEY1));
    sim.hub.add_module("edge-gw", "mod2", key(KEY2));
    sim.hub.add_route(r#"FROM /messages/modules/mod1/outputs/output1 INTO BrokeredEndpoint("/modules/mod2/inputs/input1")"#.parse()?);
    sim.hub
        .add_route("FROM /messages/modules/mod1/outputs/* INTO $upstream".parse()?);
    sim.hub
        .set_desired("edge-gw/mod1", &json!({"telemetryInterval": 1}));
    let ip = sim.tls_addr.ip();
    let cs = |m: &str, k: &str| {
        format!(
            "HostName=myhub.azure-devices.net;DeviceId=edge-gw;ModuleId={m};SharedAccessKey={k};GatewayHostName={ip}"
        )
    };
    let out = run_python(
        "sdk_peer.py",
        &["module-connection-string"],
        &[
            ("SIM_CA", write_ca(&sim, dir.path())?.display().to_string()),
            (
                "SIM_CONTROL",
                format!("http://{}", sim.control_addr.unwrap()),
            ),
            ("MODULE_CS", cs("mod1", KEY1)),
            ("PEER_CS", cs("mod2", KEY2)),
        ],
        T,
    )
    .await?;

    // What the SDK saw.
    assert_eq!(out["twin_desired"]["telemetryInterval"], 1);
    assert_eq!(
        out["patch"],
        json!({"telemetryInterval": 5, "threshold": null, "$version": 3})
    );
    assert_eq!(
        out["method"],
        json!({"name": "reboot", "payload": {"delay": 3}})
    );
    assert_eq!(
        out["method_result"],
        json!({"status": 200, "payload": {"result": "ok", "echo": {"delay": 3}}})
    );
    assert_eq!(out["routed"]["input"], "input1");
    assert_eq!(out["routed"]["body"], r#"{"temperature": 21.5}"#);
    assert_eq!(out["routed"]["custom"]["unit name"], "deg C/F");
    assert_eq!(out["routed"]["custom"]["$.cmid"], "mod1");
    assert_eq!(out["input"]["input"], "input1");
    assert_eq!(out["input"]["body"], r#"{"cmd": "hello"}"#);

    // What the emulator recorded.
    let twin = sim.hub.twin("edge-gw/mod1");
    assert_eq!(twin["reported"]["firmware"], "1.0.1");
    assert_eq!(twin["reported"]["telemetryInterval"]["ac"], 200);
    let messages = sim.hub.messages();
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert_eq!(m.identity, "edge-gw/mod1");
    assert_eq!(m.output.as_deref(), Some("output1"));
    assert_eq!(m.properties["$.mid"], "mid-0001");
    assert_eq!(m.properties["$.ct"], "application/json");
    assert_eq!(m.properties["a&b=c"], "x/y?z+1");
    assert_eq!(m.routed_to, ["mod2/input1", "$upstream"]);

    // Our own topic builder produces the SDK's exact bytes for the same message.
    let mut ours = Message {
        output: Some("output1".into()),
        message_id: Some("mid-0001".into()),
        correlation_id: Some("cid-0001".into()),
        content_type: Some("application/json".into()),
        content_encoding: Some("utf-8".into()),
        ..Message::default()
    };
    for (k, v) in [
        ("alert", "true"),
        ("unit name", "deg C/F"),
        ("a&b=c", "x/y?z+1"),
    ] {
        ours.properties.insert(k.into(), v.into());
    }
    let id = HubIdentity {
        hub_hostname: "myhub.azure-devices.net".into(),
        device_id: "edge-gw".into(),
        module_id: Some("mod1".into()),
        connect_host: ip.to_string(),
        port: 8883,
        model_id: None,
    };
    assert_eq!(telemetry_topic(&id, &ours), m.topic);
    Ok(())
}

#[tokio::test]
async fn module_client_from_edge_environment_uses_the_workload_api() -> anyhow::Result<()> {
    init_tracing();
    let dir = tempfile::tempdir()?;
    let socket = dir.path().join("workload.sock");
    let sim = sim_on_8883(SimOptions {
        workload_socket: Some(socket.clone()),
        ..SimOptions::default()
    })
    .await?;
    sim.hub.add_module("edge-gw", "bridge", key(KEY1));
    sim.hub
        .set_desired("edge-gw/bridge", &json!({"devices": {}}));
    let out = run_python(
        "sdk_peer.py",
        &["module-edge-environment"],
        &[
            ("SIM_CA", write_ca(&sim, dir.path())?.display().to_string()),
            (
                "IOTEDGE_WORKLOADURI",
                format!("unix://{}", socket.display()),
            ),
            ("IOTEDGE_DEVICEID", "edge-gw".into()),
            ("IOTEDGE_MODULEID", "bridge".into()),
            ("IOTEDGE_MODULEGENERATIONID", "637000000000000001".into()),
            ("IOTEDGE_IOTHUBHOSTNAME", "myhub.azure-devices.net".into()),
            ("IOTEDGE_GATEWAYHOSTNAME", sim.tls_addr.ip().to_string()),
            ("IOTEDGE_AUTHSCHEME", "sasToken".into()),
            ("IOTEDGE_APIVERSION", "2022-08-03".into()),
        ],
        T,
    )
    .await?;
    assert_eq!(out["twin_desired"]["devices"], json!({}));
    assert_eq!(sim.hub.twin("edge-gw/bridge")["reported"]["edgeEnv"], true);
    let messages = sim.hub.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].output.as_deref(), Some("telemetry"));
    Ok(())
}

#[tokio::test]
async fn child_device_connects_through_the_gateway() -> anyhow::Result<()> {
    init_tracing();
    let dir = tempfile::tempdir()?;
    let sim = sim_on_8883(SimOptions::default()).await?;
    sim.hub.add_device("leaf-001", key(KEY2));
    let ip = sim.tls_addr.ip();
    let out = run_python(
        "sdk_peer.py",
        &["child-device"],
        &[
            ("SIM_CA", write_ca(&sim, dir.path())?.display().to_string()),
            ("DEVICE_CS", format!("HostName=myhub.azure-devices.net;DeviceId=leaf-001;SharedAccessKey={KEY2};GatewayHostName={ip}")),
        ],
        T,
    )
    .await?;
    assert_eq!(out["twin"]["reported"]["leafReported"], true);
    let messages = sim.hub.messages();
    assert_eq!(messages[0].identity, "leaf-001");
    assert_eq!(messages[0].json(), json!({"leaf": 1}));
    assert_eq!(messages[0].routed_to, ["$upstream"]);
    Ok(())
}

#[tokio::test]
async fn dps_registration_with_a_group_derived_key() -> anyhow::Result<()> {
    init_tracing();
    let dir = tempfile::tempdir()?;
    let sim = sim_on_8883(SimOptions::default()).await?;
    let group = key("Y2FwdHVyZS10ZXN0LWdyb3VwLWVucm9sbG1lbnQta2V5LTAwMA==");
    sim.hub.add_dps_group("0ne00000000", group.clone());
    // Our derivation is what the SDK authenticates with: the emulator checks it.
    let derived = group.derive("leaf-001").to_base64();
    assert_eq!(derived, "0MWX/+PCssAhy/1eOPldnPfJ6pqTB1LtYZqmM4Lki5I=");
    let out = run_python(
        "sdk_peer.py",
        &["dps"],
        &[
            ("SIM_CA", write_ca(&sim, dir.path())?.display().to_string()),
            ("SIM_HOST", sim.tls_addr.ip().to_string()),
            ("REG_ID", "leaf-001".into()),
            ("ID_SCOPE", "0ne00000000".into()),
            ("DEVICE_KEY", derived.clone()),
            (
                "GROUP_KEY",
                "Y2FwdHVyZS10ZXN0LWdyb3VwLWVucm9sbG1lbnQta2V5LTAwMA==".into(),
            ),
        ],
        T,
    )
    .await?;
    assert_eq!(
        out["derived_key"],
        derived.as_str(),
        "our derivation equals the tutorial's Python derivation"
    );
    let out = json!({"status": out["status"], "assigned_hub": out["assigned_hub"], "device_id": out["device_id"]});
    assert_eq!(
        out,
        json!({"status": "assigned", "assigned_hub": "myhub.azure-devices.net", "device_id": "leaf-001"})
    );
    let regs = sim.hub.registrations();
    assert_eq!(regs[0].payload["iotcGateway"]["iotcGatewayId"], "edge-gw");
    assert_eq!(regs[0].payload["modelId"], "dtmi:com:example:Thermostat;1");
    assert_eq!(sim.hub.messages()[0].identity, "leaf-001");
    Ok(())
}

#[tokio::test]
async fn wrong_key_is_refused() -> anyhow::Result<()> {
    init_tracing();
    let dir = tempfile::tempdir()?;
    let sim = sim_on_8883(SimOptions::default()).await?;
    sim.hub.add_module("edge-gw", "mod1", key(KEY1));
    let ip = sim.tls_addr.ip();
    let out = run_python(
        "sdk_peer.py",
        &["wrong-key"],
        &[
            ("SIM_CA", write_ca(&sim, dir.path())?.display().to_string()),
            ("MODULE_CS", format!("HostName=myhub.azure-devices.net;DeviceId=edge-gw;ModuleId=mod1;SharedAccessKey={KEY2};GatewayHostName={ip}")),
        ],
        T,
    )
    .await?;
    assert_eq!(out["connected"], false, "{out}");
    assert!(
        sim.hub
            .refusals()
            .iter()
            .any(|r| r.client_id == "edge-gw/mod1" && r.reason.contains("signature")),
        "{:?}",
        sim.hub.refusals()
    );
    Ok(())
}
