//! A plain MQTT broker as upstream (`mqtt://host:port` or `mqtts://host:port`), for
//! users outside Azure. Topic from a template such as `{deviceId}/{output}`; payload is
//! the message body; QoS 1, released from the spool on PUBACK.

use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, ConnectReturnCode, Event, MqttOptions, Packet, Transport};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::backoff::Backoff;
use crate::identity::TrustRoots;
use crate::link::{LinkEnd, LinkEvent};
use crate::message::Message;
use crate::mqtt::{Publisher, Tag, error_chain, tls};

/// Where and how to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttUpstreamConfig {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// TLS (`mqtts://`).
    pub tls: bool,
    /// Topic template; `{deviceId}`, `{output}` and `{moduleId}` are replaced.
    pub topic_template: String,
    /// MQTT client id.
    pub client_id: String,
    /// Optional username and password.
    pub credentials: Option<(String, String)>,
    /// PEM roots for TLS; system roots when `None`.
    pub ca_pem: Option<String>,
    /// Publish the JSON envelope (`deviceId`, `output`, `properties`, `body`) instead of the bare body.
    pub envelope: bool,
}

/// The upstream URL is not usable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MqttUrlError {
    /// Not `mqtt://` or `mqtts://`.
    #[error("The upstream URL '{0}' must start with mqtt:// or mqtts://.")]
    Scheme(String),
    /// Port missing or not a number.
    #[error("The upstream URL '{0}' needs a numeric port (mqtt://host:1883).")]
    Port(String),
}

impl MqttUpstreamConfig {
    /// Parses `mqtt://host:port` / `mqtts://host:port`.
    pub fn from_url(
        url: &str,
        topic_template: &str,
        client_id: &str,
    ) -> Result<Self, MqttUrlError> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("mqtts://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("mqtt://") {
            (false, r)
        } else {
            return Err(MqttUrlError::Scheme(url.into()));
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| MqttUrlError::Port(url.into()))?;
        let port = port.parse().map_err(|_| MqttUrlError::Port(url.into()))?;
        Ok(Self {
            host: host.trim_matches(['[', ']']).to_owned(),
            port,
            tls,
            topic_template: topic_template.to_owned(),
            client_id: client_id.to_owned(),
            credentials: None,
            ca_pem: None,
            envelope: false,
        })
    }

    /// The topic for one message.
    pub fn topic(&self, message: &Message, module_id: &str) -> String {
        // One pass over the template (this runs for every message).
        let mut out = String::with_capacity(self.topic_template.len() + 48);
        let mut rest = self.topic_template.as_str();
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let tail = &rest[open..];
            let (value, len) = if tail.starts_with("{deviceId}") {
                (message.device_id.as_deref().unwrap_or(module_id), 10)
            } else if tail.starts_with("{output}") {
                (message.output.as_deref().unwrap_or("telemetry"), 8)
            } else if tail.starts_with("{moduleId}") {
                (module_id, 10)
            } else {
                ("{", 1)
            };
            out.push_str(value);
            rest = &tail[len..];
        }
        out.push_str(rest);
        out
    }
}

/// Runs the MQTT upstream until `shutdown`; reconnects with backoff.
pub async fn run(config: MqttUpstreamConfig, mut end: LinkEnd, shutdown: CancellationToken) {
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    loop {
        let started = Instant::now();
        let error = match connection(&config, &mut end, &shutdown).await {
            None => return,
            Some(e) => e,
        };
        end.emit(LinkEvent::Down);
        if started.elapsed() > Duration::from_secs(30) {
            backoff.reset();
        }
        let delay = backoff.next_delay();
        warn!(broker = %config.host, port = config.port, %error, retry_in_ms = delay.as_millis() as u64, "MQTT upstream disconnected.");
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// One connection; `None` on shutdown, otherwise why it ended.
async fn connection(
    config: &MqttUpstreamConfig,
    end: &mut LinkEnd,
    shutdown: &CancellationToken,
) -> Option<String> {
    let mut opts = MqttOptions::new(config.client_id.clone(), config.host.clone(), config.port);
    opts.set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(1 << 20, 1 << 20)
        .set_inflight(200);
    if let Some((u, p)) = &config.credentials {
        opts.set_credentials(u.clone(), p.clone());
    }
    if config.tls {
        let roots = config
            .ca_pem
            .clone()
            .map_or(TrustRoots::System, TrustRoots::Pem);
        match tls::client_config(&roots) {
            Ok(tls) => {
                opts.set_transport(Transport::tls_with_config(
                    rumqttc::TlsConfiguration::Rustls(tls),
                ));
            }
            Err(e) => return Some(e.to_string()),
        }
    }
    let (client, mut eventloop) = AsyncClient::new(opts, 512);
    let mut publisher = Publisher::new(client, 256);
    let mut connected = false;
    // Made once, not per event (each fresh future registers a waiter).
    let cancelled = shutdown.cancelled();
    tokio::pin!(cancelled);
    loop {
        tokio::select! {
            _ = &mut cancelled => return None,
            event = eventloop.poll() => match event {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    if ack.code != ConnectReturnCode::Success {
                        return Some(format!("The broker refused the connection: {:?}.", ack.code));
                    }
                    info!(broker = %config.host, port = config.port, "MQTT upstream connected.");
                    connected = true;
                    end.emit(LinkEvent::Up);
                }
                Ok(event) => {
                    publisher.on_event(&event, end);
                }
                Err(e) => return Some(error_chain(&e)),
            },
            Some(out) = end.rx.recv(), if connected && publisher.ready() => {
                let topic = config.topic(&out.message, &config.client_id);
                let payload = if config.envelope { super::stdout::json_line(&out.message).into_bytes() } else { out.message.body.clone() };
                publisher.publish(topic, payload, Tag::Telemetry(out.seq));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls_and_fills_templates() {
        let c = MqttUpstreamConfig::from_url(
            "mqtt://broker.local:1883",
            "plant/{deviceId}/{output}",
            "bridge",
        )
        .unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.tls),
            ("broker.local", 1883, false)
        );
        let m = Message::json("telemetry", &serde_json::json!({})).for_device("meter-1");
        assert_eq!(c.topic(&m, "bridge"), "plant/meter-1/telemetry");
        let t =
            MqttUpstreamConfig::from_url("mqtt://b:1", "{moduleId}/{x}/{output}/{deviceId}{", "c")
                .unwrap();
        assert_eq!(t.topic(&m, "mod"), "mod/{x}/telemetry/meter-1{");
        let t = MqttUpstreamConfig::from_url("mqtt://b:1", "fixed", "c").unwrap();
        assert_eq!(t.topic(&Message::default(), "mod"), "fixed");
        assert!(
            MqttUpstreamConfig::from_url("mqtts://[::1]:8883", "x", "c")
                .unwrap()
                .tls
        );
        assert_eq!(
            MqttUpstreamConfig::from_url("http://x:1", "t", "c"),
            Err(MqttUrlError::Scheme("http://x:1".into()))
        );
        assert_eq!(
            MqttUpstreamConfig::from_url("mqtt://x", "t", "c"),
            Err(MqttUrlError::Port("mqtt://x".into()))
        );
    }
}
