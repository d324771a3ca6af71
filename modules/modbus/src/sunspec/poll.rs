//! The poll loop of a SunSpec device: discover (again after any failure or a change of
//! the model list), read every model, publish. Health, facts and the status output have
//! the same shape as for map-based devices (`poller.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use bridge_core::forwarder::TelemetrySender;
use bridge_core::hub::{Message, MethodResponse};
use bridge_core::runtime::Reporter;
use bridge_core::time::rfc3339;
use bridge_core::upstream::Backoff;
use serde_json::{Map, Value, json};
use tracing::{info, warn};

use super::decode::decode_model;
use super::defs::model_def;
use super::discover::{Chain, Reader, SunSpecError};
use crate::bus::BusError;
use crate::codec::Reading;
use crate::device::DeviceEntry;
use crate::poller::{ChangeFilter, PollStats};

/// What one cycle read.
#[derive(Debug, Default, PartialEq)]
pub struct Decoded {
    /// Telemetry values by name (every model but the common model).
    pub values: BTreeMap<String, Reading>,
    /// The common model's points (manufacturer, model, serial number...).
    pub facts: Map<String, Value>,
    /// Models in the chain without a bundled definition.
    pub unknown: Vec<u16>,
    /// Models the device refused to read (with a Modbus exception), skipped this time.
    pub refused: Vec<String>,
}

/// Decodes the registers of every model of `chain` (`blocks[i]` for `chain.models[i]`).
pub fn decode_chain(chain: &Chain, blocks: &[Vec<u16>]) -> Decoded {
    let mut out = Decoded::default();
    let mut seen: BTreeMap<u16, usize> = BTreeMap::new();
    for (m, regs) in chain.models.iter().zip(blocks) {
        let instance = seen.entry(m.id).or_default();
        *instance += 1;
        let Ok(def) = model_def(m.id) else {
            out.unknown.push(m.id);
            continue;
        };
        for f in decode_model(&def, *instance, regs) {
            let Some(v) = f.value else { continue };
            if m.id == 1 && *instance == 1 {
                out.facts.insert(f.name, v.to_json());
            } else {
                out.values.insert(f.name, v);
            }
        }
    }
    out
}

