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
        device.poll_interval.max(Duration::from_secs(60)),
    );
    let mut facts_sent: Option<Value> = None;
    // Spread devices over the interval so a thousand devices do not poll in one burst,
    // in 25 ms slots so the runtime wakes once per slot for a batch of devices rather
    // than once per device: replies and publishes then come in batches too. Measured at
    // 2000 devices: 10 ms slots 2.0-2.5 µs/value, 25 ms 1.4-1.5, 100 ms 1.4-1.6 with
    // higher latency (`cargo bench --bench modbus_scale`).
    // The first poll goes out at once (users wait for the first reading after a
    // deployment or restart); the slot schedule starts from the second.
    let slot = Duration::from_millis(25);
    let slots = (device.poll_interval.as_millis() / slot.as_millis()).max(1) as u64;
    let phase = slot * (hash(&id) % slots) as u32;
    let started_at = tokio::time::Instant::now();
    let mut next = started_at;
    let mut first = true;
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
        let polled_at = SystemTime::now();
        let started = Instant::now();
        // Requests carry the poll's deadline: the bus serves the most overdue first.
        let outcome = crate::bus::queue::POLL_DUE
            .scope(next, entry.read(&device.wanted))
            .await;
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
            next = tokio::time::Instant::now() + backoff.next_delay();
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
            next = if first {
                first_slot(started_at + phase, device.poll_interval, next)
            } else {
                next + device.poll_interval
            };
            first = false;
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

/// The slot-schedule time (`anchor` + k × `interval`) that follows an immediate first
/// poll made at `first`: at least half an interval later, so the second poll is never
/// a near-duplicate of the first.
fn first_slot(
    anchor: tokio::time::Instant,
    interval: Duration,
    first: tokio::time::Instant,
) -> tokio::time::Instant {
    let earliest = first + interval / 2;
    if anchor >= earliest {
        return anchor;
    }
    let behind = earliest - anchor;
    let steps = behind.as_nanos().div_ceil(interval.as_nanos().max(1));
    anchor + interval * u32::try_from(steps).unwrap_or(u32::MAX)
}

fn hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vals(v: &[(&str, f64)]) -> BTreeMap<String, Reading> {
        v.iter()
            .map(|(k, x)| (k.to_string(), Reading::Float(*x)))
            .collect()
    }

    #[test]
    fn after_the_immediate_first_poll_devices_keep_their_slot() {
        let t0 = tokio::time::Instant::now();
        let s = Duration::from_secs(1);
        let ms = Duration::from_millis;
        // Phase 750 ms: the second poll is at the slot itself.
        assert_eq!(first_slot(t0 + ms(750), s, t0), t0 + ms(750));
        // Phase 100 ms is too close to the first poll: the next slot instead.
        assert_eq!(first_slot(t0 + ms(100), s, t0), t0 + ms(1100));
        // Phase 0.
        assert_eq!(first_slot(t0, s, t0), t0 + s);
        // Every result is on the grid and at least half an interval after the first poll.
        for phase in (0..1000).step_by(25) {
            let t = first_slot(t0 + ms(phase), s, t0 + ms(3));
            assert!(t >= t0 + ms(503), "{phase}");
            assert_eq!((t - t0 - ms(phase)).as_millis() % 1000, 0, "{phase}");
        }
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
