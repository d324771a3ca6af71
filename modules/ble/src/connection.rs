//! GATT devices: one task per device connects (through a fair queue of connection slots,
//! since adapters hold only a few links), discovers, reads device facts once, subscribes to
//! notifications, reads on its interval, and reconnects with backoff (re-subscribing) when
//! the link drops. Devices without notifications give their slot back between reads.
//!
//! Liveness: every GATT step has a timeout, and each session proves it to the process's
//! watchdog (a heartbeat per step, idle while it waits for notifications or its next
//! read). A session whose step overruns anyway (a D-Bus call that never answers) is
//! aborted, the link dropped, and a fresh session started; the reason appears in the
//! reported `liveness`. Beyond the restart budget the module exits.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use std::pin::Pin;

use bridge_core::device::DeviceHealth;
use bridge_core::device::poll::{Cycle, HealthOut, Poll, PollCx, Schedule};
use bridge_core::message::Message;
use btleplug::api::{Central, Characteristic, Peripheral as _, WriteType};
use btleplug::platform::{Adapter, Peripheral};
use futures::StreamExt;
use serde_json::{Map, Value};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Device;
use crate::gatt::{self, Mode};
use crate::routes::{Out, Sink};
use bridge_core::watchdog::{Heartbeat, Policy};

/// A request from the `write` or `read` method.
#[derive(Debug)]
pub struct WriteCmd {
    /// Characteristic UUID.
    pub uuid: uuid::Uuid,
    /// Bytes to write; `None` reads the characteristic instead.
    pub value: Option<Vec<u8>>,
    /// Write with response (request) or without (command).
    pub with_response: bool,
    /// Result: the bytes read (empty for a write).
    pub reply: oneshot::Sender<Result<Vec<u8>, String>>,
}

const OP_TIMEOUT: Duration = Duration::from_secs(15);
/// Slack on top of a step's own timeout before the watchdog calls the session stalled.
const STEP_MARGIN: Duration = Duration::from_secs(5);

/// Test-only, never set in deployments: a device id whose first GATT session wedges
/// forever once it has subscribed, as a D-Bus call that never answers would (the
/// end-to-end liveness test runs the module binary with it).
pub const TEST_WEDGE_ENV: &str = "BRIDGE_BLE_TEST_WEDGE_GATT";

/// Hangs the first session of the device [`TEST_WEDGE_ENV`] names (once per process).
async fn test_wedge(id: &str) {
    static DONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if std::env::var(TEST_WEDGE_ENV).is_ok_and(|v| v == id)
        && !DONE.swap(true, std::sync::atomic::Ordering::Relaxed)
    {
        warn!(device = %id, "Test hook: this GATT session wedges now.");
        std::future::pending::<()>().await;
    }
}

fn short(uuid: &uuid::Uuid) -> Option<u16> {
    let v = uuid.as_u128();
    (v & 0xFFFF_0000_FFFF_FFFF_FFFF_FFFF_FFFF_FFFF == 0x0000_0000_0000_1000_8000_0080_5F9B_34FB)
        .then_some((v >> 96) as u16)
}

async fn find(adapter: &Adapter, address: &str) -> Option<Peripheral> {
    let list = tokio::time::timeout(OP_TIMEOUT, adapter.peripherals())
        .await
        .ok()?
        .ok()?;
    for p in list {
        if p.address().to_string().eq_ignore_ascii_case(address) {
            return Some(p);
        }
    }
    None
}

async fn timed<T, E: std::fmt::Display>(
    what: &str,
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(OP_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what} failed: {e}")),
        Err(_) => Err(format!("{what} timed out after {OP_TIMEOUT:?}")),
    }
}

impl HealthOut for Sink {
    fn report<'a>(
        &'a self,
        health: &'a DeviceHealth,
    ) -> Pin<Box<dyn Future<Output = bool> + Send + 'a>> {
        Box::pin(std::future::ready(self.send(Out::Health(health.clone()))))
    }
}

/// One GATT device as a polled device: each cycle takes a connection slot and runs a
/// session (read-only devices read once and give the slot back; devices with
/// notifications stay connected until the link drops).
struct GattPoll {
    adapter: Adapter,
    dev: Device,
    spec: &'static [(u16, Mode)],
    keep_connected: bool,
    sink: Sink,
    slots: Arc<Semaphore>,
    /// Kept across session restarts (an aborted session's task drops only its guard).
    writes: Arc<tokio::sync::Mutex<mpsc::Receiver<WriteCmd>>>,
    stop: CancellationToken,
    beat: Heartbeat,
}

