//! The hub's state: identities, twins, sessions, routes, recorded messages, pending
//! method calls. One mutex, short critical sections, no I/O while holding it.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bridge_core::hub::twin::merge_patch;
use bridge_core::identity::SymmetricKey;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::limits::TwinLimitError;
use crate::routes::{Route, Sink, message_source};

/// Commands to a connection task.
#[derive(Debug)]
pub enum ConnCmd {
    /// Publish to the client (QoS 1).
    Publish {
        /// Topic.
        topic: String,
        /// Payload.
        payload: Vec<u8>,
    },
    /// Close the connection.
    Close,
}

/// A registered identity.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Device id.
    pub device_id: String,
    /// Module id.
    pub module_id: Option<String>,
    /// Its symmetric key.
    pub key: SymmetricKey,
}

impl Identity {
    /// `{d}/{m}` or `{d}`.
    pub fn id(&self) -> String {
        match &self.module_id {
            Some(m) => format!("{}/{}", self.device_id, m),
            None => self.device_id.clone(),
        }
    }
}

/// A telemetry message the hub received.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Recorded {
    /// Sending identity (`dev/mod` or `dev`).
    pub identity: String,
    /// Output name (`$.on`), if any.
    pub output: Option<String>,
    /// The raw topic.
    pub topic: String,
    /// Every property of the bag, decoded (system ones keep their `$.` keys).
    pub properties: BTreeMap<String, String>,
    /// Body as text (lossy for binary).
    pub body: String,
    /// Where routes sent it: `$upstream` or `module/input`.
    pub routed_to: Vec<String>,
    /// Model id announced by the sender at CONNECT.
    pub model_id: Option<String>,
}

impl Recorded {
    /// The body parsed as JSON, `Null` if it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// A refused CONNECT, for tests and the log.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Refusal {
    /// Client id sent.
    pub client_id: String,
    /// Why.
    pub reason: String,
}

/// A DPS registration the hub assigned.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Registration {
    /// Registration id (= device id).
    pub registration_id: String,
    /// ID scope used.
    pub id_scope: String,
    /// The `payload` the device sent (IoT Central's `modelId`, `iotcGateway`).
    pub payload: Value,
}

#[derive(Debug, Default)]
pub(crate) struct Twin {
    pub(crate) desired: Value,
    pub(crate) desired_version: u64,
    pub(crate) reported: Value,
    pub(crate) reported_version: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Session {
    pub(crate) subscriptions: HashSet<String>,
    /// Input messages waiting for the module to connect and subscribe.
    pub(crate) queued: VecDeque<(String, Vec<u8>)>,
}

#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) conn_id: u64,
    pub(crate) tx: mpsc::UnboundedSender<ConnCmd>,
    pub(crate) model_id: Option<String>,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) identities: HashMap<String, Identity>,
    pub(crate) dps_groups: Vec<(String, SymmetricKey)>,
    pub(crate) registrations: Vec<Registration>,
    pub(crate) twins: HashMap<String, Twin>,
    pub(crate) sessions: HashMap<String, Session>,
    pub(crate) connections: HashMap<String, Conn>,
    pub(crate) routes: Vec<Route>,
    pub(crate) messages: Vec<Recorded>,
    pub(crate) method_waiters: HashMap<String, oneshot::Sender<(u16, Value)>>,
    pub(crate) refusals: Vec<Refusal>,
    pub(crate) connects: u64,
    /// Reported patches refused for breaking a twin limit.
    pub(crate) refused_reported: u64,
    next_id: u64,
}

impl State {
    pub(crate) fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}

/// Static facts of the hub.
#[derive(Debug, Clone)]
pub struct HubInfo {
    /// IoT hub host name used in tokens and usernames.
    pub hub_hostname: String,
    /// The edge device whose modules and children may connect.
    pub edge_device_id: String,
    /// Clock skew allowed on token expiry (edgeHub: 5 min).
    pub token_skew: Duration,
    /// How long a new connection may take to send CONNECT.
    pub connect_timeout: Duration,
}

/// A direct method call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MethodError {
    /// The identity is not connected or not subscribed to methods.
    #[error("The identity '{0}' is not connected.")]
    NotConnected(String),
    /// No response in time.
    #[error("The method timed out.")]
    Timeout,
}

