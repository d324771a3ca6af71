//! `bridge-ble`: scans BLE advertisements through btleplug (BlueZ over D-Bus) and forwards
//! decoded telemetry per downstream device through `bridge-core`.
//!
//! - [`adverts`]: pure decoders, one line each in the format registry: BTHome v2 and
//!   Xiaomi MiBeacon (AES-CCM), RuuviTag RAWv2, Xiaomi pvvx/ATC, iBeacon, Eddystone, Govee,
//!   SwitchBot, Inkbird, Qingping, ThermoBeacon, and raw hex.
//! - [`keys`]: per-device keys from the configuration or a keys file, masked when reported.
//! - [`config`]: devices by address, scan, discovery.
//! - [`scanner`]: the btleplug loop.
//!
//! Not built yet: GATT (connect, read, notify, write) and its maps.

pub mod adverts;
pub mod config;
pub mod connection;
pub mod custom;
pub mod deploy;
pub mod gatt;
pub mod keys;
pub mod liveness;
pub mod models;
pub mod monitor;
pub mod report;
pub mod routes;
pub mod scanner;
pub mod signals;
pub mod watchdog;

use std::sync::Arc;

use bridge_core::config::ConfigErrors;
use bridge_core::methods::{MethodResponse, MethodRouter};
use bridge_core::runtime::{ModuleContext, Protocol};
use serde_json::{Value, json};

/// The BLE protocol module.
#[derive(Debug, Default)]
pub struct Ble {
    writers: scanner::Writers,
    counters: Arc<scanner::Counters>,
}

impl Protocol for Ble {
    type Config = config::BleConfig;

    fn name(&self) -> &'static str {
        "bridge-ble"
    }

    fn parse_config(&self, doc: &Value) -> Result<Self::Config, ConfigErrors> {
        config::parse(doc)
    }

    fn demo_config(&self) -> Value {
        json!({"discovery": {"enabled": true}})
    }

    fn redact(&self, reported: &mut Value) {
        keys::redact(reported);
    }

    fn metrics(&self, out: &mut bridge_core::metrics::Exposition) {
        use bridge_core::metrics::Kind::Counter;
        use std::sync::atomic::Ordering::Relaxed;
        let c = &self.counters;
        out.sample(
            "edgebridge_ble_advertisements_total",
            Counter,
            "Advertisements decoded.",
            &[],
            c.decoded.load(Relaxed) as f64,
        );
        out.sample(
            "edgebridge_ble_messages_total",
            Counter,
            "Advertisement telemetry messages sent.",
            &[],
            c.messages.load(Relaxed) as f64,
        );
        out.sample(
            "edgebridge_ble_superseded_total",
            Counter,
            "Advertisement readings replaced by a newer one of the same device before they were forwarded.",
            &[],
            c.feed.get().map_or(0, |f| f.superseded()) as f64,
        );
        let wd = bridge_core::watchdog::global();
        out.sample(
            "edgebridge_watchdog_tasks",
            bridge_core::metrics::Kind::Gauge,
            "Long-lived tasks proving progress to the watchdog.",
            &[],
            wd.tasks() as f64,
        );
        out.sample(
            "edgebridge_watchdog_restarts_total",
            Counter,
            "Tasks restarted because they stalled.",
            &[],
            wd.restarts_total() as f64,
        );
        for (action, n) in ["restartScan", "restartAdapter"].iter().zip(&c.watchdog) {
            out.sample(
                "edgebridge_ble_watchdog_restarts_total",
                Counter,
                "Scanner watchdog restarts after silence, by action.",
                &[("action", action)],
                n.load(Relaxed) as f64,
            );
        }
    }

    fn methods(self: &Arc<Self>) -> MethodRouter {
        let (w, r) = (self.writers.clone(), self.writers.clone());
        MethodRouter::new()
            .route("write", move |req| {
                let writers = w.clone();
                async move { write_method(&writers, req).await }
            })
            .route("read", move |req| {
                let writers = r.clone();
                async move { read_method(&writers, req).await }
            })
    }

    async fn run(self: Arc<Self>, cx: ModuleContext<Self::Config>) {
        // Liveness of GATT sessions, device routes and the core's tasks: stalls reported
        // as `liveness`, as bridge-modbus does (the runtime has usually started it).
        bridge_core::watchdog::spawn_checker(cx.reporter.clone());
        scanner::run(cx, self.writers.clone(), self.counters.clone()).await;
    }
}

