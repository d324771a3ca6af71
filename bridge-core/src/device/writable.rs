//! Writable properties of a device with its own identity: each desired property of the
//! device's twin is handed to the module once per new value, and acknowledged in the
//! IoT Plug and Play form (`ac` 200 with the value, or 400 with the reason and the value
//! still in use).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::DeviceRoute;
use crate::hub::twin::pnp_ack;

/// A desired value for one writable property.
#[derive(Debug, Clone, PartialEq)]
pub struct WritableRequest {
    /// The property (a writable point or characteristic name).
    pub name: String,
    /// The desired value.
    pub value: Value,
    /// The desired document's `$version`.
    pub version: u64,
}

/// What became of a [`WritableRequest`].
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOutcome {
    /// Written to the field device.
    Applied,
    /// Refused or failed; the value still in use (`null` if unknown).
    Refused {
        /// Why, for `ad`.
        reason: String,
        /// The value the device still has.
        in_use: Value,
    },
}

impl DeviceRoute {
    /// Follows the device twin's desired properties until the route closes, calling
    /// `apply` for each property whose value is new and acknowledging the outcome.
    /// Returns at once for a device on the module identity (it has no twin of its own).
    pub async fn follow_writable<F, Fut>(&self, mut apply: F)
    where
        F: FnMut(WritableRequest) -> Fut,
        Fut: Future<Output = WriteOutcome>,
    {
        let Some(link) = &self.inner.link else {
            return;
        };
        let session = link.session.clone();
        let stop = link.stop_token();
        let mut desired = session.desired();
        let mut applied: BTreeMap<String, Value> = BTreeMap::new();
        loop {
            let current = desired.borrow_and_update().clone();
            if let Some(d) = current {
                let mut acks = Map::new();
                for (key, value) in d.doc.as_object().into_iter().flatten() {
                    if applied.get(key) == Some(value) {
                        continue;
                    }
                    let request = WritableRequest {
                        name: key.clone(),
                        value: value.clone(),
                        version: d.version,
                    };
                    let ack = match apply(request).await {
                        WriteOutcome::Applied => {
                            applied.insert(key.clone(), value.clone());
                            pnp_ack(value, 200, d.version, "written")
                        }
                        WriteOutcome::Refused { reason, in_use } => {
                            pnp_ack(&in_use, 400, d.version, &reason)
                        }
                    };
                    acks.insert(key.clone(), ack);
                }
                if !acks.is_empty() {
                    session.report(Value::Object(acks));
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                changed = desired.changed() => if changed.is_err() { return },
            }
        }
    }
}
