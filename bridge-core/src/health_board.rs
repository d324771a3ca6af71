//! Per-device health for the module twin, kept within IoT Hub's 32 KiB reported section
//! and calm when a device flaps. Pure: the caller supplies the time.
//!
//! - Small installations (up to `full_list_max` devices) list every device under
//!   `deviceHealth.<id>`, as before. Larger ones list only devices with a problem
//!   (state other than online/seen/connected), at most `max_listed`, and
//!   `deviceHealthSummary` says how many are online and offline and whether the list
//!   is truncated. Entries of devices that recovered or went away are removed (`null`).
//! - Each device's entry changes on the hub at most once per `min_interval`; a change
//!   inside the interval waits, and the latest state is always reported when it ends.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

/// Settings of the board.
#[derive(Debug, Clone, Copy)]
pub struct BoardLimits {
    /// With at most this many devices, every device is listed.
    pub full_list_max: usize,
    /// Beyond that, at most this many problem devices are listed.
    pub max_listed: usize,
    /// A device's entry is reported at most this often.
    pub min_interval: Duration,
}

impl Default for BoardLimits {
    fn default() -> Self {
        // ~200 bytes per entry: 50 or 100 entries stay far below 32 KiB.
        Self {
            full_list_max: 50,
            max_listed: 100,
            min_interval: Duration::from_secs(5),
        }
    }
}

#[derive(Debug)]
struct Device {
    detail: Value,
    healthy: bool,
    /// What the hub shows now (`None`: not listed).
    shown: Option<Value>,
    last_sent: Option<Instant>,
}

/// The health board of one module twin.
#[derive(Debug)]
pub struct HealthBoard {
    limits: BoardLimits,
    devices: BTreeMap<String, Device>,
    /// Removed devices whose entry must be cleared on the hub.
    gone: BTreeSet<String>,
    summary_shown: Option<Value>,
    summary_sent: Option<Instant>,
    /// A changed summary is waiting for [`SUMMARY_INTERVAL`].
    summary_waiting: bool,
}

/// The summary's counts change with every device: send them at most this often.
const SUMMARY_INTERVAL: Duration = Duration::from_secs(1);

/// True for the states that are not a problem.
pub fn healthy_state(detail: &Value) -> bool {
    matches!(
        detail.get("state").and_then(Value::as_str),
        Some("online" | "seen" | "connected")
    )
}

impl HealthBoard {
    /// An empty board.
    pub fn new(limits: BoardLimits) -> Self {
        Self {
            limits,
            devices: BTreeMap::new(),
            gone: BTreeSet::new(),
            summary_shown: None,
            summary_sent: None,
            summary_waiting: false,
        }
    }

    /// Records a device's latest health (`null` removes the device).
    pub fn update(&mut self, id: &str, detail: Value) {
        if detail.is_null() {
            if let Some(d) = self.devices.remove(id)
                && d.shown.is_some()
            {
                self.gone.insert(id.to_owned());
            }
            return;
        }
        self.gone.remove(id);
        let healthy = healthy_state(&detail);
        let entry = self.devices.entry(id.to_owned()).or_insert(Device {
            detail: Value::Null,
            healthy,
            shown: None,
            last_sent: None,
        });
        entry.detail = detail;
        entry.healthy = healthy;
    }

    fn wanted(&self) -> (BTreeSet<&str>, bool) {
        if self.devices.len() <= self.limits.full_list_max {
            return (self.devices.keys().map(String::as_str).collect(), false);
        }
        // Keep devices already listed first, so the list does not churn.
        let mut problems: Vec<(&str, bool)> = self
            .devices
            .iter()
            .filter(|(_, d)| !d.healthy)
            .map(|(id, d)| (id.as_str(), d.shown.is_none()))
            .collect();
        problems.sort_by_key(|&(id, new)| (new, id));
        let truncated = problems.len() > self.limits.max_listed;
        problems.truncate(self.limits.max_listed);
        (problems.into_iter().map(|(id, _)| id).collect(), truncated)
    }

