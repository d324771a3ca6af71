//! Report-on-change for BLE telemetry, pure: the shared rules of
//! [`bridge_core::report`] per field; signal fields (`rssi`, `txPower`) ride along but
//! never trigger a message.

use std::time::Instant;

use serde_json::{Map, Value};

pub use bridge_core::report::Report;

const SIGNAL: &[&str] = &["rssi", "txPower"];

/// Last reported value and time per field of one device (the core's memory).
#[derive(Debug, Default)]
pub struct Memory(bridge_core::report::Memory<Value>);

impl Memory {
    /// The fields of `body` to send now (empty: send nothing).
    pub fn select(
        &mut self,
        report: &Report,
        body: &Map<String, Value>,
        now: Instant,
    ) -> Map<String, Value> {
        if !report.on_change {
            return body.clone();
        }
        let mut out: Map<String, Value> = body
            .iter()
            .filter(|(k, _)| !SIGNAL.contains(&k.as_str()))
            .filter(|(k, v)| self.0.offer(report, k, v, now))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !out.is_empty() {
            for s in SIGNAL {
                if let Some(v) = body.get(*s) {
                    out.insert((*s).to_owned(), v.clone());
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn deadband_silence_and_signal_fields() {
        let r = Report {
            on_change: true,
            deadband: 0.5,
            max_silence_ms: 10_000,
            ..Report::default()
        };
        let mut m = Memory::default();
        let t0 = Instant::now();
        assert_eq!(
            m.select(&r, &body(json!({"temperature": 21.0, "rssi": -60})), t0)
                .len(),
            2
        );
        assert!(
            m.select(
                &r,
                &body(json!({"temperature": 21.3, "rssi": -50})),
                t0 + Duration::from_secs(1)
            )
            .is_empty(),
            "RSSI alone sends nothing"
        );
        let out = m.select(
            &r,
            &body(json!({"temperature": 21.6, "rssi": -52})),
            t0 + Duration::from_secs(2),
        );
        assert_eq!(out, body(json!({"temperature": 21.6, "rssi": -52})));
        assert_eq!(
            m.select(
                &r,
                &body(json!({"temperature": 21.6})),
                t0 + Duration::from_secs(13)
            )
            .len(),
            1,
            "silence exceeded"
        );
        assert_eq!(
            Memory::default()
                .select(&Report::default(), &body(json!({"a": 1, "rssi": 1})), t0)
                .len(),
            2
        );
    }
}
