//! The module twin's side of the session: reported properties merged while they wait
//! for the hub, and the answers to twin GET and PATCH requests.

use std::time::Instant;

use serde_json::Value;
use tokio::sync::oneshot;
use tracing::warn;

use super::{Conn, Driver, ReportError, new_rid};
use crate::hub::topics;
use crate::hub::twin::Desired;
use crate::mqtt::Tag;

pub(super) type Waiter = oneshot::Sender<Result<(), ReportError>>;

/// Reported properties not yet acknowledged: merged while waiting.
#[derive(Default)]
pub(super) struct Reported {
    pub(super) pending: Option<Value>,
    pub(super) waiters: Vec<Waiter>,
    /// (request id, patch, waiters) of the PATCH the hub has not answered yet.
    pub(super) in_flight: Option<(String, Value, Vec<Waiter>)>,
}

impl Reported {
    pub(super) fn add(&mut self, patch: &Value, done: Option<Waiter>) {
        merge_into(&mut self.pending, patch);
        self.waiters.extend(done);
    }

    /// The connection dropped: the in-flight patch goes back under the newer pending one.
    pub(super) fn requeue(&mut self) {
        if let Some((_, mut patch, waiters)) = self.in_flight.take() {
            if let Some(newer) = self.pending.take() {
                merge_patch_keep_nulls(&mut patch, &newer);
            }
            self.pending = Some(patch);
            self.waiters.extend(waiters);
        }
    }
}

fn merge_into(slot: &mut Option<Value>, patch: &Value) {
    match slot {
        Some(existing) => merge_patch_keep_nulls(existing, patch),
        None => *slot = Some(patch.clone()),
    }
}

/// Like a merge patch, but `null` is kept: in reported patches `null` means "delete
/// on the hub" and must reach it.
fn merge_patch_keep_nulls(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                match t.get_mut(k) {
                    Some(existing) if v.is_object() && existing.is_object() => {
                        merge_patch_keep_nulls(existing, v)
                    }
                    _ => {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

impl Driver {
    pub(super) fn request_twin(&self, conn: &mut Conn) {
        let rid = new_rid();
        // The Python SDK sends a single space as the body of a GET.
        self.publish(conn, topics::twin_get(&rid), b" ".to_vec(), Tag::Untracked);
        conn.twin_get = Some((rid, Instant::now()));
    }

    pub(super) fn flush_reported(&mut self, conn: &mut Conn) {
        if !conn.connected || self.reported.in_flight.is_some() {
            return;
        }
        if let Some(patch) = self.reported.pending.take() {
            let rid = new_rid();
            self.publish(
                conn,
                topics::twin_report(&rid),
                patch.to_string().into_bytes(),
                Tag::Untracked,
            );
            let waiters = std::mem::take(&mut self.reported.waiters);
            self.reported.in_flight = Some((rid, patch, waiters));
        }
    }

    pub(super) fn on_twin_response(
        &mut self,
        conn: &mut Conn,
        status: u16,
        rid: &str,
        payload: &[u8],
    ) {
        if conn.twin_get.as_ref().is_some_and(|(r, _)| r == rid) {
            conn.twin_get = None;
            let parsed = serde_json::from_slice::<Value>(payload)
                .ok()
                .and_then(|v| Desired::from_twin(&v));
            match (status, parsed) {
                (200, Some(mut desired)) => {
                    for (patch, version) in conn.early_patches.drain(..) {
                        desired.apply_patch(&patch, version);
                    }
                    let changed = self.desired.as_ref() != Some(&desired);
                    self.desired = Some(desired.clone());
                    if changed {
                        let _ignored = self.desired_tx.send(Some(desired));
                    }
                }
                (status, _) => warn!(
                    status,
                    "The twin GET failed or returned an unusable document; retrying."
                ),
            }
            if conn.twin_get.is_none() && self.desired.is_none() {
                self.request_twin(conn);
            }
            return;
        }
        if self
            .reported
            .in_flight
            .as_ref()
            .is_some_and(|(r, _, _)| r == rid)
        {
            if let Some((_, _, waiters)) = self.reported.in_flight.take() {
                let result = if (200..300).contains(&status) {
                    Ok(())
                } else {
                    Err(ReportError::Refused(status))
                };
                if let Err(e) = &result {
                    warn!(error = %e, "Reported properties refused.");
                }
                for w in waiters {
                    let _ignored = w.send(result.clone());
                }
            }
            self.flush_reported(conn);
        }
    }

    pub(super) fn apply_desired_patch(&mut self, patch: &Value, version: Option<u64>) {
        if let Some(desired) = &mut self.desired
            && desired.apply_patch(patch, version)
        {
            let _ignored = self.desired_tx.send(Some(desired.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reported_patches_merge_and_requeue_under_newer_ones() {
        let mut r = Reported::default();
        r.add(&json!({"a": 1, "s": {"x": 1}}), None);
        r.add(&json!({"s": {"y": null}}), None);
        assert_eq!(r.pending, Some(json!({"a": 1, "s": {"x": 1, "y": null}})));
        r.in_flight = Some((
            "rid".into(),
            r.pending.take().unwrap_or_default(),
            Vec::new(),
        ));
        r.add(&json!({"a": 2}), None);
        r.requeue();
        assert_eq!(r.pending, Some(json!({"a": 2, "s": {"x": 1, "y": null}})));
        assert!(r.in_flight.is_none());
    }
}