    /// The reported patch due at `now` (`None` when nothing changed or everything that
    /// changed is waiting for its interval).
    pub fn take_patch(&mut self, now: Instant) -> Option<Value> {
        let (wanted, truncated) = self.wanted();
        let wanted: BTreeSet<String> = wanted.into_iter().map(str::to_owned).collect();
        let mut entries = Map::new();
        for id in std::mem::take(&mut self.gone) {
            entries.insert(id, Value::Null);
        }
        let min = self.limits.min_interval;
        for (id, d) in &mut self.devices {
            let target = wanted.contains(id).then(|| d.detail.clone());
            if target == d.shown {
                continue;
            }
            // Leaving the list is never delayed: it only makes the twin smaller.
            let waits = target.is_some() && d.last_sent.is_some_and(|t| now < t + min);
            if waits {
                continue;
            }
            entries.insert(id.clone(), target.clone().unwrap_or(Value::Null));
            d.shown = target;
            d.last_sent = Some(now);
        }
        let online = self.devices.values().filter(|d| d.healthy).count();
        let summary = (self.devices.len() > self.limits.full_list_max
            || self.summary_shown.is_some())
        .then(|| {
            json!({
                "online": online,
                "offline": self.devices.len() - online,
                "listed": wanted.len(),
                "truncated": truncated,
            })
        });
        let mut patch = Map::new();
        if !entries.is_empty() {
            patch.insert("deviceHealth".into(), Value::Object(entries));
        }
        let too_soon = self
            .summary_sent
            .is_some_and(|t| now < t + SUMMARY_INTERVAL);
        self.summary_waiting = summary != self.summary_shown && too_soon;
        if summary != self.summary_shown && !too_soon {
            patch.insert(
                "deviceHealthSummary".into(),
                summary.clone().unwrap_or(Value::Null),
            );
            self.summary_shown = summary;
            self.summary_sent = Some(now);
        }
        (!patch.is_empty()).then_some(Value::Object(patch))
    }

