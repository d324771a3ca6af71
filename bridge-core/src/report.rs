//! Report-on-change settings and the per-field decision, shared by every module (pure).
//!
//! A field is sent when it changed beyond its deadband (absolute, and relative to the
//! last sent value when `deadbandPercent` is set), but not more often than
//! `minIntervalMs`, and at least every `maxSilenceMs` even if unchanged.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::ConfigIssue;

/// Report-on-change settings of one device (`report` in the device configuration).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Report {
    /// Send a field only when it changed beyond its deadband (or stayed silent too long).
    #[serde(default)]
    pub on_change: bool,
    /// Absolute deadband for every numeric field (0: any change).
    #[serde(default)]
    pub deadband: f64,
    /// Relative deadband, percent of the last sent value (0: off). With both set, a change
    /// must exceed both.
    #[serde(default)]
    pub deadband_percent: f64,
    /// Absolute deadbands per field, overriding `deadband`.
    #[serde(default)]
    pub point_deadbands: BTreeMap<String, f64>,
    /// Send a field at most this often, ms (0: every change).
    #[serde(default)]
    pub min_interval_ms: u64,
    /// Send a field at least this often even if unchanged, ms.
    #[serde(default = "default_max_silence")]
    pub max_silence_ms: u64,
}

const fn default_max_silence() -> u64 {
    300_000
}

impl Default for Report {
    fn default() -> Self {
        Self {
            on_change: false,
            deadband: 0.0,
            deadband_percent: 0.0,
            point_deadbands: BTreeMap::new(),
            min_interval_ms: 0,
            max_silence_ms: default_max_silence(),
        }
    }
}

/// How a field compares with what was last sent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Change {
    /// Never sent.
    First,
    /// Numbers: last sent and current.
    Numeric(f64, f64),
    /// Anything else: whether it is the same.
    Other {
        /// Unchanged.
        same: bool,
    },
}

impl Report {
    /// Whether to send `field` now, `since` the last time it was sent.
    pub fn send(&self, field: &str, change: Change, since: Duration) -> bool {
        if !self.on_change {
            return true;
        }
        match change {
            Change::First => true,
            _ if since >= Duration::from_millis(self.max_silence_ms) => true,
            _ if since < Duration::from_millis(self.min_interval_ms) => false,
            Change::Other { same } => !same,
            Change::Numeric(prev, now) => {
                let delta = (now - prev).abs();
                let absolute = self
                    .point_deadbands
                    .get(field)
                    .copied()
                    .unwrap_or(self.deadband);
                let beyond_absolute = if absolute == 0.0 {
                    prev != now
                } else {
                    delta > absolute
                };
                let beyond_relative = self.deadband_percent == 0.0
                    || delta > prev.abs() * self.deadband_percent / 100.0;
                beyond_absolute && beyond_relative
            }
        }
    }

    /// Validation issues under `path` (e.g. `devices.meter-1.report`).
    pub fn issues(&self, path: &str) -> Vec<ConfigIssue> {
        let mut out = Vec::new();
        let bad = |v: f64| !v.is_finite() || v < 0.0;
        if bad(self.deadband) {
            out.push(ConfigIssue::new(
                format!("{path}.deadband"),
                "deadband must be a number ≥ 0.",
            ));
        }
        if bad(self.deadband_percent) {
            out.push(ConfigIssue::new(
                format!("{path}.deadbandPercent"),
                "deadbandPercent must be a number ≥ 0.",
            ));
        }
        for (field, v) in &self.point_deadbands {
            if bad(*v) {
                out.push(ConfigIssue::new(
                    format!("{path}.pointDeadbands.{field}"),
                    "Deadbands must be numbers ≥ 0.",
                ));
            }
        }
        if self.min_interval_ms > self.max_silence_ms {
            out.push(ConfigIssue::new(
                format!("{path}.minIntervalMs"),
                "minIntervalMs cannot exceed maxSilenceMs.",
            ));
        }
        out
    }
}

/// A value report-on-change can compare.
pub trait Reportable: Clone + PartialEq {
    /// The value as a number when deadbands apply to it (not for booleans or text).
    fn number(&self) -> Option<f64>;
}

impl Reportable for serde_json::Value {
    fn number(&self) -> Option<f64> {
        self.as_f64()
    }
}

/// The report-on-change memory of one device, for every module: what was last sent
/// per field, and when.
#[derive(Debug)]
pub struct Memory<V> {
    last: HashMap<String, (V, Instant)>,
}

impl<V> Default for Memory<V> {
    fn default() -> Self {
        Self {
            last: HashMap::new(),
        }
    }
}

