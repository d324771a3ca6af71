//! A Device Provisioning Service client over MQTT: register, poll the operation, return
//! the assignment, cache it on disk. The payload carries what IoT Central needs to link a
//! device to its gateway and model (`modelId`, `iotcGateway`).

use std::path::PathBuf;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, Transport};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::info;

use crate::hub::topics::decode_bag;
use crate::identity::encode::percent_encode_all;
use crate::identity::sas::{dps_resource_uri, string_to_sign, token};
use crate::identity::{SymmetricKey, TrustRoots};
use crate::mqtt::tls;

/// Where DPS is.
#[derive(Debug, Clone)]
pub struct DpsEndpoint {
    /// Host (`global.azure-devices-provisioning.net`).
    pub host: String,
    /// Port (8883).
    pub port: u16,
    /// ID scope of the enrollment.
    pub id_scope: String,
    /// Roots to trust.
    pub trust: TrustRoots,
    /// Directory for cached assignments.
    pub cache_dir: Option<PathBuf>,
    /// Give up after this long.
    pub timeout: Duration,
}

/// A device's assignment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Assignment {
    /// IoT hub host name.
    pub assigned_hub: String,
    /// Device id in that hub.
    pub device_id: String,
}

/// Registration failed.
#[derive(Debug, thiserror::Error)]
pub enum DpsError {
    /// Could not reach DPS or the connection broke.
    #[error("DPS connection failed: {0}")]
    Connection(String),
    /// DPS refused (bad key, unknown enrollment…).
    #[error("DPS refused the registration: {0}")]
    Refused(String),
    /// No assignment in time.
    #[error("DPS did not assign the device within {0:?}.")]
    Timeout(Duration),
}

fn cache_path(ep: &DpsEndpoint, registration_id: &str) -> Option<PathBuf> {
    ep.cache_dir
        .as_ref()
        .map(|d| d.join(format!("{}.json", percent_encode_all(registration_id))))
}

/// The cached assignment, if any.
pub fn cached(ep: &DpsEndpoint, registration_id: &str) -> Option<Assignment> {
    let text = std::fs::read_to_string(cache_path(ep, registration_id)?).ok()?;
    serde_json::from_str(&text).ok()
}

/// Forgets a cached assignment (the hub said the device is gone: register again).
pub fn forget(ep: &DpsEndpoint, registration_id: &str) {
    if let Some(p) = cache_path(ep, registration_id) {
        let _ignored = std::fs::remove_file(p);
    }
}

/// Registers (or returns the cached assignment).
pub async fn provision(
    ep: &DpsEndpoint,
    registration_id: &str,
    key: &SymmetricKey,
    payload: &Value,
) -> Result<Assignment, DpsError> {
    if let Some(a) = cached(ep, registration_id) {
        return Ok(a);
    }
    let assignment = tokio::time::timeout(ep.timeout, register(ep, registration_id, key, payload))
        .await
        .map_err(|_| DpsError::Timeout(ep.timeout))??;
    if let Some(p) = cache_path(ep, registration_id) {
        if let Some(dir) = p.parent() {
            let _ignored = std::fs::create_dir_all(dir);
        }
        let _ignored = std::fs::write(&p, serde_json::to_vec(&assignment).unwrap_or_default());
    }
    info!(registration_id, hub = %assignment.assigned_hub, "Device provisioned.");
    Ok(assignment)
}

async fn register(
    ep: &DpsEndpoint,
    registration_id: &str,
    key: &SymmetricKey,
    payload: &Value,
) -> Result<Assignment, DpsError> {
    let conn = |e: String| DpsError::Connection(e);
    let expiry = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() + 3600)
        .unwrap_or(0);
    let encoded = percent_encode_all(&dps_resource_uri(&ep.id_scope, registration_id));
    let sig = key.sign(string_to_sign(&encoded, expiry).as_bytes());
    let password = token(&encoded, &sig, expiry, Some("registration"));
    let username = format!(
        "{}/registrations/{}/api-version=2019-03-31&ClientVersion={}",
        ep.id_scope,
        registration_id,
        percent_encode_all(&crate::hub::topics::client_type())
    );
    let mut opts = MqttOptions::new(registration_id, ep.host.clone(), ep.port);
    opts.set_credentials(username, password)
        .set_keep_alive(Duration::from_secs(30));
    let tls = tls::client_config(&ep.trust).map_err(|e| conn(e.to_string()))?;
    opts.set_transport(Transport::tls_with_config(
        rumqttc::TlsConfiguration::Rustls(tls),
    ));
    let (client, mut el) = AsyncClient::new(opts, 16);
    let mut rid = 0u32;
    loop {
        let event = el.poll().await.map_err(|e| match e {
            rumqttc::ConnectionError::ConnectionRefused(code) => {
                DpsError::Refused(format!("{code:?}"))
            }
            other => conn(other.to_string()),
        })?;
        match event {
            Event::Incoming(Packet::ConnAck(_)) => {
                client
                    .subscribe("$dps/registrations/res/#", QoS::AtLeastOnce)
                    .await
                    .map_err(|e| conn(e.to_string()))?;
                rid += 1;
                let body = json!({"registrationId": registration_id, "payload": payload});
                client
                    .publish(
                        format!("$dps/registrations/PUT/iotdps-register/?$rid={rid}"),
                        QoS::AtLeastOnce,
                        false,
                        body.to_string(),
                    )
                    .await
                    .map_err(|e| conn(e.to_string()))?;
            }
            Event::Incoming(Packet::Publish(p)) => {
                let Some(rest) = p.topic.strip_prefix("$dps/registrations/res/") else {
                    continue;
                };
                let (status, query) = rest.split_once("/?").unwrap_or((rest, ""));
                let q = decode_bag(query);
                let body: Value = serde_json::from_slice(&p.payload).unwrap_or(Value::Null);
                match status {
                    "202" => {
                        let wait = q
                            .get("retry-after")
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(2u64)
                            .clamp(1, 30);
                        let op = body["operationId"].as_str().unwrap_or_default().to_owned();
                        tokio::time::sleep(Duration::from_secs(wait)).await;
                        rid += 1;
                        client
                            .publish(
                                format!("$dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId={}", percent_encode_all(&op)),
                                QoS::AtLeastOnce,
                                false,
                                " ",
                            )
                            .await
                            .map_err(|e| conn(e.to_string()))?;
                    }
                    "200" if body["status"] == "assigned" => {
                        let state = &body["registrationState"];
                        let _ignored = client.disconnect().await;
                        return Ok(Assignment {
                            assigned_hub: state["assignedHub"]
                                .as_str()
                                .unwrap_or_default()
                                .to_owned(),
                            device_id: state["deviceId"]
                                .as_str()
                                .unwrap_or(registration_id)
                                .to_owned(),
                        });
                    }
                    _ => return Err(DpsError::Refused(format!("status {status}: {body}"))),
                }
            }
            _ => {}
        }
    }
}