/// The hub; shared by every connection task.
#[derive(Debug)]
pub struct Hub {
    pub(crate) info: HubInfo,
    state: Mutex<State>,
    events: broadcast::Sender<Recorded>,
}

/// MQTT topic filter matching with `+` and `#`.
pub(crate) fn filter_matches(filter: &str, topic: &str) -> bool {
    let mut t = topic.split('/');
    for f in filter.split('/') {
        match f {
            "#" => return true,
            "+" => {
                if t.next().is_none() {
                    return false;
                }
            }
            literal => {
                if t.next() != Some(literal) {
                    return false;
                }
            }
        }
    }
    t.next().is_none()
}

impl Hub {
    /// A hub with no identities; the default route sends everything upstream.
    pub fn new(info: HubInfo) -> Arc<Self> {
        let (events, _) = broadcast::channel(4096);
        Arc::new(Self {
            info,
            state: Mutex::new(State::default()),
            events,
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in another task must not take the emulator down with it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a module of the edge device (or of another device) with its key.
    pub fn add_module(&self, device_id: &str, module_id: &str, key: SymmetricKey) {
        let identity = Identity {
            device_id: device_id.into(),
            module_id: Some(module_id.into()),
            key,
        };
        self.lock().identities.insert(identity.id(), identity);
    }

    /// Registers a child device with its key.
    pub fn add_device(&self, device_id: &str, key: SymmetricKey) {
        let identity = Identity {
            device_id: device_id.into(),
            module_id: None,
            key,
        };
        self.lock().identities.insert(identity.id(), identity);
    }

    /// Deletes an identity (as deleting a device in IoT Hub would) and drops its connection.
    pub fn remove_identity(&self, id: &str) {
        let mut state = self.lock();
        state.identities.remove(id);
        if let Some(conn) = state.connections.get(id) {
            let _ignored = conn.tx.send(ConnCmd::Close);
        }
    }

    /// Accepts DPS registrations in `id_scope` signed with keys derived from `group_key`.
    pub fn add_dps_group(&self, id_scope: &str, group_key: SymmetricKey) {
        self.lock().dps_groups.push((id_scope.into(), group_key));
    }

    /// Adds a route (`FROM … INTO …`).
    pub fn add_route(&self, route: Route) {
        self.lock().routes.push(route);
    }

    /// Identity lookup (case-insensitive, as edgeHub compares ids).
    pub(crate) fn identity(&self, id: &str) -> Option<Identity> {
        let state = self.lock();
        state.identities.get(id).cloned().or_else(|| {
            state
                .identities
                .values()
                .find(|i| i.id().eq_ignore_ascii_case(id))
                .cloned()
        })
    }

    /// Publishes raw bytes on `topic` to a connected identity, bypassing the twin model:
    /// for testing how clients take malformed input. False when `id` is not connected.
    pub fn publish_raw(&self, id: &str, topic: &str, payload: &[u8]) -> bool {
        let tx = self.lock().connections.get(id).map(|c| c.tx.clone());
        tx.is_some_and(|tx| {
            tx.send(ConnCmd::Publish {
                topic: topic.to_owned(),
                payload: payload.to_vec(),
            })
            .is_ok()
        })
    }

    /// Merges a desired patch into the twin, bumps `$version`, and pushes the patch to
    /// the identity if it is connected and subscribed (edgeHub does not queue these).
    /// A patch that breaks a twin limit is logged and dropped (see [`Hub::try_set_desired`]);
    /// the current version is returned.
    pub fn set_desired(&self, id: &str, patch: &Value) -> u64 {
        self.try_set_desired(id, patch).unwrap_or_else(|e| {
            tracing::warn!(identity = id, error = %e, "Desired patch refused.");
            self.lock()
                .twins
                .get(id)
                .map_or(1, |t| t.desired_version.max(1))
        })
    }

    /// [`Hub::set_desired`], refusing a patch that breaks IoT Hub's twin limits (names,
    /// depth, values, 32 KB of desired properties) as IoT Hub does: nothing changes.
    pub fn try_set_desired(&self, id: &str, patch: &Value) -> Result<u64, TwinLimitError> {
        let (version, tx) = {
            let mut state = self.lock();
            let twin = state.twins.entry(id.into()).or_default();
            let mut merged = twin.desired.clone();
            merge_patch(&mut merged, patch);
            crate::limits::check("desired", patch, &merged)?;
            twin.desired = merged;
            // A new twin's desired section is at $version 1 (as IoT Hub's), so the first
            // patch is version 2 and never looks stale to a client that read version 1.
            twin.desired_version = twin.desired_version.max(1) + 1;
            let version = twin.desired_version;
            let topic = format!("$iothub/twin/PATCH/properties/desired/?$version={version}");
            let subscribed = state
                .sessions
                .get(id)
                .is_some_and(|s| s.subscriptions.iter().any(|f| filter_matches(f, &topic)));
            let tx = subscribed
                .then(|| state.connections.get(id).map(|c| c.tx.clone()))
                .flatten();
            (version, tx.map(|tx| (tx, topic)))
        };
        if let Some((tx, topic)) = tx {
            let mut body = patch.clone();
            if let Value::Object(map) = &mut body {
                map.insert("$version".into(), json!(version));
            }
            let _ignored = tx.send(ConnCmd::Publish {
                topic,
                payload: body.to_string().into_bytes(),
            });
        }
        Ok(version)
    }

    /// The twin as a GET returns it.
    pub fn twin(&self, id: &str) -> Value {
        let state = self.lock();
        twin_document(state.twins.get(id))
    }

    /// Invokes a direct method and waits for the response.
    pub async fn invoke_method(
        &self,
        id: &str,
        name: &str,
        payload: &Value,
        timeout: Duration,
    ) -> Result<(u16, Value), MethodError> {
        let (rid, rx) = {
            let mut state = self.lock();
            let subscribed = state.sessions.get(id).is_some_and(|s| {
                s.subscriptions
                    .iter()
                    .any(|f| filter_matches(f, &format!("$iothub/methods/POST/{name}/?$rid=1")))
            });
            let Some(conn) = state.connections.get(id).filter(|_| subscribed) else {
                return Err(MethodError::NotConnected(id.into()));
            };
            let tx = conn.tx.clone();
            let rid = state.next_id().to_string();
            let (wtx, wrx) = oneshot::channel();
            state.method_waiters.insert(rid.clone(), wtx);
            let topic = format!("$iothub/methods/POST/{name}/?$rid={rid}");
            let _ignored = tx.send(ConnCmd::Publish {
                topic,
                payload: payload.to_string().into_bytes(),
            });
            (rid, wrx)
        };
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(result)) => Ok(result),
            _ => {
                self.lock().method_waiters.remove(&rid);
                Err(MethodError::Timeout)
            }
        }
    }

    /// Every telemetry message received so far.
    pub fn messages(&self) -> Vec<Recorded> {
        self.lock().messages.clone()
    }

    /// Forgets recorded messages (long-running benchmarks).
    pub fn clear_messages(&self) {
        self.lock().messages.clear();
    }

    /// A live feed of received messages.
    pub fn subscribe(&self) -> broadcast::Receiver<Recorded> {
        self.events.subscribe()
    }

    /// Waits until `pred` holds for the recorded messages (checked on every new one).
    pub async fn wait_until(
        &self,
        timeout: Duration,
        pred: impl Fn(&[Recorded]) -> bool,
    ) -> Result<Vec<Recorded>, Vec<Recorded>> {
        let mut feed = self.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let messages = self.messages();
            if pred(&messages) {
                return Ok(messages);
            }
            match tokio::time::timeout_at(deadline, feed.recv()).await {
                Err(_) => return Err(messages),
                Ok(Err(broadcast::error::RecvError::Closed)) => return Err(messages),
                Ok(_) => {}
            }
        }
    }

