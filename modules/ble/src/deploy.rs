//! What an IoT Edge deployment needs for this module: the host's D-Bus socket (BlueZ) and
//! a volume for the spool.

use bridge_core::runtime::manifest::{ModuleSpec, default_routes, deployment_manifest};
use serde_json::{Value, json};

/// Where the spool lives inside the container (owned by the module user in the image).
pub const SPOOL_DIR: &str = "/opt/edge-bridge/spool";

/// The deployment manifest for one bridge-ble module with `doc` as its desired properties.
pub fn manifest(name: &str, image: &str, doc: &Value, ttl_secs: u64) -> Value {
    let module = ModuleSpec {
        name: name.into(),
        image: image.into(),
        create_options: json!({"HostConfig": {"Binds": ["/var/run/dbus:/var/run/dbus", format!("edge-bridge-ble-spool:{SPOOL_DIR}")]}}),
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
