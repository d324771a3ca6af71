//! Each BLE device's route to the hub: a small task per device opens the device's route
//! in the core (its own IoT Hub identity or the module's, per the `identity` section),
//! then forwards, in order, what the scanner and the GATT task hand it, and applies
//! desired writable properties of GATT devices to their characteristics.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bridge_core::device::{
    DeviceHealth, DeviceRoute, Devices, IdentityConfig, RouteSpec, WritableRequest, WriteOutcome,
};
use bridge_core::message::Message;
use bridge_core::methods::MethodRouter;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tracing::warn;

use bridge_core::watchdog::Policy;

use crate::config::Writable;
use crate::scanner::Writers;

/// What a device's route carries.
#[derive(Debug)]
pub enum Out {
    /// A telemetry (or other output) message.
    Message(Message),
    /// Health changed.
    Health(DeviceHealth),
    /// Static facts (device information).
    Facts(Value),
}

/// Messages waiting while a device's route opens (DPS and paced connects take
/// seconds); beyond this the newest are dropped and counted.
const QUEUE: usize = 32;

/// A device's end for producers. Cheap to clone.
///
/// The channel carries boxes: a channel's first block holds 32 slots whatever its
/// capacity, and an unboxed [`Out`] is over 200 bytes, so with a route per device that
/// was about 7 KiB per device (7 MiB at 1,000 devices) for slots that are mostly empty.
#[derive(Debug, Clone)]
pub struct Sink {
    tx: mpsc::Sender<Box<Out>>,
    dropped: Arc<AtomicU64>,
    id: Arc<str>,
}

impl Sink {
    /// Hands `out` to the device's route; false when the module is stopping.
    pub fn send(&self, out: Out) -> bool {
        match self.tx.try_send(Box::new(out)) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if dropped % 100 == 1 {
                    warn!(device = %self.id, dropped, "A device's route is not keeping up; messages are dropped.");
                }
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

/// The open routes, by device id.
#[derive(Debug)]
pub struct Routes {
    devices: Devices,
    writers: Writers,
    identity: Arc<IdentityConfig>,
    sinks: HashMap<String, Sink>,
}

impl Routes {
    /// Routes opened through `devices`; `writers` reach GATT devices' characteristics.
    pub fn new(devices: Devices, writers: Writers) -> Self {
        let identity = devices.identity();
        Self {
            devices,
            writers,
            identity,
            sinks: HashMap::new(),
        }
    }

    /// After a configuration change: a new identity mode re-routes every device.
    pub fn refresh(&mut self) {
        let identity = self.devices.identity();
        if identity != self.identity {
            self.sinks.clear();
            self.identity = identity;
        }
    }

    /// Forgets a device (removed from the configuration); its route closes.
    pub fn remove(&mut self, id: &str) {
        self.sinks.remove(id);
    }

    /// The sink of device `id` (decoded with `map`), opening its route on first use.
    pub fn sink(&mut self, id: &str, map: &str, writable: &[Writable]) -> &Sink {
        // Per advertisement: look up without allocating the key; open only once.
        if !self.sinks.contains_key(id) {
            self.open(id, map, writable);
        }
        &self.sinks[id]
    }

    fn open(&mut self, id: &str, map: &str, writable: &[Writable]) {
        let devices = &self.devices;
        let writers = &self.writers;
        self.sinks.entry(id.to_owned()).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(QUEUE);
            let spec = RouteSpec {
                id: id.to_owned(),
                model_id: Some(crate::models::device_model_id(map, id, writable)),
                commands: device_commands(writers, id),
            };
            tokio::spawn(run(
                devices.clone(),
                spec,
                writable.to_vec(),
                writers.clone(),
                rx,
            ));
            Sink {
                tx,
                dropped: Arc::default(),
                id: id.into(),
            }
        });
    }
}

async fn run(
    devices: Devices,
    spec: RouteSpec,
    writable: Vec<Writable>,
    writers: Writers,
    mut rx: mpsc::Receiver<Box<Out>>,
) {
    let id = spec.id.clone();
    let route = devices.open(spec).await;
    let follower = (route.own_identity() && !writable.is_empty()).then(|| {
        let (route, writers, id) = (route.clone(), writers.clone(), id.clone());
        tokio::spawn(async move {
            route
                .follow_writable(|req| apply(&writers, &id, &writable, req))
                .await;
        })
    });
    // Liveness: each item must be forwarded within a limit (idle while the queue is
    // empty); only a wedged forwarder blocks it, which a restart of the route cannot heal.
    let stall = bridge_core::watchdog::global().heartbeat(format!("route {id}"), Policy::Exit);
    let beat = stall.heartbeat();
    while let Some(out) = rx.recv().await {
        beat.beat(std::time::Duration::from_secs(60));
        let forwarded = forward(&route, *out).await;
        beat.idle();
        if !forwarded {
            break;
        }
    }
    if let Some(f) = follower {
        f.abort();
    }
    route.close();
}

async fn forward(route: &DeviceRoute, out: Out) -> bool {
    match out {
        Out::Message(m) => route.send(m).await.is_ok(),
        Out::Health(h) => route.health(&h).await.is_ok(),
        Out::Facts(f) => {
            route.facts(f);
            true
        }
    }
}

/// Writes a desired writable property to its characteristic; on refusal the value in
/// use is read back from the device.
async fn apply(
    writers: &Writers,
    id: &str,
    writable: &[Writable],
    req: WritableRequest,
) -> WriteOutcome {
    let Some(w) = writable.iter().find(|w| w.name == req.name) else {
        return WriteOutcome::Refused {
            reason: format!("'{}' is not a writable characteristic of {id}.", req.name),
            in_use: Value::Null,
        };
    };
    let refused = async |reason: String| {
        let in_use = crate::gatt_call(writers, id, w.uuid, None, true)
            .await
            .map_or(Value::Null, |b| w.decode(&b));
        WriteOutcome::Refused { reason, in_use }
    };
    let bytes = match w.encode(&req.value) {
        Ok(b) => b,
        Err(reason) => return refused(reason).await,
    };
    match crate::gatt_call(writers, id, w.uuid, Some(bytes), true).await {
        Ok(_) => WriteOutcome::Applied,
        Err(reason) => refused(reason).await,
    }
}

fn with_device(mut req: Value, id: &str) -> Value {
    if !req.is_object() {
        req = json!({});
    }
    req["deviceId"] = json!(id);
    req
}

/// `read` and `write` on the device's own identity (no `deviceId` needed).
fn device_commands(writers: &Writers, id: &str) -> MethodRouter {
    let (w, r) = (writers.clone(), writers.clone());
    let (wi, ri) = (id.to_owned(), id.to_owned());
    MethodRouter::new()
        .route("write", move |req| {
            let (writers, id) = (w.clone(), wi.clone());
            async move { crate::write_method(&writers, with_device(req, &id)).await }
        })
        .route("read", move |req| {
            let (writers, id) = (r.clone(), ri.clone());
            async move { crate::read_method(&writers, with_device(req, &id)).await }
        })
}
