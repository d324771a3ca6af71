//! IoT Edge deployment manifests, pure: `$edgeAgent` (runtime, system modules, our
//! module with its image and `createOptions`), `$edgeHub` (routes, store and forward), and
//! the module's desired properties, so users never hand-edit escaped JSON.

use std::collections::BTreeMap;

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
}
