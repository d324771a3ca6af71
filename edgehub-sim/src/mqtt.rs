//! One MQTT 3.1.1 connection: CONNECT checked as edgeHub does, then edgeHub semantics
//! for telemetry, twin, methods, inputs, and DPS for registration connections.
//! Malformed packets end the connection; they never take the emulator down.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bridge_core::hub::topics::decode_bag;
use bridge_core::hub::twin::merge_patch;
use bridge_core::identity::sas;
use bytes::BytesMut;
use rumqttc::{
    ConnAck, ConnectReturnCode, Packet, PubAck, Publish, QoS, SubAck, SubscribeReasonCode,
};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::auth::{AuthError, Claim, check_token, parse_username};
use crate::dps;
use crate::state::{Conn, ConnCmd, Hub, Identity, Refusal, twin_document};

const MAX_PACKET: usize = 512 * 1024;

/// Who is on this connection.
pub(crate) enum Peer {
    Hub(Identity),
    Dps {
        id_scope: String,
        registration_id: String,
    },
}

/// Serves one connection until it closes.
pub(crate) async fn serve<S: AsyncRead + AsyncWrite + Unpin>(hub: Arc<Hub>, stream: S) {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut buf = BytesMut::with_capacity(8 * 1024);
    let connect =
        match tokio::time::timeout(hub.info.connect_timeout, read_packet(&mut reader, &mut buf))
            .await
        {
            Ok(Ok(Packet::Connect(c))) => c,
            Ok(Ok(other)) => return debug!(?other, "First packet was not CONNECT; closing."),
            Ok(Err(e)) => return debug!(error = %e, "Unreadable CONNECT; closing."),
            Err(_) => return debug!("No CONNECT in time; closing."),
        };
    let (peer, expiry) = match authenticate(&hub, &connect) {
        Ok(ok) => ok,
        Err((code, reason)) => {
            info!(client_id = %connect.client_id, %reason, "Refusing connection.");
            hub.lock().refusals.push(Refusal {
                client_id: connect.client_id.clone(),
                reason: reason.to_string(),
            });
            let _ignored =
                write_packet(&mut writer, &Packet::ConnAck(ConnAck::new(code, false))).await;
            return;
        }
    };
    let id = match &peer {
        Peer::Hub(identity) => identity.id(),
        Peer::Dps {
            registration_id, ..
        } => format!("dps:{registration_id}"),
    };
    let model_id = match parse_username(
        connect
            .login
            .as_ref()
            .map(|l| l.username.as_str())
            .unwrap_or(""),
    ) {
        Ok(Claim::Hub { query, .. }) => query.get("model-id").cloned(),
        _ => None,
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (conn_id, session_present) = {
        let mut state = hub.lock();
        let conn_id = state.next_id();
        state.connects += 1;
        if let Some(old) = state.connections.insert(
            id.clone(),
            Conn {
                conn_id,
                tx,
                model_id,
            },
        ) {
            // One live connection per identity: the newer one wins.
            let _ignored = old.tx.send(ConnCmd::Close);
        }
        let present = !connect.clean_session && state.sessions.contains_key(&id);
        if connect.clean_session {
            state.sessions.remove(&id);
        }
        (conn_id, present)
    };
    info!(identity = %id, "Client connected.");
    if write_packet(
        &mut writer,
        &Packet::ConnAck(ConnAck::new(ConnectReturnCode::Success, session_present)),
    )
    .await
    .is_err()
    {
        return unregister(&hub, &id, conn_id);
    }
    let expires_in =
        Duration::from_secs((expiry + hub.info.token_skew.as_secs()).saturating_sub(now()));
    let expired = tokio::time::sleep(expires_in);
    tokio::pin!(expired);
    let mut next_pkid: u16 = 0;
    loop {
        tokio::select! {
            read = reader.read_buf(&mut buf) => {
                match read {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let mut keep = true;
                while keep {
                    match Packet::read(&mut buf, MAX_PACKET) {
                        Ok(packet) => match handle(&hub, &peer, packet) {
                            Ok(replies) => {
                                for reply in replies {
                                    if write_packet(&mut writer, &reply).await.is_err() {
                                        keep = false;
                                    }
                                }
                            }
                            Err(reason) => {
                                warn!(identity = %id, %reason, "Closing connection.");
                                return unregister(&hub, &id, conn_id);
                            }
                        },
                        Err(rumqttc::Error::InsufficientBytes(_)) => break,
                        Err(e) => {
                            warn!(identity = %id, error = %e, "Malformed packet; closing connection.");
                            return unregister(&hub, &id, conn_id);
                        }
                    }
                }
                if !keep {
                    break;
                }
            }
            cmd = rx.recv() => match cmd {
                Some(ConnCmd::Publish { topic, payload }) => {
                    next_pkid = next_pkid.checked_add(1).filter(|p| *p != 0).unwrap_or(1);
                    let mut publish = Publish::new(topic, QoS::AtLeastOnce, payload);
                    publish.pkid = next_pkid;
                    if write_packet(&mut writer, &Packet::Publish(publish)).await.is_err() {
                        break;
                    }
                }
                Some(ConnCmd::Close) | None => break,
            },
            _ = &mut expired => {
                info!(identity = %id, "Token expired; disconnecting the client.");
                break;
            }
        }
    }
    unregister(&hub, &id, conn_id);
}

fn unregister(hub: &Hub, id: &str, conn_id: u64) {
    let mut state = hub.lock();
    if state
        .connections
        .get(id)
        .is_some_and(|c| c.conn_id == conn_id)
    {
        state.connections.remove(id);
        info!(identity = %id, "Client disconnected.");
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

async fn read_packet<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
) -> Result<Packet, rumqttc::Error> {
    loop {
        match Packet::read(buf, MAX_PACKET) {
            Err(rumqttc::Error::InsufficientBytes(_)) => {}
            other => return other,
        }
        match reader.read_buf(buf).await {
            Ok(0) | Err(_) => return Err(rumqttc::Error::MalformedPacket),
            Ok(_) => {}
        }
    }
}

async fn write_packet<W: AsyncWrite + Unpin>(
    writer: &mut W,
    packet: &Packet,
) -> std::io::Result<()> {
    let mut out = BytesMut::new();
    packet
        .write(&mut out, MAX_PACKET)
        .map_err(std::io::Error::other)?;
    writer.write_all(&out).await?;
    writer.flush().await
}

fn authenticate(
    hub: &Hub,
    connect: &rumqttc::Connect,
) -> Result<(Peer, u64), (ConnectReturnCode, AuthError)> {
    let bad = |e: AuthError| (ConnectReturnCode::BadUserNamePassword, e);
    let (username, password) = match &connect.login {
        Some(l) => (l.username.as_str(), l.password.as_str()),
        None => return Err(bad(AuthError::Token("no password".into()))),
    };
    match parse_username(username).map_err(bad)? {
        Claim::Hub {
            device_id,
            module_id,
            ..
        } => {
            let claimed = match &module_id {
                Some(m) => format!("{device_id}/{m}"),
                None => device_id.clone(),
            };
            // edgeHub compares the client id ordinally with the username's identity.
            if connect.client_id != claimed {
                return Err((
                    ConnectReturnCode::BadClientId,
                    AuthError::ClientId {
                        client_id: connect.client_id.clone(),
                        identity: claimed,
                    },
                ));
            }
            let identity = hub.identity(&claimed).ok_or_else(|| {
                (
                    ConnectReturnCode::NotAuthorized,
                    AuthError::UnknownIdentity(claimed.clone()),
                )
            })?;
            let uri = sas::resource_uri(&hub.info.hub_hostname, &device_id, module_id.as_deref());
            let expiry = check_token(
                password,
                &uri,
                &identity.key,
                now(),
                hub.info.token_skew.as_secs(),
            )
            .map_err(bad)?;
            Ok((Peer::Hub(identity), expiry))
        }
        Claim::Dps {
            id_scope,
            registration_id,
        } => {
            let expiry = dps::authenticate(hub, &id_scope, &registration_id, password, now())
                .map_err(bad)?;
            Ok((
                Peer::Dps {
                    id_scope,
                    registration_id,
                },
                expiry,
            ))
        }
    }
}

/// Handles one packet; returns packets to send back, or a reason to close.
fn handle(hub: &Arc<Hub>, peer: &Peer, packet: Packet) -> Result<Vec<Packet>, String> {
    match packet {
        Packet::PingReq => Ok(vec![Packet::PingResp]),
        Packet::Disconnect => Err("client disconnected".into()),
        Packet::PubAck(_) => Ok(vec![]),
        Packet::Subscribe(sub) => {
            let mut codes = Vec::new();
            let mut flush = Vec::new();
            if let Peer::Hub(identity) = peer {
                let mut state = hub.lock();
                let session = state.sessions.entry(identity.id()).or_default();
                for f in &sub.filters {
                    session.subscriptions.insert(f.path.clone());
                    codes.push(SubscribeReasonCode::Success(QoS::AtLeastOnce));
                }
                // Inputs that waited for this module can go now.
                let (ready, waiting): (Vec<_>, Vec<_>) =
                    session.queued.drain(..).partition(|(topic, _)| {
                        session
                            .subscriptions
                            .iter()
                            .any(|f| crate::state::filter_matches(f, topic))
                    });
                session.queued = waiting.into();
                flush = ready;
            } else {
                codes = sub
                    .filters
                    .iter()
                    .map(|_| SubscribeReasonCode::Success(QoS::AtLeastOnce))
                    .collect();
            }
            if let Peer::Hub(identity) = peer {
                for (topic, payload) in flush {
                    hub.deliver_queued(&identity.id(), topic, payload);
                }
            }
            Ok(vec![Packet::SubAck(SubAck::new(sub.pkid, codes))])
        }
        Packet::Publish(publish) => {
            if publish.qos == QoS::ExactlyOnce {
                return Err("QoS 2 is not supported by IoT Hub".into());
            }
            let topic = publish.topic.clone();
            let replies = match peer {
                Peer::Hub(identity) => on_publish(hub, identity, &topic, &publish.payload)?,
                Peer::Dps {
                    id_scope,
                    registration_id,
                } => dps::on_publish(hub, id_scope, registration_id, &topic, &publish.payload),
            };
            let mut out = Vec::new();
            if publish.qos == QoS::AtLeastOnce {
                out.push(Packet::PubAck(PubAck::new(publish.pkid)));
            }
            out.extend(replies);
            Ok(out)
        }
        Packet::Unsubscribe(_) => Ok(vec![]),
        other => Err(format!("unexpected packet {other:?}")),
    }
}

fn reply(topic: String, body: &Value) -> Packet {
    Packet::Publish(Publish::new(
        topic,
        QoS::AtMostOnce,
        body.to_string().into_bytes(),
    ))
}

fn rid_of(query: &str) -> String {
    decode_bag(query).remove("$rid").unwrap_or_default()
}

fn on_publish(
    hub: &Hub,
    identity: &Identity,
    topic: &str,
    payload: &[u8],
) -> Result<Vec<Packet>, String> {
    let id = identity.id();
    let own_base = match &identity.module_id {
        Some(m) => format!(
            "devices/{}/modules/{}/messages/events",
            identity.device_id, m
        ),
        None => format!("devices/{}/messages/events", identity.device_id),
    };
    if let Some(rest) = topic.strip_prefix(&own_base) {
        let bag = rest.trim_start_matches('/').trim_end_matches('/');
        hub.route_message(identity, topic, decode_bag(bag), payload);
        return Ok(vec![]);
    }
    if topic.starts_with("devices/") {
        // edgeHub takes routing identity from the topic; another identity's topic is refused.
        return Err(format!("publish to a topic of another identity: {topic}"));
    }
    if let Some(query) = topic.strip_prefix("$iothub/twin/GET/?") {
        let doc = twin_document(hub.lock().twins.get(&id));
        return Ok(vec![reply(
            format!("$iothub/twin/res/200/?$rid={}", rid_of(query)),
            &doc,
        )]);
    }
    if let Some(query) = topic.strip_prefix("$iothub/twin/PATCH/properties/reported/?") {
        let rid = rid_of(query);
        let Ok(patch @ Value::Object(_)) = serde_json::from_slice::<Value>(payload) else {
            return Ok(vec![reply(
                format!("$iothub/twin/res/400/?$rid={rid}"),
                &serde_json::json!({"message": "reported patch must be a JSON object"}),
            )]);
        };
        let mut state = hub.lock();
        let twin = state.twins.entry(id).or_default();
        let mut merged = twin.reported.clone();
        merge_patch(&mut merged, &patch);
        if let Err(e) = crate::limits::check("reported", &patch, &merged) {
            debug!(error = %e, "Reported patch refused.");
            state.refused_reported += 1;
            return Ok(vec![reply(
                format!("$iothub/twin/res/400/?$rid={rid}"),
                &serde_json::json!({"message": e.to_string()}),
            )]);
        }
        twin.reported = merged;
        // A new twin's reported section is at $version 1, so the first patch makes 2.
        twin.reported_version = twin.reported_version.max(1) + 1;
        // edgeHub answers 204 without $version (IoT Hub would include it).
        return Ok(vec![Packet::Publish(Publish::new(
            format!("$iothub/twin/res/204/?$rid={rid}"),
            QoS::AtMostOnce,
            Vec::new(),
        ))]);
    }
    if let Some(rest) = topic.strip_prefix("$iothub/methods/res/") {
        let (status, query) = rest.split_once("/?").unwrap_or((rest, ""));
        let status: u16 = status
            .parse()
            .map_err(|_| format!("bad method status in {topic}"))?;
        let body = serde_json::from_slice(payload).unwrap_or(Value::Null);
        if let Some(waiter) = hub.lock().method_waiters.remove(&rid_of(query)) {
            let _ignored = waiter.send((status, body));
        }
        return Ok(vec![]);
    }
    debug!(%topic, "Ignoring publish on an unknown topic.");
    Ok(vec![])
}
