//! The per-device pipeline every protocol module uses. A module asks [`Devices`] for a
//! [`DeviceRoute`] per field device and sends that device's telemetry, health, facts and
//! writable-property acknowledgements through it; whether the device reaches the hub
//! under the module's identity (with a `deviceId` property) or as its own IoT Hub device
//! is the runtime's business (the `identity` section of every module's configuration),
//! not the module's.

mod downstream;
mod health;
pub mod poll;
mod writable;

use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::watch;
use tracing::warn;

pub use downstream::{
    DeviceHub, DeviceIdentityError, DeviceLink, IdentityConfig, KeySource, Provisioning,
    parse_identity,
};
pub use health::{DeviceHealth, HealthState};
pub use writable::{WritableRequest, WriteOutcome};

use crate::forwarder::{ForwarderStopped, TelemetrySender};
use crate::message::Message;
use crate::methods::MethodRouter;
use crate::reporter::Reporter;

/// Opens device routes. Cheap to clone; part of every module's context.
#[derive(Debug, Clone)]
pub struct Devices {
    telemetry: TelemetrySender,
    reporter: Reporter,
    hub: Option<DeviceHub>,
    identity: watch::Receiver<Arc<IdentityConfig>>,
}

/// What a module says about a device when opening its route.
#[derive(Debug)]
pub struct RouteSpec {
    /// The downstream device id.
    pub id: String,
    /// Its DTDL model id (announced at CONNECT and in the DPS payload).
    pub model_id: Option<String>,
    /// Commands on the device's own identity (device mode only).
    pub commands: MethodRouter,
}

impl Devices {
    /// Routes on the module's telemetry and reporter; device identities through `hub`
    /// when the identity settings ask for them.
    pub fn new(
        telemetry: TelemetrySender,
        reporter: Reporter,
        hub: Option<DeviceHub>,
        identity: watch::Receiver<Arc<IdentityConfig>>,
    ) -> Self {
        Self {
            telemetry,
            reporter,
            hub,
            identity,
        }
    }

    /// Every device under the module identity (tests, tools).
    pub fn module_only(telemetry: TelemetrySender, reporter: Reporter) -> Self {
        let (_tx, rx) = watch::channel(Arc::new(IdentityConfig::default()));
        Self::new(telemetry, reporter, None, rx)
    }

    /// The identity settings in force. The runtime changes them before it hands the
    /// module the configuration that goes with them.
    pub fn identity(&self) -> Arc<IdentityConfig> {
        self.identity.borrow().clone()
    }

    /// The module's own reported properties.
    pub fn module_reporter(&self) -> &Reporter {
        &self.reporter
    }

    /// Forgets a removed device in the module twin.
    pub fn forget(&self, id: &str) {
        self.reporter.report(json!({
            "deviceHealth": {id: null}, "deviceFacts": {id: null}, "deviceIdentity": {id: null}
        }));
    }

    /// The route of one device: its own identity in device mode, the module's otherwise
    /// (also when its identity cannot be opened: telemetry must keep flowing, and the
    /// reason goes to the module's `deviceIdentity.<id>.error`).
    pub async fn open(&self, spec: RouteSpec) -> DeviceRoute {
        let module_route = |id: String| DeviceRoute {
            inner: Arc::new(RouteInner {
                id,
                telemetry: self.telemetry.clone(),
                reporter: self.reporter.clone(),
                link: None,
            }),
        };
        let identity = self.identity();
        let IdentityConfig::Device {
            keys,
            max_connections,
            connect_interval_ms,
            provisioning,
        } = &*identity
        else {
            return module_route(spec.id);
        };
        let Some(hub) = &self.hub else {
            warn!(device = %spec.id, "Identity mode 'device' needs a hub upstream; using the module identity.");
            return module_route(spec.id);
        };
        let interval = std::time::Duration::from_millis(*connect_interval_ms);
        match hub
            .open(
                &spec.id,
                keys,
                *max_connections,
                interval,
                provisioning.as_ref(),
                spec.model_id,
                spec.commands,
            )
            .await
        {
            Ok(link) => {
                self.reporter
                    .report(json!({"deviceIdentity": {spec.id.clone(): null}}));
                DeviceRoute {
                    inner: Arc::new(RouteInner {
                        id: spec.id,
                        telemetry: link.telemetry.clone(),
                        reporter: Reporter::hub(link.session.clone()),
                        link: Some(link),
                    }),
                }
            }
            Err(e) => {
                warn!(device = %spec.id, error = %e, "Device identity not opened; its telemetry goes through the module.");
                self.reporter
                    .report(json!({"deviceIdentity": {spec.id.clone(): {"error": e.to_string()}}}));
                module_route(spec.id)
            }
        }
    }
}

/// Where one device's telemetry, health, facts and writable properties go. Cheap to
/// clone.
#[derive(Debug, Clone)]
pub struct DeviceRoute {
    inner: Arc<RouteInner>,
}

#[derive(Debug)]
struct RouteInner {
    id: String,
    telemetry: TelemetrySender,
    reporter: Reporter,
    link: Option<DeviceLink>,
}

impl DeviceRoute {
    /// A route on the module identity (tests, tools).
    pub fn module(id: &str, telemetry: TelemetrySender, reporter: Reporter) -> Self {
        Self {
            inner: Arc::new(RouteInner {
                id: id.to_owned(),
                telemetry,
                reporter,
                link: None,
            }),
        }
    }

    /// The device id.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The device has its own hub identity (its twin, its telemetry topic).
    pub fn own_identity(&self) -> bool {
        self.inner.link.is_some()
    }

    /// Sends a telemetry (or other output) message about this device.
    pub async fn send(&self, message: Message) -> Result<(), ForwarderStopped> {
        self.inner
            .telemetry
            .send(message.for_device(&self.inner.id))
            .await
    }

    /// Reports a device-scoped property: `<module_key>.<id>` in the module twin, or
    /// `<device_key>` in the device's own twin.
    pub fn report(&self, module_key: &str, device_key: &str, value: Value) {
        let patch = if self.own_identity() {
            json!({ device_key: value })
        } else {
            json!({ module_key: { self.inner.id.as_str(): value } })
        };
        self.inner.reporter.report(patch);
    }

    /// Static facts read from the device (serial number, firmware…).
    pub fn facts(&self, facts: Value) {
        self.report("deviceFacts", "facts", facts);
    }

    /// Health changed: reported properties and the `status` output, in one shape.
    pub async fn health(&self, health: &DeviceHealth) -> Result<(), ForwarderStopped> {
        let body = health.to_json();
        self.report("deviceHealth", "health", body.clone());
        let mut status = body;
        status["deviceId"] = json!(self.inner.id);
        self.send(Message::json("status", &status)).await
    }

    /// Closes the device's own connection, if any (its spool drains first, bounded).
    pub fn close(&self) {
        if let Some(link) = &self.inner.link {
            link.close();
        }
    }
}