impl Poll for GattPoll {
    async fn poll(&mut self, _at: std::time::SystemTime, cx: &mut PollCx<'_>) -> Cycle {
        // Waiting for a connection slot (other devices hold them) is not a stall.
        self.beat.idle();
        let permit = tokio::select! {
            () = self.stop.cancelled() => return Cycle::Stop,
            p = self.slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return Cycle::Stop },
        };
        let writes = self.writes.clone();
        let mut writes = writes.lock().await;
        let outcome = session(self, &mut writes, cx).await;
        self.beat.idle();
        drop(permit);
        match outcome {
            Ok(()) if self.stop.is_cancelled() => Cycle::Stop,
            Ok(()) => Cycle::Answered { error: None },
            Err(e) => {
                warn!(device = %self.dev.id, error = %e, "GATT device unavailable.");
                Cycle::Unreachable(e)
            }
        }
    }
}

/// Runs one GATT device until `stop`: connection, backoff and health are the core's
/// per-device poll loop.
pub async fn run(
    adapter: Adapter,
    dev: Device,
    sink: Sink,
    slots: Arc<Semaphore>,
    writes: mpsc::Receiver<WriteCmd>,
    stop: CancellationToken,
) {
    let Some(spec) = gatt::map(&dev.map) else {
        return;
    };
    let keep_connected = spec.iter().any(|(_, m)| *m == Mode::Notify);
    let schedule = Schedule {
        interval: Duration::from_millis(dev.poll_interval_ms),
        retry_after: Duration::from_secs(1),
        max_backoff: Duration::from_secs(60),
    };
    let id = dev.id.clone();
    let stall = bridge_core::watchdog::global().heartbeat(format!("gatt {id}"), Policy::RESTART);
    let writes = Arc::new(tokio::sync::Mutex::new(writes));
    loop {
        let poll = GattPoll {
            adapter: adapter.clone(),
            dev: dev.clone(),
            spec,
            keep_connected,
            sink: sink.clone(),
            slots: slots.clone(),
            writes: writes.clone(),
            stop: stop.clone(),
            beat: stall.heartbeat(),
        };
        let (task_id, task_sink) = (id.clone(), sink.clone());
        let mut task = tokio::spawn(async move {
            bridge_core::device::poll::run(&task_id, task_sink, schedule, Arc::default(), poll)
                .await;
        });
        tokio::select! {
            _ = &mut task => return,
            reason = stall.wait() => {
                // The wedged step holds its D-Bus call and the connection slot: drop both,
                // and the link, so the next session starts clean (and BlueZ forgets the
                // old subscriptions).
                task.abort();
                let _ignored = task.await;
                warn!(device = %id, %reason, "GATT session stalled; restarting it.");
                if let Some(p) = find(&adapter, &dev.address).await {
                    let _ignored = timed("disconnect", p.disconnect()).await;
                }
            }
        }
        if stop.is_cancelled() {
            return;
        }
    }
}

