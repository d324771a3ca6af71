//! The Modbus module as a `bridge-core` protocol: reconcile running devices and buses with
//! each new configuration (restarting only what changed), and answer direct methods.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use bridge_core::config::ConfigErrors;
use bridge_core::device::poll::Schedule;
use bridge_core::device::{IdentityConfig, RouteSpec, WritableRequest, WriteOutcome};
use bridge_core::methods::{MethodResponse, MethodRouter};
use bridge_core::runtime::{ModuleContext, Protocol};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::bus::{BusError, BusHandle, spawn_bus};
use crate::config::{Connection, Device, ModbusConfig, model_id, parse};
use crate::device::{DeviceEntry, WriteError};
use crate::poller::{ModbusPoll, PollStats};
use crate::simulator;

/// The Modbus protocol module.
#[derive(Debug, Default)]
pub struct Modbus {
    devices: RwLock<BTreeMap<String, Arc<DeviceEntry>>>,
    stats: RwLock<BTreeMap<String, Arc<PollStats>>>,
    /// The module twin's reporter (set when the module runs), for the write audit trail.
    reporter: std::sync::OnceLock<bridge_core::runtime::Reporter>,
}

impl Modbus {
    /// A new module.
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn entry(&self, id: &str) -> Option<Arc<DeviceEntry>> {
        self.devices
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Poll counters per device (benchmarks).
    pub fn stats(&self) -> BTreeMap<String, Arc<PollStats>> {
        self.stats.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The built-in demo: one simulated SDM120 meter.
pub fn demo_config() -> Value {
    json!({"devices": {"demo-meter": {"map": "eastron-sdm120", "connection": {"type": "simulated"}, "pollIntervalMs": 2000}}})
}

struct Running {
    identity: Option<Arc<IdentityConfig>>,
    buses: HashMap<String, (Connection, BusHandle, CancellationToken)>,
    pollers: HashMap<String, (Device, CancellationToken)>,
    sims: HashMap<String, (Arc<crate::map::DeviceMap>, SocketAddr, CancellationToken)>,
}

impl Protocol for Modbus {
    type Config = ModbusConfig;

    fn name(&self) -> &'static str {
        "bridge-modbus"
    }

    fn parse_config(&self, doc: &Value) -> Result<ModbusConfig, ConfigErrors> {
        parse(doc)
    }

    fn demo_config(&self) -> Value {
        demo_config()
    }

    fn metrics(&self, out: &mut bridge_core::metrics::Exposition) {
        use bridge_core::metrics::Kind::{Counter, Gauge};
        let stats = self.stats();
        type Field = fn(&PollStats) -> &std::sync::atomic::AtomicU64;
        // (name, kind, help, counter, unit scale)
        let series: [(&str, _, &str, Field, f64); 6] = [
            (
                "edgebridge_modbus_device_online",
                Gauge,
                "1 while the device answers.",
                |s| &s.online,
                1.0,
            ),
            (
                "edgebridge_modbus_polls_total",
                Counter,
                "Completed poll cycles.",
                |s| &s.polls,
                1.0,
            ),
            (
                "edgebridge_modbus_poll_failures_total",
                Counter,
                "Poll cycles that reached no device.",
                |s| &s.failures,
                1.0,
            ),
            (
                "edgebridge_modbus_requests_total",
                Counter,
                "Modbus requests sent.",
                |s| &s.requests,
                1.0,
            ),
            (
                "edgebridge_modbus_values_total",
                Counter,
                "Values published.",
                |s| &s.values,
                1.0,
            ),
            (
                "edgebridge_modbus_poll_seconds_total",
                Counter,
                "Time spent polling (divide by polls for the mean round trip).",
                |s| &s.poll_us,
                1e-6,
            ),
        ];
        let wd = bridge_core::watchdog::global();
        out.sample(
            "edgebridge_watchdog_tasks",
            Gauge,
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
        for (name, kind, help, field, scale) in series {
            for (id, s) in &stats {
                let v = field(s).load(std::sync::atomic::Ordering::Relaxed);
                out.sample(name, kind, help, &[("device", id)], v as f64 * scale);
            }
        }
    }

    fn methods(self: &Arc<Self>) -> MethodRouter {
        let (r, w) = (self.clone(), self.clone());
        MethodRouter::new()
            .route("read", move |req| {
                let me = r.clone();
                async move { me.read_method(req).await }
            })
            .route("write", move |req| {
                let me = w.clone();
                async move { me.write_method(req).await }
            })
    }

    async fn run(self: Arc<Self>, mut cx: ModuleContext<ModbusConfig>) {
        let _ignored = self.reporter.set(cx.reporter.clone());
        spawn_watchdog(cx.reporter.clone());
        let mut running = Running {
            identity: None,
            buses: HashMap::new(),
            pollers: HashMap::new(),
            sims: HashMap::new(),
        };
        loop {
            let config = cx.config.borrow_and_update().clone();
            self.reconcile(&mut running, &config, &cx).await;
            tokio::select! {
                _ = cx.shutdown.cancelled() => break,
                changed = cx.config.changed() => if changed.is_err() { break },
            }
        }
        for (_, (_, t)) in running.pollers.drain() {
            t.cancel();
        }
        for (_, (_, _, t)) in running.buses.drain() {
            t.cancel();
        }
        for (_, (_, _, t)) in running.sims.drain() {
            t.cancel();
        }
    }
}

impl Modbus {
    async fn reconcile(
        self: &Arc<Self>,
        running: &mut Running,
        config: &Arc<ModbusConfig>,
        cx: &ModuleContext<ModbusConfig>,
    ) {
        // A new identity mode re-routes every device: restart them all.
        let identity = cx.devices.identity();
        if running.identity.as_ref() != Some(&identity) {
            for (_, (_, token)) in running.pollers.drain() {
                token.cancel();
            }
            running.identity = Some(identity);
        }
        // Stop devices that went away or changed.
        let stale: Vec<String> = running
            .pollers
            .iter()
            .filter(|(id, (d, _))| config.devices.get(*id) != Some(d))
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            if let Some((_, token)) = running.pollers.remove(&id) {
                token.cancel();
            }
            self.devices
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
            if !config.devices.contains_key(&id) {
                self.stats
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
                info!(device = %id, "Device removed.");
                cx.devices.forget(&id);
            }
        }
        // Simulated devices: one server per device, restarted if its map changed.
        let stale_sims: Vec<String> = running
            .sims
            .iter()
            .filter(|(id, (map, _, _))| {
                config
                    .devices
                    .get(*id)
                    .is_none_or(|d| d.connection != Connection::Simulated {} || d.map != *map)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale_sims {
            if let Some((_, _, t)) = running.sims.remove(&id) {
                t.cancel();
            }
        }
        for (id, d) in &config.devices {
            if d.connection == (Connection::Simulated {}) && !running.sims.contains_key(id) {
                let token = CancellationToken::new();
                match simulator::start(d.map.clone(), token.clone()).await {
                    Ok(addr) => {
                        info!(device = %id, %addr, "Simulated device started.");
                        running
                            .sims
                            .insert(id.clone(), (d.map.clone(), addr, token));
                    }
                    Err(e) => {
                        warn!(device = %id, error = %e, "Could not start the simulated device.")
                    }
                }
            }
        }
        // Buses: keep those still used with the same settings.
        let wanted: HashMap<String, Connection> = config
            .devices
            .values()
            .map(|d| (d.connection.bus_key(&d.id), d.connection.clone()))
            .collect();
        let stale_buses: Vec<String> = running
            .buses
            .iter()
            .filter(|(key, (conn, _, _))| {
                wanted.get(*key) != Some(conn) || key.starts_with("simulated://")
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in stale_buses {
            // Simulated buses are rebuilt when their device restarts (new address).
            let in_use = running
                .pollers
                .values()
                .any(|(d, _)| d.connection.bus_key(&d.id) == key);
            if !in_use || wanted.get(&key) != running.buses.get(&key).map(|b| &b.0) {
                if let Some((_, _, t)) = running.buses.remove(&key) {
                    t.cancel();
                }
            }
        }
        // Start new or changed devices.
        for (id, d) in &config.devices {
            if running.pollers.contains_key(id) {
                continue;
            }
            let key = d.connection.bus_key(id);
            let sim_addr = running.sims.get(id).map(|(_, a, _)| *a);
            let bus = running
                .buses
                .entry(key)
                .or_insert_with(|| {
                    let token = CancellationToken::new();
                    (
                        d.connection.clone(),
                        spawn_bus(d.connection.clone(), sim_addr, token.clone()),
                        token,
                    )
                })
                .1
                .clone();
            let entry = DeviceEntry::new(d.clone(), bus);
            self.devices
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id.clone(), entry.clone());
            let stats = Arc::new(PollStats::default());
            self.stats
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id.clone(), stats.clone());
            let token = cx.shutdown.child_token();
            tokio::spawn(start_device(
                self.clone(),
                entry,
                cx.clone(),
                stats,
                token.clone(),
            ));
            info!(device = %id, map = %d.map.name, unit = d.unit_id, "Device started.");
            running.pollers.insert(id.clone(), (d.clone(), token));
        }
    }

    pub(crate) async fn read_method(&self, req: Value) -> MethodResponse {
        let Some(id) = req.get("deviceId").and_then(Value::as_str) else {
            return MethodResponse::error(
                400,
                "read needs {\"deviceId\": \"...\", \"points\": [\"...\"]} (points optional).",
            );
        };
        let Some(entry) = self.entry(id) else {
            return MethodResponse::error(404, format!("Unknown device '{id}'."));
        };
        if crate::sunspec::is_sunspec(&entry.device.map) {
            return crate::sunspec::poll::read_method(&entry, &req).await;
        }
        let map = &entry.device.map;
        let wanted: Vec<usize> = match req.get("points") {
            None | Some(Value::Null) => entry.device.wanted.clone(),
            Some(Value::Array(names)) => {
                let mut idx = Vec::new();
                for n in names {
                    match n.as_str().and_then(|n| map.index_of(n)) {
                        Some(i) => {
                            idx.push(i);
                            idx.extend(map.points[i].scale_index);
                        }
                        None => {
                            return MethodResponse::error(
                                404,
                                format!("The map '{}' has no point {n}.", map.name),
                            );
                        }
                    }
                }
                idx
            }
            Some(_) => {
                return MethodResponse::error(400, "points must be an array of point names.");
            }
        };
        let out = entry.read(&wanted).await;
        if let Some(e) = &out.unreachable
            && out.values.is_empty()
        {
            return bus_error(e);
        }
        let values: Map<String, Value> = out
            .values
            .iter()
            .filter(|(i, _)| map.points[**i].spec.publish || wanted.contains(i))
            .map(|(i, v)| (map.points[*i].name.clone(), v.to_json()))
            .collect();
        let errors: Map<String, Value> = out
            .errors
            .iter()
            .map(|(i, e)| (map.points[*i].name.clone(), json!(e.to_string())))
            .collect();
        MethodResponse::ok(json!({"deviceId": id, "values": values, "errors": errors}))
    }

    pub(crate) async fn write_method(&self, req: Value) -> MethodResponse {
        let (Some(id), Some(point), Some(value)) = (
            req.get("deviceId").and_then(Value::as_str),
            req.get("point").and_then(Value::as_str),
            req.get("value"),
        ) else {
            return MethodResponse::error(
                400,
                "write needs {\"deviceId\": \"...\", \"point\": \"...\", \"value\": ...}.",
            );
        };
        let Some(entry) = self.entry(id) else {
            return MethodResponse::error(404, format!("Unknown device '{id}'."));
        };
        if crate::sunspec::is_sunspec(&entry.device.map) {
            return MethodResponse::error(
                400,
                "Writes to SunSpec devices are not supported yet; read works.",
            );
        }
        let Some(index) = entry.device.map.index_of(point) else {
            return MethodResponse::error(
                404,
                format!(
                    "The map '{}' has no point '{point}'.",
                    entry.device.map.name
                ),
            );
        };
        let written = entry.write(index, value).await;
        if !matches!(
            &written,
            Err(WriteError::ReadOnly(_) | WriteError::Value(_))
        ) {
            // Audit trail: every write that went to the device, in the log and the twin.
            let result = match &written {
                Ok(()) => "ok".to_owned(),
                Err(e) => e.to_string(),
            };
            info!(device = %id, point, %value, %result, "Write.");
            if let Some(r) = self.reporter.get() {
                r.report(json!({"lastWrite": {id: {"point": point, "value": value, "result": result, "at": bridge_core::time::rfc3339_now()}}}));
            }
        }
        match written {
            Ok(()) => {}
            Err(WriteError::Bus(e)) => return bus_error(&e),
            Err(e) => return MethodResponse::error(400, e.to_string()),
        }
        let mut body = json!({"deviceId": id, "point": point, "value": value});
        if req.get("verify").and_then(Value::as_bool).unwrap_or(false) {
            let out = entry.read(&[index]).await;
            match out.values.get(&index) {
                Some(v) => body["readBack"] = v.to_json(),
                None => {
                    return MethodResponse::error(
                        502,
                        format!(
                            "Written, but the read-back failed: {}",
                            out.errors
                                .get(&index)
                                .map(ToString::to_string)
                                .unwrap_or_default()
                        ),
                    );
                }
            }
        }
        MethodResponse::ok(body)
    }
}

/// Opens the device's route (its own identity or the module's), then runs its poll loop,
/// restarting it if it panics, so one device's bug never stops the others.
async fn start_device(
    module: Arc<Modbus>,
    entry: Arc<DeviceEntry>,
    cx: ModuleContext<ModbusConfig>,
    stats: Arc<PollStats>,
    token: CancellationToken,
) {
    let id = entry.device.id.clone();
    let spec = RouteSpec {
        id: id.clone(),
        model_id: Some(model_id(&entry.device.map)),
        commands: device_commands(&module, &id),
    };
    let route = tokio::select! {
        () = token.cancelled() => return,
        r = cx.devices.open(spec) => r,
    };
    if route.own_identity() {
        let (route, entry) = (route.clone(), entry.clone());
        let stop = token.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = route.follow_writable(|req| apply_writable(&entry, req)) => {}
            }
        });
    }
    // Progress: the device's cycles, or its bus's requests (a poller queued behind slow
    // neighbours on a shared bus is waiting, not stalled).
    let stall = {
        let (polls, bus_done) = (stats.clone(), entry.bus.done.clone());
        let d = &entry.device;
        bridge_core::watchdog::global().watch_counter(
            format!("poller {id}"),
            crate::poller::stall_limit(d.poll_interval, d.timeout),
            bridge_core::watchdog::Policy::RESTART,
            move || {
                polls.polls.load(std::sync::atomic::Ordering::Relaxed)
                    + bus_done.load(std::sync::atomic::Ordering::Relaxed)
            },
        )
    };
    // Prompt recovery: an offline device is retried at least every interval + 2 s,
    // whatever the outage's length (the bus probes on its own meanwhile).
    let schedule = Schedule {
        interval: entry.device.poll_interval,
        retry_after: entry.device.poll_interval,
        max_backoff: crate::poller::offline_retry_cap(entry.device.poll_interval),
    };
    loop {
        let poll = ModbusPoll::new(entry.clone(), route.clone(), stats.clone());
        let (task_id, task_route, task_stats) = (id.clone(), route.clone(), stats.clone());
        let mut task = tokio::spawn(async move {
            bridge_core::device::poll::run(&task_id, task_route, schedule, task_stats, poll).await;
        });
        // The poll task is stopped by aborting it, so it never polls the token itself.
        let ended = tokio::select! {
            () = token.cancelled() => {
                task.abort();
                let _ignored = task.await;
                break;
            }
            reason = stall.wait() => {
                task.abort();
                let _ignored = task.await;
                warn!(device = %id, %reason, "The poll task stalled; restarted.");
                continue;
            }
            ended = &mut task => ended,
        };
        match ended {
            Err(e) if e.is_panic() && !token.is_cancelled() => {
                tracing::error!(device = %id, "The poll task panicked; restarting it in 1 s.");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            _ => break,
        }
    }
    route.close();
}

fn with_device(mut req: Value, id: &str) -> Value {
    if !req.is_object() {
        req = json!({});
    }
    req["deviceId"] = json!(id);
    req
}

/// Commands on the device identity itself: `read` and `write` without `deviceId`.
fn device_commands(module: &Arc<Modbus>, id: &str) -> MethodRouter {
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

/// A desired writable property of a device with its own identity: written to the
/// point of the same name.
async fn apply_writable(entry: &DeviceEntry, req: WritableRequest) -> WriteOutcome {
    let map = &entry.device.map;
    let Some(index) = map.index_of(&req.name) else {
        return WriteOutcome::Refused {
            reason: format!("The map '{}' has no point '{}'.", map.name, req.name),
            in_use: Value::Null,
        };
    };
    match entry.write(index, &req.value).await {
        Ok(()) => WriteOutcome::Applied,
        Err(e) => {
            let in_use = entry
                .read(&[index])
                .await
                .values
                .get(&index)
                .map_or(Value::Null, |r| r.to_json());
            WriteOutcome::Refused {
                reason: e.to_string(),
                in_use,
            }
        }
    }
}

/// Starts the process's watchdog checker (the core's, started by the runtime already;
/// this makes sure when the module runs on its own).
fn spawn_watchdog(reporter: bridge_core::runtime::Reporter) {
    bridge_core::watchdog::spawn_checker(reporter);
}

fn bus_error(e: &BusError) -> MethodResponse {
    match e {
        BusError::Exception(code) => MethodResponse {
            status: 502,
            payload: json!({"error": e.to_string(), "exceptionCode": code}),
        },
        BusError::Timeout(_) => MethodResponse::error(504, e.to_string()),
        _ => MethodResponse::error(503, e.to_string()),
    }
}
