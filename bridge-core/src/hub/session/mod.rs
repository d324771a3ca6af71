//! The one task that owns the MQTT connection to edgeHub, and its cheap `Clone` handle.
//!
//! Every connection attempt gets a fresh token and a fresh rumqttc event loop, so:
//! token renewal is "end this connection, open the next one"; after any reconnect the
//! forwarder resends whatever was not PUBACKed (we never rely on rumqttc's in-memory
//! retransmission); subscriptions and the twin GET are redone after every CONNACK.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, MqttOptions, Outgoing, Packet, QoS, Transport,
};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::topics::{self, Incoming};
use super::twin::Desired;
use crate::backoff::Backoff;
use crate::identity::Credentials;
use crate::link::{LinkEnd, LinkEvent, Outbound};
use crate::methods::MethodRouter;
use crate::mqtt::{Publisher, Tag, error_chain, tls};

mod twin_state;
use twin_state::Reported;

/// Tunables of the session. Defaults follow the Azure SDKs.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// MQTT keep-alive (edgeHub allows up to 10 min).
    pub keep_alive: Duration,
    /// Lifetime of each SAS token.
    pub token_lifetime: Duration,
    /// Reconnect with a new token this long before the old one expires.
    pub renew_before: Duration,
    /// First reconnect delay.
    pub backoff_min: Duration,
    /// Largest reconnect delay.
    pub backoff_max: Duration,
    /// Largest MQTT packet in either direction (edgeHub: 256 KiB messages).
    pub max_packet_bytes: usize,
    /// How long a twin GET may take before it is retried.
    pub twin_timeout: Duration,
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            keep_alive: Duration::from_secs(60),
            token_lifetime: Duration::from_secs(3600),
            renew_before: Duration::from_secs(120),
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(60),
            max_packet_bytes: 300 * 1024,
            twin_timeout: Duration::from_secs(30),
        }
    }
}

/// Connection state, for health reporting and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnState {
    /// Trying to connect.
    Connecting,
    /// CONNACK accepted; `connects` counts sessions so far.
    Connected {
        /// Number of successful connections since start.
        connects: u64,
    },
    /// Not connected; why.
    Disconnected {
        /// The last error, in words.
        error: String,
    },
    /// Shut down.
    Stopped,
}

/// A message that arrived on one of the module's inputs.
#[derive(Debug, Clone)]
pub struct InputMessage {
    /// Input name.
    pub input: String,
    /// Properties from the topic's property bag.
    pub properties: BTreeMap<String, String>,
    /// Payload.
    pub body: Vec<u8>,
}

/// A reported-properties patch was not accepted.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ReportError {
    /// The hub answered with an error status.
    #[error("The hub refused the reported properties with status {0}.")]
    Refused(u16),
    /// The session task is gone.
    #[error("The hub session has stopped.")]
    Stopped,
    /// No acknowledgement in time (it stays queued and is retried).
    #[error("The reported properties were not acknowledged in time.")]
    Timeout,
}

enum Command {
    /// Use these credentials from the next connection on (re-provisioned device).
    SetCredentials(Box<Credentials>),
    Report {
        patch: Value,
        done: Option<oneshot::Sender<Result<(), ReportError>>>,
    },
    MethodDone {
        rid: String,
        status: u16,
        payload: Value,
        generation: u64,
    },
}

/// Handle to the session: report properties, watch desired properties and state.
#[derive(Debug, Clone)]
pub struct HubSession {
    commands: mpsc::UnboundedSender<Command>,
    desired: watch::Receiver<Option<Desired>>,
    state: watch::Receiver<ConnState>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::SetCredentials(_) => f.write_str("SetCredentials"),
            Command::Report { .. } => f.write_str("Report"),
            Command::MethodDone { rid, status, .. } => write!(f, "MethodDone({rid}, {status})"),
        }
    }
}

impl HubSession {
    /// Queues a reported-properties patch. Patches merge while offline and are sent
    /// (again) after reconnecting until the hub acknowledges them.
    pub fn report(&self, patch: Value) {
        // Sending fails only after shutdown, when reporting no longer matters.
        let _ignored = self.commands.send(Command::Report { patch, done: None });
    }