async fn session(
    g: &mut GattPoll,
    writes: &mut mpsc::Receiver<WriteCmd>,
    cx: &mut PollCx<'_>,
) -> Result<(), String> {
    let GattPoll {
        adapter,
        dev,
        spec,
        keep_connected,
        sink,
        stop,
        beat,
        ..
    } = g;
    let (spec, keep_connected) = (*spec, *keep_connected);
    let poll = Duration::from_millis(dev.poll_interval_ms);
    let step = |name: &'static str| beat.beat_step(name, OP_TIMEOUT + STEP_MARGIN);
    step("find");
    let p = find(adapter, &dev.address)
        .await
        .ok_or_else(|| format!("{} was not seen by the scan", dev.address))?;
    step("connect");
    if !timed("connection state", p.is_connected())
        .await
        .unwrap_or(false)
    {
        timed("connect", p.connect()).await?;
    }
    step("service discovery");
    timed("service discovery", p.discover_services()).await?;
    let chars: HashMap<u16, Characteristic> = p
        .characteristics()
        .into_iter()
        .filter_map(|c| short(&c.uuid).map(|s| (s, c)))
        .collect();
    let all: Vec<Characteristic> = p.characteristics().into_iter().collect();
    // Device facts, once per connection.
    let mut facts = Map::new();
    for (uuid, _) in spec.iter().filter(|(_, m)| *m == Mode::Fact) {
        step("read facts");
        if let Some(c) = chars.get(uuid)
            && let Ok(bytes) = timed("read", p.read(c)).await
            && let Ok(fields) = gatt::decode(*uuid, &bytes)
        {
            facts.extend(fields.into_iter().map(|(k, v)| (k.to_owned(), v)));
        }
    }
    if !facts.is_empty() {
        sink.send(Out::Facts(Value::Object(facts)));
    }
    step("notifications");
    let mut notifications = timed("notifications", p.notifications()).await?;
    for (uuid, _) in spec.iter().filter(|(_, m)| *m == Mode::Notify) {
        if let Some(c) = chars.get(uuid) {
            step("subscribe");
            timed("subscribe", p.subscribe(c)).await?;
        }
    }
    step("subscribe");
    test_wedge(&dev.id).await;
    info!(device = %dev.id, "GATT device connected.");
    if !cx.reached().await {
        return Ok(());
    }
    let reads: Vec<(u16, Characteristic)> = spec
        .iter()
        .filter(|(_, m)| *m == Mode::Read)
        .filter_map(|(u, _)| chars.get(u).map(|c| (*u, c.clone())))
        .collect();
    let mut tick = tokio::time::interval(poll);
    let mut check = tokio::time::interval(Duration::from_secs(1));
    loop {
        // Waiting for a notification, a read's turn or a command: not a stall.
        beat.idle();
        tokio::select! {
            _ = stop.cancelled() => {
                step("disconnect");
                let _ignored = timed("disconnect", p.disconnect()).await;
                return Ok(());
            }
            _ = tick.tick(), if !reads.is_empty() => {
                let mut body = Map::new();
                for (uuid, c) in &reads {
                    step("read");
                    match timed("GATT read", p.read(c)).await.and_then(|b| gatt::decode(*uuid, &b).map_err(|e| e.to_string())) {
                        Ok(fields) => body.extend(fields.into_iter().map(|(k, v)| (k.to_owned(), v))),
                        Err(e) => warn!(device = %dev.id, characteristic = format!("{uuid:04x}"), error = %e, "GATT read failed."),
                    }
                }
                if !body.is_empty() {
                    send(sink, body);
                }
                if !keep_connected {
                    step("disconnect");
                    let _ignored = timed("disconnect", p.disconnect()).await;
                    return Ok(());
                }
            }
            n = notifications.next() => match n {
                Some(n) => {
                    if let Some(uuid) = short(&n.uuid) {
                        match gatt::decode(uuid, &n.value) {
                            Ok(fields) => send(sink, fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()),
                            Err(e) => warn!(device = %dev.id, error = %e, "Notification not decoded."),
                        }
                    }
                }
                None => return Err("the notification stream ended".into()),
            },
            cmd = writes.recv() => if let Some(cmd) = cmd {
                step("write");
                let result = match all.iter().find(|c| c.uuid == cmd.uuid) {
                    None => Err(format!("The device has no characteristic {}.", cmd.uuid)),
                    Some(c) => match &cmd.value {
                        Some(value) => {
                            let kind = if cmd.with_response { WriteType::WithResponse } else { WriteType::WithoutResponse };
                            timed("GATT write", p.write(c, value, kind)).await.map(|()| Vec::new())
                        }
                        None => timed("GATT read", p.read(c)).await,
                    },
                };
                let _ignored = cmd.reply.send(result);
            },
            _ = check.tick() => {
                step("link check");
                if !timed("connection state", p.is_connected()).await.unwrap_or(false) {
                    return Err("the link dropped".into());
                }
            }
        }
    }
}

fn send(sink: &Sink, body: Map<String, Value>) {
    sink.send(Out::Message(
        Message::json("telemetry", &Value::Object(body)).with_property("format", "gatt"),
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_uuids() {
        assert_eq!(
            short(&uuid::Uuid::parse_str("00002a19-0000-1000-8000-00805f9b34fb").unwrap()),
            Some(0x2A19)
        );
        assert_eq!(
            short(&uuid::Uuid::parse_str("12345678-1234-5678-1234-56789abcdef0").unwrap()),
            None
        );
    }
}