    /// When a waiting change becomes due (for the caller's timer).
    pub fn next_due(&self) -> Option<Instant> {
        let (wanted, _) = self.wanted();
        let devices = self
            .devices
            .iter()
            .filter(|(id, d)| {
                let target = wanted.contains(id.as_str()).then_some(&d.detail);
                target != d.shown.as_ref()
            })
            .filter_map(|(_, d)| d.last_sent.map(|t| t + self.limits.min_interval))
            .min();
        let summary = self
            .summary_sent
            .filter(|_| self.summary_waiting)
            .map(|t| t + SUMMARY_INTERVAL);
        match (devices, summary) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Rate-limits one device's state-change announcements (status message, log line): a
/// token bucket of `burst` announcements refilled one per `min_interval`, so a single
/// drop and recovery are announced at once, while a flapping device settles to one
/// announcement per interval; a state that differs from the last announced one is
/// announced as soon as a token is back (the caller offers the current state on every
/// poll).
#[derive(Debug, Clone)]
pub struct ChangeGate<S> {
    announced: Option<S>,
    tokens: f64,
    burst: f64,
    refilled: Option<Instant>,
    min_interval: Duration,
}

impl<S: PartialEq + Clone> ChangeGate<S> {
    /// A gate that has announced nothing yet; `burst` announcements may go at once.
    pub fn new(min_interval: Duration, burst: u32) -> Self {
        Self {
            announced: None,
            tokens: f64::from(burst.max(1)),
            burst: f64::from(burst.max(1)),
            refilled: None,
            min_interval,
        }
    }

    fn refill(&mut self, now: Instant) {
        if let Some(t) = self.refilled {
            let gained = now.saturating_duration_since(t).as_secs_f64()
                / self.min_interval.as_secs_f64().max(1e-3);
            self.tokens = (self.tokens + gained).min(self.burst);
        }
        self.refilled = Some(now);
    }

    /// Records a state announced by other means at `now` (it uses a token).
    pub fn record(&mut self, state: S, now: Instant) {
        self.refill(now);
        self.tokens = (self.tokens - 1.0).max(0.0);
        self.announced = Some(state);
    }

    /// Offers the current state at `now`; true when it is to be announced now.
    pub fn offer(&mut self, state: &S, now: Instant) -> bool {
        self.refill(now);
        if self.announced.as_ref() == Some(state) || self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        self.announced = Some(state.clone());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on() -> Value {
        json!({"state": "online"})
    }
    fn off(e: &str) -> Value {
        json!({"state": "offline", "lastError": e})
    }

    #[test]
    fn small_installations_list_every_device() {
        let mut b = HealthBoard::new(BoardLimits::default());
        let t = Instant::now();
        b.update("a", on());
        b.update("b", off("timeout"));
        assert_eq!(
            b.take_patch(t),
            Some(json!({"deviceHealth": {"a": on(), "b": off("timeout")}}))
        );
        assert_eq!(b.take_patch(t), None, "nothing changed");
        b.update("a", Value::Null);
        assert_eq!(b.take_patch(t), Some(json!({"deviceHealth": {"a": null}})));
    }

    #[test]
    fn large_installations_list_problems_with_counts_and_a_cap() {
        let limits = BoardLimits {
            full_list_max: 10,
            max_listed: 3,
            min_interval: Duration::from_secs(10),
        };
        let mut b = HealthBoard::new(limits);
        let t = Instant::now();
        for i in 0..2000 {
            b.update(&format!("d{i:04}"), on());
        }
        for i in 0..5 {
            b.update(&format!("d{i:04}"), off("refused"));
        }
        let patch = b.take_patch(t).unwrap();
        assert_eq!(
            patch["deviceHealthSummary"],
            json!({"online": 1995, "offline": 5, "listed": 3, "truncated": true})
        );
        let listed = patch["deviceHealth"].as_object().unwrap();
        assert_eq!(listed.len(), 3);
        assert!(patch.to_string().len() < 2000);
        // A listed device recovers: its entry is removed at once, another takes its place
        // (it was never reported, so it is not rate-limited).
        b.update("d0000", on());
        let patch = b.take_patch(t + Duration::from_millis(500)).unwrap();
        assert_eq!(patch["deviceHealth"]["d0000"], Value::Null);
        assert_eq!(patch["deviceHealth"]["d0003"], off("refused"));
        // Within a second the summary waits; it is due a second after the last.
        assert_eq!(patch.get("deviceHealthSummary"), None);
        let due = b.next_due().unwrap();
        assert_eq!(due, t + Duration::from_secs(1));
        let patch = b.take_patch(due).unwrap();
        assert_eq!(patch["deviceHealthSummary"]["offline"], 4);
    }

    #[test]
    fn a_flapping_device_is_reported_at_most_once_per_interval_and_ends_right() {
        let mut b = HealthBoard::new(BoardLimits::default());
        let t0 = Instant::now();
        b.update("m", on());
        assert!(b.take_patch(t0).is_some());
        let mut reports = 0;
        let mut last = None;
        // Fails every other poll for 30 s at 2 Hz.
        for step in 1..=60u64 {
            let now = t0 + Duration::from_millis(500 * step);
            b.update("m", if step % 2 == 1 { off("timeout") } else { on() });
            if let Some(p) = b.take_patch(now) {
                reports += 1;
                last = Some(p["deviceHealth"]["m"].clone());
            }
        }
        assert!(reports <= 6, "{reports} reports in 30 s");
        // It settles offline; the latest state is reported once the interval ends.
        let end = t0 + Duration::from_secs(31);
        b.update("m", off("gone"));
        let due = b.next_due().unwrap_or(end);
        let patch = b.take_patch(due.max(end) + Duration::from_secs(5));
        let final_state = patch.map(|p| p["deviceHealth"]["m"].clone()).or(last);
        assert_eq!(final_state, Some(off("gone")));
        assert_eq!(b.next_due(), None);
    }

    #[test]
    fn a_gate_announces_a_flapping_state_at_most_once_per_interval_and_ends_right() {
        let mut g = ChangeGate::new(Duration::from_secs(5), 1);
        let t0 = Instant::now();
        assert!(g.offer(&true, t0), "the first state goes out at once");
        assert!(!g.offer(&true, t0 + Duration::from_secs(60)), "unchanged");
        let mut announced = Vec::new();
        for step in 1..=40u64 {
            let now = t0 + Duration::from_millis(500 * step);
            let online = step % 2 == 0;
            if g.offer(&online, now) {
                announced.push((step, online));
            }
        }
        assert!(announced.len() <= 4, "{announced:?}");
        // Settles offline: announced at the first offer after the interval.
        let last = t0 + Duration::from_secs(20);
        let mut when = None;
        for ms in (0..6000).step_by(500) {
            if g.offer(&false, last + Duration::from_millis(ms)) {
                when = Some(ms);
            }
        }
        let settled = announced.last().is_some_and(|(_, s)| !s) || when.is_some();
        assert!(settled, "the final state was never announced");
        // A burst of 3: one drop and recovery after the first state go out at once.
        let mut g = ChangeGate::new(Duration::from_secs(5), 3);
        assert!(g.offer(&true, t0));
        assert!(g.offer(&false, t0 + Duration::from_millis(100)));
        assert!(g.offer(&true, t0 + Duration::from_millis(200)));
        assert!(
            !g.offer(&false, t0 + Duration::from_millis(300)),
            "then limited"
        );
    }
}
