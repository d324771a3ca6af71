//! One task per device: poll on its interval, publish one telemetry message per cycle
//! (or only changed points), track health, back off when the device is unreachable.
//! A failing device only slows itself down; other devices have their own tasks.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bridge_core::forwarder::TelemetrySender;
use bridge_core::hub::Message;
use bridge_core::runtime::Reporter;
use bridge_core::time::rfc3339;
use bridge_core::upstream::Backoff;
use serde_json::{Map, Value, json};
use tracing::{info, warn};

use crate::bus::BusError;
use crate::codec::Reading;
use crate::config::Report;
use crate::device::DeviceEntry;
use bridge_core::report::Change;

/// Counters for benchmarks and health.
#[derive(Debug, Default)]
pub struct PollStats {
    /// Completed poll cycles.
    pub polls: AtomicU64,
    /// Modbus requests made.
    pub requests: AtomicU64,
    /// Values published.
    pub values: AtomicU64,
    /// Failed cycles.
    pub failures: AtomicU64,
    /// Sum of start lateness in µs (jitter).
    pub lateness_us: AtomicU64,
    /// Largest start lateness in µs.
    pub max_lateness_us: AtomicU64,
    /// 1 while the device answers, 0 when offline.
    pub online: AtomicU64,
    /// Time spent in poll cycles (all requests and waits), µs.
    pub poll_us: AtomicU64,
}

/// Report-on-change memory of one device: what was last sent and when, pure.
#[derive(Debug, Default)]
pub struct ChangeFilter {
    last: HashMap<String, (Reading, Instant)>,
}

impl ChangeFilter {
    /// Which of `values` to send now.
    pub fn select(
        &mut self,
        report: &Report,
        values: BTreeMap<String, Reading>,
        now: Instant,
    ) -> BTreeMap<String, Reading> {
        if !report.on_change {
            return values;
        }
        values
            .into_iter()
            .filter(|(name, value)| {
                let (change, since) = match self.last.get(name) {
                    None => (Change::First, Duration::ZERO),
                    Some((prev, at)) => (
                        match (prev.as_f64(), value.as_f64()) {
                            (Some(a), Some(b)) if !matches!(value, Reading::Bool(_)) => {
                                Change::Numeric(a, b)
                            }
                            _ => Change::Other {
                                same: prev == value,
                            },
                        },
                        now.duration_since(*at),
                    ),
                };
                let send = report.send(name, change, since);
                if send {
                    self.last.insert(name.clone(), (value.clone(), now));
                }
                send
            })
            .collect()
    }
}

/// Device health as reported.
#[derive(Debug, Clone, PartialEq)]
struct Health {
    online: bool,
    last_error: Option<String>,
    last_success: Option<String>,
    consecutive_failures: u32,
}

impl Health {
    fn to_json(&self) -> Value {
        json!({
            "state": if self.online { "online" } else { "offline" },
            "lastError": self.last_error,
            "lastSuccess": self.last_success,
            "consecutiveFailures": self.consecutive_failures,
        })
    }
}

