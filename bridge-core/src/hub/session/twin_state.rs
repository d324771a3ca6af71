//! The module twin's side of the session: reported properties merged while they wait
//! for the hub, and the answers to twin GET and PATCH requests.
//!
//! No reported patch may stall the connection: one larger than IoT Hub accepts is sent
//! in parts (a merge patch splits cleanly along object keys), a single value too large
//! even alone is dropped with an error and counted, and a patch whose PATCH keeps being
//! lost with the connection is dropped after a few tries instead of forever.

use std::time::Instant;

use serde_json::{Map, Value};
use tokio::sync::oneshot;
use tracing::warn;

use super::{Conn, Driver, ReportError, new_rid};
use crate::hub::topics;
use crate::hub::twin::Desired;
use crate::mqtt::Tag;

pub(super) type Waiter = oneshot::Sender<Result<(), ReportError>>;

/// IoT Hub's limit for the reported-properties section is 32 KiB; each PATCH stays
/// below it with room for the envelope.
pub(super) const MAX_REPORTED_PATCH: usize = 30 * 1024;
/// A PATCH lost with the connection this many times in a row is dropped.
const MAX_REQUEUES: u32 = 5;

/// Reported properties not yet acknowledged: merged while waiting.
#[derive(Default)]
pub(super) struct Reported {
    pub(super) pending: Option<Value>,
    pub(super) waiters: Vec<Waiter>,
    /// (request id, patch, waiters) of the PATCH the hub has not answered yet.
    pub(super) in_flight: Option<(String, Value, Vec<Waiter>)>,
    /// Times in a row the in-flight patch was lost with the connection.
    requeues: u32,
    /// Values dropped because even alone they exceed the limit, or patches given up on.
    pub(super) dropped: u64,
}

impl Reported {
    pub(super) fn add(&mut self, patch: &Value, done: Option<Waiter>) {
        merge_into(&mut self.pending, patch);
        self.waiters.extend(done);
    }