    /// Connected identities.
    pub fn connected(&self) -> Vec<String> {
        let mut ids: Vec<_> = self.lock().connections.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Successful CONNECTs so far.
    pub fn connect_count(&self) -> u64 {
        self.lock().connects
    }

    /// Reported patches refused so far for breaking a twin limit (answered 400).
    pub fn refused_reported_patches(&self) -> u64 {
        self.lock().refused_reported
    }

    /// Refused CONNECTs so far.
    pub fn refusals(&self) -> Vec<Refusal> {
        self.lock().refusals.clone()
    }

    /// DPS registrations so far.
    pub fn registrations(&self) -> Vec<Registration> {
        self.lock().registrations.clone()
    }

    /// Drops every connection (as an edgeHub restart would).
    pub fn kick_all(&self) {
        for conn in self.lock().connections.values() {
            let _ignored = conn.tx.send(ConnCmd::Close);
        }
    }

    /// Sends a message to a module input (`dev/mod`), as a route would (queued while offline).
    pub fn send_to_input(
        &self,
        module_identity: &str,
        input: &str,
        properties: &[(&str, &str)],
        body: &[u8],
    ) {
        let (device, module) = module_identity
            .split_once('/')
            .unwrap_or((module_identity, ""));
        let bag = bridge_core::hub::topics::encode_bag(properties);
        let topic = format!("devices/{device}/modules/{module}/inputs/{input}/{bag}");
        self.deliver_queued(module_identity, topic, body.to_vec());
    }

    /// Delivers now if connected and subscribed, otherwise queues for the session.
    pub(crate) fn deliver_queued(&self, id: &str, topic: String, payload: Vec<u8>) {
        let mut state = self.lock();
        let live = state
            .sessions
            .get(id)
            .is_some_and(|s| s.subscriptions.iter().any(|f| filter_matches(f, &topic)));
        match state.connections.get(id).filter(|_| live) {
            Some(conn) => {
                let _ignored = conn.tx.send(ConnCmd::Publish { topic, payload });
            }
            None => state
                .sessions
                .entry(id.into())
                .or_default()
                .queued
                .push_back((topic, payload)),
        }
    }

    /// Records and routes one telemetry message.
    pub(crate) fn route_message(
        &self,
        sender: &Identity,
        topic: &str,
        properties: BTreeMap<String, String>,
        body: &[u8],
    ) {
        let output = properties.get("$.on").cloned();
        let source = message_source(sender.module_id.as_deref(), output.as_deref());
        let (sinks, model_id) = {
            let state = self.lock();
            let sinks: Vec<Sink> = if state.routes.is_empty() {
                vec![Sink::Upstream]
            } else {
                state
                    .routes
                    .iter()
                    .filter(|r| r.matches(&source))
                    .map(|r| r.sink.clone())
                    .collect()
            };
            (
                sinks,
                state
                    .connections
                    .get(&sender.id())
                    .and_then(|c| c.model_id.clone()),
            )
        };
        let mut routed_to = Vec::new();
        for sink in &sinks {
            match sink {
                Sink::Upstream => routed_to.push("$upstream".to_owned()),
                Sink::ModuleInput { module, input } => {
                    let target = format!("{}/{}", self.info.edge_device_id, module);
                    let mut props: Vec<(String, String)> = properties
                        .iter()
                        .filter(|(k, _)| k.as_str() != "$.on")
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    props.push(("$.cdid".into(), sender.device_id.clone()));
                    if let Some(m) = &sender.module_id {
                        props.push(("$.cmid".into(), m.clone()));
                    }
                    let pairs: Vec<(&str, &str)> = props
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect();
                    let bag = bridge_core::hub::topics::encode_bag(&pairs);
                    let topic = format!(
                        "devices/{}/modules/{}/inputs/{}/{}",
                        self.info.edge_device_id, module, input, bag
                    );
                    self.deliver_queued(&target, topic, body.to_vec());
                    routed_to.push(format!("{module}/{input}"));
                }
            }
        }
        let record = Recorded {
            identity: sender.id(),
            output,
            topic: topic.into(),
            properties,
            body: String::from_utf8_lossy(body).into_owned(),
            routed_to,
            model_id,
        };
        self.lock().messages.push(record.clone());
        let _ignored = self.events.send(record);
    }
}

pub(crate) fn twin_document(twin: Option<&Twin>) -> Value {
    let mut desired = twin
        .map(|t| t.desired.clone())
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    let mut reported = twin
        .map(|t| t.reported.clone())
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    desired["$version"] = json!(twin.map_or(1, |t| t.desired_version.max(1)));
    reported["$version"] = json!(twin.map_or(1, |t| t.reported_version.max(1)));
    json!({"desired": desired, "reported": reported})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mqtt_filters() {
        assert!(filter_matches(
            "$iothub/methods/POST/#",
            "$iothub/methods/POST/reboot/?$rid=1"
        ));
        assert!(filter_matches(
            "devices/d/modules/m/inputs/#",
            "devices/d/modules/m/inputs/in1/a=b"
        ));
        assert!(filter_matches("a/+/c", "a/b/c"));
        assert!(!filter_matches("a/+/c", "a/b/d"));
        assert!(!filter_matches("a/b", "a/b/c"));
    }
}