/// Discovers if needed and reads every model once. On any failure the chain is
/// forgotten, so it is walked again on the next success (the device may have restarted
/// with other models).
pub async fn read_all(
    reader: &mut Reader<'_>,
    chain: &mut Option<Chain>,
) -> Result<Decoded, SunSpecError> {
    for attempt in 0..2 {
        if chain.is_none() {
            let found = reader.discover().await?;
            info!(base = found.base, models = ?found.ids(), "SunSpec models discovered.");
            *chain = Some(found);
        }
        let Some(c) = chain.as_ref() else { continue };
        let mut blocks = Vec::with_capacity(c.models.len());
        let mut failed = None;
        let mut refused = Vec::new();
        for (i, m) in c.models.iter().enumerate() {
            match reader.read_model(m, i + 1 == c.models.len()).await {
                Ok(regs) => blocks.push(regs),
                // One model the device will not serve does not hide the others.
                Err(SunSpecError::Bus(e @ BusError::Exception(_))) => {
                    refused.push(format!("Model {} at register {}: {e}", m.id, m.address));
                    blocks.push(Vec::new());
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        match failed {
            None if refused.len() == c.models.len() => {
                *chain = None;
                return Err(SunSpecError::BadChain(refused.join("; ")));
            }
            None => {
                let mut decoded = decode_chain(c, &blocks);
                decoded.refused = refused;
                return Ok(decoded);
            }
            Some(e @ SunSpecError::Changed(_)) if attempt == 0 => {
                info!(error = %e, "SunSpec model list changed.");
                *chain = None;
            }
            Some(e) => {
                *chain = None;
                return Err(e);
            }
        }
    }
    Err(SunSpecError::BadChain(
        "the model list keeps changing".into(),
    ))
}

/// The `read` direct method for a SunSpec device: discovers and reads every model now;
/// `points` (optional) selects names. 200 with `values` (facts included) or the error.
pub async fn read_method(entry: &DeviceEntry, req: &Value) -> MethodResponse {
    let d = &entry.device;
    let mut reader = Reader::new(&entry.bus, d.unit_id, d.timeout, d.limits.max_registers);
    let mut chain = None;
    let decoded = match read_all(&mut reader, &mut chain).await {
        Ok(decoded) => decoded,
        Err(SunSpecError::Bus(BusError::Timeout(t))) => {
            return MethodResponse::error(504, format!("No response within {t:?}."));
        }
        Err(e) => return MethodResponse::error(502, e.to_string()),
    };
    let wanted: Option<Vec<&str>> = req
        .get("points")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect());
    let mut values = decoded.facts;
    values.extend(decoded.values.into_iter().map(|(k, v)| (k, v.to_json())));
    values.retain(|k, _| wanted.as_ref().is_none_or(|w| w.contains(&k.as_str())));
    let errors: Map<String, Value> = wanted
        .iter()
        .flatten()
        .filter(|w| !values.contains_key(**w))
        .map(|w| {
            (
                (*w).to_owned(),
                json!("Not implemented by the device, or no such point."),
            )
        })
        .collect();
    MethodResponse::ok(json!({"values": values, "errors": errors}))
}

/// Runs the poll loop of a SunSpec device until its task is aborted.
pub async fn run(
    entry: Arc<DeviceEntry>,
    telemetry: TelemetrySender,
    reporter: Reporter,
    own_twin: bool,
    stats: Arc<PollStats>,
) {
    let device = &entry.device;
    let id = device.id.clone();
    let mut chain: Option<Chain> = None;
    let mut filter = ChangeFilter::default();
    let mut backoff = Backoff::new(
        device.poll_interval,
        device.poll_interval.max(std::time::Duration::from_secs(60)),
    );
    let mut online: Option<bool> = None;
    let mut failures = 0u32;
    let mut last_success: Option<String> = None;
    let mut last_error: Option<String>;
    let mut facts_sent: Option<Map<String, Value>> = None;
    let mut unknown_logged = false;
    let mut next = tokio::time::Instant::now();
    loop {
        tokio::time::sleep_until(next).await;
        let polled_at = SystemTime::now();
        let started = Instant::now();
        let mut reader = Reader::new(
            &entry.bus,
            device.unit_id,
            device.timeout,
            device.limits.max_registers,
        );
        let result = read_all(&mut reader, &mut chain).await;
        stats
            .poll_us
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        stats.polls.fetch_add(1, Ordering::Relaxed);
        stats
            .requests
            .fetch_add(u64::from(reader.requests), Ordering::Relaxed);
        let was = online;
        match result {
            Err(e) => {
                stats.failures.fetch_add(1, Ordering::Relaxed);
                failures += 1;
                last_error = Some(e.to_string());
                online = Some(false);
                if !e.unreachable() && failures == 1 {
                    warn!(device = %id, error = %e, "SunSpec device not usable.");
                }
                next = tokio::time::Instant::now() + backoff.next_delay();
            }
            Ok(decoded) => {
                backoff.reset();
                failures = 0;
                last_error = decoded.refused.first().cloned();
                online = Some(true);
                let polled_text = rfc3339(polled_at);
                last_success = Some(polled_text.clone());
                if !decoded.unknown.is_empty() && !unknown_logged {
                    warn!(device = %id, models = ?decoded.unknown, "SunSpec models without a bundled definition are skipped.");
                    unknown_logged = true;
                }
                let values = filter.select(&device.report, decoded.values, Instant::now());
                if !values.is_empty() {
                    let mut body = String::with_capacity(24 * values.len() + 2);
                    for (i, (name, value)) in values.iter().enumerate() {
                        body.push(if i == 0 { '{' } else { ',' });
                        body.push('"');
                        body.push_str(name);
                        body.push_str("\":");
                        value.write_json(&mut body);
                    }
                    body.push('}');
                    stats
                        .values
                        .fetch_add(values.len() as u64, Ordering::Relaxed);
                    let msg = Message::json_text("telemetry", body, polled_text).for_device(&id);
                    if telemetry.send(msg).await.is_err() {
                        return;
                    }
                }
                if !decoded.facts.is_empty() && facts_sent.as_ref() != Some(&decoded.facts) {
                    let facts = Value::Object(decoded.facts.clone());
                    reporter.report(if own_twin {
                        json!({"facts": facts})
                    } else {
                        json!({"deviceFacts": {id.clone(): facts}})
                    });
                    facts_sent = Some(decoded.facts);
                }
                next += device.poll_interval;
                let now = tokio::time::Instant::now();
                if next < now {
                    next = now + device.poll_interval;
                }
            }
        }
        let is_online = online == Some(true);
        stats.online.store(u64::from(is_online), Ordering::Relaxed);
        if was != online {
            if is_online {
                info!(device = %id, "Device online.");
            } else {
                warn!(device = %id, error = last_error.as_deref().unwrap_or(""), "Device offline.");
            }
            let health = json!({
                "state": if is_online { "online" } else { "offline" },
                "lastError": last_error,
                "lastSuccess": last_success,
                "consecutiveFailures": failures,
            });
            let mut status = health.clone();
            status["deviceId"] = json!(id);
            if telemetry
                .send(Message::json("status", &status).for_device(&id))
                .await
                .is_err()
            {
                return;
            }
            reporter.report(if own_twin {
                json!({"health": health})
            } else {
                json!({"deviceHealth": {id.clone(): health}})
            });
        }
    }
}