/// Runs the poll loop of one device until its task is aborted (it holds no cancellation
/// token: polling one on every cycle cost several percent of CPU at 2000 devices).
/// `own_twin`: the device has its own identity, so health and facts go to its own twin
/// (`health`, `facts`) instead of the module's (`deviceHealth.<id>`, `deviceFacts.<id>`).
pub async fn run(
    entry: Arc<DeviceEntry>,
    telemetry: TelemetrySender,
    reporter: Reporter,
    own_twin: bool,
    stats: Arc<PollStats>,
) {
    let device = &entry.device;
    let id = device.id.clone();
    let mut filter = ChangeFilter::default();
    let mut health: Option<Health> = None;
    let mut backoff = Backoff::new(
        device.poll_interval,
        offline_retry_cap(device.poll_interval),
    );
    let mut facts_sent: Option<Value> = None;
    // Spread devices over the interval so a thousand devices do not poll in one burst,
    // in 25 ms slots so the runtime wakes once per slot for a batch of devices rather
    // than once per device: replies and publishes then come in batches too. Measured at
    // 2000 devices: 10 ms slots 2.0-2.5 µs/value, 25 ms 1.4-1.5, 100 ms 1.4-1.6 with
    // higher latency (`cargo bench --bench modbus_scale`).
    let slot = Duration::from_millis(25);
    let slots = (device.poll_interval.as_millis() / slot.as_millis()).max(1) as u64;
    let phase = slot * (hash(&id) % slots) as u32;
    let mut next = tokio::time::Instant::now() + phase;
    // One timer entry, re-armed each cycle.
    let tick = tokio::time::sleep_until(next);
    tokio::pin!(tick);
    loop {
        tick.as_mut().reset(next);
        (&mut tick).await;
        let late = tokio::time::Instant::now().saturating_duration_since(next);
        stats
            .lateness_us
            .fetch_add(late.as_micros() as u64, Ordering::Relaxed);
        stats
            .max_lateness_us
            .fetch_max(late.as_micros() as u64, Ordering::Relaxed);
        crate::hooks::poll_cycle(&id).await;
        let polled_at = SystemTime::now();
        let started = Instant::now();
        let outcome = entry.read(&device.wanted).await;
        stats
            .poll_us
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        stats.polls.fetch_add(1, Ordering::Relaxed);
        stats
            .requests
            .fetch_add(u64::from(outcome.requests), Ordering::Relaxed);
        let map = &device.map;
        let previous = health.clone();
        let h = health.get_or_insert(Health {
            online: false,
            last_error: None,
            last_success: None,
            consecutive_failures: 0,
        });
        if let Some(err) = &outcome.unreachable
            && outcome.values.is_empty()
        {
            stats.failures.fetch_add(1, Ordering::Relaxed);
            h.online = false;
            h.last_error = Some(err.to_string());
            h.consecutive_failures += 1;
            next = tokio::time::Instant::now()
                + offline_retry(err, device.poll_interval, &mut backoff);
        } else {
            backoff.reset();
            h.online = true;
            h.consecutive_failures = 0;
            let polled_text = rfc3339(polled_at);
            h.last_success = Some(polled_text.clone());
            h.last_error = outcome.errors.values().next().map(ToString::to_string);
            let mut facts = Map::new();
            let mut published = Vec::with_capacity(outcome.values.len());
            for (&i, v) in &outcome.values {
                let p = &map.points[i];
                if p.spec.static_fact {
                    facts.insert(p.name.clone(), v.to_json());
                } else if p.spec.publish && !(own_twin && p.spec.writable) {
                    // With its own identity a writable point is a writable property of the
                    // device (see models.rs), not telemetry.
                    published.push((p.name.as_str(), v));
                }
            }
            // Hot path: write the flat JSON body directly, no intermediate Value.
            let mut body = String::with_capacity(24 * published.len() + 2);
            let mut count = 0;
            let mut push = |name: &str, value: &Reading| {
                body.push(if count == 0 { '{' } else { ',' });
                // Point names are validated identifiers: nothing to escape.
                body.push('"');
                body.push_str(name);
                body.push_str("\":");
                value.write_json(&mut body);
                count += 1;
            };
            if device.report.on_change {
                let values = published
                    .iter()
                    .map(|(n, v)| ((*n).to_owned(), (*v).clone()))
                    .collect();
                for (name, value) in filter.select(&device.report, values, Instant::now()) {
                    push(&name, &value);
                }
            } else {
                for (name, value) in published {
                    push(name, value);
                }
            }
            if count > 0 {
                body.push('}');
                let msg = Message::json_text("telemetry", body, polled_text).for_device(&id);
                stats.values.fetch_add(count, Ordering::Relaxed);
                if telemetry.send(msg).await.is_err() {
                    return;
                }
            }
            let facts = Value::Object(facts);
            if facts.as_object().is_some_and(|f| !f.is_empty())
                && facts_sent.as_ref() != Some(&facts)
            {
                reporter.report(if own_twin {
                    json!({"facts": facts.clone()})
                } else {
                    json!({"deviceFacts": {id.clone(): facts.clone()}})
                });
                facts_sent = Some(facts);
            }
            next += device.poll_interval;
            // Fell behind (slow device): skip missed cycles rather than bursting.
            let now = tokio::time::Instant::now();
            if next < now {
                next = now + device.poll_interval;
            }
        }
        stats.online.store(u64::from(h.online), Ordering::Relaxed);
        let changed_state = previous.as_ref().map(|p| p.online) != Some(h.online);
        if changed_state {
            if h.online {
                info!(device = %id, "Device online.");
            } else {
                warn!(device = %id, error = h.last_error.as_deref().unwrap_or(""), "Device offline.");
            }
            let mut status = h.to_json();
            status["deviceId"] = json!(id);
            let msg = Message::json("status", &status).for_device(&id);
            if telemetry.send(msg).await.is_err() {
                return;
            }
            reporter.report(if own_twin {
                json!({"health": h.to_json()})
            } else {
                json!({"deviceHealth": {id.clone(): h.to_json()}})
            });
        }
    }
}