    /// Like [`report`](Self::report) but waits for the hub's acknowledgement.
    pub async fn report_and_wait(
        &self,
        patch: Value,
        timeout: Duration,
    ) -> Result<(), ReportError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Report {
                patch,
                done: Some(tx),
            })
            .map_err(|_| ReportError::Stopped)?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ReportError::Stopped),
            Err(_) => Err(ReportError::Timeout),
        }
    }

    /// Replaces the credentials (for example after re-provisioning); the session
    /// reconnects with them.
    pub fn replace_credentials(&self, credentials: Credentials) {
        let _ignored = self
            .commands
            .send(Command::SetCredentials(Box::new(credentials)));
    }

    /// The desired properties: `None` until the first twin GET succeeded.
    pub fn desired(&self) -> watch::Receiver<Option<Desired>> {
        self.desired.clone()
    }

    /// Connection state.
    pub fn state(&self) -> watch::Receiver<ConnState> {
        self.state.clone()
    }
}

/// Starts the session task. Telemetry arrives through `link` (see [`crate::upstream`]);
/// direct methods go to `methods`; input messages to `inputs` when given.
pub fn spawn_session(
    credentials: Credentials,
    options: SessionOptions,
    methods: MethodRouter,
    inputs: Option<mpsc::Sender<InputMessage>>,
    link: LinkEnd,
    shutdown: CancellationToken,
) -> HubSession {
    let (commands, command_rx) = mpsc::unbounded_channel();
    let (desired_tx, desired) = watch::channel(None);
    let (state_tx, state) = watch::channel(ConnState::Connecting);
    let driver = Driver {
        credentials,
        options,
        methods,
        inputs,
        link,
        commands: command_rx,
        self_commands: commands.clone(),
        desired_tx,
        state_tx,
        shutdown,
        reported: Reported::default(),
        desired: None,
        connects: 0,
    };
    tokio::spawn(driver.run());
    HubSession {
        commands,
        desired,
        state,
    }
}

struct Driver {
    credentials: Credentials,
    options: SessionOptions,
    methods: MethodRouter,
    inputs: Option<mpsc::Sender<InputMessage>>,
    link: LinkEnd,
    commands: mpsc::UnboundedReceiver<Command>,
    self_commands: mpsc::UnboundedSender<Command>,
    desired_tx: watch::Sender<Option<Desired>>,
    state_tx: watch::Sender<ConnState>,
    shutdown: CancellationToken,
    reported: Reported,
    desired: Option<Desired>,
    connects: u64,
}

enum End {
    Renew,
    Lost(String),
    Shutdown,
}

/// Per-connection state.
struct Conn {
    /// New credentials arrived: end this connection and open the next with them.
    restart: bool,
    publisher: Publisher,
    connected: bool,
    twin_get: Option<(String, Instant)>,
    early_patches: Vec<(Value, Option<u64>)>,
    generation: u64,
}

const REQUEST_CAPACITY: usize = 512;
/// Keep rumqttc's request channel well below capacity so `try_publish` never fails.
const MAX_BACKLOG: usize = REQUEST_CAPACITY / 2;

