//! Downstream device identities: each field device connects to edgeHub as its own IoT Hub
//! device (a child of the edge device), with its own telemetry, twin and direct methods.
//!
//! One MQTT connection carries one identity (edgeHub has no MQTT multiplexing), so every
//! device gets its own session and its own spool. Connections open gradually (one per
//! `connectIntervalMs`) and are capped (`maxConnections`, default 90: edgeHub accepts 100
//! clients by default, modules included). Devices past the cap are not opened; their
//! telemetry keeps flowing on the module's own connection with the `deviceId` property.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{ConfigErrors, ConfigIssue};
use crate::forwarder::{ForwarderOptions, TelemetrySender, spawn_forwarder};
use crate::hub::{HubSession, SessionOptions, spawn_session};
use crate::identity::{Credentials, HubIdentity, Signer, SymmetricKey, TrustRoots};
use crate::methods::MethodRouter;
use crate::spool::{Spool, SpoolOptions};
use crate::upstream;

/// Where device keys come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(
    tag = "source",
    rename_all = "camelCase",
    rename_all_fields = "camelCase",
    deny_unknown_fields
)]
pub enum KeySource {
    /// base64(HMAC-SHA256(module key, deviceId)) computed by the workload API's `sign`:
    /// no key material on the box. Register devices with keys derived the same way.
    Workload {},
    /// The DPS group-enrollment convention, HMAC-SHA256(groupKey, deviceId), with the
    /// group key read from a file or an environment variable (never from the twin).
    GroupKey {
        /// File holding the base64 group key.
        #[serde(default)]
        file: Option<PathBuf>,
        /// Environment variable holding the base64 group key.
        #[serde(default)]
        env: Option<String>,
    },
    /// Per-device keys from a mounted JSON file `{"deviceId": "base64key", ...}`.
    DeviceKeys {
        /// The file.
        file: PathBuf,
    },
}

const fn default_max_connections() -> usize {
    90
}
const fn default_connect_interval() -> u64 {
    200
}

/// The `identity` section of a module configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(
    tag = "mode",
    rename_all = "camelCase",
    rename_all_fields = "camelCase",
    deny_unknown_fields
)]
pub enum IdentityConfig {
    /// Telemetry on the module's own connection, device id as a property (default).
    Module {},
    /// Each configured device connects as its own IoT Hub device.
    Device {
        /// Where device keys come from.
        keys: KeySource,
        /// Most device connections to open.
        #[serde(default = "default_max_connections")]
        max_connections: usize,
        /// Pause between opening two connections, ms.
        #[serde(default = "default_connect_interval")]
        connect_interval_ms: u64,
        /// Register each device with DPS first (IoT Central and DPS-managed hubs).
        #[serde(default)]
        provisioning: Option<Provisioning>,
    },
}

/// DPS settings for device identities.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Provisioning {
    /// The enrollment's ID scope.
    pub id_scope: String,
    /// DPS host.
    #[serde(default = "default_dps_host")]
    pub endpoint: String,
    /// DPS port.
    #[serde(default = "default_dps_port")]
    pub port: u16,
    /// PEM file of roots to trust for DPS (default: the system roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Give up a registration after this long, ms.
    #[serde(default = "default_dps_timeout")]
    pub timeout_ms: u64,
}

const fn default_dps_timeout() -> u64 {
    60_000
}

fn default_dps_host() -> String {
    "global.azure-devices-provisioning.net".into()
}
const fn default_dps_port() -> u16 {
    8883
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig::Module {}
    }
}

impl IdentityConfig {
    /// Checks the parts serde cannot (at `path`).
    pub fn validate(&self, path: &str) -> Vec<ConfigIssue> {
        match self {
            IdentityConfig::Device {
                keys:
                    KeySource::GroupKey {
                        file: None,
                        env: None,
                    },
                ..
            } => {
                vec![ConfigIssue::new(
                    format!("{path}.keys"),
                    "A groupKey source needs file or env.",
                )]
            }
            IdentityConfig::Device {
                max_connections: 0, ..
            } => {
                vec![ConfigIssue::new(
                    format!("{path}.maxConnections"),
                    "maxConnections must be at least 1.",
                )]
            }
            _ => Vec::new(),
        }
    }
}