/// When to poll an offline device again. Only silence backs off: a timeout costs the
/// shared bus its whole length. Connect and I/O failures come back at once from the bus
/// (which probes on its own while disconnected), so they are retried every interval.
pub fn offline_retry(err: &BusError, poll_interval: Duration, backoff: &mut Backoff) -> Duration {
    if matches!(err, BusError::Timeout(_)) {
        backoff.next_delay()
    } else {
        backoff.reset();
        poll_interval
    }
}

/// How long a poller may go without finishing a cycle while its bus finishes no request
/// either, before the watchdog restarts it: three times the longest wait between two
/// such events (the offline retry cap plus one request's timeout) and 10 s of slack.
pub fn stall_limit(poll_interval: Duration, timeout: Duration) -> Duration {
    (offline_retry_cap(poll_interval) + timeout) * 3 + Duration::from_secs(10)
}

/// Longest pause between polls of an offline device: its poll interval plus 2 s. The bus
/// answers at once while it is disconnected (it probes on its own), so this only limits
/// how often a silent device behind a live connection costs a timeout; it also bounds
/// how late a device that is back is polled again, whatever the outage's length.
pub fn offline_retry_cap(poll_interval: Duration) -> Duration {
    poll_interval + Duration::from_secs(2)
}

fn hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offline_devices_are_retried_promptly() {
        let poll = Duration::from_millis(500);
        let mut b = Backoff::new(poll, offline_retry_cap(poll));
        let timeout = BusError::Timeout(poll);
        let delays: Vec<Duration> = (0..20)
            .map(|_| offline_retry(&timeout, poll, &mut b))
            .collect();
        assert!(
            delays.iter().all(|d| *d <= Duration::from_millis(2500)),
            "{delays:?}"
        );
        assert!(
            delays[5] >= Duration::from_secs(2),
            "silence backs off: {delays:?}"
        );
        let refused = BusError::Connect("refused".into());
        assert_eq!(offline_retry(&refused, poll, &mut b), poll);
        assert_eq!(b.current(), poll, "a refusal resets the backoff");
    }

    fn vals(v: &[(&str, f64)]) -> BTreeMap<String, Reading> {
        v.iter()
            .map(|(k, x)| (k.to_string(), Reading::Float(*x)))
            .collect()
    }

    #[test]
    fn deadband_and_max_silence() {
        let report = Report {
            on_change: true,
            deadband: 0.5,
            point_deadbands: [("p".to_string(), 2.0)].into(),
            max_silence_ms: 10_000,
            ..Report::default()
        };
        let mut f = ChangeFilter::default();
        let t0 = Instant::now();
        assert_eq!(
            f.select(&report, vals(&[("v", 230.0), ("p", 10.0)]), t0)
                .len(),
            2,
            "first values always go"
        );
        let sent = f.select(
            &report,
            vals(&[("v", 230.4), ("p", 11.5)]),
            t0 + Duration::from_secs(1),
        );
        assert!(sent.is_empty(), "{sent:?}");
        let sent = f.select(
            &report,
            vals(&[("v", 230.6), ("p", 11.5)]),
            t0 + Duration::from_secs(2),
        );
        assert_eq!(sent.keys().collect::<Vec<_>>(), ["v"]);
        let sent = f.select(
            &report,
            vals(&[("v", 230.6), ("p", 10.0)]),
            t0 + Duration::from_secs(11),
        );
        assert_eq!(
            sent.keys().collect::<Vec<_>>(),
            ["p"],
            "p was silent for 11 s; v was sent 9 s ago"
        );
        let always = Report::default();
        assert_eq!(f.select(&always, vals(&[("v", 1.0)]), t0).len(), 1);
    }
}