/// One read (`value: None`) or write on a GATT device's characteristic, through its
/// connection task; the bytes read (empty for a write) or why not.
pub(crate) async fn gatt_call(
    writers: &scanner::Writers,
    id: &str,
    uuid: uuid::Uuid,
    value: Option<Vec<u8>>,
    with_response: bool,
) -> Result<Vec<u8>, String> {
    let tx = writers
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(id)
        .cloned()
        .ok_or_else(|| format!("No GATT device '{id}'."))?;
    let (reply, rx) = tokio::sync::oneshot::channel();
    tx.send(connection::WriteCmd {
        uuid,
        value,
        with_response,
        reply,
    })
    .await
    .map_err(|_| "The device is restarting.".to_owned())?;
    match tokio::time::timeout(std::time::Duration::from_secs(30), rx).await {
        Ok(Ok(result)) => result,
        _ => Err("The device did not connect in time.".into()),
    }
}

/// `write {"deviceId", "characteristic": uuid, "value": "hex", "withResponse": true}`:
/// only characteristics the device's configuration lists as `writable`.
pub(crate) async fn write_method(writers: &scanner::Writers, req: Value) -> MethodResponse {
    let (Some(id), Some(uuid), Some(hex)) = (
        req.get("deviceId").and_then(Value::as_str),
        req.get("characteristic").and_then(Value::as_str),
        req.get("value").and_then(Value::as_str),
    ) else {
        return MethodResponse::error(
            400,
            "write needs {\"deviceId\", \"characteristic\": uuid, \"value\": \"hex bytes\"}.",
        );
    };
    let Ok(uuid) = uuid::Uuid::parse_str(uuid) else {
        return MethodResponse::error(400, "characteristic is not a UUID.");
    };
    if hex.len() % 2 != 0 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return MethodResponse::error(400, "value must be hexadecimal bytes, e.g. \"0a1b\".");
    }
    let value: Vec<u8> = (0..hex.len())
        .step_by(2)
        .filter_map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect();
    let Some(tx) = writers
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(id)
        .cloned()
    else {
        return MethodResponse::error(404, format!("No GATT device '{id}'."));
    };
    let (reply, rx) = tokio::sync::oneshot::channel();
    let with_response = req
        .get("withResponse")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    if tx
        .send(connection::WriteCmd {
            uuid,
            value: Some(value),
            with_response,
            reply,
        })
        .await
        .is_err()
    {
        return MethodResponse::error(503, "The device is restarting.");
    }
    match tokio::time::timeout(std::time::Duration::from_secs(30), rx).await {
        Ok(Ok(Ok(_))) => MethodResponse::ok(
            json!({"deviceId": id, "characteristic": uuid.to_string(), "written": hex}),
        ),
        Ok(Ok(Err(e))) => MethodResponse::error(502, e),
        _ => MethodResponse::error(504, "The device did not connect in time."),
    }
}

/// `read {"deviceId", "characteristic": uuid}`: reads a characteristic of a GATT device now;
/// answers the bytes as hex and, for standard characteristics, the decoded fields.
pub(crate) async fn read_method(writers: &scanner::Writers, req: Value) -> MethodResponse {
    let (Some(id), Some(uuid)) = (
        req.get("deviceId").and_then(Value::as_str),
        req.get("characteristic").and_then(Value::as_str),
    ) else {
        return MethodResponse::error(400, "read needs {\"deviceId\", \"characteristic\": uuid}.");
    };
    let Ok(uuid) = uuid::Uuid::parse_str(uuid) else {
        return MethodResponse::error(400, "characteristic is not a UUID.");
    };
    let Some(tx) = writers
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(id)
        .cloned()
    else {
        return MethodResponse::error(404, format!("No GATT device '{id}'."));
    };
    let (reply, rx) = tokio::sync::oneshot::channel();
    if tx
        .send(connection::WriteCmd {
            uuid,
            value: None,
            with_response: true,
            reply,
        })
        .await
        .is_err()
    {
        return MethodResponse::error(503, "The device is restarting.");
    }
    match tokio::time::timeout(std::time::Duration::from_secs(30), rx).await {
        Ok(Ok(Ok(bytes))) => {
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            let short = ((uuid.as_u128() >> 96) & 0xFFFF) as u16;
            let decoded: serde_json::Map<String, Value> = gatt::decode(short, &bytes)
                .map(|f| f.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
                .unwrap_or_default();
            MethodResponse::ok(
                json!({"deviceId": id, "characteristic": uuid.to_string(), "value": hex, "decoded": decoded}),
            )
        }
        Ok(Ok(Err(e))) => MethodResponse::error(502, e),
        _ => MethodResponse::error(504, "The device did not connect in time."),
    }
}
