//! IoT Edge deployment manifests, pure: `$edgeAgent` (runtime, system modules, our
//! module with its image and `createOptions`), `$edgeHub` (routes, store and forward), and
//! the module's desired properties, so users never hand-edit escaped JSON.
//!
//! A protocol says what its container needs ([`Deployment`], derived from its validated
//! configuration); [`module_manifest`] turns that into the whole manifest.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

/// One custom module in a manifest.
#[derive(Debug, Clone)]
pub struct ModuleSpec {
    /// Module name (the identity edgeHub routes use).
    pub name: String,
    /// Container image reference.
    pub image: String,
    /// Docker create options (HostConfig etc.).
    pub create_options: Value,
    /// Environment variables.
    pub env: BTreeMap<String, String>,
    /// Desired properties (the module configuration).
    pub desired: Value,
}

/// Where the spool lives inside the container (the image creates it owned by the module
/// user; a named volume mounted there inherits that ownership).
pub const SPOOL_DIR: &str = "/opt/edge-bridge/spool";

/// What a module's container needs from the host, derived from its validated configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deployment {
    /// Host device nodes (serial ports) mapped into the container at the same path, `rwm`.
    pub devices: BTreeSet<String>,
    /// Supplementary groups (GIDs) the container joins, e.g. `20` (dialout) for serial ports.
    pub group_add: Vec<String>,
    /// Host paths bound into the container (`HOST:CONTAINER`), before the spool volume.
    pub binds: Vec<String>,
    /// Environment variables besides the runtime's (`RUST_LOG`, `EDGE_BRIDGE_SPOOL_DIR`).
    pub env: BTreeMap<String, String>,
    /// Named volume mounted at [`SPOOL_DIR`] so the spool survives container restarts.
    pub spool_volume: Option<String>,
}

impl Deployment {
    /// Docker create options: `HostConfig` with `Devices` and `GroupAdd` when there are
    /// any, and `Binds` (the protocol's, then the spool volume).
    pub fn create_options(&self) -> Value {
        let mut host = Map::new();
        let binds: Vec<Value> = self
            .binds
            .iter()
            .cloned()
            .chain(self.spool_volume.iter().map(|v| format!("{v}:{SPOOL_DIR}")))
            .map(Value::String)
            .collect();
        if !binds.is_empty() {
            host.insert("Binds".into(), Value::Array(binds));
        }
        if !self.devices.is_empty() {
            let devices = self.devices.iter().map(
                |p| json!({"PathOnHost": p, "PathInContainer": p, "CgroupPermissions": "rwm"}),
            );
            host.insert("Devices".into(), Value::Array(devices.collect()));
        }
        if !self.group_add.is_empty() {
            host.insert("GroupAdd".into(), json!(self.group_add));
        }
        json!({ "HostConfig": host })
    }

    /// The environment: `RUST_LOG=info`, `EDGE_BRIDGE_SPOOL_DIR` with a spool volume, then
    /// the protocol's own (which win).
    pub fn environment(&self) -> BTreeMap<String, String> {
        let mut env = BTreeMap::from([("RUST_LOG".to_owned(), "info".to_owned())]);
        if self.spool_volume.is_some() {
            env.insert("EDGE_BRIDGE_SPOOL_DIR".into(), SPOOL_DIR.into());
        }
        env.extend(self.env.clone());
        env
    }

    /// The module's entry in a manifest, with `desired` as its desired properties.
    pub fn module(&self, name: &str, image: &str, desired: Value) -> ModuleSpec {
        ModuleSpec {
            name: name.into(),
            image: image.into(),
            create_options: self.create_options(),
            env: self.environment(),
            desired,
        }
    }
}

/// The manifest for one module: its deployment, its configuration document as desired
/// properties, the default routes, and edgeHub's store-and-forward time to live.
pub fn module_manifest(
    name: &str,
    image: &str,
    deployment: &Deployment,
    desired: Value,
    store_ttl_secs: u64,
) -> Value {
    let module = deployment.module(name, image, desired);
    let routes = default_routes(std::slice::from_ref(&module));
    deployment_manifest(&[module], &routes, store_ttl_secs)
}

/// edgeAgent reads `createOptions` in chunks of at most 512 characters
/// (`createOptions`, `createOptions01` … `createOptions07`).
pub fn split_create_options(create_options: &Value) -> Map<String, Value> {
    let text = create_options.to_string();
    let chars: Vec<char> = text.chars().collect();
    let mut out = Map::new();
    for (i, chunk) in chars.chunks(512).enumerate() {
        let key = if i == 0 {
            "createOptions".to_owned()
        } else {
            format!("createOptions{i:02}")
        };
        out.insert(key, Value::String(chunk.iter().collect()));
    }
    out
}

