//! The Modbus side of a device's poll loop (the loop itself, its schedule, backoff and
//! health, is `bridge_core::device::poll`): read the device's points, publish one
//! telemetry message per cycle (or only changed points), report static facts.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use bridge_core::device::DeviceRoute;
pub use bridge_core::device::poll::PollStats;
use bridge_core::device::poll::{Cycle, Poll, PollCx};
use bridge_core::message::Message;
use bridge_core::report::{Memory, Reportable};
use bridge_core::time::rfc3339;
use serde_json::{Map, Value};

use crate::codec::Reading;
use crate::config::Report;
use crate::device::DeviceEntry;

impl Reportable for Reading {
    fn number(&self) -> Option<f64> {
        match self {
            Reading::Bool(_) => None,
            other => other.as_f64(),
        }
    }
}

/// Report-on-change memory of one device, pure.
#[derive(Debug, Default)]
pub struct ChangeFilter(Memory<Reading>);

impl ChangeFilter {
    /// Which of `values` to send now.
    pub fn select(
        &mut self,
        report: &Report,
        values: BTreeMap<String, Reading>,
        now: Instant,
    ) -> BTreeMap<String, Reading> {
        values
            .into_iter()
            .filter(|(name, value)| self.0.offer(report, name, value, now))
            .collect()
    }
}

/// One Modbus device's poll.
#[derive(Debug)]
pub struct ModbusPoll {
    entry: Arc<DeviceEntry>,
    route: DeviceRoute,
    stats: Arc<PollStats>,
    filter: ChangeFilter,
    facts_sent: Option<Value>,
    /// SunSpec devices (`"map": "sunspec"`) are polled by discovery instead.
    sunspec: Option<crate::sunspec::poll::SunSpecPoll>,
}

impl ModbusPoll {
    /// Polls `entry`, publishing through `route`.
    pub fn new(entry: Arc<DeviceEntry>, route: DeviceRoute, stats: Arc<PollStats>) -> Self {
        let sunspec = crate::sunspec::is_sunspec(&entry.device.map).then(|| {
            crate::sunspec::poll::SunSpecPoll::new(entry.clone(), route.clone(), stats.clone())
        });
        Self {
            entry,
            route,
            stats,
            filter: ChangeFilter::default(),
            facts_sent: None,
            sunspec,
        }
    }
}

impl Poll for ModbusPoll {
    async fn poll(&mut self, polled_at: SystemTime, _cx: &mut PollCx<'_>) -> Cycle {
        crate::hooks::poll_cycle(&self.entry.device.id).await;
        if let Some(sunspec) = &mut self.sunspec {
            return sunspec.poll(polled_at).await;
        }
        let device = &self.entry.device;
        // Every request of this cycle carries the cycle's start as its deadline, so on a
        // busy bus a device's later blocks go before cycles that started after it.
        let outcome = crate::bus::queue::POLL_DUE
            .scope(tokio::time::Instant::now(), self.entry.read(&device.wanted))
            .await;
        self.stats
            .requests
            .fetch_add(u64::from(outcome.requests), Ordering::Relaxed);
        if let Some(err) = &outcome.unreachable
            && outcome.values.is_empty()
        {
            return Cycle::Unreachable(err.to_string());
        }
        let map = &device.map;
        // With its own identity a writable point is a writable property of the device
        // (see models.rs), not telemetry.
        let own_twin = self.route.own_identity();
        let polled_text = rfc3339(polled_at);
        let mut facts = Map::new();
        let mut published = Vec::with_capacity(outcome.values.len());
        for (&i, v) in &outcome.values {
            let p = &map.points[i];
            if p.spec.static_fact {
                facts.insert(p.name.clone(), v.to_json());
            } else if p.spec.publish && !(own_twin && p.spec.writable) {
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
            for (name, value) in self.filter.select(&device.report, values, Instant::now()) {
                push(&name, &value);
            }
        } else {
            for (name, value) in published {
                push(name, value);
            }
        }
        if count > 0 {
            body.push('}');
            let msg = Message::json_text("telemetry", body, polled_text);
            self.stats.values.fetch_add(count, Ordering::Relaxed);
            if self.route.send(msg).await.is_err() {
                return Cycle::Stop;
            }
        }
        let facts = Value::Object(facts);
        if facts.as_object().is_some_and(|f| !f.is_empty())
            && self.facts_sent.as_ref() != Some(&facts)
        {
            self.route.facts(facts.clone());
            self.facts_sent = Some(facts);
        }
        Cycle::Answered {
            error: outcome.errors.values().next().map(ToString::to_string),
        }
    }
}

/// Longest pause between polls of an offline device: its poll interval plus 2 s. The bus
/// answers at once while it is disconnected (it probes on its own), so this only limits
/// how often a silent device behind a live connection costs a timeout; it also bounds
/// how late a device that is back is polled again, whatever the outage's length.
pub fn offline_retry_cap(poll_interval: std::time::Duration) -> std::time::Duration {
    poll_interval + std::time::Duration::from_secs(2)
}

/// How long a poller may go without finishing a cycle while its bus finishes no request
/// either, before the watchdog restarts it: three times the longest wait between two
/// such events (the offline retry cap plus one request's timeout) and 10 s of slack.
pub fn stall_limit(
    poll_interval: std::time::Duration,
    timeout: std::time::Duration,
) -> std::time::Duration {
    (offline_retry_cap(poll_interval) + timeout) * 3 + std::time::Duration::from_secs(10)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
