//! Where reported properties go: a twin when connected to a hub, the log otherwise.

use serde_json::Value;

use crate::hub::HubSession;

/// Reported-properties sink of one identity (the module's or a device's own). Cheap to
/// clone.
#[derive(Debug, Clone)]
pub struct Reporter {
    session: Option<HubSession>,
}

impl Reporter {
    /// A reporter that only logs (for stdout and MQTT upstreams, and tests).
    pub fn log_only() -> Self {
        Self { session: None }
    }

    /// A reporter that patches the twin of `session`'s identity.
    pub fn hub(session: HubSession) -> Self {
        Self {
            session: Some(session),
        }
    }

    /// Queues a reported-properties patch (merged and retried until acknowledged).
    pub fn report(&self, patch: Value) {
        match &self.session {
            Some(s) => s.report(patch),
            None => tracing::debug!(%patch, "Reported properties (no hub)."),
        }
    }
}
