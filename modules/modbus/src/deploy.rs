//! What an IoT Edge deployment needs for this module: serial devices mapped into the
//! container, the `dialout` group, a volume for the spool.

use std::collections::BTreeSet;

use bridge_core::runtime::manifest::{ModuleSpec, default_routes, deployment_manifest};
use serde_json::{Value, json};

/// Where the spool lives inside the container (the image creates it owned by the module
/// user; a named volume mounted there inherits that ownership).
pub const SPOOL_DIR: &str = "/opt/edge-bridge/spool";

/// Serial ports named by `rtu` connections in a configuration document.
pub fn serial_ports(doc: &Value) -> BTreeSet<String> {
    doc["devices"]
        .as_object()
        .into_iter()
        .flat_map(|d| d.values())
        .filter(|d| matches!(d["connection"]["type"].as_str(), Some("rtu" | "ascii")))
        .filter_map(|d| d["connection"]["port"].as_str().map(str::to_owned))
        .collect()
}

/// Docker create options for the module.
pub fn create_options(doc: &Value) -> Value {
    let devices: Vec<Value> = serial_ports(doc)
        .into_iter()
        .map(|p| json!({"PathOnHost": p, "PathInContainer": p, "CgroupPermissions": "rwm"}))
        .collect();
    // GID 20 is dialout on Debian-family hosts, the group serial devices belong to.
    json!({"HostConfig": {"Devices": devices, "GroupAdd": ["20"], "Binds": [format!("edge-bridge-modbus-spool:{SPOOL_DIR}")]}})
}

/// The deployment manifest for one bridge-modbus module with `doc` as its desired properties.
pub fn manifest(name: &str, image: &str, doc: &Value, ttl_secs: u64) -> Value {
    let module = ModuleSpec {
        name: name.into(),
        image: image.into(),
        create_options: create_options(doc),
        env: [
            ("EDGE_BRIDGE_SPOOL_DIR".to_owned(), SPOOL_DIR.to_owned()),
            ("RUST_LOG".to_owned(), "info".to_owned()),
        ]
        .into(),
        desired: doc.clone(),
    };
    let routes = default_routes(std::slice::from_ref(&module));
    deployment_manifest(&[module], &routes, ttl_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_ports_become_devices() {
        let doc = json!({"devices": {
            "a": {"map": "xy-md02", "connection": {"type": "rtu", "port": "/dev/ttyUSB0"}},
            "b": {"map": "xy-md02", "connection": {"type": "rtu", "port": "/dev/ttyUSB0"}, "unitId": 2},
            "c": {"map": "xy-md02", "connection": {"type": "tcp", "host": "h"}}
        }});
        let m = manifest("bridge-modbus", "img:1", &doc, 3600);
        let agent =
            &m["modulesContent"]["$edgeAgent"]["properties.desired"]["modules"]["bridge-modbus"];
        let opts: Value =
            serde_json::from_str(agent["settings"]["createOptions"].as_str().unwrap()).unwrap();
        assert_eq!(opts["HostConfig"]["Devices"].as_array().unwrap().len(), 1);
        assert_eq!(
            opts["HostConfig"]["Devices"][0]["PathOnHost"],
            "/dev/ttyUSB0"
        );
        assert_eq!(agent["env"]["EDGE_BRIDGE_SPOOL_DIR"]["value"], SPOOL_DIR);
        assert_eq!(
            m["modulesContent"]["bridge-modbus"]["properties.desired"],
            doc
        );
    }
}
