//! Field devices as their own IoT Hub devices (identity mode `device`): open the device's
//! connection, route its telemetry and health there, apply its twin's desired writable
//! points to the field device with Plug and Play acknowledgements, and answer `read` /
//! `write` commands on the device itself.

use std::collections::BTreeMap;
use std::sync::Arc;

use bridge_core::downstream::{DeviceLink, IdentityConfig};
use bridge_core::forwarder::TelemetrySender;
use bridge_core::hub::twin::pnp_ack;
use bridge_core::hub::HubSession;
use bridge_core::methods::MethodRouter;
use bridge_core::runtime::{ModuleContext, Reporter};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::config::{ModbusConfig, model_id};
use crate::device::DeviceEntry;
use crate::module::Modbus;

/// Where a device's telemetry and health go.
pub(crate) struct Route {
    pub(crate) telemetry: TelemetrySender,
    pub(crate) reporter: Reporter,
    pub(crate) own_twin: bool,
    pub(crate) link: Option<DeviceLink>,
}

fn with_device(mut req: Value, id: &str) -> Value {
    if !req.is_object() {
        req = json!({});
    }
    req["deviceId"] = json!(id);
    req
}

/// Commands on the device identity itself: `read` and `write` without `deviceId`.
fn device_methods(module: &Arc<Modbus>, id: &str) -> MethodRouter {
    let (r, w) = (module.clone(), module.clone());
    let (ri, wi) = (id.to_owned(), id.to_owned());
    MethodRouter::new()
        .route("read", move |req| {
            let (me, id) = (r.clone(), ri.clone());
            async move { me.read_method(with_device(req, &id)).await }
        })
        .route("write", move |req| {
            let (me, id) = (w.clone(), wi.clone());
            async move { me.write_method(with_device(req, &id)).await }
        })
}

/// Picks the route for a device: its own identity in device mode, the module otherwise
/// (also when its identity cannot be opened: telemetry must keep flowing).
pub(crate) async fn route_for(
    module: &Arc<Modbus>,
    entry: &DeviceEntry,
    config: &ModbusConfig,
    cx: &ModuleContext<ModbusConfig>,
) -> Route {
    let module_route = || Route {
        telemetry: cx.telemetry.clone(),
        reporter: cx.reporter.clone(),
        own_twin: false,
        link: None,
    };
    let IdentityConfig::Device {
        keys,
        max_connections,
        connect_interval_ms,
        provisioning,
    } = &config.identity
    else {
        return module_route();
    };
    let Some(devices) = &cx.devices else {
        warn!(device = %entry.device.id, "Identity mode 'device' needs a hub upstream; using the module identity.");
        return module_route();
    };
    let id = &entry.device.id;
    let interval = std::time::Duration::from_millis(*connect_interval_ms);
    match devices
        .open(
            id,
            keys,
            *max_connections,
            interval,
            provisioning.as_ref(),
            Some(model_id(&entry.device.map)),
            device_methods(module, id),
        )
        .await
    {
        Ok(link) => Route {
            telemetry: link.telemetry.clone(),
            reporter: Reporter::hub(link.session.clone()),
            own_twin: true,
            link: Some(link),
        },
        Err(e) => {
            warn!(device = %id, error = %e, "Device identity not opened; its telemetry goes through the module.");
            cx.reporter
                .report(json!({"deviceIdentity": {id.clone(): {"error": e.to_string()}}}));
            module_route()
        }
    }
}

/// Applies the device twin's desired properties: each key naming a writable point is
/// written to the field device and acknowledged (200 with the value, or 400 with the
/// reason and the value in use).
pub(crate) async fn follow_desired(
    module: Arc<Modbus>,
    id: String,
    session: HubSession,
    stop: CancellationToken,
) {
    let mut desired = session.desired();
    let mut applied: BTreeMap<String, Value> = BTreeMap::new();
    loop {
        let current = desired.borrow_and_update().clone();
        if let (Some(d), Some(entry)) = (current, module.entry(&id)) {
            let mut acks = Map::new();
            for (key, value) in d.doc.as_object().into_iter().flatten() {
                if applied.get(key) == Some(value) {
                    continue;
                }
                let ack = apply_one(&entry, key, value, d.version).await;
                if ack["ac"] == 200 {
                    applied.insert(key.clone(), value.clone());
                }
                acks.insert(key.clone(), ack);
            }
            if !acks.is_empty() {
                session.report(Value::Object(acks));
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = desired.changed() => if changed.is_err() { return },
        }
    }
}

async fn apply_one(entry: &DeviceEntry, key: &str, value: &Value, version: u64) -> Value {
    let map = &entry.device.map;
    let Some(index) = map.index_of(key) else {
        return pnp_ack(
            &Value::Null,
            400,
            version,
            &format!("The map '{}' has no point '{key}'.", map.name),
        );
    };
    match entry.write(index, value).await {
        Ok(()) => pnp_ack(value, 200, version, "written"),
        Err(e) => {
            let in_use = entry
                .read(&[index])
                .await
                .values
                .get(&index)
                .map_or(Value::Null, |r| r.to_json());
            pnp_ack(&in_use, 400, version, &e.to_string())
        }
    }
}