impl Driver {
    async fn run(mut self) {
        let mut backoff = Backoff::new(self.options.backoff_min, self.options.backoff_max);
        loop {
            if self.shutdown.is_cancelled() {
                break;
            }
            let _ignored = self.state_tx.send(ConnState::Connecting);
            let started = Instant::now();
            let end = match self.connect_once().await {
                Ok(end) => end,
                Err(error) => End::Lost(error),
            };
            self.link.emit(LinkEvent::Down);
            self.reported.requeue();
            match end {
                End::Shutdown => break,
                End::Renew => {
                    info!(identity = %self.credentials.identity.client_id(), "Renewing the SAS token by reconnecting.");
                    backoff.reset();
                }
                End::Lost(error) => {
                    let _ignored = self.state_tx.send(ConnState::Disconnected {
                        error: error.clone(),
                    });
                    if started.elapsed() > Duration::from_secs(30) {
                        backoff.reset();
                    }
                    let delay = backoff.next_delay();
                    warn!(identity = %self.credentials.identity.client_id(), %error, retry_in_ms = delay.as_millis() as u64, "Hub connection lost.");
                    tokio::select! {
                        _ = self.shutdown.cancelled() => break,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
        for waiter in self.reported.waiters.drain(..) {
            let _ignored = waiter.send(Err(ReportError::Stopped));
        }
        let _ignored = self.state_tx.send(ConnState::Stopped);
    }

    fn mqtt_options(&self, token: String) -> Result<MqttOptions, String> {
        let id = &self.credentials.identity;
        let mut opts = MqttOptions::new(id.client_id(), id.connect_host.clone(), id.port);
        opts.set_keep_alive(self.options.keep_alive.max(Duration::from_secs(1)))
            .set_clean_session(false)
            .set_max_packet_size(self.options.max_packet_bytes, self.options.max_packet_bytes)
            .set_credentials(topics::username(id), token)
            .set_request_channel_capacity(REQUEST_CAPACITY)
            .set_inflight(200);
        let tls = tls::client_config(&self.credentials.trust).map_err(|e| e.to_string())?;
        opts.set_transport(Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(tls),
        ));
        Ok(opts)
    }

    async fn connect_once(&mut self) -> Result<End, String> {
        // Commands that arrived while disconnected: new credentials apply to this attempt.
        while let Ok(cmd) = self.commands.try_recv() {
            match cmd {
                Command::SetCredentials(c) => self.credentials = *c,
                Command::Report { patch, done } => self.reported.add(&patch, done),
                // A method answer for a connection that is gone cannot be delivered.
                Command::MethodDone { .. } => {}
            }
        }
        let uri = self.credentials.identity.resource_uri();
        let (token, expiry) = tokio::select! {
            _ = self.shutdown.cancelled() => return Ok(End::Shutdown),
            t = self.credentials.signer.token(&uri, self.options.token_lifetime) => t.map_err(|e| error_chain(&e))?,
        };
        let opts = self.mqtt_options(token)?;
        let (client, mut eventloop) = AsyncClient::new(opts, REQUEST_CAPACITY);
        eventloop.network_options.set_connection_timeout(10);
        let renew_in = expiry
            .duration_since(SystemTime::now())
            .unwrap_or_default()
            .saturating_sub(self.options.renew_before)
            .max(Duration::from_secs(1));
        let renew_at = tokio::time::Instant::now() + renew_in;
        self.connects += 1;
        let mut conn = Conn {
            restart: false,
            publisher: Publisher::new(client, MAX_BACKLOG),
            connected: false,
            twin_get: None,
            early_patches: Vec::new(),
            generation: self.connects,
        };
        let mut twin_check = tokio::time::interval(Duration::from_secs(1));
        // Made once, not per event: each fresh future re-registers a waiter or a timer.
        let shutdown = self.shutdown.clone();
        let cancelled = shutdown.cancelled();
        let renew = tokio::time::sleep_until(renew_at);
        tokio::pin!(cancelled, renew);
        loop {
            tokio::select! {
                biased;
                _ = &mut cancelled => {
                    self.graceful_close(&conn, &mut eventloop).await;
                    return Ok(End::Shutdown);
                }
                _ = &mut renew => {
                    self.graceful_close(&conn, &mut eventloop).await;
                    return Ok(End::Renew);
                }
                event = eventloop.poll() => match event {
                    Ok(event) => self.on_event(&mut conn, event)?,
                    Err(e) => return Ok(End::Lost(error_chain(&e))),
                },
                Some(cmd) = self.commands.recv() => {
                    self.on_command(&mut conn, cmd);
                    if conn.restart {
                        self.graceful_close(&conn, &mut eventloop).await;
                        return Ok(End::Renew);
                    }
                }
                Some(out) = self.link.rx.recv(), if conn.connected && conn.publisher.ready() => {
                    self.publish_telemetry(&mut conn, out);
                }
                _ = twin_check.tick() => {
                    if let Some((_, sent)) = &conn.twin_get && sent.elapsed() > self.options.twin_timeout {
                        warn!("Twin GET timed out; asking again.");
                        self.request_twin(&mut conn);
                    }
                }
            }
        }
    }

    async fn graceful_close(&self, conn: &Conn, eventloop: &mut rumqttc::EventLoop) {
        if conn.connected && conn.publisher.client().try_disconnect().is_ok() {
            // Let the DISCONNECT reach the wire; a dead socket just ends this early.
            let _ignored = tokio::time::timeout(Duration::from_millis(500), async {
                while let Ok(ev) = eventloop.poll().await {
                    if matches!(ev, Event::Outgoing(Outgoing::Disconnect)) {
                        break;
                    }
                }
            })
            .await;
        }
    }

    fn on_event(&mut self, conn: &mut Conn, event: Event) -> Result<(), String> {
        match event {
            Event::Incoming(Packet::ConnAck(ack)) => {
                if ack.code != ConnectReturnCode::Success {
                    return Err(format!("The hub refused the connection: {:?}.", ack.code));
                }
                conn.connected = true;
                info!(identity = %self.credentials.identity.client_id(), session_present = ack.session_present, "Connected to the hub.");
                let _ignored = self.state_tx.send(ConnState::Connected {
                    connects: self.connects,
                });
                for topic in topics::subscriptions(&self.credentials.identity) {
                    let _ignored = conn
                        .publisher
                        .client()
                        .try_subscribe(topic, QoS::AtLeastOnce);
                }
                self.request_twin(conn);
                self.flush_reported(conn);
                self.link.emit(LinkEvent::Up);
            }
            Event::Incoming(Packet::Publish(p)) => self.on_publish(conn, &p.topic, &p.payload),
            other => {
                conn.publisher.on_event(&other, &self.link);
            }
        }
        Ok(())
    }

    fn publish(&self, conn: &mut Conn, topic: String, payload: Vec<u8>, tag: Tag) {
        conn.publisher.publish(topic, payload, tag);
    }

    fn publish_telemetry(&self, conn: &mut Conn, out: Outbound) {
        let topic = topics::telemetry_topic(&self.credentials.identity, &out.message);
        self.publish(
            conn,
            topic,
            out.message.body.clone(),
            Tag::Telemetry(out.seq),
        );
    }

    fn on_command(&mut self, conn: &mut Conn, cmd: Command) {
        match cmd {
            Command::SetCredentials(c) => {
                self.credentials = *c;
                conn.restart = true;
            }
            Command::Report { patch, done } => {
                self.reported.add(&patch, done);
                self.flush_reported(conn);
            }
            Command::MethodDone {
                rid,
                status,
                payload,
                generation,
            } => {
                // A response for a previous connection's request id would confuse the hub.
                if generation == conn.generation && conn.connected {
                    self.publish(
                        conn,
                        topics::method_response(status, &rid),
                        payload.to_string().into_bytes(),
                        Tag::Untracked,
                    );
                }
            }
        }
    }

    fn on_publish(&mut self, conn: &mut Conn, topic: &str, payload: &[u8]) {
        match topics::parse_incoming(topic) {
            Incoming::TwinResponse { status, rid, .. } => {
                self.on_twin_response(conn, status, &rid, payload)
            }
            Incoming::DesiredPatch { version } => match serde_json::from_slice::<Value>(payload) {
                // IoT Hub sends objects; anything else would replace the whole document.
                Ok(patch) if !patch.is_object() => {
                    warn!("Ignoring a desired-properties patch that is not a JSON object.")
                }
                Ok(patch) if conn.twin_get.is_some() || self.desired.is_none() => {
                    conn.early_patches.push((patch, version))
                }
                Ok(patch) => self.apply_desired_patch(&patch, version),
                Err(e) => {
                    warn!(error = %e, "Ignoring a desired-properties patch that is not JSON.")
                }
            },
            Incoming::MethodCall { name, rid } => {
                let router = self.methods.clone();
                let commands = self.self_commands.clone();
                let body = payload.to_vec();
                let generation = conn.generation;
                debug!(method = %name, %rid, "Direct method called.");
                tokio::spawn(async move {
                    let response = router.dispatch(&name, &body).await;
                    let _ignored = commands.send(Command::MethodDone {
                        rid,
                        status: response.status,
                        payload: response.payload,
                        generation,
                    });
                });
            }
            Incoming::Input { input, properties } => {
                if let Some(inputs) = &self.inputs
                    && inputs
                        .try_send(InputMessage {
                            input: input.clone(),
                            properties,
                            body: payload.to_vec(),
                        })
                        .is_err()
                {
                    warn!(%input, "Input message dropped: the module is not keeping up.");
                }
            }
            Incoming::Unknown => debug!(%topic, "Ignoring a publish on an unknown topic."),
        }
    }
}

/// A request id: random, like the SDK's UUIDs.
fn new_rid() -> String {
    format!("{:032x}", rand::random::<u128>())
}

#[cfg(test)]
mod tests {
    use crate::message::Message;
    use serde_json::json;

    #[test]
    fn message_body_is_not_reencoded() {
        let msg = Message::json("telemetry", &json!({"t": 1}));
        assert_eq!(msg.body, br#"{"t":1}"#);
    }
}
