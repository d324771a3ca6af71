//! The D-Bus side of passive scanning: our monitor object, exported on a connection of
//! our own, and its registration with BlueZ. BlueZ reads the monitor through
//! `GetManagedObjects` on our application root, then calls `Activate` and, as matching
//! devices come and go, `DeviceFound` / `DeviceLost`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use dbus::arg::{PropMap, RefArg, Variant};
use dbus::channel::{MatchingReceiver, Sender};
use dbus::message::MatchRule;
use dbus::nonblock::{Proxy, SyncConnection};
use dbus::{Message, Path};
use tracing::{debug, info, warn};

use super::Pattern;

const APP: &str = "/io/edgebridge/ble";
const MONITOR: &str = "/io/edgebridge/ble/monitor0";
const MANAGER_IFACE: &str = "org.bluez.AdvertisementMonitorManager1";
const MONITOR_IFACE: &str = "org.bluez.AdvertisementMonitor1";
const OBJECT_MANAGER: &str = "org.freedesktop.DBus.ObjectManager";
const PROPERTIES: &str = "org.freedesktop.DBus.Properties";
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Passive scanning could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// No system bus.
    #[error("cannot reach the system D-Bus: {0}")]
    Bus(String),
    /// BlueZ without the advertisement monitor API.
    #[error(
        "BlueZ offers no advertisement monitor (needs BlueZ 5.56 or newer; older versions only with bluetoothd --experimental)"
    )]
    Unsupported,
    /// BlueZ said no.
    #[error("BlueZ refused the advertisement monitor: {0}")]
    Refused(String),
}

/// A registered monitor; passive scanning lasts while it lives.
pub struct Registration {
    conn: Arc<SyncConnection>,
    adapter: Path<'static>,
    io: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Registration({})", self.adapter)
    }
}

impl Registration {
    /// The adapter the monitor is registered on.
    pub fn adapter(&self) -> &str {
        &self.adapter
    }

    /// Unregisters (best effort) and closes our connection.
    pub async fn unregister(self) {
        let proxy = Proxy::new("org.bluez", &self.adapter, CALL_TIMEOUT, self.conn.clone());
        let done: Result<(), _> = proxy
            .method_call(MANAGER_IFACE, "UnregisterMonitor", (Path::from(APP),))
            .await;
        if let Err(e) = done {
            debug!(error = %e, "UnregisterMonitor failed; closing the connection removes it anyway.");
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // Our connection going away makes BlueZ drop the monitor.
        self.io.abort();
    }
}

/// Exports a monitor with `patterns` and registers it with the first adapter that has
/// the advertisement monitor manager.
pub async fn register(patterns: &[Pattern]) -> Result<Registration, MonitorError> {
    let (resource, conn) =
        dbus_tokio::connection::new_system_sync().map_err(|e| MonitorError::Bus(e.to_string()))?;
    let io = tokio::spawn(async move {
        let lost = resource.await;
        warn!(error = %lost, "The D-Bus connection of the advertisement monitor ended.");
    });
    // Built at once so every early return below drops it, aborting the connection task.
    let mut registration = Registration {
        conn: conn.clone(),
        adapter: Path::from("/"),
        io,
    };
    let root = Proxy::new("org.bluez", "/", CALL_TIMEOUT, conn.clone());
    let (objects,): (HashMap<Path<'static>, HashMap<String, PropMap>>,) = root
        .method_call(OBJECT_MANAGER, "GetManagedObjects", ())
        .await
        .map_err(|e| MonitorError::Bus(e.to_string()))?;
    registration.adapter = objects
        .into_iter()
        .filter(|(_, ifaces)| ifaces.contains_key(MANAGER_IFACE))
        .map(|(path, _)| path)
        .min()
        .ok_or(MonitorError::Unsupported)?;
    let wire: Vec<(u8, u8, Vec<u8>)> = patterns
        .iter()
        .map(|p| (p.start, p.ad_type, p.content.clone()))
        .collect();
    conn.start_receive(
        MatchRule::new_method_call(),
        Box::new(move |msg, conn| {
            if let Some(reply) = answer(&msg, &wire) {
                let _ignored = conn.send(reply);
            }
            true
        }),
    );
    let proxy = Proxy::new(
        "org.bluez",
        registration.adapter.clone(),
        CALL_TIMEOUT,
        conn,
    );
    let registered: Result<(), _> = proxy
        .method_call(MANAGER_IFACE, "RegisterMonitor", (Path::from(APP),))
        .await;
    registered.map_err(|e| MonitorError::Refused(e.to_string()))?;
    Ok(registration)
}

fn monitor_properties(patterns: &[(u8, u8, Vec<u8>)]) -> PropMap {
    let mut props: PropMap = HashMap::new();
    props.insert(
        "Type".into(),
        Variant(Box::new("or_patterns".to_owned()) as Box<dyn RefArg>),
    );
    props.insert(
        "Patterns".into(),
        Variant(Box::new(patterns.to_vec()) as Box<dyn RefArg>),
    );
    props
}

/// Our answer to a method call on our connection.
fn answer(msg: &Message, patterns: &[(u8, u8, Vec<u8>)]) -> Option<Message> {
    let path = msg.path()?;
    let iface = msg.interface().map(|i| i.to_string()).unwrap_or_default();
    let member = msg.member()?.to_string();
    match (&*path, iface.as_str(), member.as_str()) {
        (APP, OBJECT_MANAGER, "GetManagedObjects") => {
            let mut ifaces: HashMap<String, PropMap> = HashMap::new();
            ifaces.insert(MONITOR_IFACE.into(), monitor_properties(patterns));
            let mut objects: HashMap<Path<'static>, HashMap<String, PropMap>> = HashMap::new();
            objects.insert(Path::from(MONITOR), ifaces);
            Some(msg.method_return().append1(objects))
        }
        (MONITOR, PROPERTIES, "GetAll") => Some(msg.method_return().append1(
            if msg.read1::<&str>().ok() == Some(MONITOR_IFACE) {
                monitor_properties(patterns)
            } else {
                PropMap::new()
            },
        )),
        (MONITOR, PROPERTIES, "Get") => {
            let (_, name): (&str, &str) = msg.read2().ok()?;
            let mut props = monitor_properties(patterns);
            match props.remove(name) {
                Some(v) => Some(msg.method_return().append1(v)),
                None => dbus::channel::default_reply(msg),
            }
        }
        (MONITOR, MONITOR_IFACE, m) => {
            match m {
                "Activate" => info!("BlueZ activated the advertisement monitor: passive scanning."),
                "Release" => warn!("BlueZ released the advertisement monitor."),
                "DeviceFound" | "DeviceLost" => {
                    let device: Option<Path> = msg.read1().ok();
                    debug!(event = m, device = ?device.as_deref(), "Advertisement monitor event.");
                }
                _ => return dbus::channel::default_reply(msg),
            }
            Some(msg.method_return())
        }
        _ => dbus::channel::default_reply(msg),
    }
}
