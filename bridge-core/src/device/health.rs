//! Device health: one type and one JSON shape for the module twin (`deviceHealth.<id>`),
//! a device's own twin (`health`) and the `status` output, whatever the protocol.

use serde::Serialize;
use serde_json::{Map, Value};

/// Whether the device is reachable (Modbus answers, BLE advertisements heard or the GATT
/// link up).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum HealthState {
    /// Reachable.
    Online,
    /// Not reachable.
    Offline,
}

/// The health of one field device.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceHealth {
    /// Online or offline.
    pub state: HealthState,
    /// The last error, if any (also while online: a point that failed).
    pub last_error: Option<String>,
    /// When the device last answered (RFC 3339).
    pub last_success: Option<String>,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// Protocol details (RSSI, local name, connection kind…), flattened into the report.
    #[serde(flatten)]
    pub detail: Map<String, Value>,
}

impl Default for DeviceHealth {
    fn default() -> Self {
        Self {
            state: HealthState::Offline,
            last_error: None,
            last_success: None,
            consecutive_failures: 0,
            detail: Map::new(),
        }
    }
}

impl DeviceHealth {
    /// A success at `at`; true when the state changed (report it).
    pub fn success(&mut self, at: String, error: Option<String>) -> bool {
        let changed = self.state != HealthState::Online;
        self.state = HealthState::Online;
        self.last_success = Some(at);
        self.last_error = error;
        self.consecutive_failures = 0;
        changed
    }

    /// A failure; true when the state changed (report it). `first_report`: also true
    /// for the very first failure of a device never seen online.
    pub fn failure(&mut self, error: String) -> bool {
        let first = self.last_success.is_none() && self.consecutive_failures == 0;
        let changed = self.state != HealthState::Offline || first;
        self.state = HealthState::Offline;
        self.last_error = Some(error);
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        changed
    }

    /// Online?
    pub fn online(&self) -> bool {
        self.state == HealthState::Online
    }

    /// The JSON shape every report uses.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn transitions_and_shape() {
        let mut h = DeviceHealth::default();
        assert!(h.failure("timeout".into()), "first failure is reported");
        assert!(!h.failure("timeout".into()));
        assert_eq!(h.consecutive_failures, 2);
        assert!(h.success("2026-12-01T00:00:00.000Z".into(), None));
        assert!(!h.success("2026-12-01T00:00:01.000Z".into(), None));
        h.detail.insert("rssi".into(), json!(-60));
        assert_eq!(
            h.to_json(),
            json!({"state": "online", "lastError": null, "lastSuccess": "2026-12-01T00:00:01.000Z",
                   "consecutiveFailures": 0, "rssi": -60})
        );
        assert!(h.failure("gone".into()));
        assert_eq!(h.to_json()["state"], "offline");
    }
}
