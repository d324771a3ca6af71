//! The control API (HTTP on loopback): list identities, read twins, set desired
//! properties, invoke methods, send input messages, read or follow upstream messages.
//!
//! | request | effect |
//! |---|---|
//! | `GET /identities` | connected identities |
//! | `GET /twins/{id}` | twin (`id` = `dev/mod` or `dev`) |
//! | `PATCH /twins/{id}/desired` | merge desired patch, push it to the client (400 past the twin limits) |
//! | `POST /methods/{id}/{name}?timeoutSecs=30` | invoke a direct method |
//! | `POST /inputs/{dev}/{mod}/{input}` | send a message to a module input |
//! | `GET /messages` | every recorded telemetry message |
//! | `GET /messages?follow=true` | JSON lines as they arrive |
//! | `GET /registrations` | DPS registrations |

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::http::{Reply, Request};
use crate::state::Hub;

fn id_of(parts: &[String]) -> String {
    parts.join("/")
}

/// Handles one control request.
pub(crate) async fn handle(hub: Arc<Hub>, request: Request) -> Reply {
    let segs = &request.segments;
    let body = || serde_json::from_slice::<Value>(&request.body);
    match (request.method.as_str(), segs.first().map(String::as_str)) {
        ("GET", Some("identities")) => Reply::Json(200, json!({"connected": hub.connected()})),
        ("GET", Some("messages")) if request.query.get("follow").is_some_and(|v| v == "true") => {
            Reply::Follow
        }
        ("GET", Some("messages")) => Reply::Json(200, json!(hub.messages())),
        ("GET", Some("registrations")) => Reply::Json(200, json!(hub.registrations())),
        ("GET", Some("twins")) if segs.len() > 1 => Reply::Json(200, hub.twin(&id_of(&segs[1..]))),
        ("PATCH", Some("twins"))
            if segs.len() > 2 && segs.last().is_some_and(|s| s == "desired") =>
        {
            match body() {
                Ok(patch @ Value::Object(_)) => {
                    match hub.try_set_desired(&id_of(&segs[1..segs.len() - 1]), &patch) {
                        Ok(version) => Reply::Json(200, json!({"$version": version})),
                        // IoT Hub refuses the whole update with 400 and a reason.
                        Err(e) => Reply::Json(400, json!({"message": e.to_string()})),
                    }
                }
                _ => Reply::Json(
                    400,
                    json!({"message": "the desired patch must be a JSON object"}),
                ),
            }
        }
        ("POST", Some("methods")) if segs.len() > 2 => {
            let payload = body().unwrap_or(Value::Null);
            let secs = request
                .query
                .get("timeoutSecs")
                .and_then(|t| t.parse().ok())
                .unwrap_or(30);
            let name = &segs[segs.len() - 1];
            match hub
                .invoke_method(
                    &id_of(&segs[1..segs.len() - 1]),
                    name,
                    &payload,
                    Duration::from_secs(secs),
                )
                .await
            {
                Ok((status, payload)) => {
                    Reply::Json(200, json!({"status": status, "payload": payload}))
                }
                Err(e @ crate::state::MethodError::NotConnected(_)) => {
                    Reply::Json(404, json!({"message": e.to_string()}))
                }
                Err(e) => Reply::Json(504, json!({"message": e.to_string()})),
            }
        }
        ("POST", Some("inputs")) if segs.len() == 4 => {
            hub.send_to_input(
                &format!("{}/{}", segs[1], segs[2]),
                &segs[3],
                &[],
                &request.body,
            );
            Reply::Json(200, json!({"queued": true}))
        }
        _ => Reply::Json(
            404,
            json!({"message": "unknown request; see the control API table in the README"}),
        ),
    }
}