impl<V: Reportable> Memory<V> {
    /// Whether to send `field`'s `value` now under `report`; remembered when it is.
    pub fn offer(&mut self, report: &Report, field: &str, value: &V, now: Instant) -> bool {
        if !report.on_change {
            return true;
        }
        let (change, since) = match self.last.get(field) {
            None => (Change::First, Duration::ZERO),
            Some((prev, at)) => (
                match (prev.number(), value.number()) {
                    (Some(a), Some(b)) => Change::Numeric(a, b),
                    _ => Change::Other {
                        same: prev == value,
                    },
                },
                now.duration_since(*at),
            ),
        };
        let send = report.send(field, change, since);
        if send {
            self.last.insert(field.to_owned(), (value.clone(), now));
        }
        send
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_remembers_what_was_sent() {
        let report = Report {
            on_change: true,
            deadband: 0.5,
            ..Report::default()
        };
        let mut m = Memory::<serde_json::Value>::default();
        let t0 = Instant::now();
        let v = |x: f64| serde_json::json!(x);
        assert!(m.offer(&report, "t", &v(20.0), t0), "first value goes");
        assert!(!m.offer(&report, "t", &v(20.4), t0 + Duration::from_secs(1)));
        assert!(m.offer(&report, "t", &v(20.6), t0 + Duration::from_secs(2)));
        assert!(m.offer(&report, "b", &serde_json::json!(true), t0));
        assert!(!m.offer(
            &report,
            "b",
            &serde_json::json!(true),
            t0 + Duration::from_secs(1)
        ));
        assert!(m.offer(
            &report,
            "b",
            &serde_json::json!(false),
            t0 + Duration::from_secs(1)
        ));
    }

    fn on() -> Report {
        Report {
            on_change: true,
            ..Report::default()
        }
    }

    #[test]
    fn absolute_relative_and_per_field_deadbands() {
        let s = Duration::from_secs(1);
        let r = Report {
            deadband: 0.5,
            point_deadbands: [("p".to_owned(), 2.0)].into(),
            ..on()
        };
        assert!(r.send("v", Change::First, s));
        assert!(!r.send("v", Change::Numeric(230.0, 230.4), s));
        assert!(r.send("v", Change::Numeric(230.0, 230.6), s));
        assert!(
            !r.send("p", Change::Numeric(10.0, 11.5), s),
            "field deadband"
        );
        assert!(r.send("p", Change::Numeric(10.0, 12.5), s));
        let pct = Report {
            deadband_percent: 1.0,
            ..on()
        };
        assert!(!pct.send("v", Change::Numeric(200.0, 201.5), s), "0.75 %");
        assert!(pct.send("v", Change::Numeric(200.0, 202.5), s), "1.25 %");
        assert!(
            pct.send("v", Change::Numeric(0.0, 0.001), s),
            "any change from 0"
        );
        let both = Report {
            deadband: 5.0,
            deadband_percent: 1.0,
            ..on()
        };
        assert!(
            !both.send("v", Change::Numeric(200.0, 204.0), s),
            "2 % but < 5"
        );
        assert!(
            !both.send("v", Change::Numeric(1000.0, 1006.0), s),
            "> 5 but 0.6 %"
        );
        assert!(both.send("v", Change::Numeric(1000.0, 1011.0), s));
        let exact = on();
        assert!(!exact.send("v", Change::Numeric(1.0, 1.0), s));
        assert!(exact.send("v", Change::Numeric(1.0, 1.0001), s));
        assert!(exact.send("s", Change::Other { same: false }, s));
        assert!(!exact.send("s", Change::Other { same: true }, s));
        assert!(
            Report::default().send("v", Change::Numeric(1.0, 1.0), s),
            "off: everything goes"
        );
    }

    #[test]
    fn min_interval_and_max_silence() {
        let r = Report {
            min_interval_ms: 5_000,
            max_silence_ms: 60_000,
            ..on()
        };
        let big = Change::Numeric(1.0, 100.0);
        assert!(!r.send("v", big, Duration::from_secs(2)), "too soon");
        assert!(r.send("v", big, Duration::from_secs(6)));
        let same = Change::Numeric(1.0, 1.0);
        assert!(!r.send("v", same, Duration::from_secs(59)));
        assert!(r.send("v", same, Duration::from_secs(60)), "silence");
        assert!(r.send("v", Change::First, Duration::ZERO), "first always");
    }

    #[test]
    fn validation_names_the_fields() {
        let r = Report {
            deadband: -1.0,
            deadband_percent: f64::NAN,
            point_deadbands: [("p".to_owned(), -2.0)].into(),
            min_interval_ms: 10,
            max_silence_ms: 5,
            ..on()
        };
        let paths: Vec<String> = r
            .issues("devices.m.report")
            .into_iter()
            .map(|i| i.path)
            .collect();
        assert_eq!(
            paths,
            [
                "devices.m.report.deadband",
                "devices.m.report.deadbandPercent",
                "devices.m.report.pointDeadbands.p",
                "devices.m.report.minIntervalMs"
            ]
        );
        assert!(on().issues("r").is_empty());
    }
}
