//! The IoT Edge workload API on a unix socket: `sign` with the module's key and
//! `trust-bundle` with the emulator's CA, so modules run with a real `IOTEDGE_*` environment.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::http::{Reply, Request};
use crate::state::Hub;

fn error(status: u16, message: &str) -> Reply {
    Reply::Json(status, json!({"message": message}))
}

/// Handles one workload API request.
pub(crate) async fn handle(hub: Arc<Hub>, ca_pem: Arc<String>, request: Request) -> Reply {
    if !request.query.contains_key("api-version") {
        return error(400, "api-version is required");
    }
    let segs: Vec<&str> = request.segments.iter().map(String::as_str).collect();
    match (request.method.as_str(), segs.as_slice()) {
        ("GET", ["trust-bundle"]) => Reply::Json(200, json!({"certificate": ca_pem.as_str()})),
        ("POST", ["modules", module, "genid", _gen, "sign"]) => {
            let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
                return error(400, "the body is not JSON");
            };
            let Some(data) = body
                .get("data")
                .and_then(Value::as_str)
                .and_then(|d| STANDARD.decode(d).ok())
            else {
                return error(400, "data must be base64");
            };
            let identity = format!("{}/{}", hub.info.edge_device_id, module);
            match hub.identity(&identity) {
                Some(id) => Reply::Json(200, json!({"digest": id.key.sign(&data)})),
                None => error(404, &format!("module {module} not found")),
            }
        }
        _ => error(404, "not found"),
    }
}