/// Default routes: every module's `telemetry` and `status` outputs to IoT Hub.
pub fn default_routes(modules: &[ModuleSpec]) -> BTreeMap<String, String> {
    let mut routes = BTreeMap::new();
    for m in modules {
        let key = m.name.replace(|c: char| !c.is_ascii_alphanumeric(), "");
        routes.insert(
            format!("{key}Telemetry"),
            format!(
                "FROM /messages/modules/{}/outputs/telemetry INTO $upstream",
                m.name
            ),
        );
        routes.insert(
            format!("{key}Status"),
            format!(
                "FROM /messages/modules/{}/outputs/status INTO $upstream",
                m.name
            ),
        );
    }
    routes
}

/// A complete deployment manifest (`modulesContent`) for IoT Edge 1.4+.
pub fn deployment_manifest(
    modules: &[ModuleSpec],
    routes: &BTreeMap<String, String>,
    store_ttl_secs: u64,
) -> Value {
    let mut custom = Map::new();
    let mut content = Map::new();
    for m in modules {
        let mut settings = split_create_options(&m.create_options);
        settings.insert("image".into(), json!(m.image));
        let env: Map<String, Value> = m
            .env
            .iter()
            .map(|(k, v)| (k.clone(), json!({"value": v})))
            .collect();
        custom.insert(
            m.name.clone(),
            json!({"version": "1.0", "type": "docker", "status": "running", "restartPolicy": "always", "settings": settings, "env": env}),
        );
        content.insert(m.name.clone(), json!({"properties.desired": m.desired}));
    }
    content.insert(
        "$edgeAgent".into(),
        json!({"properties.desired": {
            "schemaVersion": "1.1",
            "runtime": {"type": "docker", "settings": {"minDockerVersion": "v1.25", "loggingOptions": "", "registryCredentials": {}}},
            "systemModules": {
                "edgeAgent": {"type": "docker", "settings": {"image": "mcr.microsoft.com/azureiotedge-agent:1.5", "createOptions": "{}"}},
                "edgeHub": {
                    "type": "docker", "status": "running", "restartPolicy": "always",
                    "settings": split_create_options(&json!({"HostConfig": {"PortBindings": {"8883/tcp": [{"HostPort": "8883"}], "443/tcp": [{"HostPort": "443"}], "5671/tcp": [{"HostPort": "5671"}]}}}))
                        .into_iter()
                        .chain([("image".to_owned(), json!("mcr.microsoft.com/azureiotedge-hub:1.5"))])
                        .collect::<Map<String, Value>>()
                }
            },
            "modules": custom
        }}),
    );
    content.insert(
        "$edgeHub".into(),
        json!({"properties.desired": {"schemaVersion": "1.1", "routes": routes, "storeAndForwardConfiguration": {"timeToLiveSecs": store_ttl_secs}}}),
    );
    json!({"modulesContent": content})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_options_are_chunked_and_rejoin() {
        let big = json!({"HostConfig": {"Binds": (0..60).map(|i| format!("/data/{i}:/data/{i}")).collect::<Vec<_>>()}});
        let parts = split_create_options(&big);
        assert!(parts.len() > 1 && parts.len() <= 8, "{}", parts.len());
        assert!(
            parts
                .values()
                .all(|v| v.as_str().is_some_and(|s| s.chars().count() <= 512))
        );
        let joined: String = parts.values().map(|v| v.as_str().unwrap_or("")).collect();
        assert_eq!(serde_json::from_str::<Value>(&joined).unwrap(), big);
        assert!(parts.contains_key("createOptions01"));
    }

    #[test]
    fn manifest_shape() {
        let m = ModuleSpec {
            name: "bridge-modbus".into(),
            image: "registry.example/bridge-modbus:0.1.0".into(),
            create_options: json!({"HostConfig": {"Devices": [{"PathOnHost": "/dev/ttyUSB0", "PathInContainer": "/dev/ttyUSB0", "CgroupPermissions": "rwm"}]}}),
            env: [("RUST_LOG".to_owned(), "info".to_owned())].into(),
            desired: json!({"devices": {}}),
        };
        let routes = default_routes(std::slice::from_ref(&m));
        let doc = deployment_manifest(&[m], &routes, 7200);
        let agent = &doc["modulesContent"]["$edgeAgent"]["properties.desired"];
        assert_eq!(
            agent["modules"]["bridge-modbus"]["settings"]["image"],
            "registry.example/bridge-modbus:0.1.0"
        );
        assert_eq!(
            agent["modules"]["bridge-modbus"]["env"]["RUST_LOG"]["value"],
            "info"
        );
        let opts: Value = serde_json::from_str(
            agent["modules"]["bridge-modbus"]["settings"]["createOptions"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(opts["HostConfig"]["Devices"][0]["CgroupPermissions"], "rwm");
        let hub = &doc["modulesContent"]["$edgeHub"]["properties.desired"];
        assert_eq!(
            hub["routes"]["bridgemodbusTelemetry"],
            "FROM /messages/modules/bridge-modbus/outputs/telemetry INTO $upstream"
        );
        assert_eq!(hub["storeAndForwardConfiguration"]["timeToLiveSecs"], 7200);
        assert_eq!(
            doc["modulesContent"]["bridge-modbus"]["properties.desired"],
            json!({"devices": {}})
        );
    }

    fn create_options_of(m: &Value, name: &str) -> Value {
        let settings =
            &m["modulesContent"]["$edgeAgent"]["properties.desired"]["modules"][name]["settings"];
        serde_json::from_str(settings["createOptions"].as_str().unwrap()).unwrap()
    }

    #[test]
    fn deployment_becomes_host_config_env_and_desired_properties() {
        let serial = Deployment {
            devices: ["/dev/ttyUSB1".to_owned(), "/dev/ttyUSB0".to_owned()].into(),
            group_add: vec!["20".into()],
            spool_volume: Some("edge-bridge-modbus-spool".into()),
            ..Deployment::default()
        };
        let desired = json!({"devices": {"a": {"map": "m"}}});
        let m = module_manifest("bridge-modbus", "img:1", &serial, desired.clone(), 60);
        // The exact text edgeAgent gets (serde_json sorts keys; ports sorted, deduplicated).
        assert_eq!(
            m["modulesContent"]["$edgeAgent"]["properties.desired"]["modules"]["bridge-modbus"]["settings"]
                ["createOptions"],
            r#"{"HostConfig":{"Binds":["edge-bridge-modbus-spool:/opt/edge-bridge/spool"],"Devices":[{"CgroupPermissions":"rwm","PathInContainer":"/dev/ttyUSB0","PathOnHost":"/dev/ttyUSB0"},{"CgroupPermissions":"rwm","PathInContainer":"/dev/ttyUSB1","PathOnHost":"/dev/ttyUSB1"}],"GroupAdd":["20"]}}"#
        );
        let module =
            &m["modulesContent"]["$edgeAgent"]["properties.desired"]["modules"]["bridge-modbus"];
        assert_eq!(
            module["env"],
            json!({"EDGE_BRIDGE_SPOOL_DIR": {"value": SPOOL_DIR}, "RUST_LOG": {"value": "info"}})
        );
        assert_eq!(
            m["modulesContent"]["bridge-modbus"]["properties.desired"],
            desired
        );
        assert_eq!(
            m["modulesContent"]["$edgeHub"]["properties.desired"]["storeAndForwardConfiguration"]["timeToLiveSecs"],
            60
        );

        // Binds before the spool volume; no Devices or GroupAdd when there are none.
        let dbus = Deployment {
            binds: vec!["/var/run/dbus:/var/run/dbus".into()],
            spool_volume: Some("edge-bridge-ble-spool".into()),
            env: [("RUST_LOG".to_owned(), "debug".to_owned())].into(),
            ..Deployment::default()
        };
        let m = module_manifest("ble", "img:2", &dbus, json!({}), 7200);
        assert_eq!(
            create_options_of(&m, "ble"),
            json!({"HostConfig": {"Binds": ["/var/run/dbus:/var/run/dbus", "edge-bridge-ble-spool:/opt/edge-bridge/spool"]}})
        );
        assert_eq!(
            m["modulesContent"]["$edgeAgent"]["properties.desired"]["modules"]["ble"]["env"]["RUST_LOG"]
                ["value"],
            "debug"
        );

        // Nothing needed: an empty HostConfig and no spool directory.
        let bare = Deployment::default();
        assert_eq!(bare.create_options(), json!({"HostConfig": {}}));
        assert_eq!(bare.environment().len(), 1);
    }
}