/// A device identity could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum DeviceIdentityError {
    /// The key source failed.
    #[error("No key for device '{device}': {reason}")]
    Key {
        /// Device id.
        device: String,
        /// Why.
        reason: String,
    },
    /// The connection cap is reached.
    #[error("The cap of {0} device connections is reached.")]
    Cap(usize),
    /// Not connected to a hub (stdout or MQTT upstream).
    #[error("Device identities need an edgeHub or IoT Hub upstream.")]
    NoHub,
    /// DPS registration failed.
    #[error("Provisioning failed: {0}")]
    Dps(#[from] crate::dps::DpsError),
}

/// An open device identity.
#[derive(Debug, Clone)]
pub struct DeviceLink {
    /// Telemetry for this device (its own spool and connection).
    pub telemetry: TelemetrySender,
    /// Its twin and connection.
    pub session: HubSession,
    stop: CancellationToken,
}

impl DeviceLink {
    /// Closes the connection (the spool drains first, bounded).
    pub fn close(&self) {
        self.stop.cancel();
    }

    /// Cancelled when the connection closes.
    pub(crate) fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }
}

/// Opens device identities on the module's hub. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DeviceHub {
    template: Credentials,
    module_signer: Signer,
    spool_dir: Option<PathBuf>,
    open: Arc<Mutex<BTreeMap<String, ()>>>,
    pacing: Arc<Semaphore>,
    shutdown: CancellationToken,
}

