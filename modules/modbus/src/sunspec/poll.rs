//! The poll of a SunSpec device: discover (again after any failure or a change of the
//! model list), read every model, publish; and its `read` method.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use bridge_core::device::DeviceRoute;
use bridge_core::device::poll::{Cycle, PollStats};
use bridge_core::message::Message;
use bridge_core::methods::MethodResponse;
use bridge_core::time::rfc3339;
use serde_json::{Map, Value, json};
use tracing::{info, warn};

use super::decode::decode_model;
use super::defs::model_def;
use super::discover::{Chain, Reader, SunSpecError};
use crate::bus::BusError;
use crate::codec::Reading;
use crate::device::DeviceEntry;
use crate::poller::ChangeFilter;

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

/// The poll of a SunSpec device (the loop, schedule, backoff and health are
/// `bridge_core::device::poll`; `crate::poller::ModbusPoll` hands SunSpec devices here).
#[derive(Debug)]
pub struct SunSpecPoll {
    entry: Arc<DeviceEntry>,
    route: DeviceRoute,
    stats: Arc<PollStats>,
    chain: Option<Chain>,
    filter: ChangeFilter,
    facts_sent: Option<Map<String, Value>>,
    unknown_logged: bool,
}

impl SunSpecPoll {
    /// Polls `entry`, publishing through `route`.
    pub fn new(entry: Arc<DeviceEntry>, route: DeviceRoute, stats: Arc<PollStats>) -> Self {
        Self {
            entry,
            route,
            stats,
            chain: None,
            filter: ChangeFilter::default(),
            facts_sent: None,
            unknown_logged: false,
        }
    }

    /// One cycle: discover if needed, read every model, publish.
    pub async fn poll(&mut self, polled_at: SystemTime) -> Cycle {
        let device = &self.entry.device;
        let mut reader = Reader::new(
            &self.entry.bus,
            device.unit_id,
            device.timeout,
            device.limits.max_registers,
        );
        let result = read_all(&mut reader, &mut self.chain).await;
        self.stats
            .requests
            .fetch_add(u64::from(reader.requests), Ordering::Relaxed);
        let decoded = match result {
            Ok(d) => d,
            // Not SunSpec, or a broken chain: the device answers, but is not usable.
            // Unreachable, or not SunSpec / a broken chain: offline with the reason.
            Err(e) => return Cycle::Unreachable(e.to_string()),
        };
        if !decoded.unknown.is_empty() && !self.unknown_logged {
            warn!(device = %device.id, models = ?decoded.unknown, "SunSpec models without a bundled definition are skipped.");
            self.unknown_logged = true;
        }
        let values = self
            .filter
            .select(&device.report, decoded.values, Instant::now());
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
            self.stats
                .values
                .fetch_add(values.len() as u64, Ordering::Relaxed);
            let msg = Message::json_text("telemetry", body, rfc3339(polled_at));
            if self.route.send(msg).await.is_err() {
                return Cycle::Stop;
            }
        }
        if !decoded.facts.is_empty() && self.facts_sent.as_ref() != Some(&decoded.facts) {
            self.route.facts(Value::Object(decoded.facts.clone()));
            self.facts_sent = Some(decoded.facts);
        }
        Cycle::Answered {
            error: decoded.refused.first().cloned(),
        }
    }
}
