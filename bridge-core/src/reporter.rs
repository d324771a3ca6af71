//! Where reported properties go: a twin when connected to a hub, the log otherwise.

use serde_json::Value;

use crate::hub::HubSession;

/// Reported-properties sink of one identity (the module's or a device's own). Cheap to
/// clone.
#[derive(Debug, Clone)]
pub struct Reporter {
    session: Option<HubSession>,
    /// `deviceHealth` goes through a health board (summary, rate limit).
    health: Option<crate::runtime::health_sink::HealthSink>,
}

impl Reporter {
    /// A reporter that only logs (for stdout and MQTT upstreams, and tests).
    pub fn log_only() -> Self {
        Self {
            session: None,
            health: None,
        }
    }

    /// A reporter that patches the twin of `session`'s identity.
    pub fn hub(session: HubSession) -> Self {
        Self {
            health: Some(crate::runtime::health_sink::HealthSink::spawn(
                session.clone(),
            )),
            session: Some(session),
        }
    }

    /// Queues a reported-properties patch (merged and retried until acknowledged).
    pub fn report(&self, patch: Value) {
        let patch = match &self.health {
            Some(h) => h.intercept(patch),
            None => Some(patch),
        };
        match (&self.session, patch) {
            (_, None) => {}
            (Some(s), Some(patch)) => s.report(patch),
            (None, Some(patch)) => tracing::debug!(%patch, "Reported properties (no hub)."),
        }
    }
}