impl DeviceHub {
    /// A hub for devices that reach the same edgeHub as the module (`module` credentials).
    pub fn new(
        module: &Credentials,
        spool_dir: Option<PathBuf>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            template: module.clone(),
            module_signer: module.signer.clone(),
            spool_dir,
            open: Arc::default(),
            pacing: Arc::new(Semaphore::new(1)),
            shutdown,
        }
    }

    async fn key_for(
        &self,
        keys: &KeySource,
        device: &str,
    ) -> Result<SymmetricKey, DeviceIdentityError> {
        let err = |reason: String| DeviceIdentityError::Key {
            device: device.into(),
            reason,
        };
        match keys {
            KeySource::Workload {} => match &self.module_signer {
                Signer::Workload(client) => {
                    let digest = client
                        .sign(device.as_bytes())
                        .await
                        .map_err(|e| err(e.to_string()))?;
                    SymmetricKey::from_base64(&digest).map_err(|e| err(e.to_string()))
                }
                Signer::Key(module_key) => Ok(module_key.derive(device)),
            },
            KeySource::GroupKey { file, env } => {
                let text = match (file, env) {
                    (Some(f), _) => std::fs::read_to_string(f)
                        .map_err(|e| err(format!("cannot read {}: {e}", f.display())))?,
                    (None, Some(var)) => std::env::var(var)
                        .map_err(|_| err(format!("environment variable {var} is not set")))?,
                    (None, None) => return Err(err("no group key source".into())),
                };
                let group = SymmetricKey::from_base64(&text).map_err(|e| err(e.to_string()))?;
                Ok(group.derive(device))
            }
            KeySource::DeviceKeys { file } => {
                let text = std::fs::read_to_string(file)
                    .map_err(|e| err(format!("cannot read {}: {e}", file.display())))?;
                let keys: BTreeMap<String, String> = serde_json::from_str(&text).map_err(|e| {
                    err(format!(
                        "{} is not a JSON object of keys: {e}",
                        file.display()
                    ))
                })?;
                let key = keys
                    .get(device)
                    .ok_or_else(|| err(format!("{} has no key for it", file.display())))?;
                SymmetricKey::from_base64(key).map_err(|e| err(e.to_string()))
            }
        }
    }

    /// Opens (connects) a device identity with its own methods and model id, after
    /// registering it with DPS when `provisioning` is set.
    #[allow(clippy::too_many_arguments)]
    pub async fn open(
        &self,
        device: &str,
        keys: &KeySource,
        max_connections: usize,
        connect_interval: Duration,
        provisioning: Option<&Provisioning>,
        model_id: Option<String>,
        methods: MethodRouter,
    ) -> Result<DeviceLink, DeviceIdentityError> {
        let key = self.key_for(keys, device).await?;
        {
            // Check and reserve in one step so concurrent opens cannot exceed the cap.
            let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
            if open.len() >= max_connections && !open.contains_key(device) {
                return Err(DeviceIdentityError::Cap(max_connections));
            }
            open.insert(device.into(), ());
        }
        let opened = self
            .connect(
                device,
                key,
                connect_interval,
                provisioning,
                model_id,
                methods,
            )
            .await;
        if opened.is_err() {
            self.open
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(device);
        }
        opened
    }

    async fn connect(
        &self,
        device: &str,
        key: SymmetricKey,
        connect_interval: Duration,
        provisioning: Option<&Provisioning>,
        model_id: Option<String>,
        methods: MethodRouter,
    ) -> Result<DeviceLink, DeviceIdentityError> {
        let mut hub_hostname = self.template.identity.hub_hostname.clone();
        let mut dps_state = None;
        if let Some(p) = provisioning {
            let trust = match &p.ca_file {
                Some(f) => TrustRoots::Pem(std::fs::read_to_string(f).map_err(|e| {
                    DeviceIdentityError::Key {
                        device: device.into(),
                        reason: format!("cannot read {}: {e}", f.display()),
                    }
                })?),
                None => TrustRoots::System,
            };
            let endpoint = crate::dps::DpsEndpoint {
                host: p.endpoint.clone(),
                port: p.port,
                id_scope: p.id_scope.clone(),
                trust,
                cache_dir: self.spool_dir.as_ref().map(|d| d.join("dps")),
                timeout: Duration::from_millis(p.timeout_ms.max(1000)),
            };
            // IoT Central links the device to this gateway and picks its template.
            let payload = serde_json::json!({
                "modelId": model_id,
                "iotcGateway": {"iotcGatewayId": self.template.identity.device_id, "iotcModuleId": self.template.identity.module_id},
            });
            let assignment = crate::dps::provision(&endpoint, device, &key, &payload).await?;
            hub_hostname = assignment.assigned_hub;
            dps_state = Some((endpoint, payload));
        }
        // Gradual opening: one connection per interval, so edgeHub is not stormed.
        let permit = self.pacing.clone().acquire_owned().await.ok();
        let identity = HubIdentity {
            device_id: device.into(),
            module_id: None,
            model_id,
            hub_hostname,
            ..self.template.identity.clone()
        };
        let creds = Credentials {
            identity,
            signer: Signer::Key(key.clone()),
            trust: trust_of(&self.template),
        };
        let creds_template = creds.clone();
        let stop = self.shutdown.child_token();
        let (link, end) = upstream::link(256);
        let session = spawn_session(
            creds,
            SessionOptions::default(),
            methods,
            None,
            end,
            stop.clone(),
        );
        if let Some((endpoint, payload)) = dps_state {
            tokio::spawn(reprovision_when_refused(
                session.clone(),
                creds_template,
                endpoint,
                device.to_owned(),
                key.clone(),
                payload,
                stop.clone(),
            ));
        }
        let spool_dir = self
            .spool_dir
            .as_ref()
            .map(|d| d.join("devices").join(device));
        let spool = Spool::open(&SpoolOptions {
            dir: spool_dir,
            max_bytes: 8 << 20,
        })
        .or_else(|e| {
            warn!(device, error = %e, "Device spool directory unusable; using memory.");
            Spool::open(&SpoolOptions {
                dir: None,
                max_bytes: 8 << 20,
            })
        })
        .map_err(|e| DeviceIdentityError::Key {
            device: device.into(),
            reason: e.to_string(),
        })?;
        let options = ForwarderOptions {
            name: format!("forwarder {device}"),
            ..ForwarderOptions::default()
        };
        let (telemetry, _forwarder) = spawn_forwarder(spool, link, options, stop.clone());
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(device.into(), ());
        let pacing = permit;
        tokio::spawn(async move {
            tokio::time::sleep(connect_interval).await;
            drop(pacing);
        });
        info!(device, "Device identity opened.");
        let registry = self.open.clone();
        let id = device.to_owned();
        let watch = stop.clone();
        tokio::spawn(async move {
            watch.cancelled().await;
            registry
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
        });
        Ok(DeviceLink {
            telemetry,
            session,
            stop,
        })
    }
}

