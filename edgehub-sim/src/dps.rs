//! The Device Provisioning Service side, over MQTT: register, operation status,
//! assignment to this hub. Devices are authenticated with keys derived from an
//! enrollment group key; an assigned device becomes a child identity of the edge device.

use std::sync::Arc;

use bridge_core::hub::topics::decode_bag;
use bridge_core::identity::sas;
use rumqttc::{Packet, Publish, QoS};
use serde_json::{Value, json};

use crate::auth::{AuthError, check_token};
use crate::state::{Hub, Registration};

/// Checks a DPS CONNECT: token over `{scope}/registrations/{id}` signed with a key
/// derived from one of the scope's group keys.
pub(crate) fn authenticate(
    hub: &Hub,
    id_scope: &str,
    registration_id: &str,
    password: &str,
    now: u64,
) -> Result<u64, AuthError> {
    let groups: Vec<_> = hub
        .lock()
        .dps_groups
        .iter()
        .filter(|(s, _)| s == id_scope)
        .map(|(_, k)| k.clone())
        .collect();
    if groups.is_empty() {
        return Err(AuthError::UnknownIdentity(format!(
            "{id_scope}/registrations/{registration_id}"
        )));
    }
    let uri = sas::dps_resource_uri(id_scope, registration_id);
    let mut last = AuthError::Signature;
    for group in groups {
        match check_token(
            password,
            &uri,
            &group.derive(registration_id),
            now,
            hub.info.token_skew.as_secs(),
        ) {
            Ok(expiry) => return Ok(expiry),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn respond(status: u16, query: &str, body: &Value) -> Packet {
    Packet::Publish(Publish::new(
        format!("$dps/registrations/res/{status}/?{query}"),
        QoS::AtMostOnce,
        body.to_string().into_bytes(),
    ))
}

/// Handles a publish on a DPS connection.
pub(crate) fn on_publish(
    hub: &Arc<Hub>,
    id_scope: &str,
    registration_id: &str,
    topic: &str,
    payload: &[u8],
) -> Vec<Packet> {
    if let Some(query) = topic.strip_prefix("$dps/registrations/PUT/iotdps-register/?") {
        let rid = decode_bag(query).remove("$rid").unwrap_or_default();
        let request: Value = serde_json::from_slice(payload).unwrap_or(Value::Null);
        if request.get("registrationId").and_then(Value::as_str) != Some(registration_id) {
            return vec![respond(
                400,
                &format!("$rid={rid}"),
                &json!({"errorCode": 400004, "message": "registrationId must match the connection"}),
            )];
        }
        hub.lock().registrations.push(Registration {
            registration_id: registration_id.into(),
            id_scope: id_scope.into(),
            payload: request.get("payload").cloned().unwrap_or(Value::Null),
        });
        let op = format!("4.{}.{}", id_scope, registration_id);
        return vec![respond(
            202,
            &format!("$rid={rid}&retry-after=1"),
            &json!({"operationId": op, "status": "assigning"}),
        )];
    }
    if let Some(query) = topic.strip_prefix("$dps/registrations/GET/iotdps-get-operationstatus/?") {
        let q = decode_bag(query);
        let rid = q.get("$rid").cloned().unwrap_or_default();
        let op = q.get("operationId").cloned().unwrap_or_default();
        let key = {
            let state = hub.lock();
            let known = state
                .registrations
                .iter()
                .any(|r| r.registration_id == registration_id);
            let group = state
                .dps_groups
                .iter()
                .find(|(s, _)| s == id_scope)
                .map(|(_, k)| k.derive(registration_id));
            group.filter(|_| known)
        };
        let Some(key) = key else {
            return vec![respond(
                404,
                &format!("$rid={rid}"),
                &json!({"errorCode": 404002, "message": "unknown operation"}),
            )];
        };
        // The assigned device becomes a child of the edge device, with the derived key.
        hub.add_device(registration_id, key);
        let state = json!({
            "registrationId": registration_id,
            "assignedHub": hub.info.hub_hostname,
            "deviceId": registration_id,
            "status": "assigned",
            "substatus": "initialAssignment",
            "createdDateTimeUtc": bridge_core::time::rfc3339_now(),
            "lastUpdatedDateTimeUtc": bridge_core::time::rfc3339_now(),
            "etag": "IjAwMDAi"
        });
        return vec![respond(
            200,
            &format!("$rid={rid}"),
            &json!({"operationId": op, "status": "assigned", "registrationState": state}),
        )];
    }
    Vec::new()
}