    /// The connection dropped: the in-flight patch goes back under the newer pending one,
    /// unless it has been lost too often (then it may be what kills the connection).
    pub(super) fn requeue(&mut self) {
        if let Some((_, mut patch, waiters)) = self.in_flight.take() {
            self.requeues += 1;
            if self.requeues >= MAX_REQUEUES {
                self.dropped += 1;
                self.requeues = 0;
                tracing::error!(
                    size = patch.to_string().len(),
                    tries = MAX_REQUEUES,
                    dropped_total = self.dropped,
                    "A reported-properties patch was lost with the connection every time: dropped."
                );
                for w in waiters {
                    let _ignored = w.send(Err(ReportError::Refused(0)));
                }
                return;
            }
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
        let next = self.reported.pending.take().and_then(|mut patch| {
            if patch.to_string().len() <= MAX_REPORTED_PATCH {
                return Some(patch);
            }
            let mut dropped = Vec::new();
            let part = match &mut patch {
                Value::Object(rest) => take_part(rest, MAX_REPORTED_PATCH, "", &mut dropped),
                _ => Map::new(),
            };
            for path in &dropped {
                self.reported.dropped += 1;
                tracing::error!(%path, limit = MAX_REPORTED_PATCH, dropped_total = self.reported.dropped, "A reported property is larger than IoT Hub accepts: dropped.");
            }
            if patch.as_object().is_some_and(|m| !m.is_empty()) {
                // The rest goes in the next PATCH, under anything newer.
                self.reported.pending = Some(patch);
            }
            (!part.is_empty()).then_some(Value::Object(part))
        });
        if let Some(patch) = next {
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
                self.reported.requeues = 0;
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

/// Size of `"key":value,` in serialised JSON.
fn entry_len(key: &str, value: &Value) -> usize {
    Value::String(key.to_owned()).to_string().len() + value.to_string().len() + 2
}

/// Moves entries from `rest` into a part no larger than `budget` bytes (serialised),
/// splitting an object too large to move whole; values too large even alone are
/// removed and their paths added to `dropped`. Always makes progress while `rest` is
/// not empty.
fn take_part(
    rest: &mut Map<String, Value>,
    budget: usize,
    prefix: &str,
    dropped: &mut Vec<String>,
) -> Map<String, Value> {
    let mut part = Map::new();
    let mut used = 2;
    let keys: Vec<String> = rest.keys().cloned().collect();
    for key in keys {
        let Some(value) = rest.get_mut(&key) else {
            continue;
        };
        let len = entry_len(&key, value);
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        if used + len <= budget {
            used += len;
            if let Some(v) = rest.remove(&key) {
                part.insert(key, v);
            }
        } else if len + 2 <= budget {
            // Fits in a part of its own: the next one.
        } else if let (Value::Object(inner), true) = (&mut *value, part.is_empty()) {
            let inner_budget = budget.saturating_sub(entry_len(&key, &Value::Null) + 2);
            let sub = take_part(inner, inner_budget, &path, dropped);
            let now_empty = inner.is_empty();
            if now_empty {
                rest.remove(&key);
            }
            if !sub.is_empty() {
                part.insert(key, Value::Object(sub));
            }
            // This part is as full as it gets.
            return part;
        } else if !value.is_object() {
            rest.remove(&key);
            dropped.push(path);
        }
    }
    part
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Applies merge patches in order (nulls delete), as the hub does.
    fn apply(target: &mut Value, patch: &Value) {
        match (target, patch) {
            (Value::Object(t), Value::Object(p)) => {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        apply(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
            (t, p) => *t = p.clone(),
        }
    }

    #[test]
    fn an_oversized_patch_is_sent_in_parts_that_add_up_to_it() {
        let mut health = Map::new();
        for i in 0..2500 {
            health.insert(
                format!("dev-{i:04}"),
                json!({"state": "offline", "lastError": "Connection refused (os error 111)", "consecutiveFailures": i}),
            );
        }
        let whole = json!({"configStatus": {"status": "applied"}, "deviceHealth": health, "spool": {"pending": 3}});
        let mut rest = whole.as_object().cloned().unwrap();
        let mut merged = json!({});
        let mut parts = 0;
        let mut dropped = Vec::new();
        while !rest.is_empty() {
            let part = take_part(&mut rest, MAX_REPORTED_PATCH, "", &mut dropped);
            let text = Value::Object(part.clone()).to_string();
            assert!(text.len() <= MAX_REPORTED_PATCH, "{}", text.len());
            assert!(!part.is_empty(), "no progress");
            apply(&mut merged, &Value::Object(part));
            parts += 1;
        }
        assert!(dropped.is_empty());
        assert_eq!(merged, whole);
        assert!(parts > 5, "{parts}");
    }

    #[test]
    fn a_value_too_large_alone_is_dropped_with_its_path() {
        let huge = "x".repeat(MAX_REPORTED_PATCH + 10);
        let mut rest = json!({"a": {"big": huge, "small": 1}, "b": 2})
            .as_object()
            .cloned()
            .unwrap();
        let mut dropped = Vec::new();
        let mut parts = Vec::new();
        while !rest.is_empty() {
            parts.push(take_part(&mut rest, MAX_REPORTED_PATCH, "", &mut dropped));
        }
        assert_eq!(dropped, ["a.big"]);
        let mut merged = json!({});
        for p in parts {
            apply(&mut merged, &Value::Object(p));
        }
        assert_eq!(merged, json!({"a": {"small": 1}, "b": 2}));
    }

    #[test]
    fn a_patch_lost_with_the_connection_every_time_is_given_up() {
        let mut r = Reported::default();
        for _ in 0..MAX_REQUEUES {
            // As flush_reported does: the pending patch goes out.
            let patch = r.pending.take().unwrap_or_else(|| json!({"k": 1}));
            r.in_flight = Some(("rid".into(), patch, Vec::new()));
            r.requeue();
        }
        assert!(r.pending.is_none() && r.in_flight.is_none());
        assert_eq!(r.dropped, 1);
    }

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