/// "Told the device is gone": when the hub refuses a provisioned device's credentials
/// three times in a row, forget the cached assignment, register with DPS again, and
/// reconnect with the new assignment.
async fn reprovision_when_refused(
    session: HubSession,
    mut creds: Credentials,
    endpoint: crate::dps::DpsEndpoint,
    device: String,
    key: SymmetricKey,
    payload: serde_json::Value,
    stop: CancellationToken,
) {
    let mut state = session.state();
    let mut refusals = 0;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = state.changed() => if changed.is_err() { return },
        }
        let current = state.borrow_and_update().clone();
        match current {
            crate::hub::ConnState::Connected { .. } => refusals = 0,
            crate::hub::ConnState::Disconnected { error }
                if error.contains("NotAuthorized") || error.contains("BadUserNamePassword") =>
            {
                refusals += 1;
                if refusals < 3 {
                    continue;
                }
                refusals = 0;
                warn!(
                    device,
                    "The hub refuses this device: registering it again with DPS."
                );
                crate::dps::forget(&endpoint, &device);
                match crate::dps::provision(&endpoint, &device, &key, &payload).await {
                    Ok(a) => {
                        creds.identity.hub_hostname = a.assigned_hub;
                        session.replace_credentials(creds.clone());
                    }
                    Err(e) => {
                        warn!(device, error = %e, "Re-provisioning failed; trying again after the next refusals.")
                    }
                }
            }
            _ => {}
        }
    }
}

fn trust_of(c: &Credentials) -> TrustRoots {
    c.trust.clone()
}

/// Parses the `identity` section, for protocol configs that embed it.
pub fn parse_identity(
    value: &serde_json::Value,
    path: &str,
) -> Result<IdentityConfig, ConfigErrors> {
    let parsed: IdentityConfig = crate::config::from_value(value, path)?;
    let issues = parsed.validate(path);
    if issues.is_empty() {
        Ok(parsed)
    } else {
        Err(ConfigErrors(issues))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn identity_config_shapes() {
        assert_eq!(
            parse_identity(&json!({"mode": "module"}), "identity").unwrap(),
            IdentityConfig::Module {}
        );
        let d = parse_identity(&json!({"mode": "device", "keys": {"source": "groupKey", "file": "/run/secrets/group"}}), "identity").unwrap();
        assert!(matches!(
            d,
            IdentityConfig::Device {
                max_connections: 90,
                ..
            }
        ));
        let e = parse_identity(
            &json!({"mode": "device", "keys": {"source": "groupKey"}}),
            "identity",
        )
        .unwrap_err();
        assert_eq!(e.0[0].path, "identity.keys");
        assert!(
            parse_identity(
                &json!({"mode": "device", "keys": {"source": "sharedSecret"}}),
                "identity"
            )
            .is_err()
        );
        assert!(
            parse_identity(
                &json!({"mode": "device", "keys": {"source": "workload"}, "key": "abc"}),
                "identity"
            )
            .is_err()
        );
    }
}
